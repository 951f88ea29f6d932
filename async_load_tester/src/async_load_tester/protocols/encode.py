"""Encode payloads once into the exact bytes each protocol sends, and read responses back.

REST requests become complete HTTP/1.1 messages (request line, headers, body),
so the hot path only writes pre-built bytes to a socket. gRPC requests become
serialized `ModelInferRequest`s sent through a bytes pass-through serializer.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from infergraph.tensors.modelinfer import CONTENTS_FIELD

from async_load_tester.errors import ConfigError
from async_load_tester.payloads import InputTensor, Payload

Protocol = Literal["v2-rest", "v2-rest-binary", "v2-grpc", "seldon-rest"]
PROTOCOLS: tuple[str, ...] = ("v2-rest", "v2-rest-binary", "v2-grpc", "seldon-rest")
DEFAULT_PATHS = {
    "v2-rest": "/v2/models/{model}/infer",
    "v2-rest-binary": "/v2/models/{model}/infer",
    "seldon-rest": "/api/v1.0/predictions",
}
USER_AGENT = "async-load-tester"


def check_protocol(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise ConfigError(
            "--protocol", f"unknown protocol '{protocol}' (one of {', '.join(PROTOCOLS)})"
        )
    return protocol  # type: ignore[return-value]


def parse_headers(items: Sequence[str]) -> dict[str, str]:
    """`Name: value` strings to a mapping; rejects what would corrupt the request."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if (
            not sep
            or not name
            or any(c in name for c in " \t\r\n")
            or "\n" in value
            or "\r" in value
        ):
            raise ConfigError("--header", f"'{item}' is not 'Name: value'")
        if name.lower() in ("content-length", "transfer-encoding"):
            raise ConfigError("--header", f"'{name}' is set by the tester from the body")
        headers[name] = value
    return headers


# The Open Inference Protocol's path for one version of a model (the default paths name none).
VERSIONED_V2_PATH = "/v2/models/{model}/versions/{version}/infer"


def path_template(protocol: str, template: str | None, version: str | None) -> str:
    """The REST path template a request uses: --path-template, else the protocol's own.

    A model version must reach the server: the V2 protocols put it in the path (as gRPC puts
    it in the request), and a path with no place for it is refused, not sent without it.
    """
    if not version:
        return template or DEFAULT_PATHS[protocol]
    if template is not None:
        if "{version}" not in template:
            raise ConfigError(
                "--model-version",
                f"'{version}' has no place in --path-template '{template}': "
                "put {version} in the template, or drop --model-version",
            )
        return template
    if protocol == "seldon-rest":
        raise ConfigError(
            "--model-version",
            f"'{version}': seldon-rest's {DEFAULT_PATHS['seldon-rest']} names no version; "
            "give a --path-template with {version}, or drop --model-version",
        )
    return VERSIONED_V2_PATH


def render_path(template: str, model: str, namespace: str, version: str | None) -> str:
    try:
        path = template.format(model=model, namespace=namespace, version=version or "")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            "--path-template", f"'{template}': {exc!r}; use {{model}}, {{namespace}}, {{version}}"
        ) from None
    if not path.startswith("/"):
        raise ConfigError("--path-template", f"'{template}' must start with '/'")
    return path


# ----------------------------------------------------------------------------- bodies


def _v2_json_input(tensor: InputTensor) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
    }
    if tensor.array is not None:
        item["data"] = tensor.array.reshape(-1).tolist()
    else:
        assert tensor.items is not None
        if tensor.binary:
            item["data"] = [base64.b64encode(x).decode() for x in tensor.items]
            item["parameters"] = {"content_type": "base64"}
        else:
            item["data"] = [x.decode() for x in tensor.items]
    return item


