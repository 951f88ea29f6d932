"""Rendered KServe graphs run end to end: the InferenceGraph spec through the router model
(`tests/engines/kserve_router.py`), each InferenceService's `graph_step.run_step` in process
on its real weightless component (identity, gate, combiner), as `test_graph_step_carry` calls
one step. A step's `InfergraphError` answers its `status_for` HTTP status, as the runtime does.

The local router (`runner/executor.py`) is the reference: the same graph and request must give
the same outputs, path and status (review of the graph steps, findings 1-4, 6, 8, 11).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergraph.errors import InfergraphError, status_for
from infergraph.graph.plan import Source, parse_graph, parse_plan
from infergraph.render import render
from infergraph.runner.local import run_graph
from infergraph.serving import graph_step
from tests.engines.kserve_router import Router
from tests.test_graph_step_carry import component_call, services
from tests.test_render_seldon import OPTIONS, graph_doc

type Body = dict[str, Any]


def ident(name: str) -> dict[str, str]:
    return {"name": name, "family": "identity"}


def text(data: list[str], shape: list[int], name: str = "text") -> Body:
    return {"name": name, "datatype": "BYTES", "shape": shape, "data": data}


def scores(name: str, shape: list[int], data: list[float]) -> Body:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def on_kserve(doc: Body, request: Body) -> tuple[int, Body, list[str]]:
    """The router's status and answer, and the steps it called (the graph's prefix cut)."""
    graph = parse_graph(doc)
    extras = services(render(graph, "kserve", OPTIONS))
    calls: dict[str, graph_step.Call] = {}

    def post(url: str, body: bytes, _headers: dict[str, str], _t: float | None) -> Any:
        step = url.split("/")[5].removeprefix(f"{graph.name}-")
        extra = extras[step]
        call = calls.setdefault(step, component_call(extra))
        wiring = graph_step.StepWiring.parse(dict(extra["graph_step"]))
        try:
            out = asyncio.run(graph_step.run_step(wiring, json.loads(body), call))
        except InfergraphError as exc:
            return json.dumps({"error": str(exc)}).encode(), status_for(exc).http
        return json.dumps(out).encode(), 200

    spec = next(o for o in render(graph, "kserve", OPTIONS) if o["kind"] == "InferenceGraph")
    router = Router(spec["spec"], post)
    answer, status = router.handle(json.dumps(request).encode())
    called = [u.split("/")[5].removeprefix(f"{graph.name}-") for u in router.calls]
    return status, json.loads(answer), called


def outputs(answer: Body) -> dict[str, list[Any]]:
    return {t["name"]: t["data"] for t in answer.get("outputs", [])}


REQUEST = {"inputs": [text(["x"], [1])]}


@pytest.mark.parametrize("otherwise", [True, False], ids=["switch", "cascade"])
def test_a_when_branch_ending_in_a_merge_ensemble_answers_the_graph_outputs(
    otherwise: bool,
) -> None:
    """Finding 1: the merge step followed the root only when the root's last item was the
    ensemble; at the end of a `when` branch the client got the router's `{step: body}` map."""
    when: Body = {
        "when": {"tensor": "a.text", "op": "eq", "value": "x"},
        "then": {"ensemble": [{"node": "b"}, {"node": "c"}], "combine": {"method": "merge"}},
    }
    nodes = [ident(n) for n in "abc"]
    if otherwise:
        when["otherwise"] = {"node": "d"}
        nodes.append(ident("d"))
    doc = graph_doc("whenmerge", nodes, {"sequence": [{"node": "a"}, when]})
    status, answer, _ = on_kserve(doc, REQUEST)
    assert status == 200, answer
    assert outputs(answer) == {"b.text": ["x"], "c.text": ["x"]}
    assert answer["parameters"]["graph.path"] == "a,b,c"
    # The other side still answers through the same final step.
    status, answer, _ = on_kserve(doc, {"inputs": [text(["y"], [1])]})
    assert status == 200, answer
    assert outputs(answer) == {"text": ["y"]}


NESTED = {
    "ensemble": [
        {"node": "a"},
        {"ensemble": [{"node": "b"}, {"node": "c"}], "combine": {"method": "merge"}},
    ],
    "combine": {"method": "merge"},
}


