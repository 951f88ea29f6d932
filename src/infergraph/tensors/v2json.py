"""Tensors in the Open Inference Protocol's JSON form (REST, and MLServer's pydantic types).

A decoded tensor is a numpy array (`infergraph.arrays.Array`): BYTES as an object array of
`bytes`, numbers as the datatype table says. On the wire it is the V2 dict `{"name",
"datatype", "shape", "data", "parameters"}` (`Tensor`), `data` flat or nested row-major.
Decoding checks everything a client can get wrong and names the input in each error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, NotRequired, TypedDict

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.tensors.codecs import codec_for, encode_elements
from infergraph.tensors.datatypes import datatype_of, element_count, is_bytes, numpy_type

# The V2 JSON form of one tensor as read from a body: `data` holds any JSON value, so every
# read of a field says what it expects.
Tensor = dict[str, object]


class EncodedTensor(TypedDict):
    """One tensor as this package writes it in a V2 JSON body (a request input or a response
    output). A binary one has no `data`: its bytes follow the JSON header, and its
    `binary_data_size` parameter says how many there are (`tensors.binary.binary_entry`)."""

    name: str
    datatype: str
    shape: list[int]
    data: NotRequired[list[Any] | Array]  # an array only from `encode_json_array`
    parameters: NotRequired[Mapping[str, str | int]]


def _flatten(name: str, data: object, ndim: int) -> list[Any]:
    """Nested lists -> flat list, iteratively, refusing nesting deeper than the shape allows."""
    if not isinstance(data, (list, tuple)):
        return [data]
    depth = max(ndim, 1)
    out: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple)):
            if level > depth:
                raise InputError(name, f"data is nested deeper than its {ndim}-d shape")
            stack.extend((child, level + 1) for child in reversed(item))
        else:
            out.append(item)
    return out


def _bytes_elements(name: str, flat: Sequence[object], content_type: object) -> Array:
    """BYTES elements as their content type's codec reads them, into an object array."""
    codec = codec_for(content_type)
    out = np.empty(len(flat), dtype=object)
    for i, item in enumerate(flat):
        try:
            if isinstance(item, str):
                raw = item.encode("utf-8")
            elif isinstance(item, (bytes, bytearray)):
                raw = bytes(item)
            else:
                raise InputError(name, f"BYTES element {i} is {type(item).__name__}", index=i)
        except UnicodeEncodeError:  # a lone surrogate, from a reader that lets one through
            raise InputError(name, f"BYTES element {i} is not text: {_LONE}", index=i) from None
        try:
            out[i] = codec.decode(raw)
        except ValueError as exc:
            kind = codec.content_type
            raise InputError(name, f"content_type {kind} but not valid {kind}", i) from exc
    return out


_LONE = "it holds a lone surrogate (\\ud800 to \\udfff without its pair)"


def decode_json(
    name: str, datatype: str, shape: object, data: object, content_type: object = None
) -> Array:
    """Decode one V2 input, naming it in every error; `shape` is checked here, as sent."""
    dims, expected = element_count(name, shape)
    if data is None and expected == 0:
        # Seldon v2's gateway writes an empty tensor's data as `null` (a nil Go slice): an
        # answer forwarded as it is must read back as the empty tensor it is.
        data = []
    if isinstance(data, np.ndarray) and datatype != "BYTES" and data.dtype != object:
        check_count(name, dims, expected, data.size)
        return data.astype(numpy_type(name, datatype), copy=False).reshape(dims)
    if datatype != "BYTES":
        regular = _regular_numbers(data, len(dims))
        if regular is not None:
            return _from_regular(name, datatype, dims, expected, *regular)
    return _decode_each(name, datatype, dims, expected, data, content_type)


# What orjson reads a JSON number as. A list holding only these (at one depth) is safe to hand
# numpy whole: one string among them would make it size a text array for every element.
_NUMBER_TYPES = frozenset({int, float, bool})


def _regular_numbers(data: object, ndim: int) -> tuple[Array, list[Any]] | None:
    """`data`'s numbers read by numpy in one pass of C, with the flat list they came from, when
    every leaf is a JSON number at the same depth, no deeper than the shape allows; None for
    anything else (null, text, objects, mixed depths, integers past 64 bits), which
    `_decode_each` reads or names element by element. That Python walk cost ten times as much:
    5.8 ms for one second of 16 kHz audio (docs/benchmarks.md, 2026-12-06). The element types
    are looked at first, a level at a time, also in C (`map(type, ...)`)."""
    if not isinstance(data, list):
        return None
    level: list[Any] = data
    for _ in range(max(ndim, 1) - 1):
        if set(map(type, level)) != {list}:
            break
        level = list(chain.from_iterable(level))
    if not set(map(type, level)) <= _NUMBER_TYPES:
        return None
    probe = np.array(level)
    return (probe, level) if probe.dtype.kind in "biuf" else None


