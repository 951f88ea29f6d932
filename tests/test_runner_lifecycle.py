"""The local runner's start and its requests' lives, against stand-in V2 node servers.

From the runner review of 2026-12-07: a node server whose model failed to load answers
MLServer's server-wide ready (an empty registry is all ready: mlserver/handlers/
dataplane.py:61-63), so readiness is asked of each node's model; and a client that hangs up
stops its graph, which aiohttp does only for a runner built with `handler_cancellation`
(its TestServer turns that on, so these tests serve the router as `run_graph` does).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from infergraph.graph.plan import GraphPlan, compile_plan, load_graph
from infergraph.ports import free_port
from infergraph.runner.local import NodeServer, RunnerError, wait_ready
from infergraph.runner.router import router_runner
from tests.test_graph_validation import _routed

REPO = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def served(app: web.Application | web.AppRunner) -> AsyncIterator[str]:
    """`app` on a free local port (its own runner, or the one given), at its base URL."""
    runner = app if isinstance(app, web.AppRunner) else web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def serving_router(plan: GraphPlan, bases: dict[str, str]) -> AbstractAsyncContextManager[str]:
    """The router on the runner `run_graph` uses (`router_runner`), at its base URL."""
    return served(router_runner(plan, bases))


# A sum-qa request: a text to summarise and a question about it.
SUM_QA_BODY = {
    "inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a long text"]},
        {"name": "question", "datatype": "BYTES", "shape": [1], "data": ["what?"]},
    ]
}


def _empty_registry() -> web.Application:
    """MLServer after its one model failed to load: the server ready, the model unknown."""

    async def server_ready(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def model_ready(_: web.Request) -> web.Response:
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/v2/health/ready", server_ready)
    app.router.add_get("/v2/models/{model}/ready", model_ready)
    return app


async def test_a_server_whose_model_did_not_load_is_not_ready() -> None:
    async with served(_empty_registry()) as base:
        port = int(base.rsplit(":", 1)[1])
        server = NodeServer(["cls"], Path("."), port, free_port())
        with pytest.raises(RunnerError, match="nodes not ready after 1s: cls"):
            await wait_ready([server], timeout=1.0, poll_s=0.1)


async def test_a_client_that_hangs_up_stops_its_graph() -> None:
    """sum-qa: the client gives up while `summarize` runs; `qa` is never called."""
    calls: list[tuple[str, float]] = []
    plan = compile_plan(load_graph(REPO / "k8s/graphs/sum-qa.yaml"))

    async def infer(request: web.Request) -> web.Response:
        name = request.match_info["model"]
        calls.append((name, time.monotonic()))
        await asyncio.sleep(1.0)
        outputs = [
            {"name": spec.name, "datatype": "BYTES", "shape": [1], "data": ["x"]}
            for spec in plan.step(name).outputs
        ]
        return web.json_response({"model_name": name, "outputs": outputs})

    nodes = web.Application()
    nodes.router.add_post("/v2/models/{model}/infer", infer)
    async with served(nodes) as base:
        bases = {node: base for node in ("summarize", "qa")}
        async with serving_router(plan, bases) as url, aiohttp.ClientSession() as client:
            with pytest.raises(TimeoutError):
                await client.post(
                    f"{url}/v2/models/sum-qa/infer",
                    json=SUM_QA_BODY,
                    timeout=aiohttp.ClientTimeout(total=0.3),
                )
            await asyncio.sleep(1.5)  # summarize's answer, then qa's call were it made
    assert [name for name, _ in calls] == ["summarize"]


# cls, then a `when`: summ on its then side, tr otherwise (tests/test_graph_validation.py).
ROUTE = _routed([], otherwise={"node": "tr", "inputs": {"text": "request.text"}})


async def test_an_output_of_the_side_not_taken_is_left_out_not_refused() -> None:
    """A request naming `summary` when the gate took `tr`: the graph declares `summary`, so
    the answer leaves it out (as a model leaves out a declared output it did not produce);
    the graph's metadata and config list what it declares."""
    from infergraph.graph.plan import parse_plan

    plan = parse_plan(ROUTE)

    async def infer(request: web.Request) -> web.Response:
        name = request.match_info["model"]
        outputs = []
        for spec in plan.step(name).outputs:
            data: list[object] = [0.9] if spec.datatype == "FP32" else ["x"]
            outputs.append(
                {"name": spec.name, "datatype": spec.datatype, "shape": [1], "data": data}
            )
        return web.json_response({"model_name": name, "outputs": outputs})

    nodes = web.Application()
    nodes.router.add_post("/v2/models/{model}/infer", infer)
    text = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a text"]}
    async with served(nodes) as base:
        bases = {n: base for n in ("cls", "summ", "tr")}
        async with serving_router(plan, bases) as root, aiohttp.ClientSession() as client:
            url = f"{root}/v2/models/route"
            asked = {"inputs": [text], "outputs": [{"name": "summary"}, {"name": "translation"}]}
            async with client.post(f"{url}/infer", json=asked) as reply:
                assert reply.status == 200, await reply.text()
                answer = await reply.json()
            async with client.get(url) as reply:
                metadata = await reply.json()
            async with client.get(f"{url}/config") as reply:
                config = await reply.json()
    assert [t["name"] for t in answer["outputs"]] == ["translation"]  # confidence 0.9: tr
    declared = {t["name"]: t["datatype"] for t in metadata["outputs"]}
    assert declared == {"summary": "BYTES", "translation": "BYTES"}
    assert {o["name"] for o in config["output"]} == {"summary", "translation"}


