"""Every shipped graph end to end through the embedded runner: real MLServer, tiny checkpoints.

Checkpoints are the real architectures with small configs and random weights,
built by the same offline path `infergraph serve --offline` uses.
"""

from __future__ import annotations

import asyncio
import copy
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp.test_utils import TestServer

from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import parse_graph
from infergraph.runner.local import RunningGraph, run_graph
from infergraph.runner.router import build_app
from tests.engine_cases import forced_langid
from tests.graph_payloads import request_for

REPO = Path(__file__).resolve().parent.parent
GRAPHS = sorted((REPO / "k8s" / "graphs").glob("*.yaml"))
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_cache")]


def _serve(graph: InferenceGraph) -> AbstractAsyncContextManager[RunningGraph]:
    return run_graph(graph, offline=True, offline_scale="tiny", startup_timeout=300)


async def _post(url: str, body: dict[str, Any], timeout: float = 120) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.post(url, json=body)


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url)


def _outputs(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in resp.json()["outputs"]}


def _tiny(path: Path) -> InferenceGraph:
    """The shipped graph, with the one setting that depends on checkpoint size made tiny."""
    data = yaml.safe_load(path.read_text())
    for node in data["spec"]["nodes"]:
        if node["family"] == "image-preprocessing":
            node["options"]["size"] = 32  # the tiny classifiers take 32 x 32 pixels
    return parse_graph(data)


async def _assert_graph_answers(rg: RunningGraph, resp: httpx.Response) -> None:
    """What every graph's answer holds: tensors, the path it took and its timings."""
    graph = rg.graph
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_name"] == graph.name
    assert body["outputs"], "a graph always answers with tensors"
    for out in body["outputs"]:
        assert {"name", "datatype", "shape", "data"} <= set(out)
    params = body["parameters"]
    ran = params["graph.path"].split(",")
    assert ran and all(
        n in {x.name for x in graph.spec.nodes} or n.startswith("combine") for n in ran
    )
    assert params["graph.total_ms"] > 0
    first = ran[0]
    assert f"{first}.total_ms" in params or f"{first}.skipped" in params
    ready = await _get(f"{rg.url}/v2/health/ready")
    assert ready.status_code == 200


# Served once each by the tests below, which check the end-to-end answer on the way.
SERVED_BY_THEIR_OWN_TEST = {"cascade", "nlp", "video"}


@pytest.mark.parametrize(
    "path", [g for g in GRAPHS if g.stem not in SERVED_BY_THEIR_OWN_TEST], ids=lambda p: p.stem
)
def test_graph_runs_end_to_end(path: Path) -> None:
    graph = _tiny(path)

    async def scenario() -> None:
        async with _serve(graph) as rg:
            await _assert_graph_answers(rg, await _post(rg.infer_url, request_for(graph)))

    asyncio.run(scenario())


def _cascade(threshold: float) -> InferenceGraph:
    data = yaml.safe_load((REPO / "k8s/graphs/cascade.yaml").read_text())
    data["spec"]["graph"]["sequence"][1]["when"]["value"] = threshold
    return parse_graph(data)


async def _second_router(
    graph: InferenceGraph, rg: RunningGraph, body: dict[str, Any]
) -> httpx.Response:
    """Ask `graph` through a router of its own on the node servers `rg` started: the router
    applies a graph's conditions and timeouts, so graphs that differ only there share nodes."""
    bases = {node: server.base for server in rg.servers for node in server.nodes}
    router = TestServer(build_app(graph, bases))
    await router.start_server(auto_decompress=False)  # as `router_runner` serves it
    try:
        return await _post(str(router.make_url(f"/v2/models/{graph.name}/infer")), body)
    finally:
        await router.close()


def test_cascade_confident_unsure_timed_out_and_dead() -> None:
    """One cascade served: the `when` threshold and node timeouts are the router's to apply
    (the plan's), so the unsure and the impatient graphs run as second routers on the node
    servers the first run started; the dead-node case comes last, as it stops them."""

    async def scenario() -> None:
        graph = _cascade(threshold=-1.0)  # confidence is never below -1: always confident
        async with _serve(graph) as rg:
            resp = await _post(rg.infer_url, request_for(graph))
            await _assert_graph_answers(rg, resp)
            assert resp.json()["parameters"]["graph.path"] == "fast"
            assert "fast.total_ms" in resp.json()["parameters"]
            assert "accurate.total_ms" not in resp.json()["parameters"]

            unsure = _cascade(threshold=2.0)  # confidence is always below 2: always unsure
            resp = await _second_router(unsure, rg, request_for(unsure, rows=2))
            assert resp.status_code == 200, resp.text
            assert resp.json()["parameters"]["graph.path"] == "fast,accurate"
            outs = _outputs(resp)
            assert outs["label"]["shape"] == [2]
            assert outs["scores"]["shape"][0] == 2

            await _node_timeout_and_dead_node(rg)

    asyncio.run(scenario())


