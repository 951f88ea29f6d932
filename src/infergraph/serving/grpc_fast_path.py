"""The runtime's gRPC `ModelInfer` answered ahead of MLServer's servicer, with its effects.

MLServer (1.7) answers `inference.GRPCInferenceService/ModelInfer` through its
`PromServerInterceptor` (py-grpc-prometheus ported to grpc.aio), its servicer (protobuf to
pydantic, request metadata copied into the payload), its `DataPlane` (the model looked up
through an async registry, a Summary timer, a context manager, CloudEvents headers on a
pydantic response) and back to protobuf. For the identity node that chain cost about 440 of
the 580 microseconds of server CPU a gRPC request took, while grpc.aio itself, with a fixed
answer in the same `mlserver start` process, costs about 135 (`benchmarks/grpc_floor.py`,
docs/benchmarks.md): gRPC cost four to five times the CPU of the same request over JSON.

`ModelInferFastPath` takes the place of the interceptor's `intercept_service` (an instance
attribute; the server keeps the interceptor object it was built with). For `ModelInfer` it
hands gRPC one handler that reads the protobuf request straight into the plain V2 dict the
runtime parses, runs the runtime, and writes the protobuf response; every other method goes
through MLServer's interceptor as before. What the chain did is done here the same way:
`grpc_server_started_total`, `grpc_server_handled_total` and `grpc_server_handling_seconds`
with the interceptor's labels (and its habit of counting `handled` for answered calls only),
MLServer's `model_infer_request_success` / `_failure` / `_duration` with its labels, the
CloudEvents headers as trailing metadata, the same status code and details for an error.
`raw_input_contents` (tritonclient's way) are checked as MLServer's reading of them is
(`mlserver_hooks.check_raw_contents`) and decoded to numpy directly; the response then holds
raw output contents, packed as MLServer packs them. Requests with parameters anywhere are
read with MLServer's converters and their responses written with them, so they answer as
before;
models that are not the runtime's, a version asked for that is not the one loaded, or a model
not ready go to MLServer's own handler, metrics included.

It is installed only where MLServer's interceptors are exactly its metrics interceptor
(after its access-log one, when debug is on): with tracing on, metrics off (no interceptor
to take the place of) or MLServer's response cache on, ModelInfer keeps MLServer's path;
`INFERGRAPH_GRPC_FAST_PATH=0` keeps it too. `mlserver_hooks` installs this behind its
version gate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence, Sized
from dataclasses import dataclass
from timeit import default_timer
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import numpy as np
from mlserver.cloudevents import CloudEventsMiddleware, CloudEventsTypes
from mlserver.context import model_context
from mlserver.errors import MLServerError
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.grpc.interceptors import LoggingInterceptor, PromServerInterceptor
from mlserver.grpc.utils import STATUS_CODE_MAPPING
from mlserver.handlers import DataPlane
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import Counter, Summary

from infergraph.errors import InputError
from infergraph.json_types import JSONObject
from infergraph.serving.responses import Served
from infergraph.tensors.binary import encode_bytes_tensor
from infergraph.tensors.datatypes import V2_TO_NUMPY, datatype_of, is_bytes
from infergraph.tensors.modelinfer import CONTENTS_FIELD, encode_grpc, read_grpc

if TYPE_CHECKING:  # annotations only: importing mlserver.grpc.server loads its tracing too
    from mlserver.grpc.server import GRPCServer
    from mlserver.middleware import InferenceMiddleware
    from mlserver.settings import ModelSettings

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
SWITCH = "INFERGRAPH_GRPC_FAST_PATH"
type InferContext = grpc.aio.ServicerContext[pb.ModelInferRequest, pb.ModelInferResponse]
# MLServer's ModelInfer behind its metrics interceptor.
Behavior = Callable[[pb.ModelInferRequest, InferContext], Awaitable[pb.ModelInferResponse]]
# A grpc.aio server interceptor's `intercept_service`, and the continuation it is handed.
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
Intercept = Callable[[Continuation, grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
# DataPlane's model_infer_request_success, _failure and _duration children of one model.
InferSeries = tuple[Counter, Counter, Summary]


class RawInput(Protocol):
    """An input as MLServer's gRPC converter holds it when it injects the raw entries
    (`mlserver.types.RequestInput`, or `_Sent` here): one with empty data was sent raw."""

    @property
    def name(self) -> str: ...

    @property
    def datatype(self) -> str: ...

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def data(self) -> Sized: ...


# mlserver_hooks.check_raw_contents: the raw entries against the inputs they belong to.
RawCheck = Callable[[Sequence[RawInput], Sequence[bytes]], None]


class GrpcModel(Protocol):
    """What the fast path needs of a model (ComponentRuntime)."""

    name: str
    settings: ModelSettings

    @property
    def version(self) -> str | None: ...

    @property
    def ready(self) -> bool: ...

    async def predict(self, payload: InferenceRequest) -> InferenceResponse: ...

    async def predict_plain(self, body: JSONObject | Callable[[], JSONObject]) -> Served:
        """The served outputs and parameters of a plain V2 request dict, or of what `body()`
        reads inside the model's measured call (MLServerError on a bad one, as `predict`
        raises)."""
        ...


def enabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def metrics_interceptor(
    interceptors: Sequence[grpc.aio.ServerInterceptor],
) -> PromServerInterceptor | None:
    """The interceptor to take the place of: MLServer's metrics one, last, with nothing but
    its access log before it; None for any other chain (tracing, metrics off)."""
    if not interceptors or not isinstance(interceptors[-1], PromServerInterceptor):
        return None
    if not all(type(i) is LoggingInterceptor for i in interceptors[:-1]):
        return None
    return interceptors[-1]


def install(
    grpc_server: GRPCServer, data_plane: DataPlane, check_raw: RawCheck
) -> ModelInferFastPath | None:
    """The fast path of MLServer's `GRPCServer` (one per server), or None where its
    interceptors or DataPlane are not what this module reproduces, or it is switched off."""
    if not enabled():
        log.info("%s=0: gRPC ModelInfer keeps MLServer's path", SWITCH)
        return None
    prom = metrics_interceptor(getattr(grpc_server, "_interceptors", ()))
    if prom is None:
        log.info("gRPC interceptors other than metrics (tracing?): ModelInfer keeps MLServer's")
        return None
    counted = prom._interceptor
    if counted._legacy or not counted._enable_handling_time_histogram:
        log.info("gRPC metrics not as MLServer 1.7 sets them: ModelInfer keeps MLServer's")
        return None
    existing = getattr(prom, _INSTALLED, None)
    if isinstance(existing, ModelInferFastPath):
        return existing
    if getattr(data_plane, "_response_cache", None) is not None:
        log.info("MLServer's response cache is on: gRPC ModelInfer keeps MLServer's path")
        return None
    events = cloud_events(data_plane)
    if events is None:
        log.info("DataPlane middlewares other than CloudEvents: ModelInfer keeps MLServer's")
        return None
    fast = ModelInferFastPath(prom, data_plane, events, check_raw)
    setattr(prom, _INSTALLED, fast)
    return fast


_INSTALLED = "_infergraph_model_infer"


class ModelInferFastPath:
    """`ModelInfer` for the models registered here; MLServer's handler for everything else."""

    def __init__(
        self,
        prom: PromServerInterceptor,
        data_plane: DataPlane,
        events: CloudEventsMiddleware,
        check_raw: RawCheck,
    ) -> None:
        self._check_raw = check_raw
        self._original: Intercept = prom.intercept_service
        self._mlserver: Behavior | None = None  # MLServer's ModelInfer, its metrics around it
        self._models: dict[tuple[str, str], GrpcModel] = {}
        self._handler = grpc.unary_unary_rpc_method_handler(
            self.infer,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString,
        )
        self._cloud_events = events
        metrics = prom._interceptor._metrics
        labels = {"grpc_type": "UNARY", "grpc_service": SERVICE, "grpc_method": "ModelInfer"}
        self._started = metrics["grpc_server_started_counter"].labels(**labels)
        self._handling = metrics["grpc_server_handled_histogram"].labels(**labels)
        counter = prom._interceptor._grpc_server_handled_total_counter
        self._handled_ok = counter.labels(**labels, grpc_code="OK")
        self._infer_metrics: InferSeries = (
            data_plane._ModelInferRequestSuccess,
            data_plane._ModelInferRequestFailure,
            data_plane._ModelInferRequestDuration,
        )
        self._series: dict[tuple[str, str], InferSeries] = {}
        prom.intercept_service = self.intercept_service

    # -- the models answered here ------------------------------------------------------------
    def add(self, model: GrpcModel) -> None:
        self._models[(model.name, model.version or "")] = model

    def remove(self, model: GrpcModel) -> None:
        key = (model.name, model.version or "")
        if self._models.get(key) is model:
            del self._models[key]

    def _model(self, name: str, version: str) -> GrpcModel | None:
        """The model MLServer's registry would pick, when it is one of ours and ready."""
        if version:
            model = self._models.get((name, version))
        else:
            mine = [m for (n, _), m in self._models.items() if n == name]
            model = mine[0] if len(mine) == 1 else None
        return model if model is not None and model.ready else None

    # -- gRPC --------------------------------------------------------------------------------
    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if details.method != MODEL_INFER:
            return await self._original(continuation, details)
        if self._mlserver is None:
            wrapped = await self._original(continuation, details)
            self._mlserver = wrapped.unary_unary
        return self._handler

    async def infer(
        self, request: pb.ModelInferRequest, context: InferContext
    ) -> pb.ModelInferResponse:
        model = self._model(request.model_name, request.model_version)
        if model is None:
            assert self._mlserver is not None  # set before this handler is handed out
            answer: pb.ModelInferResponse = await self._mlserver(request, context)
            return answer
        self._started.inc()
        began = default_timer()
        success, failure, duration = self._model_series(request.model_name, request.model_version)
        try:
            with model_context(model.settings):
                response = await self._answer(model, request, context)
        except Exception as exc:
            failure.inc()
            duration.observe(default_timer() - began)
            self._handling.observe(max(default_timer() - began, 0))
            await self._abort(model, exc, context)
            raise  # abort raises; this is never reached
        success.inc()
        duration.observe(default_timer() - began)
        self._handled_ok.inc()
        self._handling.observe(max(default_timer() - began, 0))
        return response

    async def _abort(self, model: GrpcModel, exc: Exception, context: InferContext) -> None:
        """MLServer's answer to an error: its status table, the error's text as details."""
        if isinstance(exc, MLServerError):
            code = STATUS_CODE_MAPPING.get(exc.status_code, grpc.StatusCode.UNKNOWN)
            # A 4xx is the caller's; a 503 is overload (a full batch queue), logged in a line
            # like a 4xx, not as an error: under overload every refused call would log one.
            if exc.status_code < 500 or exc.status_code == 503:
                log.info("%s", exc)
            else:
                log.error("%s", exc)
        else:
            log.exception("%s: ModelInfer failed", model.name)
            code = grpc.StatusCode.INTERNAL
        await context.abort(code=code, details=str(exc))

    def _model_series(self, name: str, version: str) -> InferSeries:
        """DataPlane's success, failure and duration children, looked up once per model."""
        key = (name, version)
        series = self._series.get(key)
        if series is None:
            success, failure, duration = self._infer_metrics
            series = (
                success.labels(model=name, version=version),
                failure.labels(model=name, version=version),
                duration.labels(model=name, version=version),
            )
            self._series[key] = series
        return series

    async def _answer(
        self, model: GrpcModel, request: pb.ModelInferRequest, context: InferContext
    ) -> pb.ModelInferResponse:
        if _plain(request):
            served = await model.predict_plain(plain_request(request, self._check_raw))
            raw = bool(request.raw_input_contents)
            response = plain_response(model, request.id, served, raw)
        else:  # what MLServer's servicer does, less its DataPlane and interceptor
            payload = ModelInferRequestConverter.to_types(request)
            result = await model.predict(payload)
            result.id = payload.id
            use_raw = bool(request.raw_input_contents)
            response = ModelInferResponseConverter.from_types(result, use_raw=use_raw)
        events = response_events(self._cloud_events, model.settings, request.id)
        context.set_trailing_metadata(tuple((k.lower(), v) for k, v in events.items()))
        return response


