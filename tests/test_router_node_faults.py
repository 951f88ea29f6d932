"""Whose fault: the local router against nodes that answer nonsense, and bodies it cannot read.

From the runner review of 2026-12 (findings 1, 2, 4, 5, 6, 7, 8). The nodes are stand-in V2
servers (aiohttp) that answer what a broken node might: the subject is the router, served as
`run_graph` serves it (`router_runner`), over real HTTP. The rule every case checks:

- a tensor or reply a node got wrong is a 502 naming that node (the KServe router and Seldon
  answer a bad gateway for a step's bad answer), never a 400 that tells the client to fix a
  request it got right, and never aiohttp's bare text/plain 500;
- a request the client got wrong is a 400 naming the field, as the runtime answers it;
- every error is the V2 `{"error": "..."}` JSON.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from infergraph.graph.plan import GraphPlan, compile_plan, load_graph
from tests.test_runner_lifecycle import SUM_QA_BODY, served, serving_router
from tests.test_runner_requests import BreaksReusedConnections

REPO = Path(__file__).resolve().parent.parent
SUM_QA = compile_plan(load_graph(REPO / "k8s/graphs/sum-qa.yaml"))
CASCADE = compile_plan(load_graph(REPO / "k8s/graphs/cascade.yaml"))
ENSEMBLE = compile_plan(load_graph(REPO / "k8s/graphs/ensemble.yaml"))
IMAGE_BODY = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]}


def well_formed(plan: GraphPlan, node: str) -> list[dict[str, Any]]:
    """Every declared output of `node`, one row, each dimension after the first 2 wide."""
    outputs = []
    for spec in plan.step(node).outputs:
        shape = [1] + [2] * (len(spec.shape) - 1)
        count = 2 ** (len(spec.shape) - 1)
        data: list[Any] = ["x"] * count if spec.datatype == "BYTES" else [0.5] * count
        outputs.append({"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data})
    return outputs


@dataclass
class Nodes:
    """Stand-in V2 servers for a plan's nodes: well-formed answers, unless `replies` holds
    `(status, body, content type)` for a node; `calls` lists the nodes called, in order."""

    plan: GraphPlan
    replies: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def infer(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        await request.read()
        self.calls.append(name)
        if name in self.replies:
            status, body, content_type = self.replies[name]
            return web.Response(status=status, body=body, content_type=content_type)
        return web.json_response({"model_name": name, "outputs": well_formed(self.plan, name)})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", self.infer)
        app.router.add_post("/v2/models/{model}/infer/raw", self.infer)
        return app

    def answer(self, node: str, reply: object, status: int = 200) -> None:
        self.replies[node] = (status, json.dumps(reply).encode(), "application/json")

    def answer_outputs(self, node: str, **changed: dict[str, Any]) -> None:
        """`node`'s well-formed answer with the named outputs' fields changed."""
        outputs = [{**t, **changed.get(t["name"], {})} for t in well_formed(self.plan, node)]
        self.answer(node, {"model_name": node, "outputs": outputs})


@asynccontextmanager
async def router_over(plan: GraphPlan) -> AsyncIterator[tuple[str, Nodes]]:
    """The real router at its base URL, every node on one stand-in server."""
    nodes = Nodes(plan)
    async with served(nodes.app()) as base:
        bases = {n.name: base for n in plan.graph.spec.nodes}
        async with serving_router(plan, bases) as url:
            yield url, nodes


@dataclass
class Answer:
    status: int
    content_type: str
    error: str


async def post(
    url: str, body: object = None, data: bytes | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """POST to the router; a non-200 answer must be the V2 error JSON, whose text is kept."""
    raw = data if data is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession() as client, client.post(url, data=raw, headers=sent) as resp:
        text = await resp.text()
        if resp.status == 200:
            return Answer(resp.status, resp.content_type, "")
        assert resp.content_type == "application/json", (resp.status, text)
        return Answer(resp.status, resp.content_type, json.loads(text)["error"])


# -- 1. a malformed 200 reply is a 502 naming the node, not aiohttp's bare 500 ---------------

SUMMARY = {"name": "summary", "datatype": "BYTES", "shape": [1], "data": ["x"]}


@pytest.mark.parametrize(
    ("reply", "field_named"),
    [
        ({"outputs": None}, "outputs"),
        ({"outputs": {"summary": 1}}, "outputs"),
        ({"outputs": [{"datatype": "BYTES", "shape": [1], "data": ["x"]}]}, "outputs[0]"),
        ({"outputs": ["summary"]}, "outputs[0]"),
        ({"parameters": [1], "outputs": [SUMMARY]}, "parameters"),
    ],
    ids=["outputs-null", "outputs-object", "output-without-name", "output-a-string", "params-list"],
)
async def test_a_malformed_node_reply_is_a_502_naming_the_node_and_field(
    reply: dict[str, Any], field_named: str
) -> None:
    async with router_over(SUM_QA) as (url, nodes):
        nodes.answer("summarize", reply)
        got = await post(f"{url}/v2/models/sum-qa/infer", SUM_QA_BODY)
    assert got.status == 502, got
    assert "graph 'sum-qa'" in got.error and "node 'summarize'" in got.error, got.error
    assert f"'{field_named}'" in got.error, got.error
    assert nodes.calls == ["summarize"], "qa is never called with a broken feed"


# -- 2. a node's bad or missing output is its fault (502), not the client's (400) ------------


async def test_a_node_output_that_is_missing_is_the_nodes_fault() -> None:
    async with router_over(SUM_QA) as (url, nodes):
        nodes.answer("summarize", {"model_name": "summarize", "outputs": []})
        got = await post(f"{url}/v2/models/sum-qa/infer", SUM_QA_BODY)
    assert got.status == 502, got
    assert "node 'summarize'" in got.error and "'summary'" in got.error, got.error
    assert "request lacks" not in got.error, got.error


@pytest.mark.parametrize(
    ("plan", "node", "changed", "named"),
    [
        (SUM_QA, "summarize", {"summary": {"shape": "1"}}, "summary"),
        (SUM_QA, "summarize", {"summary": {"shape": [1, True]}}, "summary"),
        (CASCADE, "fast", {"confidence": {"datatype": "BYTES", "data": ["high"]}}, "confidence"),
        (CASCADE, "fast", {"confidence": {"shape": [2], "data": [0.5]}}, "confidence"),
        (ENSEMBLE, "vit", {"scores": {"shape": [1, 3], "data": [0.1, 0.2, 0.7]}}, "scores"),
        (ENSEMBLE, "vit", {"scores": {"data": ["a", "b"]}}, "scores"),
    ],
    ids=["shape-a-string", "shape-a-bool", "gate-on-bytes", "gate-shape-vs-data",
         "ensemble-width", "ensemble-strings"],
)  # fmt: skip
async def test_a_bad_node_tensor_is_a_502_naming_the_node_not_a_400(
    plan: GraphPlan, node: str, changed: dict[str, dict[str, Any]], named: str
) -> None:
    body = SUM_QA_BODY if plan is SUM_QA else IMAGE_BODY
    async with router_over(plan) as (url, nodes):
        nodes.answer_outputs(node, **changed)
        got = await post(f"{url}/v2/models/{plan.graph.name}/infer", body)
    assert got.status == 502, got
    assert f"node '{node}'" in got.error and f"'{named}'" in got.error, got.error


async def test_a_cascades_well_formed_answer_still_passes() -> None:
    """The control: the stand-in's own answers go through the gate and the pass-through."""
    async with router_over(CASCADE) as (url, nodes):
        got = await post(f"{url}/v2/models/cascade/infer", IMAGE_BODY)
    assert got.status == 200, got
    assert nodes.calls == ["fast", "accurate"], nodes.calls  # confidence 0.5 < 0.8


