"""Every graph rendered for KServe behaves like the local run.

Starts from the rendered manifests, not the graph file: each InferenceService's model settings
come from its predictor's MLSERVER_MODEL_* environment, read by MLServer's own
`ModelSettings`/`ModelParameters` exactly as MLServer does when its models folder holds no
model-settings.json (`mlserver/repository/repository.py`), and one real `mlserver start`
hosts them all (tiny checkpoints standing in for what KServe's storage initializer or the hub
provides). The InferenceGraph spec is executed by the router model of
`tests/engines/kserve_router.py` over real HTTP to that server. The same requests go through
the local runner's executor against the same server: outputs and the nodes that ran must match.

Where KServe differs, the test says how: the router returns the last step's body as it is, so
the client's answer carries the step protocol's `inputs` and `carry` beside the graph's
`outputs`, and `model_name` is the last step, not the graph.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from infergraph.graph.model import InferenceGraph
from infergraph.render import render
from tests.engine_cases import GRAPHS, assert_same, forced_langid, load, sweep, tiny
from tests.engines.kserve_router import Router
from tests.graph_payloads import request_for
from tests.servers import MLServerProcess, ModelHost
from tests.test_engine_seldon_v2 import OPTIONS, run_local

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_cache")]
CARRY_FIELDS = {"inputs", "carry"}


def settings_from_env(env: dict[str, str]) -> dict[str, Any]:
    """What MLServer builds from MLSERVER_MODEL_* when no model-settings.json is found."""
    from mlserver.settings import ModelParameters, ModelSettings

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        settings = ModelSettings()
        settings.parameters = ModelParameters()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    params = settings.parameters
    return {
        "name": settings.name,
        "implementation": settings.implementation_,
        "max_batch_size": settings.max_batch_size,
        "max_batch_time": settings.max_batch_time,
        "parameters": {"uri": params.uri, "extra": params.extra},
    }


@contextmanager
def served(graph: InferenceGraph, model_host: ModelHost) -> Iterator[tuple[MLServerProcess, dict]]:
    """Every rendered InferenceService loaded on the file's MLServer; yields it and the spec."""
    from infergraph.runner.repository import offline_checkpoint

    objs = render(graph, "kserve", OPTIONS)
    nodes = {n.name: n for n in graph.spec.nodes}
    written = []
    for isvc in (o for o in objs if o["kind"] == "InferenceService"):
        model = isvc["spec"]["predictor"]["model"]
        settings = settings_from_env({e["name"]: e["value"] for e in model["env"]})
        assert settings["name"] == isvc["metadata"]["name"]
        node = nodes.get(settings["parameters"]["extra"]["graph_step"]["step"])
        if node is not None:
            uri = offline_checkpoint(node, "tiny")
            if uri:  # the hub id, or /mnt/models after the storage initializer
                settings["parameters"]["uri"] = uri
        written.append(settings)
    spec = next(o for o in objs if o["kind"] == "InferenceGraph")["spec"]
    with model_host.hosting(written) as server:
        yield server, spec


def run_kserve(
    spec: dict[str, Any], server: MLServerProcess, request: dict[str, Any]
) -> tuple[dict[str, Any], int, list[str]]:
    """The router on the rendered spec; services reached at this machine's MLServer."""

    def post(
        url: str, body: bytes, headers: dict[str, str], timeout: float | None
    ) -> tuple[bytes, int]:
        host, _, path = url.removeprefix("http://").partition("/")
        model = path.split("/")[2]
        assert host == f"{model}-predictor", url  # the Standard-mode predictor Service
        # The rendered serviceClient timeout, stretched for this shared CI machine's cold
        # models (the router's own limit is what the unit tests of the model check).
        limit = max(timeout or 0, 120)
        try:
            resp = httpx.post(f"{server.url}/{path}", content=body, headers=headers, timeout=limit)
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc)) from None
        return resp.content, resp.status_code

    router = Router(spec, post)
    body, status = router.handle(json.dumps(request).encode())
    called = [url.split("/")[5] for url in router.calls]
    return json.loads(body), status, called


def node_path(graph: InferenceGraph, called: list[str]) -> list[str]:
    names = {f"{graph.name}-{n.name}": n.name for n in graph.spec.nodes}
    return [names[m] for m in called if m in names]


def check(
    graph: InferenceGraph, model_host: ModelHost, requests: list[dict[str, Any]]
) -> list[list[str]]:
    paths = []
    with served(graph, model_host) as (server, spec):
        for request in requests:
            local = run_local(graph, server, request)
            cluster, status, called = run_kserve(spec, server, request)
            assert status == 200, cluster
            assert_same(graph, local, cluster)
            path = [p for p in local["parameters"]["graph.path"].split(",") if ":" not in p]
            # Ensemble members run in parallel: the same nodes ran, in any order among them.
            assert sorted(node_path(graph, called)) == sorted(path)
            assert sorted(cluster["parameters"]["graph.path"].split(",")) == sorted(path)
            # How KServe differs: the router answers with the last step's body unchanged.
            assert set(cluster) - set(local) == CARRY_FIELDS
            assert cluster["model_name"] != local["model_name"] == graph.name
            paths.append(path)
    return paths


