"""MLServer adapter: one `MLModel` class serving any component family.

model-settings.json picks the family, and its options under `extra.options` (RuntimeSettings):

    {"implementation": "infergraph.serving.mlserver_runtime.ComponentRuntime",
     "max_batch_size": 16, "max_batch_time": 0.005,
     "parameters": {"uri": "google/siglip-so400m-patch14-384",
                    "extra": {"family": "image-embedding", "dtype": "fp16",
                              "max_batch_size": 16, "max_batch_time_ms": 5,
                              "input_aliases": {"INPUT_IMAGE": "image"}}}}

Batching is read from `parameters.extra.max_batch_size` / `max_batch_time_ms` when present
(the Seldon Core v2 agent rewrites model-settings.json keeping only name, inputs, outputs,
platform, versions, parallel_workers, implementation and parameters, so top-level batching
is lost there), else from MLServer's top-level fields. Absent or 0 means one row per forward
pass and no wait. Batching is done per row by `MicroBatcher` (see its docstring for why
MLServer's own request merger is switched off).

Every request, whichever way it arrives (JSON or binary REST, `/infer/raw`, gRPC), goes
through `_serve`: one parser, one error mapping (`errors.status_for`), one set of metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast, runtime_checkable

import orjson
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.settings import ModelSettings
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ResponseOutput,
)
from mlserver.utils import generate_uuid
from starlette.requests import Request
from starlette.responses import Response

from infergraph.arrays import Array
from infergraph.components.base import Component
from infergraph.components.registry import component_class
from infergraph.device import CudaUnusableError
from infergraph.errors import (
    InfergraphError,
    InputError,
    QueueFullError,
    SettingsError,
    status_for,
)
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.json_types import JSONObject
from infergraph.serving import binary, graph_step, mlserver_hooks, request_body
from infergraph.serving.engine import ComponentEngine
from infergraph.serving.grpc_fast_path import carried_id, response_events
from infergraph.serving.heap import settle_heap
from infergraph.serving.load_lock import LOADING
from infergraph.serving.metrics import CUDA_UNUSABLE, INFLIGHT, OUTCOMES, QUEUE, REQUESTS
from infergraph.serving.model_config import (
    ModelStats,
    TritonConfig,
    TritonStatistics,
    model_config,
)
from infergraph.serving.protocol import parse_request, select_outputs
from infergraph.serving.responses import (
    Served,
    encode_outputs,
    error_body,
    http_body,
    plain_parameters,
)
from infergraph.tensors.modelinfer import encode_grpc
from infergraph.tensors.request import InferRequest
from infergraph.tensors.v2json import Tensor
from mlserver import MLModel

log = logging.getLogger(__name__)

# `parameters.extra.relay_request_parameters: true`: answer with the request's parameters
# beside the model's own, for engines that hand a unit's response parameters to the next
# unit as its request parameters (Seldon v1 with `protocol: v2`: executor/api/rest/
# kfserving.go:10-35 keeps the response's `parameters` and renames `outputs` to `inputs`).
RELAY_KEY = "relay_request_parameters"
# Seconds a caller refused by a full queue is asked to wait (`Retry-After`): about the time a
# queue of `maxQueueRows` takes to drain at any sensible setting.
RETRY_AFTER_S = "1"
# Protocol switches of one call, never a model's knobs: not relayed.
_NOT_RELAYED = {"binary_data_output", "binary_data_size", "content_type", "headers"}


def batching(settings: ModelSettings) -> tuple[int, float]:
    """(rows per forward pass, seconds to wait): `parameters.extra` first, then MLServer's."""
    extra = (settings.parameters.extra if settings.parameters else None) or {}
    size = extra.get("max_batch_size", settings.max_batch_size)
    if "max_batch_time_ms" in extra:
        wait = _number("parameters.extra.max_batch_time_ms", extra["max_batch_time_ms"]) / 1000
    else:
        wait = _number("max_batch_time", settings.max_batch_time)
    return max(1, int(_number("max_batch_size", size))), max(0.0, wait)


def _number(field: str, value: object) -> float:
    if value is None:
        return 0.0
    number = float(value) if isinstance(value, int | float) else _parsed(value)
    if number is None:
        raise SettingsError(field, f"expected a number, got {value!r}")
    if number != number or number in (float("inf"), float("-inf")):
        raise SettingsError(field, f"must be finite, got {value!r}")
    return number


Endpoint = Callable[[Request], Awaitable[Response]]


