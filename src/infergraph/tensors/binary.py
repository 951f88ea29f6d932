"""Tensors in the raw layout of the binary tensor extension and of gRPC `raw_*_contents`.

Numeric data is little-endian, row-major; a BYTES tensor is each element's 4-byte
little-endian length followed by its bytes. A request body of the extension is a JSON
header of `Inference-Header-Content-Length` bytes followed by each binary input's raw data
(`read_request`); the rest of the HTTP framing (headers, responses) is
`infergraph.serving.binary`'s.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.datatypes import datatype_of, element_count, is_bytes, numpy_type
from infergraph.tensors.v2json import EncodedTensor

HEADER = "Inference-Header-Content-Length"


def _json_reader() -> Callable[[bytes], Any]:
    """orjson where it is installed (the runtime and router), else the standard library's: the
    Seldon v1 unit imports this package without orjson, and reads no binary bodies."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


_LOADS = _json_reader()


def decode_bytes_tensor(name: str, raw: bytes, most: int | None = None) -> list[bytes]:
    """Length-prefixed BYTES elements; with `most`, at most `most + 1` of them.

    The walk stops at the first element past `most` (the caller's shape): a header saying
    one element over a body of ten million cost ten million bytes objects and an object
    array, about 12 times the body in memory and seconds of the event loop, before the
    count was checked (review finding 1). The caller refuses the extra element.
    """
    out: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if most is not None and len(out) > most:
            break
        size = _element_size(name, raw, offset)
        offset += 4
        out.append(raw[offset : offset + size])
        offset += size
    return out


def count_bytes_elements(name: str, raw: bytes, most: int) -> int:
    """How many BYTES elements `raw` holds, counted up to `most + 1` without slicing any:
    what gRPC's raw-contents check needs before the elements are read."""
    count, offset, end = 0, 0, len(raw)
    while offset < end and count <= most:
        offset += 4 + _element_size(name, raw, offset)
        count += 1
    return count


def _element_size(name: str, raw: bytes, offset: int) -> int:
    """The length prefix at `offset`, checked against what follows it."""
    if offset + 4 > len(raw):
        raise InputError(name, "binary BYTES data ends inside an element's length prefix")
    (size,) = struct.unpack_from("<I", raw, offset)
    if offset + 4 + size > len(raw):
        raise InputError(name, f"binary BYTES element of {size} bytes runs past the data")
    return int(size)


def encode_bytes_tensor(items: Iterable[bytes]) -> bytes:
    """BYTES elements, each behind its 4-byte little-endian length."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def decode_binary(name: str, datatype: str, shape: object, raw: bytes) -> Array:
    """Raw bytes of one input -> numpy, naming the input in every error."""
    dims, expected = element_count(name, shape)
    if datatype == "BYTES":
        elements = decode_bytes_tensor(name, raw, expected)
        if len(elements) > expected:
            raise InputError(
                name, f"shape {dims} needs {expected} elements but data has more than {expected}"
            )
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
    else:
        dtype = np.dtype(numpy_type(name, datatype)).newbyteorder("<")
        if len(raw) % dtype.itemsize:
            raise InputError(
                name, f"{len(raw)} binary bytes are not a whole number of {datatype} elements"
            )
        array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if array.size != expected:
        raise InputError(name, f"shape {dims} needs {expected} elements but data has {array.size}")
    return array.reshape(dims)


def encode_binary(array: Array) -> tuple[str, bytes]:
    """numpy -> (V2 datatype, raw bytes); a numpy type the protocol lacks goes as FP32."""
    if is_bytes(array):
        items = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in array.reshape(-1)]
        return "BYTES", encode_bytes_tensor(items)
    datatype = datatype_of(array)
    if datatype is None:
        array, datatype = array.astype(np.float32), "FP32"
    return datatype, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def binary_entry(name: str, array: Array) -> tuple[EncodedTensor, bytes]:
    """One tensor of a binary-extension body (request input or response output): its JSON
    header entry, whose `binary_data_size` counts the raw bytes that follow the header for
    it, and those bytes."""
    datatype, raw = encode_binary(array)
    entry: EncodedTensor = {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "parameters": {"binary_data_size": len(raw)},
    }
    return entry, raw


def read_request(body: bytes, length: int, raw_input: str | None) -> JSONObject:
    """A binary-extension body -> a V2 request dict whose binary inputs hold numpy arrays."""
    if length == 0:
        if raw_input is None:
            raise InputError(HEADER, "0 (a raw body) needs a model with a BYTES input")
        if not body:
            raise InputError(raw_input, "empty body")
        data = np.empty(1, dtype=object)
        data[0] = body
        return {
            "inputs": [{"name": raw_input, "datatype": "BYTES", "shape": [1], "data": data}],
            "parameters": {"binary_data_output": True},
        }
    if length > len(body):
        raise InputError(HEADER, f"announces {length} header bytes but the body has {len(body)}")
    try:
        request = _LOADS(body[:length])
    except ValueError as exc:  # orjson's JSONDecodeError is one
        raise InputError(HEADER, f"the JSON header is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise InputError("request", "the JSON header must be an object with 'inputs'")
    inputs = request.get("inputs")
    offset = length
    for tensor in inputs if isinstance(inputs, list) else []:
        params = tensor.get("parameters") if isinstance(tensor, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        name = str(tensor.get("name"))
        if not isinstance(size, int) or size < 0:
            raise InputError(name, f"binary_data_size must be a non-negative integer, not {size}")
        if offset + size > len(body):
            raise InputError(name, f"binary_data_size {size} runs past the end of the body")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise InputError(name, "shape must be a list of integers")
        raw = body[offset : offset + size]
        tensor["data"] = decode_binary(name, str(tensor.get("datatype")), shape, raw)
        offset += size
    if offset != len(body):
        raise InputError(HEADER, f"{len(body) - offset} bytes after the last binary input")
    return request
