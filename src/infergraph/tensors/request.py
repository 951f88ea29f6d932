"""One inference request, read from and written to every wire form the project speaks.

As KServe's `InferRequest` (`protocol/infer_type.py`: `from_grpc`, `from_bytes`, `to_rest`,
`to_grpc`), one type holds what every form carries (an id, named tensors, parameters, the
outputs asked for and which of them come back binary), so a request is decoded once at the
edge and every engine reads the same fields:

- V2 JSON (`from_json` / `to_json`): REST bodies, MLServer's types as plain dicts;
- the binary tensor extension (`from_binary` / `to_binary`), with Triton's raw body
  (`from_raw`);
- gRPC `ModelInferRequest` (`from_grpc` / `to_grpc`), typed contents or raw contents;
- Seldon Core v1's `jsonData` and plain payloads (`from_seldon` / `to_seldon`).

The tensor type is a parameter: `InferRequest[Array]` holds decoded numpy arrays (what a
model is fed); `InferRequest[Tensor]` keeps V2 JSON tensors as they came: `from_json_tensors`
for the local graph router, which checks a client's request as `from_json` does and leaves the
tensors to the nodes; `from_json_undecoded` for a KServe graph step that forwards most of what
it carries and decodes only what it feeds. Each tensor's codec is `tensors.v2json` / `binary` /
`modelinfer` / `seldon`'s; this module reads and writes the request around them, naming the
input in every error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.binary import binary_entry, encode_binary, read_request
from infergraph.tensors.modelinfer import CONTENTS_FIELD, GrpcRequest, encode_grpc, read_grpc
from infergraph.tensors.seldon import decode_seldon, encode_seldon, infer_plain
from infergraph.tensors.v2json import EncodedTensor, Tensor, decode_json, from_tensor, to_tensor

# Request parameters that steer the protocol, not the model.
PROTOCOL_PARAMETERS = frozenset(
    {"content_type", "headers", "binary_data_output", "binary_data_size", "base64_encoded"}
)

_MEMBER = re.compile(r"[A-Za-z][\w.-]*_\d+")


@dataclass
class InferRequest[T]:
    """A request in no particular wire form: named tensors (`T`: numpy arrays, or V2 JSON
    tensors left undecoded), the model's parameters and the outputs asked for."""

    id: str | None = None
    inputs: dict[str, T] = field(default_factory=dict)
    parameters: JSONObject = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    binary_all: bool = False  # `binary_data_output`: outputs that do not say travel binary
    binary_outputs: set[str] = field(default_factory=set)  # `binary_data: true` of their own
    json_outputs: set[str] = field(default_factory=set)  # `binary_data: false` of their own

    def is_binary(self, name: str) -> bool:
        """Whether output `name` travels in binary: its own `binary_data` where it says,
        else the request's `binary_data_output` (Triton's binary data extension)."""
        if name in self.binary_outputs:
            return True
        return self.binary_all and name not in self.json_outputs

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def from_json(
        body: object, accepted: Sequence[str] = (), aliases: Mapping[str, str] | None = None
    ) -> InferRequest[Array]:
        """A V2 request dict, validated and decoded; input names resolve through `aliases`
        and a client's conventions against `accepted` (empty: every name as it is)."""
        return _read_request(body, lambda raw, b64: _read_inputs(raw, accepted, aliases or {}, b64))

    @staticmethod
    def from_json_tensors(body: object, accepted: Sequence[str] = ()) -> InferRequest[Tensor]:
        """A client's V2 request dict read by `from_json`'s rules (id, inputs' names and
        parameters, outputs, protocol parameters), its tensors left V2 JSON, for a router
        that forwards them to the models that decode them. Each tensor is renamed to the
        name it resolves to, and `base64_encoded`, a protocol parameter not passed on, is
        written into each BYTES input that names no content type, as a model reads it."""
        return _read_request(body, lambda raw, b64: _keep_inputs(raw, accepted, b64))

    @staticmethod
    def from_json_undecoded(body: Mapping[str, Any]) -> InferRequest[Tensor]:
        """A V2 request dict whose tensors stay V2 JSON, by name: only their headers are
        checked (`_input_header`); an empty list is a step's body that carries no tensor.

        The id is kept as it came, as a forwarder echoes it; parameters are all kept, and
        so is `base64_encoded`, for each model to read its inputs by.
        """
        tensors = body.get("inputs")
        if not isinstance(tensors, list):
            raise InputError("inputs", "expected a list of V2 tensors")
        return InferRequest(
            id=body.get("id"),
            inputs=_keep_inputs(tensors, (), base64=False),
            parameters=dict(_object("parameters", body.get("parameters"), "request parameters")),
        )

    @staticmethod
    def from_binary(
        body: bytes,
        header_length: int,
        raw_input: str | None = None,
        accepted: Sequence[str] = (),
        aliases: Mapping[str, str] | None = None,
    ) -> InferRequest[Array]:
        """A binary-extension body (JSON header of `header_length` bytes, then raw data); a
        length of 0 is Triton's raw body, the whole of `raw_input`'s one element."""
        return InferRequest.from_json(
            read_request(body, header_length, raw_input), accepted, aliases
        )

    @staticmethod
    def from_raw(body: bytes, raw_input: str | None, parameters: JSONObject) -> InferRequest[Array]:
        """A raw body (`/infer/raw`: image bytes as application/octet-stream) as `raw_input`'s
        one element, with the query's parameters as they are; outputs come back JSON."""
        request = InferRequest.from_binary(body, 0, raw_input)
        request.parameters.update(parameters)
        request.binary_all = False
        return request

    @staticmethod
    def from_grpc(
        message: GrpcRequest, accepted: Sequence[str] = (), aliases: Mapping[str, str] | None = None
    ) -> InferRequest[Array]:
        """A gRPC `ModelInferRequest` (`modelinfer.read_grpc`): each input from its typed
        contents, or, sent without, from the next `raw_input_contents` entry."""
        return InferRequest.from_json(read_grpc(message), accepted, aliases)

    @staticmethod
    def from_seldon(features: object, first_input: str) -> InferRequest[Array]:
        """A Seldon v1 payload: `jsonData` tensors by name (V2 tensor objects or plain values),
        else one value (`strData`, `binData`, `ndarray`) as `first_input`."""
        if isinstance(features, dict):
            decoded = {str(k): decode_seldon(str(k), v) for k, v in features.items()}
            if not decoded:
                raise InputError("jsonData", "no tensors given")
            return InferRequest(inputs=decoded)
        if isinstance(features, (bytes, bytearray)):
            array = np.array([bytes(features)], dtype=object)
        elif isinstance(features, str):
            array = np.array([features.encode("utf-8")], dtype=object)
        elif isinstance(features, np.ndarray):
            if features.size == 0:
                raise InputError(
                    first_input, "empty request: send data.ndarray, strData, jsonData or binData"
                )
            array = infer_plain(first_input, features.tolist())
        elif isinstance(features, list):
            array = infer_plain(first_input, features)
        else:
            raise InputError(first_input, f"unsupported payload type {type(features).__name__}")
        return InferRequest(inputs={first_input: array})

    # -- writing -----------------------------------------------------------------------------
    def to_json(self) -> JSONObject:
        """The V2 request dict (tensors as V2 JSON; BYTES name their content type)."""
        body: JSONObject = {"inputs": [_json_tensor(n, t) for n, t in self.inputs.items()]}
        return self._envelope(body)

    def to_binary(self) -> tuple[bytes, int]:
        """The binary-extension body, every input's data raw, and its JSON header's length."""
        inputs: list[EncodedTensor] = []
        blobs: list[bytes] = []
        for name, tensor in self.inputs.items():
            entry, raw = binary_entry(name, _array(name, tensor))
            inputs.append(entry)
            blobs.append(raw)
        envelope = self._envelope({"inputs": inputs})
        head = json.dumps(envelope, separators=(",", ":")).encode("utf-8")
        return head + b"".join(blobs), len(head)

    def to_grpc(self, raw: bool = False) -> JSONObject:
        """The fields of a `ModelInferRequest` (`pb.ModelInferRequest(**fields)`): typed
        contents, or with `raw` every input in `raw_input_contents`. FP16 has no typed field."""
        inputs: list[JSONObject] = []
        blobs: list[bytes] = []
        for name, tensor in self.inputs.items():
            array = _array(name, tensor)
            datatype, shape, data, params = encode_grpc(array)
            entry: JSONObject = {"name": name, "datatype": datatype, "shape": shape}
            if raw:
                blobs.append(encode_binary(array)[1])
            elif datatype in CONTENTS_FIELD:
                # BYTES name their content type, as MLServer's codecs write them (base64
                # text in `bytes_contents` for bytes that are not UTF-8).
                entry["contents"] = {CONTENTS_FIELD[datatype]: data}
                entry["parameters"] = _to_grpc_parameters(params)
            else:
                raise InputError(name, f"{datatype} has no typed gRPC contents; send it raw")
            inputs.append(entry)
        fields: JSONObject = {"inputs": inputs, "parameters": _to_grpc_parameters(self._all())}
        fields["outputs"] = [
            {"name": o, "parameters": _to_grpc_parameters(self._output_parameters(o))}
            for o in self.outputs
        ]
        if self.id is not None:
            fields["id"] = self.id
        if raw:
            fields["raw_input_contents"] = blobs
        return fields

    def to_seldon(self) -> JSONObject:
        """Seldon v1's `jsonData`: each tensor a V2 tensor object under its name."""
        return {name: encode_seldon(_array(name, t)) for name, t in self.inputs.items()}

    def _all(self) -> JSONObject:
        """The model's parameters plus the protocol's own that this request sets."""
        return {**self.parameters, **({"binary_data_output": True} if self.binary_all else {})}

    def _output_parameters(self, name: str) -> JSONObject:
        if name in self.binary_outputs or name in self.json_outputs:
            return {"binary_data": name in self.binary_outputs}
        return {}

    def _envelope(self, body: JSONObject) -> JSONObject:
        """id, parameters and outputs around a body's inputs, each only where set."""
        if self.id is not None:
            body["id"] = self.id
        if self._all():
            body["parameters"] = self._all()
        if self.outputs:
            body["outputs"] = [
                {"name": o, **({"parameters": p} if (p := self._output_parameters(o)) else {})}
                for o in self.outputs
            ]
        return body