@runtime_checkable
class VersionedRest(Protocol):
    """A runtime of this kit's, whichever import of this module made it (`_version_for`)."""

    async def answer_rest_infer(self, request: Request) -> Response: ...


# MLServer ships no py.typed marker, so mypy sees its base class as Any.
class ComponentRuntime(MLModel):  # type: ignore[misc]
    """Serves one component over V2 REST (JSON and binary) and gRPC, with per-row batching."""

    def __init__(self, settings: ModelSettings) -> None:
        # Every hook into MLServer is version-gated there: an unsupported MLServer fails here.
        mlserver_hooks.install_process_hooks()
        super().__init__(settings)
        # MLServer wraps predict() in its request-merging batcher right after construction,
        # before load(), whenever max_batch_size > 1: take the knobs for our batcher here.
        self._batching = batching(settings)
        mlserver_hooks.switch_off_mlserver_batching(settings)
        self._endpoints: list[Endpoint] = []
        base = f"/v2/models/{settings.name}"
        self._route("POST", f"{base}/infer", self._rest_infer)
        self._route("POST", f"{base}/versions/{{model_version}}/infer", self._rest_infer)
        # The Triton embed_image pattern, kept for clients of earlier releases.
        self._route("POST", f"{base}/infer/raw", self._rest_infer_raw)
        self._route("GET", f"{base}/config", self._rest_config)
        self._route("GET", f"{base}/stats", self._rest_stats)
        # The KServe InferenceGraph step route (infergraph.serving.graph_step).
        self._route("POST", f"{base}{graph_step.ROUTE_SUFFIX}", self._rest_graph_step)
        self._wiring: graph_step.StepWiring | None = None
        self._relay = False
        self._attached: mlserver_hooks.Attached | None = None
        # The Ce-* response headers every answer shares, encoded once (`_event_headers`).
        self._events: list[tuple[bytes, bytes]] = []
        self.stats = ModelStats()

    def _route(self, method: str, path: str, handler: Endpoint) -> None:
        """Instance-specific routes: a custom handler on the class would serve every model."""

        async def endpoint(request: Request) -> Response:
            return await handler(request)

        custom_handler(rest_path=path, rest_method=method)(endpoint)
        setattr(self, f"endpoint_{len(self._endpoints)}", endpoint)
        self._endpoints.append(endpoint)

    async def load(self) -> bool:
        params = self.settings.parameters
        runtime = RuntimeSettings.from_extra(params.extra if params else None)
        aliases = runtime.input_aliases
        self._relay = runtime.relay_request_parameters
        if runtime.graph_step is not None:
            self._wiring = graph_step.StepWiring.parse(dict(runtime.graph_step))
        uri = params.uri if params else None
        component_settings = runtime.component_settings(uri, *self._batching)
        cls = component_class(runtime.family)
        instances = [cls(component_settings) for _ in range(component_settings.instances)]
        self.component: Component = instances[0]
        try:
            for instance in instances:
                await _off_the_loop(instance)
        except CudaUnusableError as exc:
            # The Model's load fails with the reason (Seldon v2 shows it in the Model's
            # status, KServe's pod restarts with it as its last log line); the gauge stays.
            CUDA_UNUSABLE.labels(self.name, exc.code).set(1)
            raise
        # A series' child looked up once: `labels()` per request was a tenth of an identity
        # node's CPU (bench-runtimes' account). The queue gauge is set by the batcher each
        # time rows enter it or leave it (taken for a pass, or cancelled).
        queue = QUEUE.labels(self.name)
        self.engine = ComponentEngine(
            instances, on_pending=queue.set, max_queue_rows=runtime.max_queue_rows
        )
        self._series = (
            INFLIGHT.labels(self.name),
            {o: REQUESTS.labels(self.name, o) for o in OUTCOMES},
        )
        passthrough = self.component.passthrough
        self._accepted = [] if passthrough else [s.name for s in self.component.inputs]
        unknown = sorted(set(aliases.values()) - set(self._accepted)) if self._accepted else []
        if unknown:
            raise SettingsError("parameters.extra.input_aliases", f"no input named {unknown}")
        self._aliases = {str(k): str(v) for k, v in aliases.items()}
        self._describe()
        self._attached = mlserver_hooks.attach(self, self._endpoints)
        self._events = self._event_headers()
        settle_heap()
        return True

    async def unload(self) -> bool:
        mlserver_hooks.detach(self, getattr(self, "_attached", None))
        if hasattr(self, "engine"):
            await self.engine.close()
        return True

    def _describe(self) -> None:
        """Publish the component's tensors in the model's V2 metadata."""
        if not self.settings.inputs:
            self.settings.inputs = [
                MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
                for s in self.component.inputs
            ]
        if not self.settings.outputs:
            self.settings.outputs = [
                MetadataTensor(name=s.name, datatype=s.datatype, shape=list(s.shape))
                for s in self.component.outputs
            ]

    # -- the one serving path ----------------------------------------------------------------
    async def _serve(self, request: InferRequest[Array]) -> Served:
        """Run one parsed request; metrics and outputs selection for every protocol."""
        result = await self.engine.infer(request.inputs, request.parameters)
        declared = [s.name for s in self.component.outputs]
        outputs = select_outputs(result.outputs, request.outputs, declared)
        parameters = plain_parameters(result.parameters)
        if self._relay:
            sent = {k: v for k, v in request.parameters.items() if k not in _NOT_RELAYED}
            parameters = {**sent, **parameters}
        return {"outputs": outputs, "parameters": parameters}

    async def _measured(
        self, parse: Callable[[], InferRequest[Array]]
    ) -> tuple[InferRequest[Array], Served]:
        """Parse and serve one request, counted by outcome (`metrics.OUTCOMES`): a caller
        that went away (a gRPC deadline or cancellation) is `cancelled`, and one refused by a
        full queue (`batching.maxQueueRows`) `rejected`: neither is a server error."""
        inflight, requests = self._series
        inflight.inc()
        outcome = "ok"
        started = time.perf_counter_ns()
        served: Served | None = None
        try:
            request = parse()
            served = await self._serve(request)
            return request, served
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except QueueFullError:
            outcome = "rejected"
            raise
        except BaseException as exc:
            outcome = "bad_input" if 400 <= status_for(exc).http < 500 else "error"
            raise
        finally:
            inflight.dec()
            requests[outcome].inc()
            elapsed = time.perf_counter_ns() - started
            self.stats.record(
                outcome == "ok", elapsed, served["parameters"] if served is not None else {}
            )

    def _parse(self, body: object) -> InferRequest[Array]:
        return parse_request(body, self._accepted, self._aliases)

    # -- gRPC (and REST before our routes are in place): MLServer's types --------------------
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        # MLServer's pydantic request dumped is the plain V2 dict every other path reads.
        served = await self.predict_plain(payload.model_dump(exclude_none=True))
        return self._response(payload.id, served)

    async def predict_plain(self, body: JSONObject | Callable[[], JSONObject]) -> Served:
        """A plain V2 request dict served: what `predict` and the gRPC fast path
        (serving/grpc_fast_path.py, which reads protobuf straight into the dict) run. The
        fast path hands the reading itself, so that a request it cannot read is refused and
        counted as every other bad request is."""
        read = body if callable(body) else lambda: body
        try:
            _, served = await self._measured(lambda: self._parse(read()))
        except InfergraphError as exc:
            raise MLServerError(f"{self.name}: {exc}", status_code=status_for(exc).http) from exc
        return served

    def _response(self, request_id: str | None, served: Served) -> InferenceResponse:
        outputs = []
        for name, array in served["outputs"].items():
            # gRPC's bytes_contents needs bytes; the REST encoder decodes them to text.
            datatype, shape, data, out_params = encode_grpc(array)
            outputs.append(
                ResponseOutput(
                    name=name,
                    datatype=datatype,
                    shape=shape,
                    data=data,
                    parameters=out_params or None,
                )
            )
        return InferenceResponse(
            id=request_id,
            model_name=self.name,
            model_version=self.version,
            outputs=outputs,
            parameters=_grpc_parameters(served["parameters"]),
        )

    # -- REST: JSON and the binary tensor extension ------------------------------------------
    async def _rest_infer(self, request: Request) -> Response:
        version = request.path_params.get("model_version")
        target = await self._version_for(version)
        if isinstance(target, Response):
            return target
        # Another version's request, on the route this one shadows, goes to that version.
        return await target.answer_rest_infer(request)

    async def _version_for(self, version: str | None) -> VersionedRest | Response:
        """The runtime of this model's that answers a request for `version` (None: the
        registry's default), as MLServer's registry picks it (`mlserver_hooks.registered`),
        or MLServer's answer where none can: 404 for a version not loaded, 400 for one still
        loading (its `ready` false, MLServer's ModelNotReady). An unversioned request stays
        with this version where the registry's default is loading or is not this kit's (as
        before versions were told apart). Without a running MLServer, this one if the version
        is its own. MLServer imports a model's implementation anew for each model it loads,
        so another version's runtime is of another class object: it is recognised by what it
        answers, not by isinstance."""
        if version is not None and version == self.version:
            return self
        found: object | None = self
        if self._attached is not None and self._attached.registry is not None:
            found = await mlserver_hooks.registered(self._attached, self.name, version)
        elif version is not None:
            found = None
        if found is self:
            return self
        usable = isinstance(found, VersionedRest) and bool(getattr(found, "ready", False))
        if usable:
            return cast("VersionedRest", found)
        if version is None:
            return self
        if found is None:  # MLServer's registry has none: its 404
            return _json_error(404, f"model '{self.name}' has no version '{version}'")
        if isinstance(found, VersionedRest):
            return _json_error(400, f"Model {self.name} with version {version} is not ready yet.")
        return _json_error(
            404, f"version '{version}' of model '{self.name}' is served by another runtime"
        )

    async def answer_rest_infer(self, request: Request) -> Response:
        """A REST infer request (JSON or binary) for this version, whichever route took it."""
        body, encodings = await request.body(), request.headers.getlist(request_body.HEADER)
        return await self._rest(
            lambda: self._decode(request_body.inflated(body, encodings), request.headers)
        )

    async def _rest_graph_step(self, request: Request) -> Response:
        """One InferenceGraph step on a carried body (see infergraph.serving.graph_step)."""
        if self._wiring is None:
            return _json_error(404, f"{self.name}: not rendered as a graph step")
        wiring = self._wiring

        async def call(feed: dict[str, Tensor], params: JSONObject) -> dict[str, Tensor]:
            # Decoded once into arrays and encoded once as /infer's JSON answers (bytes become
            # text or base64, floats their own precision's text): no MLServer request and
            # response models in between. The step reads only their names and shapes.
            step_request = {"inputs": list(feed.values()), "parameters": params}
            _, served = await self._measured(lambda: self._parse(step_request))
            entries, _ = encode_outputs(served["outputs"], lambda _: False)
            return {entry["name"]: {**entry} for entry in entries}

        try:
            encodings = request.headers.getlist(request_body.HEADER)
            body = _json_body(request_body.inflated(await request.body(), encodings))
            return _json_response(await graph_step.run_step(wiring, body, call))
        except Exception as exc:
            return self._error_response(exc)

    async def _rest_infer_raw(self, request: Request) -> Response:
        """Raw body (image bytes as application/octet-stream) as the first BYTES input."""
        body, encodings = await request.body(), request.headers.getlist(request_body.HEADER)
        params = dict(request.query_params)
        return await self._rest(
            lambda: self._decode_raw(request_body.inflated(body, encodings), params)
        )

    def _decode(self, body: bytes, headers: Mapping[str, str]) -> InferRequest[Array]:
        length = binary.header_length(headers)
        if length is not None:
            raw_input = self._raw_input()
            return InferRequest.from_binary(body, length, raw_input, self._accepted, self._aliases)
        return self._parse(_json_body(body))

    def _decode_raw(self, body: bytes, params: dict[str, str]) -> InferRequest[Array]:
        return InferRequest.from_raw(body, self._raw_input(), dict(params))

    def _raw_input(self) -> str | None:
        return next((s.name for s in self.component.inputs if s.datatype == "BYTES"), None)

    def _error_response(self, exc: Exception) -> Response:
        """The JSON error of a REST route: the caller's mistake logged in a line, a fault of
        ours logged in full."""
        if isinstance(exc, InfergraphError):
            log.info("%s: %s", self.name, exc)
        else:
            log.exception("%s: request failed", self.name)
        status, body = error_body(exc, self.name)
        response = Response(body, status.http, media_type="application/json")
        if isinstance(exc, QueueFullError):  # overload: when to try again (RFC 9110 10.2.3)
            response.headers["Retry-After"] = RETRY_AFTER_S
        return response

    async def _rest(self, parse: Callable[[], InferRequest[Array]]) -> Response:
        try:
            request, served = await self._measured(parse)
        except Exception as exc:
            return self._error_response(exc)
        entries, blobs = encode_outputs(served["outputs"], request.is_binary)
        header: JSONObject = {
            "model_name": self.name,
            "outputs": entries,
            "parameters": served["parameters"],
        }
        if self.version is not None:
            header["model_version"] = self.version
        # MLServer's id rule (1.7 handlers/dataplane.py:145-146): one is made when none came.
        request_id = request.id if request.id is not None else generate_uuid()
        header["id"] = request_id
        body, headers = http_body(header, blobs)
        response = Response(body, 200, headers=headers)
        if self._events:  # as MLServer's REST infer answers them (rest/endpoints.py:104)
            response.raw_headers.extend(self._events)
            if carried_id(request_id):
                raw_id = request_id.encode("ascii")
                response.raw_headers.extend(((b"ce-id", raw_id), (b"ce-requestid", raw_id)))
        return response

    def _event_headers(self) -> list[tuple[bytes, bytes]]:
        """The CloudEvents headers MLServer's DataPlane answers, less the two that carry the
        request id, encoded once: built and encoded for every answer they cost the identity
        node about a quarter of its server CPU a request (docs/benchmarks.md)."""
        events = self._attached.cloud_events if self._attached is not None else None
        if events is None:
            return []
        shared = response_events(events, self.settings, "")
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in shared.items()]

    def triton_config(self) -> TritonConfig:
        """Triton's model configuration (REST `/config`, gRPC `ModelConfig`). The batching
        is the runtime's, not Triton's (`max_batch_size` 0), so its limits are parameters: a
        queue bound too, where one is set, for a client sizing its concurrency."""
        parameters = {"max_rows_per_forward_pass": str(self._batching[0])}
        if self.engine.max_queue_rows is not None:
            parameters["max_queue_rows"] = str(self.engine.max_queue_rows)
        return model_config(
            self.name,
            "infergraph",
            self.component.inputs,
            self.component.outputs,
            backend=self.component.family,
            parameters=parameters,
            instances=(self.engine.instances, _instance_kind(self.component.device)),
        )

    def triton_statistics(self) -> TritonStatistics:
        """Triton's statistics of this model (REST `/stats`, gRPC `ModelStatistics`)."""
        return self.stats.as_json(self.name, self.version)

    async def _rest_config(self, request: Request) -> Response:
        """What tritonclient's `get_model_config` and perf_analyzer ask for."""
        del request
        return _json_response(self.triton_config())

    async def _rest_stats(self, request: Request) -> Response:
        """Triton's statistics (`get_inference_statistics`; perf_analyzer's server-side figures)."""
        del request
        return _json_response({"model_stats": [self.triton_statistics()]})


