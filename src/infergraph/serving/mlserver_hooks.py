"""Every hook this kit has into MLServer's internals, in one module behind one version gate.

MLServer (1.7) gives a model one documented extension point beyond `load`/`predict`:
custom REST handlers (`mlserver.handlers.custom_handler`), which MLServer adds to its REST
app before it calls the model's `load()` and removes at unload. The runtime's routes are
registered that way (mlserver_runtime `_route`); `/infer/raw`, `/config`, `/stats` and
`/infer/graph` need nothing more. Everything else here reaches into MLServer's internals,
because MLServer has no extension point for it:

1. Route order. MLServer serves `/v2/models/{model_name}/infer` (and its `versions/`
   twin) with a FastAPI route that parses the body as JSON into its `InferenceRequest`, so a
   binary-extension body (tritonclient, the KServe SDK, `mlserver infer -b`, Triton's raw
   `Inference-Header-Content-Length: 0`) is refused before any model code runs (an open
   MLServer issue since 2021, SeldonIO/MLServer#324). Custom handlers are appended after
   MLServer's own routes, where those two never match: `attach` moves the model's routes to
   the front of the app's route list.
2. Readiness answers: MLServer answers `/v2/health/live`, `/v2/health/ready` and
   `/v2/models/<m>[/versions/<v>]/ready` with an empty body, where the Open Inference Protocol
   has `{"live": ...}`, `{"ready": ...}` and `{"name": ..., "ready": ...}`, which the KServe
   SDK reads (`response.json().get("ready")`). Routes answering the same status code as
   MLServer's own endpoints (which they call) with those bodies go ahead of MLServer's.
3. Triton's `ModelConfig` and `ModelStatistics` gRPC methods (serving/triton_grpc.py): MLServer
   has no custom gRPC handlers ("TODO: Add support for custom gRPC endpoints", mlserver
   server.py), so one generic handler is added to its `grpc.aio` server.
4. Its gRPC reading of `raw_input_contents`: MLServer unpacks each entry with `struct`, so
   one of the wrong length fails as INTERNAL before any model code runs. The entries are
   checked first and a wrong one is INVALID_ARGUMENT naming the input and the byte counts.
5. Its gRPC status table (`mlserver.grpc.utils.STATUS_CODE_MAPPING`) lacks 413 and the 5xx
   a component never raises: without them an oversize input reaches gRPC clients as UNKNOWN.
6. Its gRPC `ModelInfer` chain (metrics interceptor, servicer, DataPlane, pydantic both
   ways) cost four to five times the CPU of the same request over JSON: the runtime's models
   are answered by `grpc_fast_path`, which takes the place of MLServer's metrics interceptor
   on its running gRPC server and keeps its metrics, headers and status codes.
7. Its request-merging batcher, which MLServer wraps `predict` in right after constructing the
   model (the `load_batching` hook, before `load()`) when `max_batch_size > 1`: the runtime
   batches per row (serving/batcher.py), so MLServer's knobs are zeroed first.

Items 1, 3 and 6 need MLServer's REST app and gRPC server, which MLServer hands a model no
reference to. The `MLServer` of this process is the `self` of its running `start()`
coroutine (what `mlserver start` awaits): `running_mlserver` reads it from the event loop's
tasks once per load, and its `_rest_server._app` and `_grpc_server._server` are used
directly. Earlier releases of this module scanned the garbage collector's heap every 50 ms
for up to 60 s to find them; nothing scans the heap any more. This needs MLServer's servers
in the model's process, i.e. `parallel_workers: 0` (what every rendered server and the local
runner set); where there is no running MLServer (a parallel worker, a runtime driven by a
test) a warning says the protocol extras are off.

Every hook runs `require_supported_mlserver` first: an MLServer outside
`SUPPORTED_MLSERVER` fails the model's construction with an error naming both versions,
here, rather than some request failing later. To support a new MLServer release, re-read
items 1-7 against its source and widen the range (tests/test_mlserver_hooks.py pins the
hooks on the installed MLServer through a real `mlserver start`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import mlserver.grpc.converters as mlserver_converters
import numpy as np
import orjson
from fastapi import FastAPI
from mlserver.cloudevents import CloudEventsMiddleware
from mlserver.errors import MLServerError, ModelNotFound
from mlserver.grpc import utils as mlserver_grpc_utils
from mlserver.settings import ModelSettings
from mlserver.types import RequestInput
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router

import mlserver
from infergraph.errors import InfergraphError, InputError, grpc_code_for_http
from infergraph.serving import grpc_fast_path, rest_fast_path
from infergraph.serving.grpc_fast_path import GrpcModel, ModelInferFastPath, RawInput
from infergraph.serving.rest_fast_path import DirectRoutes, Endpoint
from infergraph.serving.triton_grpc import TritonModel, TritonRpcs
from infergraph.tensors.binary import count_bytes_elements
from infergraph.tensors.datatypes import V2_TO_NUMPY

if TYPE_CHECKING:
    from mlserver.server import MLServer

log = logging.getLogger(__name__)

# The MLServer releases whose internals items 1-7 were read from: (major, minor) lines.
SUPPORTED_MLSERVER: tuple[tuple[int, int], ...] = ((1, 7),)
_SUPPORTED_TEXT = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_MLSERVER)


class MLServerVersionError(InfergraphError):
    """The installed MLServer is not a release this module's hooks were checked against."""


