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

The raw layout of each tensor (little-endian, row-major; BYTES length-prefixed) is
`infergraph.tensors.binary`'s, and so is reading a request body (`read_request`, which the
router and `tensors.request.InferRequest.from_binary` use); this module reads the headers and
frames responses in HTTP. Shared by the MLServer runtime and the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject, object_or_empty
from infergraph.tensors.binary import HEADER as HEADER
from infergraph.tensors.datatypes import is_bytes
from infergraph.tensors.v2json import Tensor, encode_json, encode_json_array

OCTET_STREAM = "application/octet-stream"


def header_length(headers: Mapping[str, str]) -> int | None:
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


def json_bytes(body: object) -> bytes:
    """A JSON body that may hold `tensors.v2json.encode_json_array`'s flat arrays."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def array_tensor(name: str, array: Array) -> Tensor:
    """A named V2 JSON tensor whose numbers stay a flat array (`encode_json_array`), for a
    body `json_bytes` writes: each float in its own precision's shortest text, FP32 0.1 as
    `0.1`, not the `0.10000000149011612` of its float64 widening (`to_tensor`'s lists)."""
    datatype, shape, data, params = encode_json_array(array)
    tensor: Tensor = {"name": name, "datatype": datatype, "shape": shape, "data": data}
    if params:
        tensor["parameters"] = params
    return tensor


def write_response(header: JSONObject, blobs: list[bytes]) -> tuple[bytes, int]:
    """JSON header + binary blobs -> (body, header length)."""
    head = json_bytes(header)
    return head + b"".join(blobs), len(head)


def to_json_tensor(tensor: Tensor) -> Tensor:
    """A tensor whose data arrived binary, in the JSON form nodes are sent.

    BYTES elements travel base64-encoded with `content_type: base64` (images are not UTF-8);
    numbers stay a flat array, for `json_bytes` to write each in its own precision's shortest
    text (`encode_json_array`).
    """
    data = tensor.get("data")
    if not isinstance(data, np.ndarray):
        return tensor
    flat: list[Any] | Array
    written: dict[str, str]
    if is_bytes(data):
        _, _, flat, written = encode_json(data, content_type="base64")
    else:
        _, _, flat, written = encode_json_array(data)
    # Only a tensor whose data followed the header holds an array: `read_request` found its
    # `binary_data_size` in an object, so a shape error here is ours, not the client's.
    params = dict(object_or_empty(tensor, "parameters"))
    params.pop("binary_data_size", None)
    return {**tensor, "data": flat, "parameters": {**params, **written}}
