"""HTTP front of the embedded runner: the graph at a V2 endpoint, nodes beside it.

Endpoints (the same shapes a Seldon Core v2 ingress serves):
  POST /v2/models/<graph>/infer      run the whole graph
  GET  /v2/models/<graph>            graph metadata (inputs, nodes)
  GET  /v2/models/<graph>/ready      ready when every node is ready
  POST /v2/models/<node>/infer       one node, proxied to its MLServer
  GET  /v2/health/live, /v2/health/ready
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from infergraph.errors import InputError, NodeError
from infergraph.graph.model import InferenceGraph
from infergraph.runner.executor import GraphExecutor

log = logging.getLogger(__name__)
GRAPH_KEY = web.AppKey("graph", InferenceGraph)
EXECUTOR_KEY = web.AppKey("executor", GraphExecutor)
NODES_KEY = web.AppKey("node_bases", dict)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


async def _infer(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    graph = request.app[GRAPH_KEY]
    if name != graph.name:
        return await _proxy_node(request, name)
    try:
        payload = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _error(f"request body is not valid JSON: {exc}", 400)
    if not isinstance(payload, dict):
        return _error("request body must be a JSON object with 'inputs'", 400)
    try:
        return _json(await request.app[EXECUTOR_KEY].infer(payload))
    except InputError as exc:
        return _error(f"graph '{graph.name}': {exc}", 400)
    except NodeError as exc:
        return _error(f"graph '{graph.name}': {exc}", exc.status_code)


async def _proxy_node(request: web.Request, name: str) -> web.Response:
    bases = request.app[NODES_KEY]
    if name not in bases:
        known = ", ".join([request.app[GRAPH_KEY].name, *bases])
        return _error(f"no graph or node named '{name}'; known: {known}", 404)
    session = request.app[SESSION_KEY]
    try:
        async with session.post(
            f"{bases[name]}/v2/models/{name}/infer",
            data=await request.read(),
            headers={"Content-Type": request.content_type or "application/json"},
        ) as resp:
            return web.Response(
                body=await resp.read(), status=resp.status, content_type="application/json"
            )
    except aiohttp.ClientError as exc:
        return _error(f"node '{name}': unreachable: {exc}", 502)


async def _nodes_ready(app: web.Application) -> list[str]:
    """Names of nodes that are not ready."""
    session = app[SESSION_KEY]

    async def check(name: str, base: str) -> str | None:
        try:
            async with session.get(
                f"{base}/v2/models/{name}/ready", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return None if resp.status == 200 else name
        except (aiohttp.ClientError, TimeoutError):
            return name

    results = await asyncio.gather(*(check(n, b) for n, b in app[NODES_KEY].items()))
    return [r for r in results if r]


async def _ready(request: web.Request) -> web.Response:
    name = request.match_info.get("model")
    if name and name != request.app[GRAPH_KEY].name:
        return _error(f"no graph named '{name}'", 404)
    missing = await _nodes_ready(request.app)
    if missing:
        return _error(f"nodes not ready: {', '.join(missing)}", 503)
    return web.Response(status=200)


async def _live(_: web.Request) -> web.Response:
    return web.Response(status=200)


async def _metadata(request: web.Request) -> web.Response:
    graph = request.app[GRAPH_KEY]
    if request.match_info["model"] != graph.name:
        return _error(f"no graph named '{request.match_info['model']}'", 404)
    return _json(
        {
            "name": graph.name,
            "platform": "infergraph",
            "inputs": [t.model_dump() for t in graph.spec.inputs],
            "nodes": [n.name for n in graph.spec.nodes],
        }
    )


def build_app(graph: InferenceGraph, node_bases: dict[str, str]) -> web.Application:
    """`node_bases` maps node -> base URL of the MLServer hosting it."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[GRAPH_KEY] = graph
    app[NODES_KEY] = node_bases

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=60)
        session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
        )
        app[SESSION_KEY] = session
        urls = {n: f"{b}/v2/models/{n}/infer" for n, b in node_bases.items()}
        app[EXECUTOR_KEY] = GraphExecutor(graph, urls, session)
        yield
        await session.close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v2/models/{model}/infer", _infer)
    app.router.add_get("/v2/models/{model}/ready", _ready)
    app.router.add_get("/v2/models/{model}", _metadata)
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    return app