@pytest.mark.parametrize(("language", "translated"), [("en", False), ("fr", True)])
def test_nlp_translates_only_text_that_is_not_english(
    tmp_path: Path, language: str, translated: bool
) -> None:
    data = yaml.safe_load((REPO / "k8s/graphs/nlp.yaml").read_text())
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path, language)
    graph = parse_graph(data)

    async def scenario() -> None:
        async with _serve(graph) as rg:
            resp = await _post(rg.infer_url, request_for(graph))
            await _assert_graph_answers(rg, resp)
            path = resp.json()["parameters"]["graph.path"].split(",")
            assert path == (
                ["langid", "translate", "summarize"] if translated else ["langid", "summarize"]
            )
            assert _outputs(resp)["summary"]["shape"] == [1]

    asyncio.run(scenario())


def test_video_frame_without_person_gives_empty_result_and_errors_name_the_node() -> None:
    graph = _tiny(REPO / "k8s/graphs/video.yaml")

    async def scenario() -> None:
        async with _serve(graph) as rg:
            await _assert_graph_answers(rg, await _post(rg.infer_url, request_for(graph)))
            # No detection can score above 1.0: the classifier must be skipped, not fed [0].
            resp = await _post(rg.infer_url, request_for(graph, **{"detector.threshold": 1.0}))
            assert resp.status_code == 200, resp.text
            params = resp.json()["parameters"]
            assert params.get("classifier.skipped") == 1
            outs = _outputs(resp)
            assert outs["label"]["shape"] == [0] and outs["label"]["data"] == []
            assert outs["scores"]["shape"][0] == 0

            # Every detection kept and cropped: the classifier runs once over all the crops.
            resp = await _post(
                rg.infer_url,
                request_for(graph, **{"detector.threshold": 0.0, "detector.crop_classes": "dog"}),
            )
            assert resp.status_code == 200, resp.text
            params = resp.json()["parameters"]
            assert "classifier.skipped" not in params and params["classifier.total_ms"] > 0
            crops = _outputs(resp)["label"]["shape"][0]
            assert crops > 0 and _outputs(resp)["scores"]["shape"][0] == crops

            bad = request_for(graph)
            bad["inputs"][0]["data"] = ["bm90IGFuIGltYWdl"]  # base64 of "not an image"
            resp = await _post(rg.infer_url, bad)
            assert resp.status_code == 400
            assert "node 'detector'" in resp.text and "input 'image'" in resp.text

            resp = await _post(
                rg.infer_url,
                {"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1], "data": ["x"]}]},
            )
            assert resp.status_code == 400 and "takes inputs image" in resp.text

            resp = await _post(rg.infer_url, {"inputs": []})
            # In the runtime's words (`InferRequest.from_json`), as the router reads by it.
            assert resp.status_code == 400 and "non-empty 'inputs' list" in resp.text

            async with httpx.AsyncClient(timeout=30) as client:
                raw = await client.post(rg.infer_url, content=b"{not json")
            assert raw.status_code == 400 and "not valid JSON" in raw.text

            # Concurrent good requests all succeed after the bad ones.
            results = await asyncio.gather(
                *(_post(rg.infer_url, request_for(graph, seed=i)) for i in range(8))
            )
            assert all(r.status_code == 200 for r in results)

    asyncio.run(scenario())


async def _node_timeout_and_dead_node(rg: RunningGraph) -> None:
    """A node timeout and a dead node are named, and the graph's router stays up."""
    data = yaml.safe_load((REPO / "k8s/graphs/cascade.yaml").read_text())
    impatient = copy.deepcopy(data)
    impatient["spec"]["nodes"][0]["timeoutMs"] = 0.5  # nothing answers within half a millisecond
    graph = parse_graph(impatient)
    resp = await _second_router(graph, rg, request_for(graph))
    assert resp.status_code == 504, resp.text
    assert "node 'fast'" in resp.text and "timed out" in resp.text
    node = await _post(
        f"{rg.url}/v2/models/accurate/infer", {"inputs": [request_for(graph)["inputs"][0]]}
    )
    assert node.status_code == 200, node.text  # node endpoints sit beside the graph
    for server in rg.servers:
        server.stop()
    # A dead node is unreachable (502), asked with a timeout that a refused connection
    # cannot outlast: at 0.5 ms a loaded machine may time out (504) before it is refused.
    patient = parse_graph(copy.deepcopy(data))
    resp = await _second_router(patient, rg, request_for(patient))
    assert resp.status_code == 502, resp.text
    assert "node 'fast'" in resp.text and "unreachable" in resp.text, resp.text
    assert (await _get(f"{rg.url}/v2/health/live")).status_code == 200
    assert (await _get(f"{rg.url}/v2/health/ready")).status_code == 503
    meta = (await _get(f"{rg.url}/v2/models/cascade")).json()
    assert meta["nodes"] == ["fast", "accurate"]
    assert json.dumps(meta)