class MLServerHookError(InfergraphError):
    """A supported MLServer did not hold what a hook reaches for: a hook here is wrong."""


def require_supported_mlserver(version: str | None = None) -> None:
    """Raise naming the installed and the supported MLServer unless this one is supported."""
    installed = mlserver.__version__ if version is None else version
    found = re.match(r"(\d+)\.(\d+)", installed)
    if found is None or (int(found[1]), int(found[2])) not in SUPPORTED_MLSERVER:
        raise MLServerVersionError(
            f"MLServer {installed} is installed; infergraph's hooks into MLServer's internals "
            f"(infergraph/serving/mlserver_hooks.py) support MLServer {_SUPPORTED_TEXT} only. "
            f"Install mlserver {_SUPPORTED_TEXT}, or re-check that module's hooks against "
            f"MLServer {installed} and add it to SUPPORTED_MLSERVER."
        )


# -- process-wide hooks (items 4, 5) and the model's batching knobs (item 7) -----------------
def install_process_hooks() -> None:
    """The gRPC status entries and the raw-contents check; gated, once per process."""
    require_supported_mlserver()
    for http in (413, 502, 503, 504):
        mlserver_grpc_utils.STATUS_CODE_MAPPING[http] = getattr(
            grpc.StatusCode, grpc_code_for_http(http)
        )
    _install_raw_check()


def switch_off_mlserver_batching(settings: ModelSettings) -> None:
    """Zero MLServer's batching knobs before its `load_batching` hook reads them (item 7)."""
    require_supported_mlserver()
    settings.max_batch_size = 1
    settings.max_batch_time = 0


# -- finding this process's MLServer (items 1, 3) ---------------------------------------------
def running_mlserver() -> MLServer | None:
    """The `MLServer` whose `start()` this process's event loop is running, if any.

    `mlserver start` awaits `MLServer.start()` until the server stops, so that coroutine is in
    the await chain of a live task for as long as models load and unload; its `self` is the
    one object holding both servers, read directly instead of searched for on the heap.
    """
    require_supported_mlserver()
    from mlserver.server import MLServer

    start = MLServer.start.__code__
    for task in asyncio.all_tasks():
        awaited: object = task.get_coro()
        while inspect.iscoroutine(awaited):
            if awaited.cr_code is start and awaited.cr_frame is not None:
                server = awaited.cr_frame.f_locals.get("self")
                if isinstance(server, MLServer):
                    return server
            awaited = awaited.cr_await
    return None


@dataclass
class Attached:
    """What `attach` did for one model, for `detach` to undo at unload."""

    app: FastAPI  # MLServer's REST app
    routes: list[Route]  # the model's routes, now first in the app's route list
    rpcs: TritonRpcs
    endpoints: Sequence[Endpoint]  # what the routes call
    direct: DirectRoutes | None  # the routes answered ahead of the middleware, if they are
    model_infer: ModelInferFastPath | None  # gRPC ModelInfer ahead of MLServer's, if it is
    # The DataPlane's CloudEvents middleware, whose response headers the REST route answers
    # as MLServer's infer does (None where the DataPlane holds other middlewares).
    cloud_events: CloudEventsMiddleware | None = None
    # MLServer's model registry (its `MultiModelRegistry`): which version answers a request.
    registry: ModelRegistry | None = None


class ModelRegistry(Protocol):
    """What `registered` reads of MLServer's `MultiModelRegistry` (1.7 registry.py:312)."""

    async def get_model(self, name: str, version: str | None = None) -> object: ...


async def registered(attached: Attached, name: str, version: str | None) -> object | None:
    """The model MLServer's registry answers `name` with: the one at `version`, else its
    default (the newest version, or the one without a version: 1.7 registry.py:97-132); None
    where it has none, MLServer's 404. Every version of a model registers the same REST
    routes and the first registered is matched, so its endpoint asks here which one the
    request is for, as MLServer's own route and the gRPC fast path do."""
    if attached.registry is None:
        return None
    try:
        return await attached.registry.get_model(name, version)
    except ModelNotFound:
        return None