# -- 4. a body the router cannot inflate is a 400 (413 past the limit), as the runtime says --

BODY = json.dumps(SUM_QA_BODY).encode()


@pytest.mark.parametrize(
    ("path", "data", "coding"),
    [
        ("sum-qa/infer", b"not gzip", "gzip"),
        ("sum-qa/infer", b"xxxx", "deflate"),
        ("sum-qa/infer", BODY, "compress"),
        ("sum-qa/infer", b"not gzip", "x-gzip"),
        ("sum-qa/infer/raw", b"not gzip", "gzip"),
        ("qa/infer", b"not gzip", "gzip"),
        ("qa/infer/raw", b"xxxx", "deflate"),
    ],
)
async def test_a_body_not_in_its_content_encoding_is_a_400_naming_the_header(
    path: str, data: bytes, coding: str
) -> None:
    async with router_over(SUM_QA) as (url, nodes):
        got = await post(f"{url}/v2/models/{path}", data=data, headers={"Content-Encoding": coding})
    assert got.status == 400, got
    assert "'Content-Encoding'" in got.error and coding in got.error, got.error
    assert not nodes.calls


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "gzip, identity"])
async def test_a_gzipped_body_the_runtime_reads_is_read(coding: str) -> None:
    async with router_over(SUM_QA) as (url, nodes):
        got = await post(
            f"{url}/v2/models/sum-qa/infer",
            data=gzip.compress(BODY),
            headers={"Content-Encoding": coding},
        )
    assert got.status == 200, got
    assert nodes.calls == ["summarize", "qa"]