def resolve_name(
    name: str, accepted: Sequence[str], aliases: Mapping[str, str], strict: bool = True
) -> str:
    """A client's input name -> the component's, when exactly one reading fits.

    `<tensor>_<n>` names pass as they are: ensemble members' outputs, numbered, which a
    combiner reads (`scores_0`, `scores_1`, ...). Any other name no reading fits is refused
    when `strict` (a graph's declared inputs), else passed on as it is (a component may read
    inputs it does not declare, e.g. speech-recognition's `sampling_rate`).
    """
    if name in accepted or not accepted or _MEMBER.fullmatch(name):
        return name
    if name in aliases:
        return aliases[name]
    lowered = name.lower()
    candidates = {lowered, lowered.removeprefix("input_"), lowered.removeprefix("input")}
    matches = [a for a in accepted if a.lower() in candidates]
    if len(matches) == 1:
        return matches[0]
    if not strict:
        return name
    raise InputError(name, f"not an input of this model; it takes {', '.join(accepted)}")


def _object(name: str, value: object, what: str) -> JSONObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(name, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _read_request[T](
    body: object, read_inputs: Callable[[list[object], bool], dict[str, T]]
) -> InferRequest[T]:
    """A V2 request dict's envelope checked (id, parameters, outputs), its inputs read by
    `read_inputs(inputs, base64_encoded)`: decoded, or left V2 JSON."""
    if not isinstance(body, dict):
        raise InputError("request", "the body must be a JSON object with 'inputs'")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("id", f"must be a string, got {type(request_id).__name__}")
    parameters = dict(_object("parameters", body.get("parameters"), "request parameters"))
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("inputs", "the request needs a non-empty 'inputs' list")
    inputs = read_inputs(raw_inputs, parameters.get("base64_encoded") is True)
    outputs, binary_outputs, json_outputs = _read_outputs(body.get("outputs"))
    return InferRequest(
        id=request_id,
        inputs=inputs,
        parameters={k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS},
        outputs=outputs,
        binary_all=parameters.get("binary_data_output") is True,
        binary_outputs=binary_outputs,
        json_outputs=json_outputs,
    )


@dataclass(frozen=True)
class _Header:
    """One input's header, checked: the tensor, the name it came as, the component's name
    for it, its datatype, its parameters, and the content type its BYTES data is read by."""

    tensor: JSONObject
    raw_name: str
    name: str
    datatype: str
    parameters: JSONObject
    content_type: object


def _input_header(
    position: int,
    tensor: object,
    accepted: Sequence[str],
    aliases: Mapping[str, str],
    taken: Container[str],
    base64: bool,
) -> _Header:
    """The rules every reader of an `inputs` entry applies, decoded or not: an object with
    a non-empty string name, which resolves (not strictly: a component may read inputs it
    does not declare) to a name not `taken` (a name given twice is refused, never silently
    overwritten); parameters an object; a string datatype and some data; `base64`
    (`base64_encoded`) the content type of a BYTES input that names none."""
    if not isinstance(tensor, dict):
        raise InputError(f"inputs[{position}]", "each input must be a JSON object")
    raw_name = tensor.get("name")
    if not isinstance(raw_name, str) or not raw_name:
        raise InputError(f"inputs[{position}]", f"'name' must be a string, got {raw_name!r}")
    name = resolve_name(raw_name, accepted, aliases, strict=False)
    if name in taken:
        raise InputError(raw_name, f"given twice (as '{name}'); send each input once")
    parameters = _object(raw_name, tensor.get("parameters"), "input parameters")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str):
        raise InputError(raw_name, f"'datatype' must be a string, got {datatype!r}")
    if "data" not in tensor:
        raise InputError(raw_name, "has no 'data'")
    content_type = parameters.get("content_type")
    if content_type is None and base64 and datatype == "BYTES":
        content_type = "base64"
    return _Header(tensor, raw_name, name, datatype, parameters, content_type)


