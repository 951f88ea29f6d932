"""Triton's `ModelConfig` and `ModelStatistics` RPCs on MLServer's gRPC port.

MLServer's `inference.GRPCInferenceService` lacks both, so tritonclient's `get_model_config`
/ `get_inference_statistics` and perf_analyzer over gRPC got UNIMPLEMENTED. gRPC asks each
generic handler of a server in turn for a method MLServer's own service does not know, and an
asyncio gRPC server takes more handlers after it has started: one more handler, added to
MLServer's server once, answers these two methods from the same configuration and statistics
the REST routes give.

The messages are written in protobuf's wire format here rather than with generated classes:
tritonclient's modules are not a runtime dependency and, imported beside MLServer's, clash in
protobuf's default pool (both register `inference.*`); a proto of our own would need a build
step for four small messages. Field numbers are Triton's (common/protobuf/grpc_service.proto,
model_config.proto); tests/test_protocol_perf_analyzer.py reads the answers with tritonclient.

The handler is added to MLServer's server by `mlserver_hooks.attach` (MLServer has no custom
gRPC handlers), with its other hooks into MLServer behind one version gate; this module knows
nothing of MLServer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn, Protocol

import grpc

from infergraph.serving.model_config import (
    InstanceGroup,
    TensorEntry,
    TritonConfig,
    TritonStatistics,
)

log = logging.getLogger(__name__)

SERVICE = "/inference.GRPCInferenceService/"

# Triton's DataType enum (model_config.proto).
DATA_TYPES = {
    "TYPE_BOOL": 1, "TYPE_UINT8": 2, "TYPE_UINT16": 3, "TYPE_UINT32": 4, "TYPE_UINT64": 5,
    "TYPE_INT8": 6, "TYPE_INT16": 7, "TYPE_INT32": 8, "TYPE_INT64": 9, "TYPE_FP16": 10,
    "TYPE_FP32": 11, "TYPE_FP64": 12, "TYPE_STRING": 13, "TYPE_BF16": 14,
}  # fmt: skip


class TritonModel(Protocol):
    """What a runtime offers these RPCs (ComponentRuntime)."""

    name: str

    @property
    def version(self) -> str | None: ...

    def triton_config(self) -> TritonConfig: ...

    def triton_statistics(self) -> TritonStatistics: ...


# -- protobuf wire format ------------------------------------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 are ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _number(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _text(field: int, value: str) -> bytes:
    return _bytes(field, value.encode()) if value else b""


def _packed(field: int, values: Iterable[int]) -> bytes:
    payload = b"".join(_varint(v) for v in values)
    return _bytes(field, payload) if payload else b""


def _tensor(entry: TensorEntry) -> bytes:
    """ModelInput / ModelOutput: name 1, data_type 2 (dims are 4 in one, 3 in the other)."""
    return _text(1, entry["name"]) + _number(2, DATA_TYPES.get(entry["data_type"], 0))


def _input(entry: TensorEntry) -> bytes:
    return _tensor(entry) + _packed(4, entry["dims"]) + _number(8, int(bool(entry.get("optional"))))


def _output(entry: TensorEntry) -> bytes:
    return _tensor(entry) + _packed(3, entry["dims"])


def encode_model_config(config: TritonConfig) -> bytes:
    """A `ModelConfigResponse` from the JSON configuration (`model_config.model_config`)."""
    body = (
        _text(1, config["name"])
        + _text(2, config.get("platform", ""))
        + _number(4, config.get("max_batch_size", 0))
        + b"".join(_bytes(5, _input(t)) for t in config.get("input", []))
        + b"".join(_bytes(6, _output(t)) for t in config.get("output", []))
        + b"".join(
            _bytes(14, _text(1, key) + _bytes(2, _text(1, value["string_value"])))
            for key, value in config.get("parameters", {}).items()
        )
        + b"".join(_bytes(7, _instance_group(g)) for g in config.get("instance_group", []))
        + _text(17, config.get("backend", ""))
    )
    return _bytes(1, body)


# Triton's ModelInstanceGroup.Kind (model_config.proto).
_KINDS = {"KIND_AUTO": 0, "KIND_GPU": 1, "KIND_CPU": 2, "KIND_MODEL": 3}


def _instance_group(group: InstanceGroup) -> bytes:
    """ModelInstanceGroup: count (2) and kind (4)."""
    return _number(2, int(group.get("count", 1))) + _number(
        4, _KINDS[group.get("kind", "KIND_AUTO")]
    )


_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


def encode_model_statistics(entries: Iterable[TritonStatistics]) -> bytes:
    """A `ModelStatisticsResponse` from JSON entries (`model_config.ModelStats.as_json`)."""

    def one(entry: TritonStatistics) -> bytes:
        stats = entry["inference_stats"]
        durations = b"".join(
            _bytes(i, _number(1, stats[key]["count"]) + _number(2, stats[key]["ns"]))
            for i, key in enumerate(_DURATIONS, start=1)
        )
        return (
            _text(1, entry["name"])
            + _text(2, entry["version"])
            + _number(3, entry["last_inference"])
            + _number(4, entry["inference_count"])
            + _number(5, entry["execution_count"])
            + _bytes(6, durations)
        )

    return b"".join(_bytes(1, one(e)) for e in entries)


def decode_model_request(data: bytes) -> tuple[str, str]:
    """(name, version) of a `ModelConfigRequest` or `ModelStatisticsRequest` (fields 1, 2)."""
    fields = {1: "", 2: ""}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        kind = key & 7
        if kind == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
            if key >> 3 in fields:
                fields[key >> 3] = value.decode("utf-8", "replace")
        elif kind == 0:
            _, pos = _read_varint(data, pos)
        else:
            raise ValueError(f"unexpected wire type {kind}")
    return fields[1], fields[2]


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


# -- the handler ---------------------------------------------------------------------------------
Behaviour = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


# grpcio ships no type information (no py.typed, no stubs in this environment), so its base
# class is Any to mypy.
class TritonRpcs(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Answers ModelConfig and ModelStatistics for the runtimes that registered here."""

    def __init__(self) -> None:
        self.models: dict[str, TritonModel] = {}
        self._methods: dict[str, Behaviour] = {
            SERVICE + "ModelConfig": self._config,
            SERVICE + "ModelStatistics": self._statistics,
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        behaviour = self._methods.get(handler_call_details.method)
        if behaviour is None:
            return None
        return grpc.unary_unary_rpc_method_handler(behaviour)

    async def _model(self, data: bytes, context: grpc.aio.ServicerContext) -> TritonModel:
        name, version = await _decoded(data, context)
        model = self.models.get(name)
        if model is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no infergraph model named '{name}'")
        if version and model.version is not None and version != model.version:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND, f"model '{name}' has no version '{version}'"
            )
        return model

    async def _config(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        model = await self._model(data, context)
        return encode_model_config(model.triton_config())

    async def _statistics(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name, _ = await _decoded(data, context)
        if not name:  # Triton's convention: every model
            return encode_model_statistics(m.triton_statistics() for m in self.models.values())
        model = await self._model(data, context)
        return encode_model_statistics([model.triton_statistics()])


async def _decoded(data: bytes, context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """The (name, version) a ModelConfig or ModelStatistics request asks for; malformed bytes
    are the caller's INVALID_ARGUMENT on both RPCs (ModelStatistics' was UNKNOWN)."""
    try:
        return decode_model_request(data)
    except ValueError as exc:
        await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"bad request: {exc}")


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str
) -> NoReturn:
    """End the RPC with `code`; `abort` always raises, which untyped grpc cannot tell mypy."""
    await context.abort(code, details)
    raise AssertionError("grpc.aio.ServicerContext.abort returned")