@pytest.mark.parametrize("path", sweep(GRAPHS), ids=lambda p: p.stem)
def test_every_graph_runs_the_same_on_kserve(path: Path, model_host: ModelHost) -> None:
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


@pytest.mark.parametrize(("language", "expected"), [("en", False), ("fr", True)])
def test_nlp_english_and_french(
    model_host: ModelHost, tmp_path: Path, language: str, expected: bool
) -> None:
    data = load("nlp")
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path, language)
    graph = tiny(data)
    paths = check(graph, model_host, [request_for(graph)])
    assert paths == [["langid", "translate", "summarize"] if expected else ["langid", "summarize"]]


def test_video_frame_without_and_with_detections_and_a_bad_frame(model_host: ModelHost) -> None:
    graph = tiny(load("video"))
    # `<node>.<key>` parameters reach only that node here too: the step route applies the rule.
    none = request_for(graph, **{"detector.threshold": 1.0})
    several = request_for(
        graph, rows=2, **{"detector.threshold": 0.0, "detector.crop_classes": "dog"}
    )
    with served(graph, model_host) as (server, spec):
        for request in (none, several):
            local = run_local(graph, server, request)
            cluster, status, called = run_kserve(spec, server, request)
            assert status == 200, cluster
            assert_same(graph, local, cluster)
            # Fed zero rows, the classifier is called and answers zero rows without running.
            assert node_path(graph, called) == ["detector", "classifier"]
        bad = copy.deepcopy(none)
        bad["inputs"][0]["data"] = ["not an image"]
        body, status, called = run_kserve(spec, server, bad)
        # A body the step cannot read is the caller's error, named, and the server stays up.
        model = spec["nodes"]["root"]["steps"][0]["serviceUrl"].split("/v2/models/")[1]
        garbled = httpx.post(f"{server.url}/v2/models/{model}", content=b"{not json", timeout=30)
        assert garbled.status_code == 400 and "not valid JSON" in garbled.json()["error"]
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
    # A Hard dependency: the Sequence stops at the failing step, whose status and message
    # (naming its model) reach the client.
    assert status == 400, body
    assert "video-detector" in json.dumps(body)
    assert called == ["video-detector"]


def test_ensemble_joined_by_a_combiner_node(model_host: ModelHost) -> None:
    data = load("ensemble")
    data["spec"]["nodes"].append({"name": "joiner", "family": "combiner", "options": {}})
    data["spec"]["graph"]["combine"] = {"node": "joiner", "tensor": "scores"}
    graph = tiny(data)
    paths = check(graph, model_host, [request_for(graph)])
    assert paths[0][-1] == "joiner"


@pytest.mark.parametrize(("language", "expected"), [("en", "summarize"), ("fr", "translate")])
def test_when_with_otherwise_runs_as_a_switch(
    model_host: ModelHost, tmp_path: Path, language: str, expected: str
) -> None:
    data = load("nlp")
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path, language)
    data["spec"]["graph"]["sequence"] = [
        {"node": "langid"},
        {
            "when": {"tensor": "langid.language", "op": "ne", "value": "en"},
            "then": {"node": "translate", "inputs": {"text": "request.text"}},
            "otherwise": {"node": "summarize", "inputs": {"text": "request.text"}},
        },
    ]
    graph = tiny(data)
    ig = next(o for o in render(graph, "kserve", OPTIONS) if o["kind"] == "InferenceGraph")
    assert [n["routerType"] for n in ig["spec"]["nodes"].values()].count("Switch") == 1
    paths = check(graph, model_host, [request_for(graph)])
    assert paths == [["langid", expected]]


def test_a_step_hands_on_fp32_outputs_in_fp32_text(model_host: ModelHost) -> None:
    """A step's body carries FP32 outputs as /infer answers them (docs/protocols.md): each in
    FP32's shortest text, which the router's float64 re-encoding keeps, never the longer text
    of its float64 widening."""
    graph = tiny(load("ensemble"))
    with served(graph, model_host) as (server, spec):
        cluster, status, _ = run_kserve(spec, server, request_for(graph))
    assert status == 200, cluster
    floats = [x for t in cluster["outputs"] if t["datatype"] == "FP32" for x in t["data"]]
    assert floats, cluster["outputs"]
    widened = [x for x in floats if float(np.float32(x)) == x and str(np.float32(x)) != repr(x)]
    assert widened == []
