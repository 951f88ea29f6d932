"""Every graph rendered for Seldon Core v2 behaves like the local run.

Starts from the rendered manifests, not the graph file: each Model's model-settings.json as
the Seldon agent rewrites it, loaded by one real `mlserver start` (tiny checkpoints), and the
Pipeline run with v2's dataflow semantics (`tests/engines/seldon_v2.py`). The same requests
go through the local runner's executor against the same server; outputs and the path of
nodes that ran must match.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from infergraph.graph.model import InferenceGraph, Node
from infergraph.graph.plan import compile_plan
from infergraph.render import EXAMPLE_STORAGE, RenderOptions, render
from infergraph.render import seldon_v2 as v2
from infergraph.runner.executor import GraphExecutor
from infergraph.runner.repository import offline_checkpoint
from infergraph.tensors.request import InferRequest
from tests.engine_cases import GRAPHS, assert_same, forced_langid, load, sweep, tiny
from tests.engines.seldon_v2 import Dataflow, agent_rewrite, grpc_models, loaded_name
from tests.graph_payloads import request_for
from tests.servers import MLServerProcess, ModelHost

OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_cache")]


def artifact_of(node: Node | None, settings: dict[str, Any]) -> Path | None:
    """Offline, a Model's folder as the server sees it. A rendered `parameters.uri` is a hub
    id the runtime downloads: the same architecture's tiny checkpoint stands in for the hub.
    Without one the Model is artifact-backed: rclone copies `storageUri` into the folder
    beside model-settings.json and MLServer points `uri` there (MLServer 1.7.0
    mlserver/repository/load.py:25-28), so the checkpoint is returned for the folder and `uri`
    stays unset: the runtime must find it there, as on the cluster."""
    checkpoint = offline_checkpoint(node, "tiny") if node is not None else None
    if not checkpoint or node is None:
        return None
    if "uri" in settings["parameters"] or node.model_uri is None:
        settings["parameters"]["uri"] = checkpoint  # a hub id, or the family default
        return None
    return Path(checkpoint)


@contextmanager
def served(graph: InferenceGraph, model_host: ModelHost) -> Iterator[MLServerProcess]:
    """Every Model of the rendered graph loaded on the file's MLServer, settings as the agent
    writes them, artifacts in the Model's folder."""
    nodes = {n.name: n for n in graph.spec.nodes}
    written = []
    artifacts: dict[str, Path] = {}
    for model, settings in v2.model_settings(graph, OPTIONS).items():
        settings = agent_rewrite(settings)
        artifact = artifact_of(nodes.get(model.removeprefix(f"{graph.name}-")), settings)
        if artifact is not None:
            artifacts[settings["name"]] = artifact
        written.append(settings)
    with model_host.hosting(written, artifacts) as server:
        yield server


def run_local(
    graph: InferenceGraph,
    server: MLServerProcess,
    request: dict[str, Any],
    served_as: Callable[[str], str] = str,
) -> dict:
    """The local router over `server`, which hosts model `<graph>-<node>` as `served_as(it)`
    (the v2 agent's `<model>_<version>`; KServe's pods their own name)."""
    urls = {
        n.name: f"{server.url}/v2/models/{served_as(f'{graph.name}-{n.name}')}/infer"
        for n in graph.spec.nodes
    }

    async def go() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            accepted = [t.name for t in graph.spec.inputs]
            read = InferRequest.from_json_tensors(copy.deepcopy(request), accepted)
            return await GraphExecutor(graph, urls, session).infer(read)

    return asyncio.run(go())


def run_v2(graph: InferenceGraph, server: MLServerProcess, request: dict[str, Any]):
    """The REST request through the pipeline gateway and the dataflow; every Model called
    over gRPC as the model gateway calls it (`tests/engines/seldon_v2.py`)."""
    pipeline = next(o for o in render(graph, "seldon-v2", OPTIONS) if o["kind"] == "Pipeline")
    with grpc_models(server.grpc_port) as infer:
        return Dataflow(pipeline, infer).run(copy.deepcopy(request))


def node_path(graph: InferenceGraph, ran: list[str]) -> list[str]:
    nodes = {f"{graph.name}-{n.name}": n.name for n in graph.spec.nodes}
    return [nodes[m] for m in ran if m in nodes]


def check(
    graph: InferenceGraph, model_host: ModelHost, requests: list[dict[str, Any]]
) -> list[list[str]]:
    paths = []
    with served(graph, model_host) as server:
        for request in requests:
            local = run_local(graph, server, request, loaded_name)
            cluster, ran = run_v2(graph, server, request)
            assert_same(graph, local, cluster)
            path = [p for p in local["parameters"]["graph.path"].split(",") if ":" not in p]
            # Ensemble members run in parallel: the same nodes ran, in any order among them.
            assert sorted(node_path(graph, ran)) == sorted(path)
            paths.append(path)
    return paths