def cloud_events(data_plane: DataPlane) -> CloudEventsMiddleware | None:
    """MLServer's CloudEvents middleware when it is the DataPlane's only one (what MLServer
    1.7 builds, handlers/dataplane.py:36-39): the middlewares these fast paths reproduce."""
    chain = getattr(data_plane, "_inference_middleware", None)
    middlewares: Sequence[InferenceMiddleware] = getattr(chain, "_middlewares", ())
    if [type(m) for m in middlewares] != [CloudEventsMiddleware]:
        return None
    only = middlewares[0]
    return only if isinstance(only, CloudEventsMiddleware) else None


def response_events(
    events: CloudEventsMiddleware, settings: ModelSettings, request_id: str
) -> dict[str, str]:
    """The `Ce-*` headers MLServer's DataPlane puts on a response (1.7 handlers/
    dataplane.py:116 `response_middleware`, cloudevents.py:94-104 and `_get_headers`
    :54-80), which its REST handler answers as HTTP headers (rest/endpoints.py:104-107) and
    its gRPC servicer as trailing metadata: the one source for both fast paths. An id that
    cannot be a header or metadata value is left out of them (`carried_id`)."""
    ce_id = request_id if carried_id(request_id) else ""
    headers: dict[str, str] = events._get_headers(CloudEventsTypes.Response, settings, ce_id)
    return headers