def v2_json_body(payload: Payload, parameters: Mapping[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"inputs": [_v2_json_input(t) for t in payload.inputs]}
    if parameters:
        body["parameters"] = dict(parameters)
    return orjson.dumps(body)


def v2_binary_body(
    payload: Payload, parameters: Mapping[str, Any] | None = None
) -> tuple[bytes, int]:
    """Binary tensor extension: JSON header, then each input's raw bytes in order."""
    inputs, blobs = [], []
    for tensor in payload.inputs:
        raw = tensor.raw_bytes()
        blobs.append(raw)
        inputs.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header: dict[str, Any] = {"inputs": inputs}
    if parameters:
        header["parameters"] = dict(parameters)
    head = orjson.dumps(header)
    return head + b"".join(blobs), len(head)


def seldon_body(payload: Payload) -> bytes:
    """Seldon v1 message: ndarray for numbers, strData for text, binData for files."""
    if len(payload.inputs) > 1:
        return orjson.dumps(
            {"jsonData": {t.name: _v2_json_input(t)["data"] for t in payload.inputs}}
        )
    tensor = payload.inputs[0]
    if tensor.array is not None:
        return orjson.dumps({"data": {"names": [tensor.name], "ndarray": tensor.array.tolist()}})
    assert tensor.items is not None
    if tensor.binary:
        return orjson.dumps({"binData": base64.b64encode(tensor.items[0]).decode()})
    return orjson.dumps({"strData": tensor.items[0].decode()})


def grpc_message(
    payload: Payload, model: str, version: str | None, parameters: Mapping[str, Any] | None = None
) -> bytes:
    """A serialized ModelInferRequest: numbers as raw_input_contents when every input is
    numeric (the spec forbids mixing raw and typed contents), else typed contents."""
    from async_load_tester.protocols import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, model_version=version or "")
    all_numeric = all(t.array is not None for t in payload.inputs)
    for tensor in payload.inputs:
        item = request.inputs.add(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape)
        )
        if all_numeric:
            request.raw_input_contents.append(tensor.raw_bytes())
        elif tensor.items is not None:
            item.contents.bytes_contents.extend(tensor.items)
        else:
            assert tensor.array is not None
            field = CONTENTS_FIELD.get(tensor.datatype)
            if field is None:
                raise ConfigError(
                    "--payload", f"gRPC cannot send {tensor.datatype} beside BYTES inputs"
                )
            getattr(item.contents, field).extend(tensor.array.reshape(-1).tolist())
    for key, value in (parameters or {}).items():
        param = request.parameters[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = str(value)
    return request.SerializeToString()


@dataclass(frozen=True)
class EncodedRequest:
    """A payload's wire form: a whole HTTP request, or a serialized gRPC message."""

    label: str
    wire: bytes
    body_size: int


def authority(host: str, port: int | None) -> str:
    """host[:port] as RFC 3986 writes it, an IPv6 literal in brackets: the Host header and
    gRPC's target name (whose resolver would read the literal's colons as the port's)."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def http_request(
    method: str, path: str, host: str, headers: Mapping[str, str], body: bytes, content_type: str
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    lower = {k.lower() for k in headers}
    if "host" not in lower:
        lines.append(f"Host: {host}")
    if "user-agent" not in lower:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "content-type" not in lower:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_all(
    payloads: Sequence[Payload],
    protocol: Protocol,
    *,
    model: str,
    version: str | None,
    path: str,
    host: str,
    headers: Mapping[str, str],
    parameters: Mapping[str, Any] | None = None,
) -> list[EncodedRequest]:
    """Every payload in its wire form, once, before the run."""
    out = []
    for payload in payloads:
        if protocol == "v2-grpc":
            wire = grpc_message(payload, model, version, parameters)
            out.append(EncodedRequest(payload.label, wire, len(wire)))
            continue
        extra = dict(headers)
        if protocol == "v2-rest":
            body, ctype = v2_json_body(payload, parameters), "application/json"
        elif protocol == "v2-rest-binary":
            body, head_len = v2_binary_body(payload, parameters)
            ctype = "application/octet-stream"
            extra["Inference-Header-Content-Length"] = str(head_len)
        else:
            body, ctype = seldon_body(payload), "application/json"
        out.append(
            EncodedRequest(
                payload.label, http_request("POST", path, host, extra, body, ctype), len(body)
            )
        )
    return out


# ----------------------------------------------------------------------------- responses


class MalformedResponse(ValueError):
    """A 2xx response whose body is not what the protocol promises."""


def _timings(params: Any) -> dict[str, float]:
    if not isinstance(params, dict):
        return {}
    return {
        k: float(v)
        for k, v in params.items()
        if k.endswith("_ms") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def check_v2_json(body: bytes, json_len: int = -1) -> dict[str, float]:
    """Validate a V2 REST response (JSON, or the JSON head of a binary one); return timings."""
    try:
        obj = orjson.loads(body if json_len < 0 else body[:json_len])
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("outputs"), list):
        raise MalformedResponse("no 'outputs' list")
    return _timings(obj.get("parameters"))


def check_seldon_json(body: bytes, json_len: int = -1) -> dict[str, float]:
    """Validate a Seldon v1 response; timings come from meta.tags or meta.metrics."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or not any(
        k in obj for k in ("data", "jsonData", "strData", "binData")
    ):
        raise MalformedResponse("none of data/jsonData/strData/binData")
    meta = obj.get("meta")
    if not isinstance(meta, dict):
        return {}
    timings = _timings(meta.get("tags"))
    metrics = meta.get("metrics")
    if isinstance(metrics, list):
        for m in metrics:
            if isinstance(m, dict) and str(m.get("key", "")).endswith("_ms"):
                value = m.get("value")
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    timings[str(m["key"])] = float(value)
    return timings


def check_grpc(message: bytes) -> dict[str, float]:
    from google.protobuf.message import DecodeError

    from async_load_tester.protocols import grpc_predict_v2_pb2 as pb

    try:
        response = pb.ModelInferResponse.FromString(message)
    except DecodeError as exc:
        raise MalformedResponse(f"not a ModelInferResponse: {exc}") from None
    timings = {}
    for key, param in response.parameters.items():
        if key.endswith("_ms"):
            which = param.WhichOneof("parameter_choice")
            if which in ("double_param", "int64_param", "uint64_param"):
                timings[key] = float(getattr(param, which))
    return timings