@pytest.mark.parametrize("path", sweep(GRAPHS), ids=lambda p: p.stem)
def test_every_graph_runs_the_same_on_seldon_v2(path: Path, model_host: ModelHost) -> None:
    graph = tiny(yaml.safe_load(path.read_text()))
    check(graph, model_host, [request_for(graph), request_for(graph, rows=2, seed=3)])


@pytest.mark.parametrize(("threshold", "expected"), [(-1.0, ["fast"]), (2.0, ["fast", "accurate"])])
def test_cascade_confident_and_unsure(
    model_host: ModelHost, threshold: float, expected: list
) -> None:
    data = load("cascade")
    data["spec"]["graph"]["sequence"][1]["when"]["value"] = threshold
    graph = tiny(data)
    assert check(graph, model_host, [request_for(graph)]) == [expected]


def test_video_frame_without_and_with_detections(model_host: ModelHost) -> None:
    graph = tiny(load("video"))
    none = request_for(graph, **{"detector.threshold": 1.0})
    several = request_for(
        graph, rows=2, **{"detector.threshold": 0.0, "detector.crop_classes": "dog"}
    )
    # Seldon v2 sends `detector.threshold` to every step as is; node-prefixed parameters are a
    # local-runner convenience, so the cluster request carries the plain key.
    for request in (none, several):
        request["parameters"] = {
            k.removeprefix("detector."): v for k, v in request["parameters"].items()
        }
    check(graph, model_host, [none, several])


def test_ensemble_joined_by_a_combiner_node(model_host: ModelHost) -> None:
    data = load("ensemble")
    data["spec"]["nodes"].append({"name": "joiner", "family": "combiner", "options": {}})
    data["spec"]["graph"]["combine"] = {"node": "joiner", "tensor": "scores"}
    graph = tiny(data)
    plan = compile_plan(graph)
    assert set(plan.step("joiner").inputs) == {"scores_0", "scores_1", "scores_2"}
    paths = check(graph, model_host, [request_for(graph)])
    assert paths[0][-1] == "joiner"


@pytest.mark.parametrize(("language", "expected"), [("en", False), ("fr", True)])
def test_nlp_english_and_french(
    model_host: ModelHost, tmp_path: Path, language: str, expected: bool
) -> None:
    data = load("nlp")
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path / "ckpt", language)
    graph = tiny(data)
    (path,) = check(graph, model_host, [request_for(graph)])
    assert ("translate" in path) is expected


def test_float_knob_through_the_gateway_as_a_number_and_as_text(model_host: ModelHost) -> None:
    """Seldon v2's REST gateway turns every number into int64 (v2.go:457-474, modelled by
    `gateway_request`): `threshold: 0.9` reaches the detector as 0 and every box is kept.
    Sent as the text "0.9" it arrives intact and the cluster answers as the local run."""
    graph = tiny(load("video"))
    local_request = request_for(
        graph, rows=2, **{"detector.threshold": 0.9, "detector.crop_classes": "dog"}
    )
    sent = {k: v for k, v in local_request.items() if k != "parameters"}
    with served(graph, model_host) as server:
        local = run_local(graph, server, local_request, loaded_name)
        as_number = {**sent, "parameters": {"threshold": 0.9, "crop_classes": "dog"}}
        truncated, _ = run_v2(graph, server, as_number)
        as_text = {**sent, "parameters": {"threshold": "0.9", "crop_classes": '["dog"]'}}
        intact, _ = run_v2(graph, server, as_text)
    assert_same(graph, local, intact)

    def boxes(answer: dict[str, Any] | None) -> int:
        assert answer is not None
        return int(next(t for t in answer["outputs"] if t["name"] == "boxes")["shape"][0])

    assert boxes(local) < boxes(truncated)  # truncation changed the answer: 0.9 became 0


def test_a_knob_for_a_downstream_step_reaches_it(model_host: ModelHost) -> None:
    """The dataflow hands a step the previous Model's response parameters
    (StreamTransforms.kt:122-126, modelled in `Dataflow.run`): `top_k` sent with the request
    reaches the classifier behind the detector because every rendered Model relays the
    request's parameters (`relay_request_parameters`)."""
    data = load("video")
    data["spec"]["outputs"]["top_k_labels"] = "classifier.top_k_labels"
    graph = tiny(data)
    local_request = request_for(
        graph, rows=2, **{"detector.threshold": 0, "detector.crop_classes": "dog", "top_k": 2}
    )
    sent = {k: v for k, v in local_request.items() if k != "parameters"}
    with served(graph, model_host) as server:
        local = run_local(graph, server, local_request, loaded_name)
        cluster, ran = run_v2(
            graph,
            server,
            {**sent, "parameters": {"threshold": 0, "crop_classes": "dog", "top_k": 2}},
        )
    assert "video-classifier" in ran
    assert_same(graph, local, cluster)
    labels = next(t for t in local["outputs"] if t["name"] == "top_k_labels")
    assert labels["shape"][1] == 2
