"""What the local router does with a request, against what the engines' routers do (issue 29).

The nodes are stand-in V2 servers that record what reaches them, so these tests run without
MLServer: the subject is the router, not the runtime.

- Trace headers: Seldon v1's executor forwards every request header to its units; KServe's
  router forwards those `PROPAGATE_HEADERS` matches (ks:cmd/router/main.go:130-147). A trace
  (`traceparent`, W3C) and a request id (`x-request-id`) must reach every node.
- A request missing a declared graph input is the client's error: 400 on Seldon v2 and
  KServe (audit 2026-12, "What the real routers do with a request").
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from infergraph.errors import InputError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, compile_plan, load_graph
from infergraph.runner.router import build_app
from infergraph.tensors.request import InferRequest

REPO = Path(__file__).resolve().parent.parent
TRACE = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "x-request-id": "req-29",
}


@dataclass
class Seen:
    """Per node: the headers and body of every request that reached it."""

    headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    bodies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def node_app(graph: InferenceGraph, seen: Seen) -> web.Application:
    """A V2 server for every node: answers each declared output with one BYTES row."""
    plan = compile_plan(graph)

    async def infer(request: web.Request) -> web.Response:
        name = request.match_info["model"]
        seen.headers.setdefault(name, []).append({k.lower(): v for k, v in request.headers.items()})
        seen.bodies.setdefault(name, []).append(await request.json())
        outputs = [
            {"name": spec.name, "datatype": "BYTES", "shape": [1], "data": ["x"]}
            for spec in plan.step(name).outputs
        ]
        return web.json_response({"model_name": name, "outputs": outputs})

    async def ready(_: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_get("/v2/models/{model}/ready", ready)
    return app


@pytest.fixture
async def sum_qa() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Seen]]:
    """The shipped sum-qa graph (inputs text and question) on the local router."""
    graph = load_graph(REPO / "k8s" / "graphs" / "sum-qa.yaml")
    seen = Seen()
    nodes = TestServer(node_app(graph, seen))
    await nodes.start_server()
    base = str(nodes.make_url("")).rstrip("/")
    router = await router_client(build_app(graph, {n.name: base for n in graph.spec.nodes}))
    try:
        yield router, seen
    finally:
        await router.close()
        await nodes.close()


async def router_client(app: web.Application) -> TestClient[web.Request, web.Application]:
    """The router's app served as `router_runner` serves it: bodies reach it as sent, not
    inflated by aiohttp (TestServer would, unasked)."""
    server = TestServer(app)
    await server.start_server(auto_decompress=False)
    client = TestClient(server)
    await client.start_server()
    return client


def text(name: str) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [1], "data": ["a long document"]}


async def test_trace_headers_reach_every_node(sum_qa: tuple[TestClient, Seen]) -> None:
    router, seen = sum_qa
    body = {"inputs": [text("text"), text("question")]}
    resp = await router.post("/v2/models/sum-qa/infer", json=body, headers=TRACE)
    assert resp.status == 200, await resp.text()
    assert set(seen.headers) == {"summarize", "qa"}
    for node, calls in seen.headers.items():
        for name, value in TRACE.items():
            assert calls[-1].get(name) == value, (node, name, calls[-1])


async def test_trace_headers_reach_a_node_called_directly(sum_qa: tuple[TestClient, Seen]) -> None:
    router, seen = sum_qa
    resp = await router.post(
        "/v2/models/qa/infer", json={"inputs": [text("question")]}, headers=TRACE
    )
    assert resp.status == 200, await resp.text()
    assert {k: seen.headers["qa"][-1].get(k) for k in TRACE} == TRACE


async def test_a_request_missing_a_graph_input_is_a_400_naming_it(
    sum_qa: tuple[TestClient, Seen],
) -> None:
    router, seen = sum_qa
    resp = await router.post("/v2/models/sum-qa/infer", json={"inputs": [text("text")]})
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert "question" in error and "missing" in error, error
    assert not seen.headers, "no node is called for a request the graph cannot run"


def _runtime_error(body: dict[str, Any]) -> str:
    """What the runtime answers for `body`: `InferRequest.from_json`'s error, which the
    MLServer runtime sends as its 400 (`serving/protocol`)."""
    with pytest.raises(InputError) as refused:
        InferRequest.from_json(body, ["text", "question"])
    return str(refused.value)


@pytest.mark.parametrize(
    "body",
    [
        {"id": 7, "inputs": [text("text"), text("question")]},
        {"inputs": []},
        {"inputs": [text("text"), {**text("question"), "parameters": [1]}]},
        {"inputs": [text("text"), text("question")], "outputs": [{"name": "answer",
                                                                  "parameters": "binary"}]},
        {"inputs": [text("text"), {"name": "question", "datatype": "BYTES", "shape": [1]}]},
        {"inputs": [text("text"), {**text("question"), "datatype": 5}]},
    ],
)  # fmt: skip
async def test_a_bad_request_is_refused_as_the_runtime_refuses_it(
    sum_qa: tuple[TestClient, Seen], body: dict[str, Any]
) -> None:
    """The router read its requests with checks of its own: a numeric id was echoed, output
    parameters that are no object were ignored, messages differed from the runtime's, and an
    input without data or a string datatype was sent on for its node to refuse."""
    router, seen = sum_qa
    resp = await router.post("/v2/models/sum-qa/infer", json=body)
    assert resp.status == 400, await resp.text()
    assert _runtime_error(body) in (await resp.json())["error"]
    assert not seen.bodies, "no node is called for a request the runtime would refuse"


async def test_base64_encoded_is_for_bytes_inputs_that_name_no_content_type(
    sum_qa: tuple[TestClient, Seen],
) -> None:
    """As the runtime reads `base64_encoded` (an input's own content_type wins), and the
    protocol's parameters steer the reading of this request, not the nodes' models."""
    router, seen = sum_qa
    body = {
        "inputs": [
            {**text("text"), "data": ["YQ=="]},
            {**text("question"), "parameters": {"content_type": "str"}},
        ],
        "parameters": {"base64_encoded": True, "top_k": 2},
    }
    resp = await router.post("/v2/models/sum-qa/infer", json=body)
    assert resp.status == 200, await resp.text()
    runtime = InferRequest.from_json(body, ["text", "question"])
    qa = seen.bodies["qa"][-1]
    sent = {t["name"]: t for t in qa["inputs"]}
    assert sent["question"]["parameters"] == {"content_type": "str"}
    assert runtime.inputs["question"].tolist() == [b"a long document"]
    assert qa["parameters"] == runtime.parameters == {"top_k": 2}
    summarized = seen.bodies["summarize"][-1]["inputs"][0]
    assert summarized["parameters"] == {"content_type": "base64"}
    assert runtime.inputs["text"].tolist() == [b"a"]


class BreaksReusedConnections:
    """A V2 node that answers the first request on each connection and breaks the connection
    when a second one arrives on it, before any byte of a reply: closed (FIN), or with
    `reset` reset (RST: aiohttp raises `ClientOSError`, [Errno 104], where a clean close
    raises `ServerDisconnectedError`).

    A close is the race every pooled client meets with uvicorn (so MLServer): uvicorn closes
    an idle connection after `timeout_keep_alive`, 5 s by default (uvicorn/config.py:234, and
    MLServer's rest/server.py:97 passes no other), and a request written just as it closes
    finds the socket gone. Here it happens on every reuse, so the test is not a race.
    """

    def __init__(self, plan: GraphPlan, reset: bool = False) -> None:
        self.plan = plan
        self.reset = reset
        self.broken = 0
        self.answered = 0

    def _break(self, writer: asyncio.StreamWriter) -> None:
        self.broken += 1
        if self.reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode().split("\r\n")
                length = next(
                    int(v)
                    for k, _, v in (x.partition(": ") for x in lines)
                    if k.lower() == "content-length"
                )
                await reader.readexactly(length)
                if served:
                    self._break(writer)
                    return
                served += 1
                self.answered += 1
                name = lines[0].split("/")[3]
                outputs = [
                    {"name": spec.name, "datatype": "BYTES", "shape": [1], "data": ["x"]}
                    for spec in self.plan.step(name).outputs
                ]
                body = json.dumps({"model_name": name, "outputs": outputs}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_a_node_closing_a_kept_alive_connection_is_not_a_failed_request() -> None:
    """The demo's CI failure: `node 'accurate': unreachable: Server disconnected`, a 502 for a
    request no node refused. A request that finds its pooled connection closed before any reply
    is sent again on a fresh one: it never reached the node's model, so nothing runs twice."""
    graph = load_graph(REPO / "k8s" / "graphs" / "sum-qa.yaml")
    node = BreaksReusedConnections(compile_plan(graph))
    server = await asyncio.start_server(node.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    router = await router_client(build_app(graph, {n.name: base for n in graph.spec.nodes}))
    try:
        body = {"inputs": [text("text"), text("question")]}
        for attempt in range(3):
            resp = await router.post("/v2/models/sum-qa/infer", json=body)
            assert resp.status == 200, (attempt, await resp.text())
        direct = await router.post("/v2/models/qa/infer", json={"inputs": [text("question")]})
        assert direct.status == 200, await direct.text()
        assert node.broken >= 2, "the pooled connections were reused, and dropped"
        assert node.answered == 2 * 3 + 1, "each node call reached a model exactly once"
    finally:
        await router.close()
        server.close()
        await server.wait_closed()
