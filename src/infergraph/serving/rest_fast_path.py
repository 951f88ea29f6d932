"""The runtime's REST routes answered ahead of MLServer's middleware stack, with its effects.

MLServer (1.7) wraps every REST request in FastAPI's route machinery and three middlewares
(starlette_exporter's `PrometheusMiddleware`, Starlette's `GZipMiddleware`, error and
exception handlers). For a small request that wrapping was two thirds of the server's CPU:
an identity node spent 240 of its 360 microseconds per request there (`make bench-runtimes`,
the served CPU account), most of it matching the path against every route twice, FastAPI's
dependency solving, and a gzip file object built and closed for every response.

`DirectRoutes` sits where the FastAPI app keeps its built middleware stack. A request for
one of the runtime's own routes goes straight to its endpoint; everything else goes through
MLServer's stack as before. What the middlewares did for those routes is done here the same
way: `rest_server_requests_total`, `rest_server_request_duration_seconds` and
`rest_server_requests_in_progress` with the same labels (the route's path template), gzip
for a client that accepts it above the same minimum size (at a cheaper level), and a 500 with a JSON
body for an endpoint that raises. The bypass is only installed when the stack holds nothing
else (no tracing, no CORS, no custom metric labels); otherwise requests keep MLServer's path.

A POST route (one that runs the model) stops when its client goes away: a client timeout, the
local router's node timeout or a load balancer's closes the connection, and a prediction
still awaited is cancelled, as a gRPC caller's past its deadline is, so the batcher drops its
rows before their forward pass and the runtime counts it `cancelled` (`_unless_gone`).
Requests left to MLServer's own stack (when the bypass is not installed) are not stopped:
its FastAPI route awaits the prediction whether or not anyone is still waiting for it.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from prometheus_client import Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette_exporter import PrometheusMiddleware

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
# The status starlette_exporter counts for a client that left before any answer was sent
# (starlette_exporter 0.24 middleware.py:464-467, `request.is_disconnected()`).
CLIENT_GONE = 499
_KNOWN = (
    ServerErrorMiddleware,
    PrometheusMiddleware,
    GZipMiddleware,
    ExceptionMiddleware,
)


@dataclass(frozen=True)
class Effects:
    """What MLServer's middlewares did to a request, to be done the same way here."""

    metrics: PrometheusMiddleware | None
    gzip: GZipMiddleware | None


def effects_of(stack: ASGIApp) -> Effects | None:
    """The metrics and gzip middlewares of a built stack; None if it holds anything else."""
    metrics = compress = None
    layer = stack
    while isinstance(layer, _KNOWN):
        if isinstance(layer, PrometheusMiddleware):
            custom = layer.request_labels or layer.response_labels or layer.exemplars
            if custom or layer.optional_metrics_list or not layer.filter_unhandled_paths:
                return None  # labels or observations this path does not reproduce
            metrics = layer
        elif isinstance(layer, GZipMiddleware):
            compress = layer
        layer = layer.app
    # What remains must be the router itself (the app's routes), nothing else in between.
    return Effects(metrics, compress) if hasattr(layer, "routes") else None


