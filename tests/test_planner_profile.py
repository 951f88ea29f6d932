"""`infergraph profile` on a tiny real checkpoint: forward passes timed, then the served graph."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app
from infergraph.components.registry import family_names
from infergraph.graph.model import InferenceGraph, Node
from infergraph.graph.plan import parse_graph
from infergraph.planner.endpoints import (
    Endpoints,
    NodeClient,
    NodeTimer,
    parse_endpoints,
    request_bodies,
)
from infergraph.planner.profiler import ProfileSettings, ProfilingError, profile_graph
from infergraph.planner.profiles import GraphProfile, load_profile
from tests.engines.seldon_v2_mesh import serve_mesh
from tests.servers import app_in_thread

if TYPE_CHECKING:
    from infergraph.runner.local import RunningGraph

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

GRAPH = {
    "apiVersion": "infergraph.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "tiny-cascade"},
    "spec": {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        "nodes": [
            {
                "name": name,
                "family": "image-classification",
                "modelUri": "timm/resnet18.a1_in1k",
                "device": "cpu",
                "batching": {"maxBatchSize": 4, "maxBatchTimeMs": 2},
                "hardware": "c6i.2xlarge",
            }
            for name in ("first", "second")
        ],
        "graph": {
            "sequence": [
                {"node": "first"},
                {
                    "when": {"tensor": "first.confidence", "op": "lt", "value": 0.5},
                    "then": {"node": "second", "inputs": {"image": "request.image"}},
                },
            ]
        },
    },
}


@pytest.mark.slow
def test_profile_times_batches_hops_and_branches(tmp_path: Path):
    graph = parse_graph(GRAPH)
    seen: list[str] = []
    settings = ProfileSettings(
        repeats=5, offline=True, offline_scale="tiny", payload="synthetic:image", requests=8
    )
    profile = profile_graph(graph, settings, lambda what, n: seen.append(what))
    # batch sizes 1, 2, 4 and a server start per node, then the sample requests one at a
    # time, the bursts (as large as the batch limit: these passes take milliseconds) and loaded
    assert len(seen) == 2 * (3 + 1) + 2 * 8 + 1
    assert "sample payloads through the graph, in bursts of 4" in seen
    assert profile.settings["graph_pass_burst_size"] == 4
    assert seen[3] == "first: server start" and seen[7] == "second: server start"
    assert profile.settings["graph_pass_loaded_rps"] > 0
    assert profile.settings["graph_pass_load"] == 0.5
    for name in ("first", "second"):
        node = profile.nodes[name]
        assert [b.batch_size for b in node.batches] == [1, 2, 4]
        assert all(0 < b.p50_ms <= b.p99_ms for b in node.batches)
        assert node.hardware_class == "c6i.2xlarge" and node.device == "cpu"
        # The hop's median may be 0 on a busy machine (see the served-graph test below).
        assert node.hop_ms >= 0 and node.serving_factor > 0
        assert node.hop_p99_ms >= node.hop_ms and node.hop_p99_ms > 0 and node.serving_sigma >= 0
        # Measured; "less than a pass" is pinned against a known pass in test_planner_search
        # (here both are a few ms of GIL hand-offs, which a busy machine stretches either way).
        assert math.isfinite(node.turnaround_ms) and node.turnaround_ms >= 0
        assert node.rows == {1: 8}  # one image per request, every request reached it
        # A fresh server loads the model too; the first load in this process also imported
        # timm, which on a busy machine can take as long as a server start.
        assert node.server_start_s > node.load_s > 0 and node.first_load_s > 0
    # Random weights over 1000 classes: top-1 confidence is far below 0.5, so all go on.
    assert profile.branches == {"gate-0": 1.0} and profile.branch_samples == 16
    assert profile.ingress_ms >= 0
    assert profile.hardware["cpus"] and profile.versions["torch"]
    path = tmp_path / "profile.json"
    profile.write(path)
    loaded = load_profile(path)
    assert loaded.nodes["first"] == profile.nodes["first"]
    # The profile plans the same graph.
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text(yaml.safe_dump(GRAPH))
    result = CliRunner().invoke(
        app,
        [
            "plan",
            str(graph_file),
            "--profiles",
            str(path),
            "--slo-ms",
            "2000",
            "--rate",
            "5",
            "--duration",
            "30",
            "--out",
            str(tmp_path / "plan"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plan" / "tiny-cascade.planned.yaml").is_file()


def test_profile_refuses_a_gpu_class_measured_on_a_cpu(tmp_path: Path):
    data = {**GRAPH, "spec": {**GRAPH["spec"], "nodes": [dict(GRAPH["spec"]["nodes"][0])]}}
    data["spec"]["nodes"][0]["hardware"] = "g6.xlarge"
    data["spec"]["graph"] = {"node": "first"}
    graph_file = tmp_path / "gpu.yaml"
    graph_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(
        app,
        [
            "profile",
            str(graph_file),
            "--offline",
            "--offline-scale",
            "tiny",
            "--skip-graph",
            "--repeats",
            "5",
            "--max-batch",
            "1",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 1
    assert "runs on cpu here but its hardware class 'g6.xlarge' has GPU" in result.output
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
async def test_profile_times_a_served_graph_through_its_endpoints(tmp_path: Path):
    from infergraph.runner.local import run_graph

    graph = parse_graph(GRAPH)
    async with run_graph(graph, offline=True, offline_scale="tiny", startup_timeout=300) as running:
        seen: list[str] = []
        settings = ProfileSettings(
            repeats=5,
            payload="synthetic:image",
            requests=8,
            loaded_rps=12.5,  # the rate the deployment is to carry, instead of a busy fraction
            endpoints=Endpoints(running.url, graph.name),
        )
        profile = await asyncio.to_thread(
            profile_graph, graph, settings, lambda what, n: seen.append(what)
        )
        # A deployment cannot batch more than it was deployed with: refused before any request.
        too_big = ProfileSettings(
            repeats=5, max_batch_size=8, endpoints=Endpoints(running.url, graph.name)
        )
        with pytest.raises(ProfilingError, match="--max-batch 8 is more than its maxBatchSize 4"):
            await asyncio.to_thread(profile_graph, graph, too_big, lambda what, n: None)
        mesh_profile, mesh_seen = await _profile_through_a_seldon_v2_mesh(graph, running)
    assert len(seen) == 2 * 3 + 2 * 8 + 1  # passes, one at a time, bursts, loaded
    # Each pass timed by the server that ran it; the request's cost around it is the hop.
    assert profile.settings["pass_timing"] == "server-reported"
    assert profile.settings["graph_pass_batch_limits"] == {"first": 4, "second": 4}
    assert profile.settings["graph_pass_loaded_rps"] == 12.5
    assert profile.settings["graph_pass_load"] is None
    assert profile.hardware["endpoint"] == running.url and profile.hardware["client"]["cpus"]
    for name in ("first", "second"):
        node = profile.nodes[name]
        assert node.device == f"endpoint {running.url}/v2/models/{name}/infer"
        assert [b.batch_size for b in node.batches] == [1, 2, 4]
        assert all(0 < b.p50_ms <= b.p99_ms for b in node.batches)
        assert node.hardware_class == "c6i.2xlarge"
        # The hop is measured, its spread too; its median may be 0 on a busy machine, where
        # the per-answer wait fitted from the bursts explains all of a batched request's hop
        # in the loaded half (the simulator adds that wait back through `response_ms`).
        assert node.hop_ms >= 0 and node.hop_p99_ms > 0 and node.serving_factor > 0
        assert node.rows == {1: 8}
    assert profile.branches == {"gate-0": 1.0} and profile.branch_samples == 16
    # The same deployment behind Seldon v2's mesh: each Model picked by its header.
    assert set(mesh_seen) == {"tiny-cascade-first", "tiny-cascade-second", "tiny-cascade.pipeline"}
    assert mesh_profile.hardware["engine"] == "seldon-v2"
    assert mesh_profile.settings["pass_timing"] == "server-reported"
    for name in ("first", "second"):
        node = mesh_profile.nodes[name]
        assert node.device.endswith(f"/v2/models/tiny-cascade-{name}/infer")
        assert [b.batch_size for b in node.batches] == [1, 2, 4]
        assert node.hop_ms > 0  # its own round trip: the gateway reports no node's
    # No per-node timings come back through the pipeline: no ingress, rows or branch figures.
    assert mesh_profile.ingress_ms == 0.0 and mesh_profile.branches == {}
    assert mesh_profile.branch_samples == 0
    assert mesh_profile.settings["graph_pass_loaded_rps"] > 0


async def _profile_through_a_seldon_v2_mesh(
    graph: InferenceGraph, running: RunningGraph
) -> tuple[GraphProfile, list[str]]:
    """Profile `running` behind the mesh model, as `--engine seldon-v2`; first show that
    plain node names, which the mesh does not route, fail naming the node and the URL."""
    nodes = ("first", "second")
    routes = {f"tiny-cascade-{n}": f"{running.url}/v2/models/{n}/infer" for n in nodes}
    routes["tiny-cascade.pipeline"] = running.infer_url
    async with serve_mesh(routes) as mesh:
        plain = ProfileSettings(
            repeats=5, skip_graph=True, endpoints=Endpoints(mesh.url, graph.name)
        )
        with pytest.raises(ProfilingError, match=f"node 'first' at {mesh.url}/v2/models/first"):
            await asyncio.to_thread(profile_graph, graph, plain, lambda what, n: None)
        endpoints = parse_endpoints(mesh.url, [], graph, "seldon-v2")
        settings = ProfileSettings(
            repeats=5, payload="synthetic:image", requests=4, endpoints=endpoints
        )
        profile = await asyncio.to_thread(profile_graph, graph, settings, lambda what, n: None)
    return profile, mesh.seen


def test_profile_at_an_endpoint_that_is_down_names_the_node_and_url():
    graph = parse_graph(GRAPH)
    settings = ProfileSettings(
        repeats=5, skip_graph=True, endpoints=Endpoints("http://127.0.0.1:9", graph.name)
    )
    with pytest.raises(ProfilingError) as caught:
        profile_graph(graph, settings, lambda what, n: None)
    assert "node 'first' at http://127.0.0.1:9/v2/models/first/infer" in str(caught.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "localhost:8080"], "is not an http(s) URL"),
        (["--endpoint", "http://h:1", "--node-endpoint", "third=http://h:2"], "no node 'third'"),
        (["--endpoint", "http://h:1", "--node-endpoint", "first"], "write NODE=URL"),
        (["--node-endpoint", "first=http://h:2"], "--node-endpoint needs --endpoint"),
        (["--endpoint", "http://h:1", "--engine", "seldon"], "--engine 'seldon': choose one of"),
        (["--engine", "seldon-v2"], "--engine seldon-v2 needs --endpoint"),
        (["--load", "0.5", "--rate", "3"], "give --load or --rate for the loaded half, not both"),
        (["--rate", "0"], "--rate must be a request rate > 0 req/s, got 0.0"),
        (["--rate", "nan"], "--rate must be a request rate > 0 req/s, got nan"),
        (["--rate", "3", "--skip-graph"], "it has no meaning with --skip-graph"),
        (["--load", "1.5"], "--load must be a number from 0 to 0.95, got 1.5"),
    ],
)
def test_profile_refuses_bad_options(tmp_path: Path, args: list[str], message: str):
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text(yaml.safe_dump(GRAPH))
    out = tmp_path / "p.json"
    result = CliRunner().invoke(app, ["profile", str(graph_file), *args, "--out", str(out)])
    assert result.exit_code == 1
    assert message in result.output
    assert not out.exists()


@pytest.fixture
def plain_oip_server() -> Iterator[str]:
    """An OIP server that reports nothing of its passes (as Triton's JSON replies do not)."""
    from aiohttp import web

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.02)
        return web.json_response({"model_name": "first", "outputs": []})

    app_ = web.Application()
    app_.router.add_post("/v2/models/{model}/infer", infer)
    with app_in_thread(app_) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_server_without_pass_timings_is_timed_by_round_trip(plain_oip_server: str):
    endpoints = Endpoints("http://127.0.0.1:9", "tiny-cascade", {"first": plain_oip_server})
    timer = NodeTimer(NodeClient(endpoints.node_url("first")), {1: b"{}"})
    try:
        ms = timer(1)
    finally:
        timer.client.close()
    assert ms >= 20.0
    assert timer.timing == {"round-trip"} and timer.hop_ms() == 0.0


