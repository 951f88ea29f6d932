"""V2 JSON tensors as the router passes them between nodes, without numpy round trips.

Tensors stay in their wire form (name, datatype, shape, data, parameters) so a
hop costs one JSON decode and encode; numpy appears only where the router itself
computes (conditions, built-in combiners).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infergraph.components.base import TensorSpec
from infergraph.errors import InputError
from infergraph.serving.tensors import V2_TO_NUMPY

Tensor = dict[str, Any]


def renamed(tensor: Tensor, name: str) -> Tensor:
    out = {k: v for k, v in tensor.items() if k != "name"}
    out["name"] = name
    return out


def rows(tensor: Tensor) -> int:
    shape = tensor.get("shape") or []
    return int(shape[0]) if shape else 1


def empty_like(spec: TensorSpec) -> Tensor:
    """A well-formed zero-row tensor of a declared output (for skipped nodes)."""
    shape = [0] + [max(d, 0) for d in spec.shape[1:]]
    return {"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": []}


def flat(data: Any) -> list[Any]:
    if isinstance(data, list) and data and isinstance(data[0], list):
        out: list[Any] = []
        for item in data:
            out.extend(flat(item))
        return out
    return data if isinstance(data, list) else [data]


def as_array(tensor: Tensor) -> np.ndarray:
    datatype = tensor.get("datatype", "FP32")
    values = flat(tensor.get("data", []))
    shape = tensor.get("shape") or [len(values)]
    if datatype == "BYTES":
        return np.array(values, dtype=object).reshape(shape)
    if datatype not in V2_TO_NUMPY:
        raise InputError(tensor.get("name", "?"), f"unknown datatype '{datatype}'")
    return np.asarray(values, dtype=V2_TO_NUMPY[datatype]).reshape(shape)


def from_array(name: str, array: np.ndarray) -> Tensor:
    if array.dtype.kind == "f":
        return {
            "name": name,
            "datatype": "FP32",
            "shape": list(array.shape),
            "data": array.astype(np.float32).reshape(-1).tolist(),
        }
    return {
        "name": name,
        "datatype": "INT64",
        "shape": list(array.shape),
        "data": array.astype(np.int64).reshape(-1).tolist(),
    }
