"""Seldon Core v2's inference mesh as an executable model: how a request finds its Model.

Written from seldon-core v2.10.2 (the version the renderer pins), only the routing:

- Envoy (`scheduler/pkg/envoy/xdscache/resource.go`, `makeModelEnvoyRoute`,
  `makePipelineEnvoyRoute`): a route matches a path under `/v2` and the `seldon-model`
  header equal, exactly, to its route name: a Model's name, or `<pipeline>.pipeline`
  (`processor/incremental.go`, `getPipelineRouteName`). Nothing else picks the model: a
  request without the header, or naming nothing deployed, matches no route (Envoy's 404).
  Envoy adds `seldon-internal-model: <model>_<version>` upstream and answers with
  `x-seldon-route`.
- Agent (`scheduler/pkg/agent/rproxy.go`, `rewritePath`): the path's model name is replaced
  by that internal, versioned name, so MLServer, which the agent loaded the model into as
  `<model>_<version>`, answers it; the body passes through unchanged.

Here the upstream is the local runner: each Model is one of its nodes, served under the
node's name, and the pipeline route goes to its router, standing in for the pipeline
gateway. The gateway answers with the pipeline's output tensors; the per-node timings our
router adds (`<node>.total_ms`, `graph.path`) are not Seldon's, so they are dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

VERSION = 1
_MODEL_PATH = re.compile(r"(/v2/models/)([\w\-]+)(/versions/\w+)?(.*)$")


@dataclass
class Mesh:
    """Routes: `seldon-model` value -> the upstream infer URL behind it."""

    routes: dict[str, str]
    seen: list[str] = field(default_factory=list)  # the header of every routed request
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        route = request.headers.get("seldon-model")
        if not request.path.startswith("/v2") or route not in self.routes:
            return web.Response(status=404)  # no Envoy route matched
        self.seen.append(route)
        internal = f"{route}_{VERSION}"
        rewritten = _MODEL_PATH.sub(rf"\g<1>{internal}\g<4>", request.path)
        assert rewritten == f"/v2/models/{internal}/infer", rewritten
        body = await request.read()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.routes[route],
                data=body,
                headers={"Content-Type": request.content_type, "seldon-internal-model": internal},
            ) as upstream,
        ):
            raw = await upstream.read()
            if route.endswith(".pipeline") and upstream.status == 200:
                reply = json.loads(raw)
                reply.pop("parameters", None)
                raw = json.dumps(reply).encode()
            return web.Response(
                status=upstream.status,
                body=raw,
                content_type="application/json",
                headers={"x-seldon-route": f":{internal}:"},
            )


@asynccontextmanager
async def serve_mesh(routes: dict[str, str]) -> AsyncIterator[Mesh]:
    mesh = Mesh(routes)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", mesh.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    mesh.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield mesh
    finally:
        await runner.cleanup()
