"""The hooks this kit has into MLServer's internals (1.7), in one module.

1. Its REST route order (below).
2. Its readiness answers: MLServer answers `/v2/health/live`, `/v2/health/ready` and
   `/v2/models/<m>[/versions/<v>]/ready` with an empty body, where the Open Inference Protocol
   has `{"live": ...}`, `{"ready": ...}` and `{"name": ..., "ready": ...}`, which the KServe
   SDK reads (`response.json().get("ready")`). Routes answering the same status code as
   MLServer's own endpoints (which they call) with those bodies go ahead of MLServer's.
3. Its gRPC reading of `raw_input_contents`: MLServer unpacks each entry with `struct`, so
   one of the wrong length fails as INTERNAL before any model code runs. The entries are
   checked first and a wrong one is INVALID_ARGUMENT naming the input and the byte counts.

Route order:

MLServer (1.7) serves `/v2/models/{model_name}/infer` with a FastAPI route that parses the
body as JSON into its `InferenceRequest`, so a binary-extension body (tritonclient, the
KServe SDK, `mlserver infer -b`, Triton's raw `Inference-Header-Content-Length: 0`) is
refused before any model code runs. A model can only add routes (custom handlers), and
MLServer appends them after its own, where they never match. This module moves the
runtime's routes ahead of MLServer's generic ones once MLServer has registered them.

It relies on MLServer keeping its REST app a Starlette router in this process, i.e.
`parallel_workers: 0` (what every rendered server and the local runner set). When that
stops being true the routes are not found and a warning says so; tests/test_protocol_clients
fails loudly (binary requests answered 422) the day an MLServer release changes this.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeGuard

import mlserver.grpc.converters as mlserver_converters
import numpy as np
import orjson
from mlserver.errors import MLServerError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router

from infergraph.errors import InputError
from infergraph.serving import rest_fast_path
from infergraph.serving.binary import decode_bytes_tensor
from infergraph.serving.heap import tracked_objects
from infergraph.serving.rest_fast_path import DirectRoutes
from infergraph.serving.tensors import V2_TO_NUMPY

log = logging.getLogger(__name__)


def _is_router(obj: object) -> TypeGuard[Router]:
    """isinstance() by type(): a proxy's __class__ can warn."""
    return issubclass(type(obj), Router)


def promote(endpoints: list[Callable[..., Any]]) -> tuple[int, list[DirectRoutes]]:
    """Move the routes serving `endpoints` to the front of their router; how many moved,
    and the direct paths (`rest_fast_path`) now answering them ahead of the middleware."""
    wanted = {id(fn) for fn in endpoints}
    moved = 0
    direct: list[DirectRoutes] = []
    objects = tracked_objects()
    for obj in objects:
        if not _is_router(obj):
            continue
        routes: list[BaseRoute] = obj.routes
        ours = [r for r in routes if id(getattr(r, "endpoint", None)) in wanted]
        for route in reversed(ours):
            routes.remove(route)
            routes.insert(0, route)
            moved += 1
        if ours:
            answer_readiness_with_bodies(obj)
            direct += _bypass(objects, obj, [r for r in ours if isinstance(r, Route)], endpoints)
    return moved, direct


def _bypass(
    objects: list[object], router: Router, routes: list[Route], endpoints: list[Callable[..., Any]]
) -> list[DirectRoutes]:
    """The app owning `router` answers `routes` ahead of its middleware (rest_fast_path)."""
    apps = [
        o
        for o in objects
        if issubclass(type(o), Starlette) and getattr(o, "router", None) is router
    ]
    installed: list[DirectRoutes] = []
    for app in apps:
        try:
            direct = rest_fast_path.install(app, routes, endpoints)
        except Exception:  # an MLServer release that builds its app otherwise: keep its path
            log.warning("REST routes stay behind MLServer's middleware", exc_info=True)
            continue
        if direct is not None:
            installed.append(direct)
    return installed


async def promote_when_registered(
    name: str, endpoints: list[Callable[..., Any]], timeout: float = 60.0
) -> list[DirectRoutes]:
    """MLServer registers a model's custom handlers right after `load()`: wait, then promote.

    Returns the direct paths answering the routes, for the model's unload to leave.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        moved, direct = promote(endpoints)
        if moved >= len(endpoints):
            log.info(
                "%s: binary and JSON infer routes ahead of MLServer's%s",
                name,
                ", and of its middleware" if direct else "",
            )
            return direct
    log.warning(
        "%s: MLServer's REST routes were not found in this process (parallel_workers > 0?); "
        "binary-extension requests to /v2/models/%s/infer will be refused by MLServer",
        name,
        name,
    )
    return []


# -- readiness bodies ------------------------------------------------------------------------
# MLServer's path -> the Open Inference Protocol body for (ready, path parameters).
_READINESS: dict[str, Callable[[bool, dict[str, str]], dict[str, Any]]] = {
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


def _with_body(path: str, original: Callable[..., Awaitable[Response]]) -> Callable[..., Any]:
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
def check_raw_contents(inputs: Sequence[Any], raw_contents: Sequence[bytes]) -> None:
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
        elements = len(decode_bytes_tensor(name, raw))
        if elements != count:
            raise InputError(
                name,
                f"raw_input_contents holds {elements} BYTES elements; shape {shape} needs {count}",
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

    def checked(inputs: list[Any], raw_contents: list[bytes]) -> list[Any]:
        """MLServer's `inject_raw` after `check_raw_contents`: a bad entry is a 400, which
        MLServer's gRPC error mapping answers INVALID_ARGUMENT."""
        try:
            check_raw_contents(inputs, raw_contents)
        except InputError as exc:
            raise MLServerError(str(exc), status_code=400) from exc
        injected: list[Any] = original(inputs, raw_contents)
        return injected

    checked.checks_raw_contents = True  # type: ignore[attr-defined]
    mlserver_converters.inject_raw = checked


_install_raw_check()
