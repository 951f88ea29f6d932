"""One strict reading of an Open Inference Protocol request, for every way one arrives.

JSON REST, binary REST and gRPC (through MLServer's types) all end here, so a bad request
gets the same 4xx naming the same input whichever way it came. Input names resolve through
declared aliases, then a client's convention (`INPUT_IMAGE`, `IMAGE` for `image`); a name
given twice is rejected, never silently overwritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.tensors.v2json import decode_json

_MEMBER = re.compile(r"[A-Za-z][\w.-]*_\d+")

# Request parameters that steer the protocol, not the model.
PROTOCOL_PARAMETERS = frozenset(
    {"content_type", "headers", "binary_data_output", "binary_data_size", "base64_encoded"}
)


@dataclass
class V2Request:
    """A validated request: decoded inputs by component name, model parameters, outputs."""

    id: str | None
    inputs: dict[str, Array]
    parameters: JSONObject
    outputs: list[str] = field(default_factory=list)
    binary_all: bool = False
    binary_outputs: set[str] = field(default_factory=set)


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


def _object(name: str, value: Any, what: str) -> JSONObject:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(name, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def parse_request(
    body: Any, accepted: Sequence[str], aliases: Mapping[str, str] | None = None
) -> V2Request:
    """Validate a V2 request dict; `accepted` empty means any input name is taken as is."""
    if not isinstance(body, dict):
        raise InputError("request", "the body must be a JSON object with 'inputs'")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InputError("id", f"must be a string, got {type(request_id).__name__}")
    parameters = dict(_object("parameters", body.get("parameters"), "request parameters"))
    raw_inputs = body.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InputError("inputs", "the request needs a non-empty 'inputs' list")
    inputs: dict[str, Array] = {}
    for position, tensor in enumerate(raw_inputs):
        if not isinstance(tensor, dict):
            raise InputError(f"inputs[{position}]", "each input must be a JSON object")
        raw_name = tensor.get("name")
        if not isinstance(raw_name, str) or not raw_name:
            raise InputError(f"inputs[{position}]", f"'name' must be a string, got {raw_name!r}")
        name = resolve_name(raw_name, accepted, aliases or {}, strict=False)
        if name in inputs:
            raise InputError(raw_name, f"given twice (as '{name}'); send each input once")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            raise InputError(raw_name, f"'datatype' must be a string, got {datatype!r}")
        if "data" not in tensor:
            raise InputError(raw_name, "has no 'data'")
        tensor_params = _object(raw_name, tensor.get("parameters"), "input parameters")
        content_type = tensor_params.get("content_type")
        if content_type is None and parameters.get("base64_encoded") is True:
            content_type = "base64"
        inputs[name] = decode_json(
            raw_name, datatype, tensor.get("shape"), tensor["data"], content_type
        )
    outputs: list[str] = []
    binary_outputs: set[str] = set()
    raw_outputs = body.get("outputs")
    if raw_outputs is not None and not isinstance(raw_outputs, list):
        raise InputError("outputs", "must be a list of {name, parameters}")
    for position, out in enumerate(raw_outputs or []):
        out_name = out.get("name") if isinstance(out, dict) else None
        if not isinstance(out_name, str):
            raise InputError(f"outputs[{position}]", "each requested output needs a string name")
        outputs.append(out_name)
        out_params = _object(out_name, out.get("parameters"), "output parameters")
        if out_params.get("binary_data") is True:
            binary_outputs.add(out_name)
    binary_all = parameters.get("binary_data_output") is True
    model_params = {k: v for k, v in parameters.items() if k not in PROTOCOL_PARAMETERS}
    return V2Request(request_id, inputs, model_params, outputs, binary_all, binary_outputs)


def select_outputs(
    produced: JSONObject, requested: list[str], declared: Sequence[str] = ()
) -> JSONObject:
    """Only the requested outputs, in the order asked, keyed by the name asked for.

    A name resolves as input names do: exactly, else case-insensitively when one output fits
    (Triton clients ask for `EMBEDDING`, the component's `embedding`). A name the model lacks
    is a 400. A declared output this request did not produce (e.g. `text_embedding` for
    images only) is left out rather than refused.
    """
    if not requested:
        return produced
    known = set(produced) | set(declared)
    resolved = {name: _output_name(name, known) for name in requested}
    unknown = [name for name, found in resolved.items() if found is None]
    if unknown:
        raise InputError(
            "outputs",
            f"no output named {', '.join(unknown)}; this model has {', '.join(sorted(known))}",
        )
    return {name: produced[found] for name, found in resolved.items() if found in produced}


def _output_name(asked: str, known: set[str]) -> str | None:
    if asked in known:
        return asked
    matches = [name for name in known if name.lower() == asked.lower()]
    return matches[0] if len(matches) == 1 else None
