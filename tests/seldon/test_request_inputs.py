"""A Seldon Core v1 graph refuses the requests the local router refuses, and its combiner unit
runs what the request's parameters say, as the local router's combiner node does.

The local router and the KServe graph step answer a request that sends an input the graph
does not declare, or lacks one it declares, with a 400 naming the tensor before any node runs
(`graph.evaluate.request_inputs`). A v1 graph is a tree the executor walks unit by unit, and
the client's message reaches, unchanged, the units it calls first: a MODEL or TRANSFORMER
root, else the first units under a ROUTER, COMBINER or OUTPUT_TRANSFORMER root, whose
children get the message the parent was given (seldon-core v1.18.2
executor/predictor/predictor_process.go:95-113, transform-input only for MODEL/TRANSFORMER;
:289-331, every child, or the routed one, `Predict`s `msg`). Those units check it.

Each graph is rendered to a SeldonDeployment and walked by the executor model
(`tests.seldon.test_components.Executor`) over real `seldon-core-microservice` units; the
executor answers a unit's error with the unit's status and body (executor/api/rest/
client.go:240-243 `httpStatusError`, server.go:93-112 `respondWithError`). The reference is
the real local router (`infergraph serve`) asked the same requests. Every node is weightless
(identity, combiner): the proof is the graph's rules, not a model's.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import parse_graph
from infergraph.render import render
from tests.engine_cases import assert_same
from tests.seldon.test_components import OPTIONS, REPO, Executor, Pool
from tests.seldon.test_graphs import graph_outputs, seldon_message
from tests.servers import graph_server

pytestmark = pytest.mark.slow

X = {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [0.2, 0.8, 0.9, 0.1]}
Y = {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [0.6, 0.4, 0.3, 0.7]}
# An input the graphs do not declare, and bodies that lack one they do.
UNDECLARED = {"inputs": [X, Y, {**X, "name": "z"}]}
WITHOUT_Y = {"inputs": [X]}
WITHOUT_X = {"inputs": [Y]}
WHOLE = {"inputs": [X, Y]}


def weightless(name: str, topology: dict[str, Any]) -> InferenceGraph:
    """A graph over inputs `x` and `y`: identity nodes `a` (reads x) and `b` (reads y), and a
    combiner node `joiner` where `topology` combines with it."""
    nodes = [{"name": "a", "family": "identity"}, {"name": "b", "family": "identity"}]
    if "joiner" in json.dumps(topology):
        nodes.append({"name": "joiner", "family": "combiner"})
    return parse_graph(
        {
            "apiVersion": "infergraph.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": name},
            "spec": {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [-1, -1]},
                    {"name": "y", "datatype": "FP32", "shape": [-1, -1]},
                ],
                "nodes": nodes,
                "graph": topology,
            },
        }
    )


A = {"node": "a", "inputs": {"input": "request.x"}}
B = {"node": "b", "inputs": {"input": "request.y"}}
# `y` is read only on a branch this request's x never takes: a silent 200 on v1 today.
GATED = {"sequence": [A, {"when": {"tensor": "a.input", "op": "gt", "value": 100.0}, "then": B}]}
# The client's message reaches both members of a root COMBINER, and both branches of a root
# ROUTER.
MERGED = {"ensemble": [A, B], "combine": {"method": "merge"}}
ROUTED = {"when": {"tensor": "request.x", "op": "gt", "value": 100.0}, "then": A, "otherwise": B}
JOINED = {"ensemble": [A, B], "combine": {"node": "joiner", "tensor": "input"}}


def local_replies(
    graph: InferenceGraph, bodies: list[dict[str, Any]], workdir: Path, cache: Path
) -> list[tuple[int, dict[str, Any]]]:
    """Each body's status and JSON answer from the real local router (`infergraph serve`,
    run from the main virtualenv as `test_graphs.local_answers` runs it)."""
    exe = REPO / ".venv" / "bin" / "infergraph"
    assert exe.exists(), "the local reference needs the main virtualenv (make install)"
    workdir.mkdir(parents=True, exist_ok=True)
    graph_file = workdir / f"{graph.name}.yaml"
    graph_file.write_text(yaml.safe_dump(graph.to_manifest()))
    replies = []
    with graph_server(graph_file, workdir, 600, {"INFERGRAPH_CACHE": str(cache)}, exe) as base:
        for body in bodies:
            url = f"{base}/v2/models/{graph.name}/infer"
            resp = requests.post(url, json=body, timeout=300)
            replies.append((resp.status_code, resp.json()))
    return replies


def v1_replies(
    graph: InferenceGraph, bodies: list[dict[str, Any]], pool: Pool
) -> list[tuple[int, dict[str, Any], list[str]]]:
    """Each body as a v1 client sends it, answered by the rendered SeldonDeployment: status,
    JSON body and the unit calls the executor made for it."""
    sdep = render(graph, "seldon-v1", OPTIONS)[0]
    assert sdep["spec"]["protocol"] == "seldon"
    executor = Executor(pool, sdep)
    replies = []
    for body in bodies:
        executor.calls = []
        answer = executor.serve("/api/v1.0/predictions", seldon_message(copy.deepcopy(body)))
        replies.append((answer.status, json.loads(answer.body), executor.calls))
    return replies


@pytest.mark.parametrize(
    ("name", "topology", "first_units"),
    [("gated", GATED, ["a"]), ("merged", MERGED, ["a", "b"]), ("routed", ROUTED, ["a", "b"])],
)
def test_the_first_unit_refuses_what_the_local_router_refuses(
    pool: Pool,
    tmp_path: Path,
    offline_cache: Path,
    name: str,
    topology: dict[str, Any],
    first_units: list[str],
) -> None:
    """Today (before the fix) v1 answered an undeclared `z` with a 200, passing it on; a
    request without `y` with a 200 where `y` sat on a branch not taken (gated, and routed
    when x routes to `a`), else with the 400 of the unit that read it, after the units
    before it ran, naming that node's own input (`input 'input': step 'b' needs tensor
    'request.y', which the request lacks`). Now the first unit refuses each, no unit but a root
    ROUTER before it, with the local router's message (which prefixes every error with the
    graph), and the units keep serving."""
    graph = weightless(name, topology)
    bad = [UNDECLARED, WITHOUT_Y, WITHOUT_X]
    local = local_replies(graph, [*bad, WHOLE], tmp_path / "local", offline_cache)
    v1 = v1_replies(graph, [*bad, WHOLE], pool)
    for body, (status, answer), (v1_status, v1_answer, calls) in zip(
        bad, local[:-1], v1[:-1], strict=True
    ):
        sent = [t["name"] for t in body["inputs"]]
        assert status == 400, answer
        assert v1_status == 400, (sent, v1_answer, calls)
        # Refused by a first unit, after at most a root ROUTER's decision.
        *before, refusing = [call.split("/")[0] for call in calls]
        assert refusing in first_units and all(u.startswith("gate-") for u in before), calls
        info = v1_answer["status"]["info"]
        assert answer["error"] == f"graph '{graph.name}': {info}", (sent, v1_answer)
        assert v1_answer["status"]["reason"] == "MICROSERVICE_BAD_DATA"
    # The whole request is answered after them, as locally.
    (status, answer), (v1_status, v1_answer, _) = local[-1], v1[-1]
    assert (status, v1_status) == (200, 200), (answer, v1_answer)
    assert_same(graph, answer, graph_outputs(graph, v1_answer, "seldon"))
    assert all(service.process.poll() is None for service in pool.services.values())


def test_a_combiner_node_combines_the_tensor_the_graph_names_as_requested(
    pool: Pool, tmp_path: Path, offline_cache: Path
) -> None:
    """A combiner node over the members' `input` (not `scores`), asked plainly, then with
    `method: vote` for every node, for itself (`joiner.method`) and for another node only.

    Before the fix the v1 combiner read each member's `scores`, whatever the graph's
    `combine.tensor` (a 400: "ensemble member 0 did not output 'scores'; it gave input"),
    and it never saw the request's parameters (`aggregate` gets no `meta`), so it averaged
    where the local router's combiner voted."""
    graph = weightless("joined", JOINED)
    vote = [{"method": "vote"}, {"joiner.method": "vote"}]
    bodies = [WHOLE, *({**WHOLE, "parameters": p} for p in vote)]
    bodies.append({**WHOLE, "parameters": {"a.method": "vote"}})  # reaches `a` alone
    local = local_replies(graph, bodies, tmp_path / "local", offline_cache)
    v1 = v1_replies(graph, bodies, pool)
    for body, (status, answer), (v1_status, v1_answer, _) in zip(bodies, local, v1, strict=True):
        assert (status, v1_status) == (200, 200), (body.get("parameters"), answer, v1_answer)
        assert_same(graph, answer, graph_outputs(graph, v1_answer, "seldon"))
    scores = [
        next(t["data"] for t in answer["outputs"] if t["name"] == "scores") for _, answer in local
    ]
    assert scores[1] == scores[2] != scores[0] == scores[3], scores  # voting changes them