def carried_id(request_id: str) -> bool:
    """Whether a request id can travel as the `ce-id` header or trailer: printable ASCII.
    gRPC refuses any other metadata value (the call failed INTERNAL "Invalid metadata" after
    the model ran), and on HTTP a line break would start another header; such an id is
    answered in the response body only."""
    return request_id.isascii() and request_id.isprintable()


def _plain(request: pb.ModelInferRequest) -> bool:
    """A request this path reads itself: no parameters anywhere."""
    if request.parameters:
        return False
    return not any(i.parameters for i in request.inputs) and not any(
        o.parameters for o in request.outputs
    )


@dataclass
class _Sent:
    """An input as MLServer's converter holds it, for the raw entries' check."""

    name: str
    datatype: str
    shape: list[int]
    data: list[bool | int | float | bytes]  # the values of its contents field


def plain_request(request: pb.ModelInferRequest, check_raw: RawCheck) -> Callable[[], JSONObject]:
    """What reads the V2 dict MLServer's converters make of `request`
    (`tensors.modelinfer.read_grpc`), its raw entries first checked as MLServer checks them
    (a failure is MLServer's 400, before the model).

    The read itself runs inside the model's measured call (`predict_plain`): a raw entry
    that does not decode as its shape says (two negative dimensions pass the length check)
    is then INVALID_ARGUMENT naming the model and counted `bad_input`, as on MLServer's
    converter path and over REST; outside it, it was INTERNAL and not counted (finding 3).
    """
    raw = list(request.raw_input_contents)
    if raw:
        sent = []
        for tensor in request.inputs:
            fields = tensor.contents.ListFields()
            values = list(fields[0][1]) if fields else []
            sent.append(_Sent(tensor.name, tensor.datatype, list(tensor.shape), values))
        try:
            check_raw(sent, raw)
        except InputError as exc:  # MLServer's reading fails here, before the model
            raise MLServerError(str(exc), status_code=400) from exc
    return lambda: read_grpc(request)