@pytest.mark.parametrize("family", family_names())
def test_every_family_builds_an_endpoint_request_without_its_model(family: str):
    """Profiling a deployment needs no weights here: the request comes from example inputs."""
    options = {"condition": {"op": "gt", "value": 0.5}} if family == "gate" else {}
    body = json.loads(request_bodies(Node(name="n", family=family, options=options), [3])[3])
    assert body["inputs"], family
    for tensor in body["inputs"]:
        assert tensor["datatype"] and len(tensor["data"]) == int(np.prod(tensor["shape"]))


def test_replies_without_per_node_timings_add_no_ingress():
    # A pipeline gateway (Seldon v2) answers without our router's per-node timings: its
    # client time is the whole request, nodes included, and cannot be taken as ingress.
    from infergraph.planner.profiler import summarise_pass
    from infergraph.planner.topology import Stage, Topology

    topology = Topology((Stage("m", "m"),))
    bare = [(80.0, {}), (90.0, {"inference_ms": 40.0})]
    summary = summarise_pass(topology, bare, ["m"])
    assert summary.ingress_ms == 0.0 and summary.hop_ms == {} and summary.samples == 0
    timed = (30.0, {"graph.total_ms": 27.0, "m.total_ms": 25.0, "m.inference_ms": 20.0})
    mixed = summarise_pass(topology, [*bare, timed], ["m"])
    assert mixed.ingress_ms == 5.0 and mixed.samples == 1  # 3 ms outside the router, 2 in it


