"""V2 JSON tensors <-> numpy, where the router itself computes (conditions, built-in combiners).

The wire form itself (`Tensor`, `renamed`, `rows`, `empty_like`) is `infergraph.graph.wire`,
shared with the KServe graph step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infergraph.errors import InputError
from infergraph.graph.wire import Tensor
from infergraph.serving.tensors import V2_TO_NUMPY


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