def plain_response(
    model: GrpcModel, request_id: str, served: Served, raw: bool = False
) -> pb.ModelInferResponse:
    """MLServer's protobuf of the runtime's `_response`, written directly; with `raw` (the
    request came raw) the values go in raw_output_contents, as MLServer's `extract_raw`
    packs them (native order, BYTES length-prefixed), each output's contents left empty."""
    response = pb.ModelInferResponse(model_name=model.name, id=request_id)
    if model.version is not None:
        response.model_version = model.version
    for name, array in served["outputs"].items():
        array = np.asarray(array)
        numeric = None if is_bytes(array) else datatype_of(array)
        if raw and numeric is not None:  # the array's own bytes, no list of Python numbers
            out = response.outputs.add(name=name, datatype=numeric, shape=list(array.shape))
            out.contents.SetInParent()
            response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
            continue
        datatype, shape, data, params = encode_grpc(array)
        out = response.outputs.add(name=name, datatype=datatype, shape=shape)
        if raw and (datatype == "BYTES" or datatype in V2_TO_NUMPY):
            out.contents.SetInParent()
            response.raw_output_contents.append(_packed(datatype, data))
        elif datatype in CONTENTS_FIELD:
            getattr(out.contents, CONTENTS_FIELD[datatype]).extend(data)
        else:
            raise MLServerError(f"{model.name}: output {name!r} has datatype {datatype}")
        _parameters(out.parameters, params)
    _parameters(response.parameters, served["parameters"])
    return response


def _packed(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        return encode_bytes_tensor(data)
    return np.asarray(data, dtype=V2_TO_NUMPY[datatype]).tobytes()


def _parameters(
    target: MutableMapping[str, pb.InferParameter], params: Mapping[str, object]
) -> None:
    """V2 gRPC parameters hold bool, int64 or string: floats travel as their repr (the
    runtime's `_grpc_parameters`), anything else is left out as MLServer's converter does."""
    for key, value in params.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, str):
            target[key].string_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].string_param = repr(value)