def test_response_time_per_answer_is_recovered_from_hops_by_batch_size():
    # Replies made the way the simulator serves them: in a batch of b, the k-th answer to
    # leave has waited for the k - 1 before it (1.5 ms each) on top of its own log-normal
    # hop (median 2 ms). The fit finds the time per answer, and the own hop's median, again.
    from infergraph.planner.profiler import own_hops, summarise_pass
    from infergraph.planner.topology import Stage, Topology

    rng = np.random.default_rng(3)
    per_answer, replies = 1.5, []
    for _ in range(400):
        b = int(rng.integers(1, 9))
        for k in range(b):
            hop = 2.0 * float(np.exp(0.4 * rng.standard_normal())) + per_answer * k
            params = {"graph.total_ms": 60.0 + hop, "m.total_ms": 50.0 + hop,
                      "m.queue_ms": 10.0, "m.inference_ms": 40.0, "m.batch_size": b}  # fmt: skip
            replies.append((62.0 + hop, params))
    summary = summarise_pass(Topology((Stage("m", "m"),)), replies, ["m"])
    assert summary.response_ms["m"] == pytest.approx(per_answer, rel=0.05)
    # each answer's own turn is known only on average, which widens the own hop a little:
    # its median comes out near the log-normal's mean (2.17), not quite its median
    assert summary.hop_ms["m"] == pytest.approx(2.0, rel=0.1)
    # one batch size alone cannot separate the two: no per-answer time is claimed
    assert own_hops([(3.0, 1), (4.0, 1)], 0.0) == [3.0, 4.0]
    alone = summarise_pass(Topology((Stage("m", "m"),)), replies[:1] * 10, ["m"])
    assert alone.response_ms["m"] == 0.0


