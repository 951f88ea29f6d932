"""Tensors in the gRPC form of the Open Inference Protocol (`ModelInferRequest` / `Response`).

A gRPC tensor holds its elements in the typed field of `InferTensorContents` its datatype
names, or as one entry of `raw_input_contents` / `raw_output_contents` in the binary layout
(`tensors.binary`). MLServer turns the message into its pydantic types, read as V2 JSON;
`read_grpc` reads it into the same V2 dict directly (`tensors.request.InferRequest.from_grpc`
and the runtime's gRPC fast path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.binary import decode_binary
from infergraph.tensors.v2json import encode_json

# The `InferTensorContents` field of each datatype (grpc_predict_v2.proto). FP16 has none: it
# travels in the raw contents only.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


# What `read_grpc` reads of a `ModelInferRequest`: the fields of the generated protobuf class
# (MLServer's `dataplane_pb2`, tritonclient's, KServe's), named here so that this package
# imports none of them.
class _Parameter(Protocol):
    """An `InferParameter`: one of bool_param, int64_param, string_param set."""

    def WhichOneof(self, oneof_group: Literal["parameter_choice"], /) -> str | None: ...


type _Parameters = Mapping[str, _Parameter]  # the protobuf map of a `parameters` field


class _Contents(Protocol):
    """`InferTensorContents`: the typed fields, of which a request sets one (or none)."""

    def ListFields(self) -> Sequence[tuple[object, Iterable[object]]]: ...


class _RequestedOutput(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def parameters(self) -> _Parameters: ...


class _InputTensor(_RequestedOutput, Protocol):
    @property
    def datatype(self) -> str: ...

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def contents(self) -> _Contents: ...


class GrpcRequest(Protocol):
    """A `ModelInferRequest` as `read_grpc` reads it."""

    @property
    def id(self) -> str: ...

    @property
    def inputs(self) -> Sequence[_InputTensor]: ...

    @property
    def outputs(self) -> Sequence[_RequestedOutput]: ...

    @property
    def parameters(self) -> _Parameters: ...

    @property
    def raw_input_contents(self) -> Sequence[bytes]: ...


def encode_grpc(array: Array) -> tuple[str, list[int], list[Any], dict[str, str]]:
    """As `encode_json`, but BYTES elements as the bytes they are. A protobuf's
    `bytes_contents` (and the raw contents) hold any bytes, so nothing becomes base64 text
    as in a JSON body: tritonclient's and KServe's `as_numpy` read the contents as they
    come, and REST's binary extension answers the same bytes."""
    datatype, shape, data, params = encode_json(array)
    if datatype == "BYTES":
        data = [_element_bytes(e) for e in np.asarray(array, dtype=object).reshape(-1)]
        if params.get("content_type") == "base64":
            params = {k: v for k, v in params.items() if k != "content_type"}
    return datatype, shape, data, params


def _element_bytes(element: object) -> bytes:
    if isinstance(element, bytes):  # np.bytes_ too
        return bytes(element)
    return str(element).encode("utf-8")


def read_grpc(message: GrpcRequest) -> JSONObject:
    """A `ModelInferRequest` as the V2 request dict MLServer's converters make of it: each
    input's values from its first set contents field, whichever it is (a datatype that does
    not match is the reader's to refuse); inputs sent without contents take the
    `raw_input_contents` entries in order (MLServer's `inject_raw`), decoded to arrays."""
    raw = iter(message.raw_input_contents)
    inputs: list[JSONObject] = []
    for tensor in message.inputs:
        shape = list(tensor.shape)
        fields = tensor.contents.ListFields()
        data: object = list(fields[0][1]) if fields else []
        if not fields and message.raw_input_contents:
            entry = next(raw, None)
            if entry is None:
                raise InputError(tensor.name, "no raw_input_contents entry left for it")
            data = decode_binary(tensor.name, tensor.datatype, shape, entry)
        one = {"name": tensor.name, "datatype": tensor.datatype, "shape": shape, "data": data}
        params = read_parameters(tensor.parameters)
        inputs.append({**one, "parameters": params} if params else one)
    body: JSONObject = {"inputs": inputs}
    if message.parameters:
        body["parameters"] = read_parameters(message.parameters)
    if message.id:
        body["id"] = message.id
    if message.outputs:
        body["outputs"] = [_requested(o) for o in message.outputs]
    return body


def _requested(output: _RequestedOutput) -> JSONObject:
    params = read_parameters(output.parameters)
    return {"name": output.name, "parameters": params} if params else {"name": output.name}


def read_parameters(params: _Parameters) -> JSONObject:
    """A protobuf map of `InferParameter` as plain values (the one each entry sets)."""
    out: JSONObject = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(value, which)
    return out