class ServedModel(TritonModel, GrpcModel, Protocol):
    """What `attach` serves: the Triton RPCs' model and the gRPC fast path's."""


def attach(model: ServedModel, endpoints: Sequence[Endpoint]) -> Attached | None:
    """Put the model's routes first (item 1, with item 2) and serve its Triton RPCs (item 3).

    Called from the model's `load()`: MLServer added the model's custom handlers just before
    (1.7 registry.py `_load_model` runs its `on_model_load` hooks, then `load()`), so the
    routes are in place before the model is ready. None where no MLServer runs here.
    """
    server = running_mlserver()
    if server is None:
        log.warning(
            "%s: no MLServer is running in this process (parallel_workers > 0?): binary "
            "requests to /v2/models/%s/infer are refused by MLServer and Triton's ModelConfig "
            "and ModelStatistics RPCs answer UNIMPLEMENTED",
            model.name,
            model.name,
        )
        return None
    app: FastAPI = _held(server, "_rest_server", "_app")
    routes = promote(app.router, endpoints)
    if len(routes) < len(endpoints):
        raise MLServerHookError(
            f"{model.name}: {len(routes)} of its {len(endpoints)} custom handlers are in "
            "MLServer's REST app at load(); MLServer no longer adds them before load()"
        )
    answer_readiness_with_bodies(app.router)
    direct = _bypass_middleware(app, routes, endpoints)
    rpcs = _triton_rpcs(_held(server, "_grpc_server", "_server"))
    rpcs.models[model.name] = model
    model_infer = _model_infer(server)
    if model_infer is not None:
        model_infer.add(model)
    log.info(
        "%s: infer routes ahead of MLServer's%s, Triton RPCs on its gRPC server%s",
        model.name,
        " and of its middleware" if direct else "",
        ", gRPC ModelInfer ahead of its servicer" if model_infer else "",
    )
    events = grpc_fast_path.cloud_events(_held(server, "_data_plane"))
    registry = _held(server, "_model_registry")
    return Attached(app, routes, rpcs, endpoints, direct, model_infer, events, registry)


def _model_infer(server: MLServer) -> ModelInferFastPath | None:
    """The gRPC fast path on MLServer's server (item 6), or None where it keeps its own."""
    grpc_server = _held(server, "_grpc_server")
    data_plane = _held(server, "_data_plane")
    try:
        return grpc_fast_path.install(grpc_server, data_plane, check_raw_contents)
    except Exception:
        log.warning("gRPC ModelInfer stays on MLServer's path", exc_info=True)
        return None


def _bypass_middleware(
    app: FastAPI, routes: list[Route], endpoints: Sequence[Endpoint]
) -> DirectRoutes | None:
    """The app answers `routes` ahead of its middleware stack (`rest_fast_path`), which reads
    MLServer's middleware: a release that builds its app otherwise keeps its own path."""
    try:
        return rest_fast_path.install(app, routes, endpoints)
    except Exception:
        log.warning("REST routes stay behind MLServer's middleware", exc_info=True)
        return None


def detach(model: ServedModel, attached: Attached | None) -> None:
    """At unload: MLServer removes the model's routes itself; the direct path and the Triton
    RPCs drop them here, so the model's requests get MLServer's 404 again."""
    if attached is None:
        return
    if attached.direct is not None:
        attached.direct.remove(attached.endpoints)
    if attached.model_infer is not None:
        attached.model_infer.remove(model)
    if attached.rpcs.models.get(model.name) is model:
        del attached.rpcs.models[model.name]


def _held(owner: object, *path: str) -> Any:
    """`owner.a.b...`, or MLServerHookError naming the attribute MLServer no longer has."""
    value: Any = owner
    for name in path:
        if not hasattr(value, name):
            raise MLServerHookError(
                f"MLServer {mlserver.__version__}'s {type(value).__name__} has no {name!r} "
                f"(wanted {type(owner).__name__}.{'.'.join(path)}): a hook in "
                "infergraph/serving/mlserver_hooks.py no longer fits MLServer"
            )
        value = getattr(value, name)
    return value


_ATTACHED = "_infergraph_triton_rpcs"


def _triton_rpcs(server: grpc.aio.Server) -> TritonRpcs:
    """The one Triton handler of MLServer's gRPC server, added on first use.

    gRPC asks each generic handler of a server in turn for a method MLServer's own service
    does not know, and an asyncio gRPC server takes more handlers after it has started.
    """
    rpcs = getattr(server, _ATTACHED, None)
    if not isinstance(rpcs, TritonRpcs):
        rpcs = TritonRpcs()
        server.add_generic_rpc_handlers((rpcs,))
        setattr(server, _ATTACHED, rpcs)
    return rpcs