@pytest.mark.parametrize("engine", ["seldon-v2", "kserve"])
def test_endpoint_names_are_the_rendered_ones(engine: str):
    # The profiler asks for each node by the name the renderer deployed it under.
    from infergraph.graph.plan import load_graph
    from infergraph.render import render
    from infergraph.render.options import RenderOptions

    graph = load_graph(Path(__file__).parents[1] / "k8s/graphs/video.yaml")
    objects = render(graph, engine, RenderOptions(storage_uri="s3://bucket/infergraph"))
    if engine == "seldon-v2":
        served = {o["metadata"]["name"] for o in objects if o["kind"] == "Model"}
    else:
        served = {
            env["value"]
            for o in objects
            if o["kind"] == "InferenceService"
            for env in o["spec"]["predictor"]["model"].get("env", [])
            if env["name"] == "MLSERVER_MODEL_NAME"
        }
    nodes = [n.name for n in graph.spec.nodes]
    endpoints = parse_endpoints("http://mesh:80", [], graph, engine)
    names = {endpoints.served_name(n) for n in nodes}
    assert names <= served and len(names) == len(nodes)
    for n in nodes:
        assert endpoints.node_url(n) == f"http://mesh:80/v2/models/{endpoints.served_name(n)}/infer"
    if engine == "seldon-v2":
        pipeline = next(o for o in objects if o["kind"] == "Pipeline")["metadata"]["name"]
        assert endpoints.graph_headers() == {"seldon-model": f"{pipeline}.pipeline"}
        assert endpoints.node_headers(nodes[0]) == {"seldon-model": f"video-{nodes[0]}"}
    else:
        assert endpoints.graph_headers() == {} == endpoints.node_headers(nodes[0])