def _read_inputs(
    raw_inputs: list[object], accepted: Sequence[str], aliases: Mapping[str, str], base64: bool
) -> dict[str, Array]:
    """The `inputs` list decoded by component name (`_input_header`'s rules)."""
    inputs: dict[str, Array] = {}
    for position, entry in enumerate(raw_inputs):
        header = _input_header(position, entry, accepted, aliases, inputs, base64)
        tensor, raw_name = header.tensor, header.raw_name
        inputs[header.name] = decode_json(
            raw_name, header.datatype, tensor.get("shape"), tensor["data"], header.content_type
        )
    return inputs


def _keep_inputs(
    raw_inputs: list[object], accepted: Sequence[str], base64: bool
) -> dict[str, Tensor]:
    """The `inputs` list by component name (`_input_header`'s rules), each tensor left V2
    JSON under that name, with the content type `base64` gives it written in."""
    inputs: dict[str, Tensor] = {}
    for position, entry in enumerate(raw_inputs):
        header = _input_header(position, entry, accepted, {}, inputs, base64)
        kept: Tensor = {**header.tensor, "name": header.name}
        if header.content_type != header.parameters.get("content_type"):
            kept["parameters"] = {**header.parameters, "content_type": header.content_type}
        inputs[header.name] = kept
    return inputs