@pytest.mark.parametrize("path", ["sum-qa/infer", "qa/infer"])
async def test_a_body_that_inflates_past_the_limit_is_a_413_json(path: str) -> None:
    bomb = gzip.compress(b" " * (257 * 2**20), compresslevel=1)
    async with router_over(SUM_QA) as (url, nodes):
        got = await post(f"{url}/v2/models/{path}", data=bomb, headers={"Content-Encoding": "gzip"})
    assert got.status == 413, got
    assert "body" in got.error and str(256 * 2**20) in got.error, got.error
    assert not nodes.calls


# -- 5. binary output of a node's malformed tensor: a 502 JSON naming the node ----------------


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"answer": {"shape": [2], "data": ["x"]}}, "answer"),
        ({"score": {"data": ["high"]}}, "score"),
    ],
    ids=["shape-vs-data", "fp32-of-strings"],
)
async def test_binary_output_of_a_bad_node_tensor_is_a_502_naming_the_node(
    changed: dict[str, dict[str, Any]], named: str
) -> None:
    (output,) = changed
    body = {**SUM_QA_BODY, "outputs": [{"name": output, "parameters": {"binary_data": True}}]}
    async with router_over(SUM_QA) as (url, nodes):
        nodes.answer_outputs("qa", **changed)
        got = await post(f"{url}/v2/models/sum-qa/infer", body)
    assert got.status == 502, got
    assert "node 'qa'" in got.error and f"'{named}'" in got.error, got.error


# -- 7. a zero-row shape must not hide data ----------------------------------------------------


async def test_a_zero_row_shape_with_data_is_a_400_naming_the_input() -> None:
    """The runtime refuses it (`shape [0] needs 0 elements but data has 1`); the router read
    only the shape, skipped every node and answered 200 with empty outputs."""
    text = {"name": "text", "datatype": "BYTES", "shape": [0], "data": ["a long document"]}
    body = {"inputs": [text, SUM_QA_BODY["inputs"][1]]}
    async with router_over(SUM_QA) as (url, nodes):
        got = await post(f"{url}/v2/models/sum-qa/infer", body)
        empty_batch = {"inputs": [{**text, "data": []}, body["inputs"][1]]}
        empty = await post(f"{url}/v2/models/sum-qa/infer", empty_batch)
    assert got.status == 400, got
    assert "input 'text'" in got.error and "shape [0]" in got.error, got.error
    assert empty.status == 200, empty  # a truly empty batch is still skipped
    assert not nodes.calls


# -- 8. a node's 4xx keeps its status and its text when the text is not JSON -----------------


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (413, "Request Entity Too Large", 413),
        (400, "Invalid HTTP request received.", 400),
        # Unavailable (a proxy's, or the runtime's full queue, batching.maxQueueRows): a retry
        # may succeed, and the caller should back off, so it stays a 503; other 5xx are 502.
        (503, "upstream connect error", 503),
        (500, "Internal Server Error", 502),
    ],
)
async def test_a_nodes_plain_text_error_keeps_its_status_and_text(
    status: int, text: str, expected: int
) -> None:
    async with router_over(SUM_QA) as (url, nodes):
        nodes.replies["summarize"] = (status, text.encode(), "text/plain")
        got = await post(f"{url}/v2/models/sum-qa/infer", SUM_QA_BODY)
    assert got.status == expected, got
    assert "node 'summarize'" in got.error and f"HTTP {status}" in got.error, got.error
    assert text in got.error, got.error


# -- 6. a reset on a reused pooled connection is sent once more --------------------------------


async def test_a_reset_on_a_reused_connection_is_sent_once_more() -> None:
    node = BreaksReusedConnections(SUM_QA, reset=True)
    server = await asyncio.start_server(node.handle, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with serving_router(SUM_QA, {n: base for n in ("summarize", "qa")}) as url:
            for attempt in range(3):
                got = await post(f"{url}/v2/models/sum-qa/infer", SUM_QA_BODY)
                assert got.status == 200, (attempt, got)
            question = {"inputs": [SUM_QA_BODY["inputs"][1]]}
            direct = await post(f"{url}/v2/models/qa/infer", question)
            assert direct.status == 200, direct
    finally:
        server.close()
        await server.wait_closed()
    assert node.broken >= 2, "the pooled connections were reused, and reset"
    assert node.answered == 2 * 3 + 1, "each node call reached a model exactly once"


async def test_a_node_that_refuses_connections_is_not_retried_but_unreachable() -> None:
    """`ClientConnectorError` (nothing listens) is no reset of a reused connection: aiohttp
    does not send it again either, and the graph answers at once, naming the node."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    bases = {n: f"http://127.0.0.1:{port}" for n in ("summarize", "qa")}
    async with serving_router(SUM_QA, bases) as url:
        got = await post(f"{url}/v2/models/sum-qa/infer", SUM_QA_BODY)
    assert got.status == 502, got
    assert "node 'summarize'" in got.error and "unreachable" in got.error, got.error