def _instance_kind(device: object) -> str:
    """Triton's instance kind for where the model runs (a weightless node: on the CPU)."""
    return "KIND_GPU" if getattr(device, "type", device) == "cuda" else "KIND_CPU"


async def _off_the_loop(component: Component) -> None:
    """Download, device set-up and warm-up in a worker thread, never on MLServer's loop.

    MLServer awaits `load()` on the loop that answers `/v2/health/live` (MLServer 1.7
    registry.py `_load_model`, handlers/dataplane.py `live`); Seldon v2 loads models after
    startup, under the mlserver container's livenessProbe. A load run on the loop would
    leave the probe unanswered for the whole download, and the kubelet would restart the
    container mid-download (tests/test_runtime_loading.py).

    One load at a time, as when loads ran on the loop (`load_lock.LOADING`): transformers'
    lazy module is not thread-safe, and a server hosting a detector and a classifier failed
    with `cannot import name 'AutoImageProcessor' from 'transformers'` without it.
    """

    def start() -> None:
        with LOADING:
            component.start()

    await asyncio.to_thread(start)


def _grpc_parameters(params: JSONObject) -> JSONObject:
    """V2 gRPC parameters hold bool, int64 or string only: timings (floats) travel as text."""
    return {k: repr(v) if isinstance(v, float) else v for k, v in params.items()}


def _parsed(value: object) -> float | None:
    """A number written as text ("5", as float() reads it), else None."""
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _json_body(body: bytes) -> object:
    """A JSON request body; NaN and Infinity literals read as numbers (as MLServer's parser
    did), so the component refuses a non-finite value naming its input and row.

    What orjson refuses is read again by the standard library for those literals (and for
    nesting past orjson's depth), which also reads a lone surrogate escape (`"\\ud800"`):
    valid JSON syntax, but no text any UTF-8 encoder can write. It reached a BYTES input, an
    error message or the echoed id and failed there as a 500 (review finding 4), so what
    the fallback read must encode as UTF-8 (MLServer's own parser refuses it too).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            parsed = json.loads(body)
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                "request",
                "body is not valid JSON text: it holds a lone surrogate escape (\\ud800 to "
                "\\udfff without its pair), which no UTF-8 text can hold",
            ) from None
        except ValueError:
            raise InputError("request", f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InputError("request", "the JSON body is nested too deeply") from None
        return parsed


def _json_response(body: object) -> Response:
    return Response(binary.json_bytes(body), 200, media_type="application/json")


def _json_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")
