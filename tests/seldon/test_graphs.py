"""Every shipped graph rendered for Seldon Core v1 behaves like the local run.

Starts from the rendered SeldonDeployment: its graph tree is walked by the executor model of
`test_components.Executor`, each unit a real process started as its container would be
(`seldon-core-microservice` with the unit's parameters, or MLServer from its environment on
`protocol: v2`). The local reference is the real local runner, `infergraph serve --offline
--offline-scale tiny`, run from the main virtualenv (MLServer and seldon-core cannot share
one) on the same graph and the same requests; both sides load the same tiny checkpoints,
built once by the local run into a shared cache. Outputs (names, datatypes, shapes, values)
and the nodes that ran must match.

How a v1 client speaks: on `protocol: seldon` the request's tensors go as `jsonData` and its
parameters as `meta.tags`; the answer's `jsonData` carries each graph output under the
`<step>.<tensor>` it comes from (the graph's `outputs:` mapping says which). On `protocol: v2`
the request is the V2 body as it is, and the answer's `outputs` are the last unit's.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import compile_plan
from infergraph.render import render
from infergraph.runner.repository import offline_checkpoint
from tests.engine_cases import GRAPHS, assert_same, forced_langid, load, sweep, tiny
from tests.graph_payloads import request_for
from tests.seldon.test_components import OPTIONS, REPO, Executor, Pool, free_port
from tests.servers import wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One offline checkpoint cache for the local run and the v1 units."""
    path = tmp_path_factory.mktemp("offline-cache")
    before = os.environ.get("INFERGRAPH_CACHE")
    os.environ["INFERGRAPH_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("INFERGRAPH_CACHE", None)
    else:
        os.environ["INFERGRAPH_CACHE"] = before


def local_answers(
    graph: InferenceGraph, bodies: list[dict[str, Any]], workdir: Path, cache: Path
) -> list[dict[str, Any]]:
    """The graph served by `infergraph serve` from the main virtualenv, asked each request."""
    exe = REPO / ".venv" / "bin" / "infergraph"
    assert exe.exists(), "the local reference needs the main virtualenv (make install)"
    graph_file = workdir / f"{graph.name}.yaml"
    graph_file.write_text(yaml.safe_dump(graph.to_manifest()))
    port = free_port()
    log = workdir / "serve.log"
    env = {**os.environ, "INFERGRAPH_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    argv = [str(exe), "serve", str(graph_file), "--offline", "--offline-scale", "tiny"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, lambda: log.read_text(errors="replace"), 600, "infergraph serve")
        answers = []
        for body in bodies:
            resp = requests.post(f"{base}/v2/models/{graph.name}/infer", json=body, timeout=300)
            assert resp.status_code == 200, resp.text
            answers.append(resp.json())
        return answers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # serve stops its MLServer on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def seldon_message(body: dict[str, Any]) -> dict[str, Any]:
    """The V2 request as a v1 client sends it: tensors as `jsonData`, parameters as tags."""
    tensors = {t["name"]: {k: v for k, v in t.items() if k != "name"} for t in body["inputs"]}
    message: dict[str, Any] = {"jsonData": tensors}
    if body.get("parameters"):
        message["meta"] = {"tags": dict(body["parameters"])}
    return message


def graph_outputs(graph: InferenceGraph, answer: dict[str, Any], protocol: str) -> dict:
    """What a v1 client reads as the graph's outputs, in the V2 response shape."""
    if protocol == "v2":
        return {"outputs": answer["outputs"]}
    carried = answer["jsonData"]
    outputs = []
    for name, sources in compile_plan(graph).outputs.items():
        found = next((carried[s.ref] for s in sources if s.ref in carried), None)
        if found is not None:
            outputs.append({"name": name, **found})
    return {"outputs": outputs}


def check(
    graph: InferenceGraph, tmp: Path, cache: Path, bodies: list[dict[str, Any]]
) -> list[list[str]]:
    """Each request locally and on v1: same outputs, same nodes run; returns the paths."""
    (tmp / "local").mkdir(parents=True)
    local = local_answers(graph, bodies, tmp / "local", cache)
    built = sorted(cache.glob("offline/*"))
    sdep = render(graph, "seldon-v1", OPTIONS)[0]
    protocol = sdep["spec"]["protocol"]
    (tmp / "units").mkdir()
    pool = Pool(tmp / "units")
    paths = []
    try:
        executor = Executor(pool, sdep)
        executor.checkpoints = {n.name: offline_checkpoint(n, "tiny") for n in graph.spec.nodes}
        assert sorted(cache.glob("offline/*")) == built, "v1 units must load the local run's"
        nodes = {n.name for n in graph.spec.nodes}
        for body, answer in zip(bodies, local, strict=True):
            executor.calls = []
            message = copy.deepcopy(body) if protocol == "v2" else seldon_message(body)
            out = executor.predict(executor.graph, message)
            assert_same(graph, answer, graph_outputs(graph, out, protocol))
            path = [p for p in answer["parameters"]["graph.path"].split(",") if ":" not in p]
            ran = [c.split("/", 1)[0] for c in executor.calls]
            # Ensemble members run in parallel locally: the same nodes, in any order.
            assert sorted(n for n in ran if n in nodes) == sorted(path), executor.calls
            paths.append(path)
    finally:
        pool.close()
    return paths


@pytest.mark.parametrize("path", sweep(GRAPHS), ids=lambda p: p.stem)
def test_every_graph_runs_the_same_on_seldon_v1(
    path: Path, tmp_path: Path, shared_cache: Path
) -> None:
    graph = tiny(yaml.safe_load(path.read_text()))
    check(graph, tmp_path, shared_cache, [request_for(graph), request_for(graph, rows=2, seed=3)])


@pytest.mark.parametrize(("threshold", "expected"), [(-1.0, ["fast"]), (2.0, ["fast", "accurate"])])
def test_cascade_confident_and_unsure(
    tmp_path: Path, shared_cache: Path, threshold: float, expected: list
) -> None:
    data = load("cascade")
    data["spec"]["graph"]["sequence"][1]["when"]["value"] = threshold
    graph = tiny(data)
    assert check(graph, tmp_path, shared_cache, [request_for(graph)]) == [expected]


@pytest.mark.sweep
def test_video_frame_without_and_with_detections(tmp_path: Path, shared_cache: Path) -> None:
    """`detector.threshold` reaches only the detector: locally as a node-prefixed request
    parameter, on v1 as the same key in `meta.tags`."""
    graph = tiny(load("video"))
    none = request_for(graph, **{"detector.threshold": 1.0})
    several = request_for(
        graph, rows=2, **{"detector.threshold": 0.0, "detector.crop_classes": "dog"}
    )
    check(graph, tmp_path, shared_cache, [none, several])


@pytest.mark.sweep
def test_ensemble_joined_by_a_combiner_node(tmp_path: Path, shared_cache: Path) -> None:
    data = load("ensemble")
    data["spec"]["nodes"].append({"name": "joiner", "family": "combiner", "options": {}})
    data["spec"]["graph"]["combine"] = {"node": "joiner", "tensor": "scores"}
    graph = tiny(data)
    paths = check(graph, tmp_path, shared_cache, [request_for(graph)])
    assert paths[0][-1] == "joiner"


@pytest.mark.sweep
@pytest.mark.parametrize(("language", "expected"), [("en", False), ("fr", True)])
def test_nlp_english_and_french(
    tmp_path: Path, shared_cache: Path, language: str, expected: bool
) -> None:
    data = load("nlp")
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path / "ckpt", language)
    graph = tiny(data)
    (path,) = check(graph, tmp_path / "run", shared_cache, [request_for(graph)])
    assert ("translate" in path) is expected