def _from_regular(
    name: str, datatype: str, dims: list[int], expected: int, probe: Array, flat: list[Any]
) -> Array:
    """`_regular_numbers`' array as the datatype: what reading each element gives, exactly."""
    check_count(name, dims, expected, probe.size)
    dtype = numpy_type(name, datatype)
    if probe.dtype.kind == "f" and np.dtype(dtype).kind == "f":
        with np.errstate(over="ignore"):  # a JSON float is a double either way
            out = probe.astype(dtype)
        check_overflow(name, datatype, out, probe, flat)
        return out.reshape(dims)
    # A float probe may hold integers past 2**53 rounded (1 and 2**63 read as float64): the
    # range is then checked on the elements themselves.
    check_range(
        name, datatype, dtype, np.array(flat, dtype=object) if probe.dtype.kind == "f" else probe
    )
    if probe.dtype.kind != "b":  # JSON true / false are every datatype's 1 / 0
        _check_exact(name, datatype, dtype, probe, flat)
    out = _numbers_as(name, datatype, dtype, flat, dims)  # no integer rounded through a double
    if probe.dtype.kind != "b":
        check_overflow(name, datatype, out, probe, flat)
    return out


def _numbers_as(
    name: str, datatype: str, dtype: type[np.generic], flat: list[Any], dims: list[int]
) -> Array:
    """Checked JSON numbers as the datatype's array, numpy's own refusal named as the input's;
    a float that overflows is `check_overflow`'s to name."""
    try:
        with np.errstate(over="ignore"):
            return np.asarray(flat, dtype=dtype).reshape(dims)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(name, f"data is not valid {datatype}: {exc}") from exc


def _check_exact(
    name: str, datatype: str, dtype: type[np.generic], values: Array, shown: Sequence[object]
) -> None:
    """An integer datatype's elements whole numbers, a BOOL's 0 or 1: numpy truncates (INT32
    1.5 became 1) and reads any non-zero as true (BOOL 2 and -1 became true) without a word.

    One vectorised pass over the float (or object) values; integers and bools pass as they are.
    """
    kind = np.dtype(dtype).kind
    if kind not in "iub" or values.size == 0 or (kind != "b" and values.dtype.kind in "iub"):
        return
    with np.errstate(invalid="ignore"):
        if kind == "b":
            wrong = ~((values == 0) | (values == 1))
            problem = "is not 0, 1, true or false"
        else:
            wrong = np.mod(values, 1) != 0
            problem = "is not an integer"
    wrong = np.asarray(wrong, dtype=np.bool_).reshape(-1)
    if wrong.any():
        at = int(np.flatnonzero(wrong)[0])
        raise InputError(
            name, f"data is not valid {datatype}: element {at} ({shown[at]}) {problem}"
        )


_LARGEST = {t: float(np.finfo(t).max) for t in ("float16", "float32", "float64")}


def check_overflow(
    name: str, datatype: str, out: Array, source: Array, shown: Sequence[object] | Array
) -> None:
    """A finite value that became inf as the datatype (FP16 70000, FP32 1e39) refused, naming
    the element: it was answered as inf (written back as null). Infinity sent stays inf.

    Costs one `isinf` over the result; the source is looked at only when that finds one.
    """
    if out.dtype.kind != "f" or out.size == 0 or not np.isinf(out).any():
        return
    finite = np.isfinite(source) if source.dtype != object else np.ones(source.shape, np.bool_)
    grown = np.isinf(out).reshape(-1) & np.asarray(finite, dtype=np.bool_).reshape(-1)
    if grown.any():
        at = int(np.flatnonzero(grown)[0])
        largest = _LARGEST[out.dtype.name]
        raise InputError(
            name,
            f"data is not valid {datatype}: element {at} ({shown[at]}) overflows {datatype} "
            f"(largest finite {largest:g})",
        )


def check_count(name: str, dims: list[int], expected: int, count: int) -> None:
    """The data holds as many elements as the shape says (the router checks with it too)."""
    if count != expected:
        raise InputError(name, f"shape {dims} needs {expected} elements but data has {count}")


def _decode_each(
    name: str, datatype: str, dims: list[int], expected: int, data: object, content_type: object
) -> Array:
    """Element by element: BYTES, and numbers that are not one regular list, each checked."""
    if isinstance(data, (bytes, str)) and datatype == "BYTES":
        flat: list[Any] = [data]
    elif isinstance(data, np.ndarray):
        flat = list(data.reshape(-1))
    else:
        flat = _flatten(name, data, len(dims))
    check_count(name, dims, expected, len(flat))
    if datatype == "BYTES":
        return _bytes_elements(name, flat, content_type).reshape(dims)
    dtype = numpy_type(name, datatype)
    _check_numbers(name, datatype, flat)
    if np.dtype(dtype).kind in "iub":
        values = np.array(flat, dtype=object)
        check_range(name, datatype, dtype, values)
        _check_exact(name, datatype, dtype, values, flat)
    out = _numbers_as(name, datatype, dtype, flat, dims)
    if out.dtype.kind == "f" and np.isinf(out).any():
        check_overflow(name, datatype, out, _as_doubles(flat), flat)
    return out


