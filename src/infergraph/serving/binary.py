"""The binary tensor data extension of the Open Inference Protocol (REST).

What tritonclient, the KServe SDK and `mlserver infer -b` send by default:

- The request body is a JSON header of `Inference-Header-Content-Length` bytes followed by
  the raw data of every input whose `parameters.binary_data_size` is set, in input order.
- A header length of 0 is Triton's raw request: the whole body is the data of the model's
  single input (here: its first BYTES input), one element; outputs come back binary.
- Outputs are returned binary when the request sets `parameters.binary_data_output: true`
  or an entry of `outputs` sets `parameters.binary_data: true`; the answer is then the JSON
  header (length in the `Inference-Header-Content-Length` response header) and the output
  bytes, each output's length in its `parameters.binary_data_size`.

Numeric data is little-endian, row-major; a BYTES tensor is each element's 4-byte
little-endian length followed by its bytes. Shared by the MLServer runtime and the router.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import orjson

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.serving.tensors import NUMPY_TO_V2, V2_TO_NUMPY

HEADER = "Inference-Header-Content-Length"
OCTET_STREAM = "application/octet-stream"


def header_length(headers: Any) -> int | None:
    """The announced JSON header length, None when the request is plain JSON."""
    value = headers.get(HEADER)
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise InputError(HEADER, f"header must be an integer, got {value!r}") from None
    if length < 0:
        raise InputError(HEADER, f"header must not be negative, got {length}")
    return length


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


def encode_bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def decode_binary(name: str, datatype: str, shape: list[int], raw: bytes) -> Array:
    """Raw bytes of one input -> numpy, naming the input in every error."""
    if datatype == "BYTES":
        elements = decode_bytes_tensor(name, raw)
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
    else:
        if datatype not in V2_TO_NUMPY:
            raise InputError(name, f"unknown datatype '{datatype}'")
        dtype = np.dtype(V2_TO_NUMPY[datatype]).newbyteorder("<")
        if len(raw) % dtype.itemsize:
            raise InputError(
                name, f"{len(raw)} binary bytes are not a whole number of {datatype} elements"
            )
        array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    expected = 1
    for dim in shape:
        expected *= int(dim)
    if array.size != expected:
        raise InputError(name, f"shape {shape} needs {expected} elements but data has {array.size}")
    return array.reshape(shape)


def encode_binary(array: Array) -> tuple[str, bytes]:
    """numpy -> (V2 datatype, raw bytes)."""
    if array.dtype == object or array.dtype.kind in ("U", "S"):
        items = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in array.reshape(-1)]
        return "BYTES", encode_bytes_tensor(items)
    datatype = NUMPY_TO_V2.get(array.dtype)
    if datatype is None:
        array, datatype = array.astype(np.float32), "FP32"
    return datatype, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


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
        request = orjson.loads(body[:length])
    except orjson.JSONDecodeError as exc:
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


def wants_binary(request: JSONObject) -> tuple[bool, set[str]]:
    """(every output binary?, names of outputs asked for in binary)."""
    params = request.get("parameters")
    every = isinstance(params, dict) and params.get("binary_data_output") is True
    named = set()
    for out in request.get("outputs") or []:
        out_params = out.get("parameters") if isinstance(out, dict) else None
        if isinstance(out_params, dict) and out_params.get("binary_data") is True:
            named.add(str(out.get("name")))
    return every, named


def write_response(header: JSONObject, blobs: list[bytes]) -> tuple[bytes, int]:
    """JSON header + binary blobs -> (body, header length)."""
    head = orjson.dumps(header)
    return head + b"".join(blobs), len(head)


def to_json_tensor(tensor: JSONObject) -> JSONObject:
    """A tensor whose data arrived binary, in the JSON form nodes are sent.

    BYTES elements travel base64-encoded with `content_type: base64` (images are not UTF-8).
    """
    data = tensor.get("data")
    if not isinstance(data, np.ndarray):
        return tensor
    out = dict(tensor)
    if data.dtype == object:
        out["data"] = [base64.b64encode(bytes(x)).decode("ascii") for x in data.reshape(-1)]
        out["parameters"] = {**(tensor.get("parameters") or {}), "content_type": "base64"}
        out["parameters"].pop("binary_data_size", None)
    else:
        out["data"] = data.reshape(-1).tolist()
        params = {k: v for k, v in (tensor.get("parameters") or {}).items()}
        params.pop("binary_data_size", None)
        out["parameters"] = params
    return out


def json_tensor_array(tensor: JSONObject) -> Array:
    """A node's JSON output tensor as numpy, BYTES decoded as its content_type says."""
    datatype = str(tensor.get("datatype"))
    shape = [int(d) for d in tensor.get("shape") or []]
    data = tensor.get("data") or []
    flat: list[Any] = []
    stack = [data]
    while stack:  # row-major flatten without recursion
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    if datatype == "BYTES":
        base64_data = (tensor.get("parameters") or {}).get("content_type") == "base64"
        array = np.empty(len(flat), dtype=object)
        for i, item in enumerate(flat):
            raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            array[i] = base64.b64decode(raw) if base64_data else raw
        return array.reshape(shape)
    return np.asarray(flat, dtype=V2_TO_NUMPY.get(datatype, np.float32)).reshape(shape)
