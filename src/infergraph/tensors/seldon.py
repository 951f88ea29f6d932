"""Tensors in Seldon Core v1's JSON payloads: `jsonData` tensors and plain `ndarray` values.

A unit's `jsonData` holds V2 JSON tensors by name (`v2json`); clients may also send plain
JSON values (`ndarray`, or a bare list inside `jsonData`), whose datatype is inferred here.
"""

from __future__ import annotations

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.v2json import check_overflow, check_range, encode_json, from_tensor


def infer_plain(name: str, value: object) -> Array:
    """A plain JSON value from a client: text becomes BYTES, floats FP32, ints INT64, bools BOOL.

    What numpy's reading would change is refused as the V2 codecs refuse it (review finding
    6): an integer past INT64 (numpy reads it as uint64, which wrapped to a negative),
    numbers among text (numpy turns them into text), a float past FP32 (it became inf).
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(name, f"not a rectangular array: {exc}") from exc
    if array.dtype.kind in "USO":
        return _texts(name, value, array.shape)
    flat = array.reshape(-1)
    if array.dtype.kind == "f":
        _check_no_wide_integers(name, value, flat)
        with np.errstate(over="ignore"):
            out = array.astype(np.float32)
        check_overflow(name, "FP32", out, array, flat)
        return out
    if array.dtype.kind in "iu":
        check_range(name, "INT64", np.int64, array)
        return array.astype(np.int64)
    if array.dtype.kind == "b":
        return array
    raise InputError(name, f"unsupported data of dtype {array.dtype}")


def _check_no_wide_integers(name: str, value: object, flat: Array) -> None:
    """numpy reads [1, 2**63] as float64, rounding the integer: one at or past 2**63 among
    the values (found by one vectorised comparison; the elements are looked at only then)
    is refused as INT64 refuses it."""
    with np.errstate(invalid="ignore"):
        wide = np.flatnonzero(np.abs(flat) >= 2.0**63)
    if wide.size == 0:
        return
    items = np.empty(flat.size, dtype=object)
    items[:] = np.array(value, dtype=object).reshape(-1)
    for at in wide:
        item = items[at]
        if isinstance(item, int) and not isinstance(item, bool):
            check_range(name, "INT64", np.int64, np.array([item], dtype=object), int(at))


def _texts(name: str, value: object, shape: tuple[int, ...]) -> Array:
    """Text elements as BYTES, each element as the client sent it: numpy's own text array
    has already turned the numbers of [1, 'a'] into text, so the value is read again as
    objects and every element must be text."""
    items = np.empty(shape, dtype=object)
    try:
        items[...] = value
    except (TypeError, ValueError) as exc:
        raise InputError(name, f"not a rectangular array: {exc}") from exc
    out = np.empty(shape, dtype=object)
    for idx, item in np.ndenumerate(items):
        if isinstance(item, str):
            out[idx] = item.encode("utf-8")
        elif isinstance(item, bytes):
            out[idx] = item
        else:
            raise InputError(name, f"mixed or nested data ({type(item).__name__})")
    return out


def decode_seldon(name: str, value: object) -> Array:
    """One `jsonData` entry: a V2 tensor object, or a plain value.

    Over Seldon v1 gRPC `jsonData` is a `google.protobuf.Value`, whose numbers are all
    doubles, and seldon-core reads it with `MessageToDict` (seldon_core 1.18.2
    utils.py:202, `get_data_from_proto`, for `Predict` via utils.py:660 and
    seldon_methods.py:113), which protobuf 3.20 leaves floats (json_format.py:346-360): a
    tensor's shape `[1, 4]` arrives as `[1.0, 4.0]`. A whole float there is read as the
    integer it was (`_whole_shape`); the generic V2 decoder still refuses a float shape,
    which no V2 JSON writer sends. Integer and BOOL data arriving as whole doubles need
    nothing here: `decode_json` already reads them exactly and refuses a fractional one.
    """
    if isinstance(value, dict):
        return from_tensor(_whole_shape(value), name)
    return infer_plain(name, value)


def _whole_shape(tensor: dict[str, object]) -> dict[str, object]:
    """`tensor` with each whole float of its shape as an int; a fractional, NaN or infinite
    one is left for `element_count` to refuse, naming the input."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not any(isinstance(s, float) for s in shape):
        return tensor
    whole = [int(s) if isinstance(s, float) and s.is_integer() else s for s in shape]
    return {**tensor, "shape": whole}


def encode_seldon(array: Array) -> JSONObject:
    """One `jsonData` entry, the V2 tensor object without a name (the key names it)."""
    datatype, shape, data, params = encode_json(array)
    out: JSONObject = {"datatype": datatype, "shape": shape, "data": data}
    if params:
        out["parameters"] = params
    return out