def _as_doubles(flat: list[Any]) -> Array:
    """The elements as float64, to tell a sent Infinity from one that overflowed; one too
    large even for that (an integer past 1e308) counts as infinite."""
    with np.errstate(over="ignore"):
        try:
            return np.asarray(flat, dtype=np.float64)
        except OverflowError:
            return np.array([float("inf")] * len(flat))


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


def check_range(
    name: str, datatype: str, dtype: type[np.generic], values: Array, first: int = 0
) -> None:
    """An integer datatype's elements inside its range, else an error naming the first: numpy
    wraps them without a word (INT8 300 became 44, UINT8 -1 became 255, INT32 2**40 became 0).
    `first` is the index of `values`' first element in the whole tensor."""
    integer = np.dtype(dtype)
    if integer.kind not in "iu" or values.size == 0:
        return
    info = np.iinfo(integer.name)
    low, high = int(info.min), int(info.max)
    with np.errstate(invalid="ignore"):  # NaN is outside every range
        inside = np.logical_and(np.greater_equal(values, low), np.less_equal(values, high))
    inside = np.asarray(inside, dtype=np.bool_).reshape(-1)
    if inside.all():
        return
    at = int(np.flatnonzero(~inside)[0])
    value = values.reshape(-1)[at]
    raise InputError(
        name,
        f"data is not valid {datatype}: element {first + at} ({value}) is outside "
        f"{datatype}'s range {low}..{high}",
    )


def encode_json(
    array: Array, content_type: str | None = None
) -> tuple[str, list[int], list[Any], dict[str, str]]:
    """An array as (datatype, shape, flat data, parameters); BYTES name their content type.

    A numpy type the protocol lacks (e.g. float128) is sent as FP32.
    """
    array = np.asarray(array)
    shape = list(array.shape)
    if is_bytes(array):
        texts, written = encode_elements(list(array.reshape(-1)), content_type)
        return "BYTES", shape, texts, {"content_type": written}
    datatype = datatype_of(array)
    if datatype is None:
        array, datatype = array.astype(np.float32), "FP32"
    return datatype, shape, array.reshape(-1).tolist(), {}


# Numbers orjson writes straight from a flat, native-endian, C-ordered array
# (OPT_SERIALIZE_NUMPY): each float in its own precision's shortest text, so an FP32 0.1 is
# `0.1`, not the `0.10000000149011612` of its float64 widening (`tolist`). A 384-float
# embedding's body is 40 % smaller, and written and gzipped in half the CPU.
_ARRAY_WRITTEN = frozenset(
    np.dtype(t)
    for t in (
        *("float16", "float32", "float64", "bool"),
        *("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"),
    )
)
# Most JSON readers parse a number to float64 and cast that to float32. Of every finite FP32,
# one magnitude's shortest text does not survive that double rounding (`benchmarks/
# fp32_json_exhaustive.py`): 7.038531e-26 reads back one ulp above. A tensor holding it goes
# as float64 text, which reads back exactly; every other FP32 reads back to the same bits.
_FP32_DOUBLE_ROUNDED = tuple(
    np.array([pattern], np.uint32).tobytes() for pattern in (0x15AE43FD, 0x95AE43FD)
)  # native byte order; found in the array's bytes, which a ufunc took 6 µs to do on 4 floats


def encode_json_array(
    array: Array,
) -> tuple[str, list[int], list[Any] | Array, dict[str, str]]:
    """As `encode_json`, with numbers left a flat array, for a body written by orjson
    (`serving.binary.json_bytes`)."""
    array = np.asarray(array)
    datatype = datatype_of(array)
    if datatype is None or array.dtype not in _ARRAY_WRITTEN:
        return encode_json(array)
    flat = np.ascontiguousarray(array.reshape(-1))
    if datatype == "FP32":
        raw = flat.tobytes()  # a match across two elements only costs the long text
        if any(pattern in raw for pattern in _FP32_DOUBLE_ROUNDED):
            return encode_json(array)
    return datatype, list(array.shape), flat, {}


def to_tensor(name: str, array: Array) -> Tensor:
    """An array as a named V2 JSON tensor (`parameters` only where there are some)."""
    datatype, shape, data, params = encode_json(array)
    tensor: Tensor = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if params:
        tensor["parameters"] = params
    return tensor


def from_tensor(tensor: Mapping[str, Any], name: str | None = None) -> Array:
    """A V2 JSON tensor dict as an array, checked as `decode_json` checks a request input.

    `name` (default: the tensor's own) is what errors call it. A missing shape is read as
    one dimension of the data's length, as Seldon v1 clients send tensors.
    """
    name = name if name is not None else str(tensor.get("name", "?"))
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or "data" not in tensor:
        raise InputError(name, "tensor objects need 'datatype' and 'data' (and 'shape')")
    data = tensor["data"]
    shape = tensor.get("shape") or [len(data) if isinstance(data, list) else 1]
    params = tensor.get("parameters")
    content_type = params.get("content_type") if isinstance(params, Mapping) else None
    return decode_json(name, datatype, shape, data, content_type)