@pytest.mark.slow
def test_bursts_fit_each_nodes_timeout(monkeypatch: pytest.MonkeyPatch):
    """The graph pass's bursts are as large as every node answers well within its timeoutMs.

    A full-size cascade profiled on one CPU thread failed at its bursts with HTTP 504: a burst
    as large as ViT-Base's batch limit (16) queued longer than the node's 10 s timeout. Here a
    node whose pass of b rows takes 20 + 100 b ms: a burst of 16 (1.6 s) outlasts its 900 ms.
    """
    from benchmarks.controlled import EXTRA_FAMILIES
    from infergraph.components.registry import EXTRA_FAMILIES_ENV

    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    node = {
        "name": "slow",
        "family": "controlled",
        "device": "cpu",
        "hardware": "c6i.2xlarge",
        "batching": {"maxBatchSize": 16, "maxBatchTimeMs": 2},
        "timeoutMs": 900,
        "options": {"base_ms": 20, "per_row_ms": 100},
    }
    graph = parse_graph(
        {
            "apiVersion": "infergraph.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "bursts"},
            "spec": {
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                "nodes": [node],
                "graph": {"sequence": [{"node": "slow"}]},
            },
        }
    )
    seen: list[str] = []
    settings = ProfileSettings(
        repeats=3,
        max_seconds_per_size=1.0,
        payload="synthetic:tensor:1x4",
        requests=6,
        bursts=2,
        server_start=False,
    )
    profile = profile_graph(graph, settings, lambda what, n: seen.append(what))
    # A member of a burst may wait behind the pass its first arrival started, then ride a
    # full one: at 2 rows, 220 + 120 ms fit half the timeout (450 ms); at 4, 420 + 120 do not.
    # The passes are sleeps: a busy machine only lengthens them, and 2 keeps 110 ms to spare.
    assert profile.settings["graph_pass_burst_size"] == 2
    assert "sample payloads through the graph, in bursts of 2" in seen
    assert profile.nodes["slow"].response_ms >= 0


def test_a_loaded_hop_is_never_taken_below_the_same_nodes_hop_alone():
    """On a busy machine the per-answer wait fitted from bursts can explain all of a loaded
    reply's hop: its own hop then read 0 ms (CI on d65f1ea), and the simulator ran the node
    with no hop at all. A request's own part of the hop under load is at least what it is
    with nothing else running, so the one-at-a-time half's median is its floor."""
    from infergraph.planner.profiler import profiled_hop_ms, summarise_pass
    from infergraph.planner.topology import Stage, Topology

    topology = Topology((Stage("m", "m"),))

    def reply(hop: float, batch: int) -> tuple[float, dict[str, float]]:
        timings = {"graph.total_ms": 60.0 + hop, "m.total_ms": 50.0 + hop, "m.queue_ms": 10.0}
        return 62.0 + hop, {**timings, "m.inference_ms": 40.0, "m.batch_size": batch}

    alone = summarise_pass(topology, [reply(2.0 + 0.1 * i, 1) for i in range(10)], ["m"])
    # batches of 8 whose hops (5 ms) are less than the fitted wait (3 ms x 3.5 answers)
    loaded = summarise_pass(topology, [reply(5.0, 8)] * 40, ["m"], {"m": 3.0})
    assert loaded.hop_ms["m"] == 0.0
    # the alone half's median, and its spread with it (a raised median beside the loaded
    # p99 of 0 ms would have simulated the hop as fixed)
    median, p99 = profiled_hop_ms(loaded, alone, "m", 7.0)
    assert median == pytest.approx(2.45) and p99 == alone.hop_p99_ms["m"] and p99 > median
    # where the loaded hop is the larger, it stands; a node with no replies keeps its default
    roomy = summarise_pass(topology, [reply(9.0, 1)] * 5, ["m"])
    assert profiled_hop_ms(roomy, alone, "m", 7.0) == (9.0, 9.0)
    empty = summarise_pass(topology, [], ["m"])
    assert profiled_hop_ms(empty, empty, "m", 7.0) == (7.0, 0.0)