class DirectRoutes:
    """ASGI app: `routes` answered by their endpoints directly, anything else by `stack`."""

    def __init__(self, stack: ASGIApp, effects: Effects) -> None:
        self.stack = stack
        self.effects = effects
        self.routes: list[tuple[Route, Endpoint]] = []
        # Series children by their labels, looked up once: `labels()` costs more than `inc()`.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._in_progress: dict[str, Gauge] = {}

    def add(self, routes: Sequence[Route], endpoints: Sequence[Endpoint]) -> None:
        wanted = {id(fn): fn for fn in endpoints}
        known = {id(fn) for _, fn in self.routes}
        for route in routes:
            fn = wanted.get(id(getattr(route, "endpoint", None)))
            if fn is not None and id(fn) not in known:
                self.routes.append((route, fn))

    def remove(self, endpoints: Sequence[Endpoint]) -> None:
        """An unloaded model's routes go: its requests get MLServer's answer (404) again."""
        gone = {id(fn) for fn in endpoints}
        self.routes = [(route, fn) for route, fn in self.routes if id(fn) not in gone]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, endpoint in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    await self._answer(route, endpoint, {**scope, **child}, receive, send)
                    return
        await self.stack(scope, receive, send)

    async def _answer(
        self, route: Route, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        method = scope["method"]
        metrics = self.effects.metrics
        if metrics is not None and _skipped(metrics, scope["path"], method):
            metrics = None
        begin = time.perf_counter()
        if metrics is not None:
            in_progress = self._in_progress.get(method)
            if in_progress is None:
                in_progress = metrics.requests_in_progress.labels(method, metrics.app_name)
                self._in_progress[method] = in_progress
            in_progress.inc()
        request = Request(scope, receive)
        status = CLIENT_GONE
        try:
            if method == "POST":  # runs the model: stopped if its client leaves
                response = await _unless_gone(endpoint, request)
            else:  # a GET answers from memory: nothing to stop
                response = await _answered(endpoint, request)
            if response is not None:
                if self.effects.gzip is not None:
                    _compress(response, request, self.effects.gzip)
                await response(scope, receive, send)
                status = response.status_code
        finally:  # as PrometheusMiddleware's, whatever happened (a cancelled request too)
            if metrics is not None:
                self._in_progress[method].dec()
        if metrics is not None:
            count, duration = self._series(metrics, method, route.path, status)
            count.inc()
            duration.observe(time.perf_counter() - begin)

    def _series(
        self, metrics: PrometheusMiddleware, method: str, path: str, status: int
    ) -> tuple[Counter, Histogram]:
        """The request counter and duration histogram children of one label set."""
        key = (method, path, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, path, status, metrics.app_name)
            children = (metrics.request_count.labels(*labels), metrics.request_time.labels(*labels))
            self._children[key] = children
        return children


async def _answered(endpoint: Endpoint, request: Request) -> Response:
    """The endpoint's response; one that raises answers what ServerErrorMiddleware would."""
    try:
        return await endpoint(request)
    except Exception:
        log.exception("%s %s failed", request.method, request.scope["path"])
        body = orjson.dumps({"error": "internal server error"})
        return Response(body, 500, media_type="application/json")


async def _unless_gone(endpoint: Endpoint, request: Request) -> Response | None:
    """The endpoint's response, or None when the client closed its connection first.

    The body is read whole before the endpoint runs (Starlette's Request keeps it for the
    endpoint's own `body()`), so that the watcher's `receive()` takes no chunk of it. From
    then on uvicorn's `receive()` answers only `http.disconnect`: it waits on the request's
    message event, which `connection_lost` sets after marking the request disconnected
    (uvicorn 0.54 protocols/http/httptools_impl.py:116-126 and 567-578; h11_impl.py:107-125
    and 522-536 the same; `eof_received` returns None, httptools_impl.py:135-136, so asyncio
    closes the transport and calls `connection_lost` when the client closes). The watcher
    then cancels this task, which awaits the prediction: `ComponentRuntime._measured` counts
    it `cancelled` and the batcher drops its rows (`MicroBatcher.submit`), as for gRPC.
    """
    try:
        await request.body()
    except ClientDisconnect:  # gone while sending its body: nothing was started
        return None
    handler = asyncio.current_task()
    assert handler is not None, "an ASGI server runs each request in a task"
    watcher = asyncio.get_running_loop().create_task(_cancel_when_gone(request, handler))
    try:
        return await _answered(endpoint, request)
    except asyncio.CancelledError:
        # Ours, unless the task was also cancelled from elsewhere (the server stopping).
        gone = watcher.done() and not watcher.cancelled() and watcher.exception() is None
        if gone and handler.uncancel() == 0:
            return None
        raise
    finally:
        watcher.cancel()  # the answer came first: stop watching (it ends on its next step)


async def _cancel_when_gone(request: Request, handler: asyncio.Task[object]) -> None:
    """Cancel `handler` once `receive()` reports the client's disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass  # a message after the whole body carries nothing: wait for the next one
    handler.cancel()


def _skipped(metrics: PrometheusMiddleware, path: str, method: str) -> bool:
    """Requests PrometheusMiddleware leaves out of its series (its `skip_paths`, `_methods`)."""
    return method in metrics.skip_methods or any(p.fullmatch(path) for p in metrics.skip_paths)


# MLServer's GZipMiddleware compresses at level 9. On a 384-float embedding response (8 kB)
# level 9 took 4.5 times the CPU of level 1 for 4 % fewer bytes, as much as a row's forward
# pass: responses are compressed at level 1, which every gzip reader reads the same.
GZIP_LEVEL = 1


def _compress(response: Response, request: Request, middleware: GZipMiddleware) -> None:
    """Starlette's GZipResponder on a whole body, as it treats one (same minimum size)."""
    body = response.body
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return
    if len(body) < middleware.minimum_size or "content-encoding" in response.headers:
        return
    response.body = gzip.compress(bytes(body), compresslevel=GZIP_LEVEL)
    response.headers["Content-Encoding"] = "gzip"
    response.headers["Content-Length"] = str(len(response.body))
    response.headers.add_vary_header("Accept-Encoding")


def install(
    app: Starlette, routes: Sequence[Route], endpoints: Sequence[Endpoint]
) -> DirectRoutes | None:
    """Put `DirectRoutes` in front of `app`'s middleware stack, holding `routes`; None if the
    stack holds middleware whose effects it does not reproduce."""
    current = app.middleware_stack
    if isinstance(current, DirectRoutes):
        current.add(routes, endpoints)
        return current
    stack = current if current is not None else app.build_middleware_stack()
    effects = effects_of(stack)
    if effects is None:
        log.info("REST middleware other than metrics and gzip: keeping MLServer's path")
        return None
    direct = DirectRoutes(stack, effects)
    direct.add(routes, endpoints)
    app.middleware_stack = direct
    return direct