async def test_node_calls_keep_the_nodes_timeout_and_status() -> None:
    """A node called directly through the router keeps its timeoutMs (a 504 naming it); in a
    graph, a node's 413 stays a 413 and a 404 a 404 (the KServe router relays a step's status,
    tests/engines/kserve_router.py), and a reply that is JSON but not an object is a 502
    naming the node, not the router's bare 500."""
    plan = compile_plan(load_graph(REPO / "k8s/graphs/sum-qa.yaml"))
    plan.graph.node("summarize").timeout_ms = 300
    answers: dict[str, tuple[int, bytes]] = {}

    async def infer(request: web.Request) -> web.Response:
        status, body = answers[request.match_info["model"]]
        if status == 0:
            await asyncio.sleep(2.0)
            status = 200
        return web.Response(status=status, body=body, content_type="application/json")

    nodes = web.Application()
    nodes.router.add_post("/v2/models/{model}/infer", infer)
    got: list[tuple[int, str]] = []
    async with served(nodes) as base:
        bases = {node: base for node in ("summarize", "qa")}
        async with serving_router(plan, bases) as root, aiohttp.ClientSession() as client:
            url = f"{root}/v2/models"
            answers["summarize"] = (0, b"{}")  # slower than its 300 ms
            async with client.post(f"{url}/summarize/infer", json=SUM_QA_BODY) as reply:
                got.append((reply.status, await reply.text()))
            for status, answer in [
                (413, b'{"error": "input text: too long"}'),
                (404, b'{"error": "Model summarize not found"}'),
                (500, b'["not", "an", "object"]'),
                (200, b"null"),
            ]:
                answers["summarize"] = (status, answer)
                async with client.post(f"{url}/sum-qa/infer", json=SUM_QA_BODY) as reply:
                    got.append((reply.status, await reply.text()))
    assert got[0][0] == 504 and "node 'summarize': timed out after 300 ms" in got[0][1]
    assert [status for status, _ in got[1:]] == [413, 404, 502, 502]
    assert all("node 'summarize'" in text for _, text in got), got


@pytest.mark.slow
def test_ctrl_c_while_the_nodes_load_stops_serve(tmp_path: Path) -> None:
    """`infergraph serve` answers Ctrl-C during its start (a node loading for a minute), stops
    the node server it started and exits 0; it used to ignore every signal until ready."""
    import signal
    import subprocess
    import sys

    import yaml

    from benchmarks.controlled import EXTRA_FAMILIES
    from infergraph.components.registry import EXTRA_FAMILIES_ENV

    graph = {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "slow-start"},
        "spec": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "nodes": [
                {
                    "name": "slow",
                    "family": "controlled",
                    "device": "cpu",
                    "options": {"load_ms": 60000},
                }
            ],
            "graph": {"sequence": [{"node": "slow"}]},
        },
    }
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    env = {**os.environ, EXTRA_FAMILIES_ENV: EXTRA_FAMILIES, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergraph.cli", "serve", str(path), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        children = _children(proc.pid)
        assert children, "serve started no node server"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "stopped before the graph was ready" in out, out
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], out


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in found.read_text().split()] if found.exists() else []
