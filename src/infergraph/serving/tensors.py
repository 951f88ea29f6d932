"""Open Inference Protocol tensors <-> numpy, shared by every adapter.

BYTES tensors become numpy object arrays of `bytes`. Outputs holding `str`
are text, and so are `bytes` that are valid UTF-8; other bytes are binary (image crops) and
travel base64 encoded, marked with the `content_type: base64` parameter.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError

V2_TO_NUMPY: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NUMPY_TO_V2: dict[np.dtype[np.generic], str] = {np.dtype(v): k for k, v in V2_TO_NUMPY.items()}


# No real tensor is this large; beyond it a shape is a mistake (or an overflow attempt).
MAX_ELEMENTS = 2**31 - 1


def _flatten(name: str, data: Any, depth: int) -> list[Any]:
    """Nested lists -> flat list, iteratively, refusing nesting deeper than the shape allows."""
    if not isinstance(data, (list, tuple)):
        return [data]
    out: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple)):
            if level > depth:
                raise InputError(name, f"data is nested deeper than its {depth - 1}-d shape")
            stack.extend((child, level + 1) for child in reversed(item))
        else:
            out.append(item)
    return out


def element_count(name: str, shape: object) -> tuple[list[int], int]:
    """Validate a V2 shape and count its elements without overflowing."""
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise InputError(name, f"shape must be a list of integers, got {shape!r}")
    dims = [int(s) for s in shape]
    if any(s < 0 for s in dims):
        raise InputError(name, f"shape {dims} has a negative dimension")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise InputError(name, f"shape {dims} has {count} elements, over the {MAX_ELEMENTS} limit")
    return dims, count


def to_numpy(
    name: str, datatype: str, shape: object, data: Any, content_type: str | None = None
) -> Array:
    """Decode one V2 input, naming it in every error; `shape` is checked here, as sent."""
    dims, expected = element_count(name, shape)
    if data is None and expected == 0:
        # Seldon v2's gateway writes an empty tensor's data as `null` (a nil Go slice): an
        # answer forwarded as it is must read back as the empty tensor it is.
        data = []
    if isinstance(data, np.ndarray) and datatype != "BYTES" and data.dtype != object:
        if data.size != expected:
            raise InputError(
                name, f"shape {dims} needs {expected} elements but data has {data.size}"
            )
        if datatype not in V2_TO_NUMPY:
            raise InputError(name, f"unknown datatype '{datatype}'")
        return data.astype(V2_TO_NUMPY[datatype], copy=False).reshape(dims)
    if isinstance(data, (bytes, str)) and datatype == "BYTES":
        flat = [data]
    elif isinstance(data, np.ndarray):
        flat = list(data.reshape(-1))
    else:
        flat = _flatten(name, data, max(len(dims), 1))
    if len(flat) != expected:
        raise InputError(name, f"shape {dims} needs {expected} elements but data has {len(flat)}")
    if datatype == "BYTES":
        out = np.empty(len(flat), dtype=object)
        for i, item in enumerate(flat):
            if isinstance(item, str):
                item = item.encode("utf-8")
            elif not isinstance(item, (bytes, bytearray)):
                raise InputError(name, f"BYTES element {i} is {type(item).__name__}", index=i)
            if content_type == "base64":
                try:
                    item = base64.b64decode(item, validate=True)
                except ValueError as exc:
                    raise InputError(name, "content_type base64 but not valid base64", i) from exc
            out[i] = bytes(item)
        return out.reshape(dims)
    if datatype not in V2_TO_NUMPY:
        raise InputError(name, f"unknown datatype '{datatype}'")
    _check_numbers(name, datatype, flat)
    try:
        return np.asarray(flat, dtype=V2_TO_NUMPY[datatype]).reshape(dims)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(name, f"data is not valid {datatype}: {exc}") from exc


# How writers spell the non-finite floats JSON lacks: the protobuf JSON mapping, Jackson, ...
_NON_FINITE_TEXT = frozenset({"nan", "infinity", "-infinity", "inf", "-inf", "+inf"})
_NOT_NUMBERS = (str, bytes, dict)


def _check_numbers(name: str, datatype: str, flat: list[Any]) -> None:
    """Every element a JSON number (NaN and Infinity literals included): name the first not.

    numpy would read the text "NaN" as a float and null as NaN; both are refused instead, with
    the way to send a non-finite value that does get through.
    """
    at = next((i for i, x in enumerate(flat) if x is None or isinstance(x, _NOT_NUMBERS)), None)
    if at is None:
        return
    value = flat[at]
    if value is None:
        problem = (
            "is null, not a number (writers such as orjson and pydantic write NaN and "
            "Infinity as null); send non-finite values as NaN / Infinity literals or binary"
        )
    elif isinstance(value, str) and value.strip().lower() in _NON_FINITE_TEXT:
        problem = (
            f"is the text {value!r}, not a number: JSON has no NaN or Infinity; send the "
            "literals NaN / Infinity / -Infinity (as Python's json writes them) or binary"
        )
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        problem = f"is {type(value).__name__} {shown}, not a number"
    raise InputError(name, f"data is not valid {datatype}: element {at} {problem}")


def from_numpy(array: Array) -> tuple[str, list[int], list[Any], dict[str, str]]:
    """Encode an output as (datatype, shape, flat data, parameters)."""
    array = np.asarray(array)
    shape = list(array.shape)
    if array.dtype == object or array.dtype.kind in ("U", "S"):
        flat = list(array.reshape(-1))
        try:
            # Text stays text, even after a hop through a pass-through (bytes in, bytes out).
            texts = [
                x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else str(x) for x in flat
            ]
        except UnicodeDecodeError:
            encoded = [base64.b64encode(bytes(x)).decode("ascii") for x in flat]
            return "BYTES", shape, encoded, {"content_type": "base64"}
        return "BYTES", shape, texts, {"content_type": "str"}
    datatype = NUMPY_TO_V2.get(array.dtype)
    if datatype is None:
        array = array.astype(np.float32)
        datatype = "FP32"
    return datatype, shape, array.reshape(-1).tolist(), {}


def check_datatype(name: str, array: Array, allowed: tuple[str, ...]) -> None:
    """Reject a tensor whose V2 datatype is not among `allowed`."""
    actual = "BYTES" if array.dtype == object else NUMPY_TO_V2.get(array.dtype, str(array.dtype))
    if actual not in allowed:
        raise InputError(name, f"datatype {actual} not accepted; expected {' or '.join(allowed)}")