def _read_outputs(raw_outputs: object) -> tuple[list[str], set[str], set[str]]:
    """(the outputs asked for, in order; those asked for in binary; those asked for in JSON)."""
    if raw_outputs is not None and not isinstance(raw_outputs, list):
        raise InputError("outputs", "must be a list of {name, parameters}")
    outputs: list[str] = []
    binary_outputs: set[str] = set()
    json_outputs: set[str] = set()
    for position, out in enumerate(raw_outputs or []):
        out_name = out.get("name") if isinstance(out, dict) else None
        if not isinstance(out_name, str):
            raise InputError(f"outputs[{position}]", "each requested output needs a string name")
        outputs.append(out_name)
        out_params = _object(out_name, out.get("parameters"), "output parameters")
        if out_params.get("binary_data") is True:
            binary_outputs.add(out_name)
        elif out_params.get("binary_data") is False:
            json_outputs.add(out_name)
    return outputs, binary_outputs, json_outputs


def _array(name: str, tensor: object) -> Array:
    """A tensor of either kind as an array (a V2 JSON tensor is decoded, checked)."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, Mapping):
        return from_tensor(tensor, name)
    raise InputError(name, f"not a tensor: {type(tensor).__name__}")


def _json_tensor(name: str, tensor: object) -> Tensor:
    """A tensor of either kind as a named V2 JSON tensor (one left undecoded, as it came)."""
    if isinstance(tensor, Mapping):
        return {**{k: v for k, v in tensor.items() if k != "name"}, "name": name}
    return to_tensor(name, _array(name, tensor))


def _to_grpc_parameters(params: Mapping[str, object]) -> JSONObject:
    """Plain parameters as `InferParameter` fields: bool, int64 or string (floats as their
    repr, as the runtime answers them); anything else is not representable and left out."""
    out: JSONObject = {}
    for key, value in params.items():
        if isinstance(value, bool):
            out[key] = {"bool_param": value}
        elif isinstance(value, int):
            out[key] = {"int64_param": value}
        elif isinstance(value, str):
            out[key] = {"string_param": value}
        elif isinstance(value, float):
            out[key] = {"string_param": repr(value)}
    return out