def test_a_merge_ensemble_nested_in_another_answers_every_members_tensors() -> None:
    """Finding 2: a member that is itself a merge ensemble answers `{b: body, c: body}`,
    which the next step refused as the client's 400."""
    status, answer, _ = on_kserve(graph_doc("nest", [ident(n) for n in "abc"], NESTED), REQUEST)
    assert status == 200, answer
    assert sorted(outputs(answer)) == ["a.text", "b.text", "c.text"]
    chained = {"sequence": [NESTED, {"node": "d", "inputs": {"text": "b.text"}}]}
    doc = graph_doc("nest2", [ident(n) for n in "abcd"], chained)
    status, answer, called = on_kserve(doc, REQUEST)
    assert status == 200, answer
    assert outputs(answer) == {"text": ["x"]} and called[-1] == "d"


# NESTED one level deeper: the names must not depend on how deep a member sits.
DEEPER = {"ensemble": [{"node": "d"}, NESTED], "combine": {"method": "merge"}}


@pytest.mark.parametrize(
    ("graph", "members"), [(NESTED, "abc"), (DEEPER, "abcd")], ids=["nested", "deeper"]
)
def test_a_nested_merge_names_each_tensor_as_inputs_reference_it(graph: Body, members: str) -> None:
    """An outer merge prefixed the inner merge's `b.text` again (`b.b.text`, `b.b.b.text` one
    level deeper), so the graph's answer named a tensor by its nesting depth, not by the
    `b.text` a downstream `inputs:` reads. Each name is its tensor's qualified reference."""
    nodes = [ident(n) for n in members]
    plan = parse_plan(graph_doc("nest", nodes, graph))
    assert sorted(plan.outputs) == sorted(f"{n}.text" for n in members)
    for name, sources in plan.outputs.items():
        # The name the graph answers is the reference a later step reads the tensor by.
        reader = {"sequence": [graph, {"node": "post", "inputs": {"text": name}}]}
        read = parse_plan(graph_doc("read", [*nodes, ident("post")], reader))
        assert read.step("post").inputs == {"text": sources}
        assert [s.ref for s in sources] == [name]
    # A pass-through after the nested merge forwards its tensors under the same names.
    chained = {"sequence": [graph, {"node": "post"}]}
    plan = parse_plan(graph_doc("post", [*nodes, ident("post")], chained))
    assert sorted(plan.outputs) == sorted(f"{n}.text" for n in members)
    assert plan.outputs["b.text"] == (Source("post", "b.text"),)


def test_the_local_router_answers_a_nested_merge_under_the_plans_names(tmp_path: Path) -> None:
    """The local router (identity nodes on a real MLServer) answers the names the plan gives,
    the ones the KServe router answers above."""
    plan = parse_plan(graph_doc("nest", [ident(n) for n in "abcd"], DEEPER))

    async def ask() -> httpx.Response:
        async with run_graph(plan, workdir=tmp_path) as running, httpx.AsyncClient() as client:
            return await client.post(running.infer_url, json=REQUEST, timeout=60)

    answer = asyncio.run(ask())
    assert answer.status_code == 200, answer.text
    assert outputs(answer.json()) == {f"{n}.text": ["x"] for n in "abcd"}


SEQUENCE = graph_doc("seq", [ident("a"), ident("b")], {"sequence": [{"node": "a"}, {"node": "b"}]})
TWO_INPUTS = graph_doc(
    "two",
    [ident("a"), ident("b")],
    {
        "sequence": [
            {"node": "a", "inputs": {"text": "request.text"}},
            {
                "when": {"tensor": "a.text", "op": "eq", "value": "go"},
                "then": {"node": "b", "inputs": {"text": "request.extra"}},
            },
        ]
    },
    inputs=[
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "extra", "datatype": "BYTES", "shape": [-1]},
    ],
)


@pytest.mark.parametrize(
    ("doc", "request_inputs", "wanted"),
    [
        (SEQUENCE, [text(["x"], [0])], "shape \\[0\\] needs 0 elements but data has 1"),
        (TWO_INPUTS, [text(["stop"], [1]), text(["?"], [1], "bogus")], "'bogus'.*takes inputs"),
        (TWO_INPUTS, [text(["stop"], [1])], "'extra': missing: graph 'two' takes inputs"),
    ],
    ids=["zero-row-lie", "undeclared", "missing"],
)
def test_the_first_step_refuses_the_request_the_local_router_refuses(
    doc: Body, request_inputs: list[Body], wanted: str
) -> None:
    """Finding 4: a `[0]` shape over data skipped every node (200), and an undeclared or a
    missing declared input went unnoticed (200); the local router answers 400 to each."""
    status, answer, called = on_kserve(doc, {"inputs": request_inputs})
    assert status == 400, answer
    assert called == [called[0]]
    assert re.search(wanted, answer["error"]), answer