def promote(router: Router, endpoints: Sequence[Endpoint]) -> list[Route]:
    """Move the routes serving `endpoints` to the front of `router`; the routes moved."""
    wanted = {id(fn) for fn in endpoints}
    routes: list[BaseRoute] = router.routes
    ours = [r for r in routes if id(getattr(r, "endpoint", None)) in wanted]
    for route in reversed(ours):
        routes.remove(route)
        routes.insert(0, route)
    return [r for r in ours if isinstance(r, Route)]


# -- readiness bodies ------------------------------------------------------------------------
# MLServer's path -> the Open Inference Protocol body for (ready, path parameters).
_READINESS: dict[str, Callable[[bool, dict[str, str]], dict[str, bool | str]]] = {
    "/v2/health/live": lambda ok, _: {"live": ok},
    "/v2/health/ready": lambda ok, _: {"ready": ok},
    "/v2/models/{model_name}/ready": lambda ok, p: {"name": p["model_name"], "ready": ok},
    "/v2/models/{model_name}/versions/{model_version}/ready": lambda ok, p: {
        "name": p["model_name"],
        "version": p["model_version"],
        "ready": ok,
    },
}


def answer_readiness_with_bodies(router: Router) -> int:
    """Put a route with the protocol's JSON body ahead of each of MLServer's readiness routes.

    Idempotent (every model's load promotes); how many routes were added.
    """
    done = {getattr(getattr(r, "endpoint", None), "readiness_body", None) for r in router.routes}
    added = 0
    for route in list(router.routes):
        path = getattr(route, "path", None)
        original = getattr(route, "endpoint", None)
        if path not in _READINESS or path in done or original is None:
            continue
        router.routes.insert(0, Route(path, _with_body(path, original), methods=["GET"]))
        done.add(path)
        added += 1
    return added


def _with_body(path: str, original: Callable[..., Awaitable[Response]]) -> Endpoint:
    """MLServer's endpoint decides (200 ready, 400 not, its errors as they are); add the body."""
    body = _READINESS[path]

    async def endpoint(request: Request) -> Response:
        params = dict(request.path_params)
        answered = await original(**params)
        ok = answered.status_code == 200
        return Response(
            orjson.dumps(body(ok, params)), answered.status_code, media_type="application/json"
        )

    endpoint.readiness_body = path  # type: ignore[attr-defined]
    return endpoint


# -- gRPC raw_input_contents -------------------------------------------------------------------
def check_raw_contents(inputs: Sequence[RawInput], raw_contents: Sequence[bytes]) -> None:
    """Each raw entry must hold exactly what its input's shape and datatype need.

    As MLServer reads them, entries belong in order to the inputs sent without contents.
    """
    empty = [inp for inp in inputs if not inp.data]
    if len(raw_contents) != len(empty):
        raise InputError(
            "raw_input_contents",
            f"{len(raw_contents)} entries for {len(empty)} inputs without contents "
            f"({', '.join(repr(i.name) for i in empty) or 'none'}); send one per input",
        )
    for inp, raw in zip(empty, raw_contents, strict=True):
        _check_raw_entry(inp.name, inp.datatype, list(inp.shape), raw)


def _check_raw_entry(name: str, datatype: str, shape: list[int], raw: bytes) -> None:
    count = math.prod(shape)
    if datatype == "BYTES":
        most = max(count, 0)
        elements = count_bytes_elements(name, raw, most)  # stops one past `most`
        if elements != count:
            held = f"more than {most}" if elements > most else str(elements)
            raise InputError(
                name,
                f"raw_input_contents holds {held} BYTES elements; shape {shape} needs {count}",
            )
        return
    if datatype not in V2_TO_NUMPY:
        raise InputError(name, f"unknown datatype '{datatype}'")
    expected = count * np.dtype(V2_TO_NUMPY[datatype]).itemsize
    if len(raw) != expected:
        raise InputError(
            name,
            f"raw_input_contents holds {len(raw)} bytes; shape {shape} of {datatype} "
            f"needs {expected}",
        )


def _install_raw_check() -> None:
    """Replace the `inject_raw` MLServer's gRPC converter calls; once per process."""
    original = mlserver_converters.inject_raw
    if getattr(original, "checks_raw_contents", False):
        return

    def checked(inputs: list[RequestInput], raw_contents: list[bytes]) -> list[RequestInput]:
        """MLServer's `inject_raw` after `check_raw_contents`: a bad entry is a 400, which
        MLServer's gRPC error mapping answers INVALID_ARGUMENT."""
        try:
            check_raw_contents(inputs, raw_contents)
        except InputError as exc:
            raise MLServerError(str(exc), status_code=400) from exc
        injected: list[RequestInput] = original(inputs, raw_contents)
        return injected

    checked.checks_raw_contents = True  # type: ignore[attr-defined]
    mlserver_converters.inject_raw = checked
