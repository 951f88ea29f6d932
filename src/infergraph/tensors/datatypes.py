"""The one table of Open Inference Protocol datatypes, shape checks and the empty tensor.

Every wire form (V2 JSON, the binary extension, gRPC, Seldon v1 JSON) and every component
reads a tensor's numpy type from here, so a datatype means the same thing at every hop.
BYTES is not in the table: its elements are numpy object arrays of `bytes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def numpy_type(name: str, datatype: str) -> type[np.generic]:
    """The numpy type of a numeric datatype, naming the input when the datatype is unknown."""
    found = V2_TO_NUMPY.get(datatype)
    if found is None:
        raise InputError(name, f"unknown datatype '{datatype}'")
    return found


def is_bytes(array: Array) -> bool:
    """Whether an array travels as BYTES: object arrays, and numpy's own text types."""
    return array.dtype == object or array.dtype.kind in ("U", "S")


def datatype_of(array: Array) -> str | None:
    """The V2 datatype an array is sent as; None for a numpy type the protocol lacks."""
    return "BYTES" if is_bytes(array) else NUMPY_TO_V2.get(array.dtype)


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


def zero_row_shape(declared: Sequence[int]) -> list[int]:
    """The shape of a declared tensor with no rows: `[0, d1, ...]`, unknown (-1) dims as 0."""
    return [0] + [max(int(d), 0) for d in declared[1:]]


def empty(datatype: str, declared: Sequence[int]) -> Array:
    """The one empty-tensor builder: a zero-row array of a declared datatype and shape."""
    dtype = object if datatype == "BYTES" else numpy_type("empty", datatype)
    return np.empty(zero_row_shape(declared), dtype=dtype)
