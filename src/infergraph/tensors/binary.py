"""Tensors in the raw layout of the binary tensor extension and of gRPC `raw_*_contents`.

Numeric data is little-endian, row-major; a BYTES tensor is each element's 4-byte
little-endian length followed by its bytes. The HTTP framing around it (the JSON header and
`Inference-Header-Content-Length`) is `infergraph.serving.binary`'s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.tensors.datatypes import datatype_of, element_count, is_bytes, numpy_type


def decode_bytes_tensor(name: str, raw: bytes) -> list[bytes]:
    """Length-prefixed BYTES elements."""
    out: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InputError(name, "binary BYTES data ends inside an element's length prefix")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise InputError(name, f"binary BYTES element of {size} bytes runs past the data")
        out.append(raw[offset : offset + size])
        offset += size
    return out


def encode_bytes_tensor(items: Iterable[bytes]) -> bytes:
    """BYTES elements, each behind its 4-byte little-endian length."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def decode_binary(name: str, datatype: str, shape: object, raw: bytes) -> Array:
    """Raw bytes of one input -> numpy, naming the input in every error."""
    dims, expected = element_count(name, shape)
    if datatype == "BYTES":
        elements = decode_bytes_tensor(name, raw)
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
