"""Tensors in Seldon Core v1's JSON payloads: `jsonData` tensors and plain `ndarray` values.

A unit's `jsonData` holds V2 JSON tensors by name (`v2json`); clients may also send plain
JSON values (`ndarray`, or a bare list inside `jsonData`), whose datatype is inferred here.
"""

from __future__ import annotations

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.v2json import encode_json, from_tensor


def infer_plain(name: str, value: object) -> Array:
    """A plain JSON value from a client: text becomes BYTES, floats FP32, ints INT64, bools BOOL."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(name, f"not a rectangular array: {exc}") from exc
    if array.dtype.kind in "USO":
        out = np.empty(array.shape, dtype=object)
        for idx, item in np.ndenumerate(array):
            if isinstance(item, str):
                out[idx] = item.encode("utf-8")
            elif isinstance(item, bytes):
                out[idx] = item
            else:
                raise InputError(name, f"mixed or nested data ({type(item).__name__})")
        return out
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "b":
        return array
    raise InputError(name, f"unsupported data of dtype {array.dtype}")


def decode_seldon(name: str, value: object) -> Array:
    """One `jsonData` entry: a V2 tensor object, or a plain value."""
    if isinstance(value, dict):
        return from_tensor(value, name)
    return infer_plain(name, value)


def encode_seldon(array: Array) -> JSONObject:
    """One `jsonData` entry, the V2 tensor object without a name (the key names it)."""
    datatype, shape, data, params = encode_json(array)
    out: JSONObject = {"datatype": datatype, "shape": shape, "data": data}
    if params:
        out["parameters"] = params
    return out