ENSEMBLE = graph_doc(
    "avg",
    [ident("a"), ident("b"), ident("c")],
    {
        "ensemble": [
            {"node": n, "inputs": {"scores": f"request.s{i}"}} for i, n in enumerate("abc")
        ],
        "combine": {"method": "average", "tensor": "scores"},
    },
    inputs=[{"name": f"s{i}", "datatype": "FP32", "shape": [-1, -1]} for i in range(3)],
)
MEMBER_SCORES = [[0.0, 0.6, 0.4], [0.0, 0.6, 0.4], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize("method", [None, "vote", "median"])
def test_a_request_method_parameter_does_not_change_the_graphs_combine(
    method: str | None,
) -> None:
    """Finding 3: `method` reached the built-in `combine-N` step (no node), so a client could
    swap average for vote, or get a 400 for a method the graph never named."""
    request: Body = {
        "inputs": [scores(f"s{i}", [1, 3], d) for i, d in enumerate(MEMBER_SCORES)],
        "parameters": {"method": method} if method else {},
    }
    status, answer, _ = on_kserve(ENSEMBLE, request)
    assert status == 200, answer
    assert outputs(answer)["scores"] == pytest.approx([1 / 3, 0.4, 4 / 15])


@pytest.mark.parametrize("member", ["carry", "inputs"])
def test_an_ensemble_member_may_be_named_carry_or_inputs(member: str) -> None:
    """Finding 6: the Ensemble's `{step: body}` map was taken for one step body whenever a
    member's name was `carry` or `inputs`; both are valid node names."""
    graph = {
        "sequence": [
            {"ensemble": [{"node": member}, {"node": "b"}], "combine": {"method": "merge"}},
            {"node": "post", "inputs": {"text": "b.text"}},
        ]
    }
    doc = graph_doc("named", [ident(member), ident("b"), ident("post")], graph)
    status, answer, _ = on_kserve(doc, REQUEST)
    assert status == 200, answer
    assert outputs(answer) == {"text": ["x"]}


def test_a_members_unusable_scores_are_a_502_naming_the_member() -> None:
    """Finding 8: shapes that differ were the client's 400 from `combine-0`; the local router
    blames the member whose scores the combiner cannot use (502)."""
    request = {
        "inputs": [
            scores("s0", [1, 3], [0.5] * 3),
            scores("s1", [1, 4], [0.5] * 4),
            scores("s2", [1, 3], [0.5] * 3),
        ]
    }
    status, answer, _ = on_kserve(ENSEMBLE, request)
    assert status == 502, answer
    assert "node 'b'" in answer["error"] and "shape [1, 4] differs" in answer["error"]


def test_a_gate_tensor_of_the_wrong_type_is_a_502_naming_its_node() -> None:
    """Finding 8: a gate that cannot read the tensor it tests blames the node that made it
    (`a` passes text on where the graph says numbers), as the local router's `blamed`."""
    doc = graph_doc(
        "gate",
        [ident("a"), ident("b")],
        {
            "sequence": [
                {"node": "a"},
                {"when": {"tensor": "a.text", "op": "gt", "value": 0.5}, "then": {"node": "b"}},
            ]
        },
        inputs=[{"name": "text", "datatype": "FP32", "shape": [-1]}],
    )
    status, answer, _ = on_kserve(doc, REQUEST)
    assert status == 502, answer
    assert "node 'a'" in answer["error"]


def test_the_path_lists_ensemble_members_in_plan_order() -> None:
    """Finding 11: the router's map sorts members by name; `graph.path` follows the plan."""
    graph = {
        "sequence": [
            {"ensemble": [{"node": "zeta"}, {"node": "alpha"}], "combine": {"method": "merge"}},
            {"node": "post", "inputs": {"text": "zeta.text"}},
        ]
    }
    doc = graph_doc("order", [ident("zeta"), ident("alpha"), ident("post")], graph)
    status, answer, _ = on_kserve(doc, REQUEST)
    assert status == 200, answer
    assert answer["parameters"]["graph.path"] == "zeta,alpha,post"
