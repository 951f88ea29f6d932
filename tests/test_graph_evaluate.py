"""The run-time rules of `graph.evaluate`, each pinned once, on compiled plans (no servers).

The local router, the KServe graph step and the Seldon v1 unit all call this module, so a
rule pinned here holds on every engine; the engine tests check that each adapter runs it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml

from infergraph.components.base import TensorSpec
from infergraph.components.plumbing import Identity
from infergraph.components.registry import component_class
from infergraph.errors import InputError, status_for
from infergraph.graph import evaluate as ev
from infergraph.graph.plan import GraphPlan, compile_plan, parse_graph
from infergraph.graph.wire import Tensor
from infergraph.runner.executor import GraphExecutor, Run
from infergraph.serving.graph_step import StepWiring, run_step
from infergraph.serving.seldon_component import InfergraphComponent

REPO = Path(__file__).resolve().parent.parent


def _plan(name: str) -> GraphPlan:
    return compile_plan(parse_graph(yaml.safe_load((REPO / f"k8s/graphs/{name}.yaml").read_text())))


def _json(name: str, rows: int) -> Tensor:
    return {"name": name, "datatype": "FP32", "shape": [rows, 2], "data": [0.5] * (2 * rows)}


def test_the_first_alternative_that_exists_wins() -> None:
    """`accurate.label | fast.label`: the plan's sources and the rendered text name the same
    refs in the same order, and the first one present is taken."""
    plan = _plan("cascade")
    sources = plan.outputs["label"]
    refs = ev.alternatives(sources)
    assert refs == ev.alternatives(" | ".join(s.ref for s in sources))
    assert len(refs) == 2
    first, second = refs
    assert ev.first_present(refs, {second: "b"}) == "b"
    assert ev.first_present(refs, {first: "a", second: "b"}) == "a"
    assert ev.first_present(refs, {}) is None


def test_an_absent_tensor_is_the_clients_error() -> None:
    """A compiled plan feeds every input unless the request lacked one: 400, naming it."""
    step = _plan("cascade").step("fast")
    inputs = {name: ev.alternatives(sources) for name, sources in step.inputs.items()}
    with pytest.raises(InputError) as caught:
        ev.gather_feed(step.name, inputs, lambda refs: ev.first_present(refs, {}))
    assert caught.value.input_name == "image" and "request.image" in str(caught.value)
    assert status_for(caught.value).http == 400
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}
    feed = ev.gather_feed(step.name, inputs, lambda refs: ev.first_present(refs, {refs[0]: image}))
    assert feed == {"image": image}


def test_a_gate_takes_otherwise_without_its_tensor_or_rows() -> None:
    gate = next(s for s in _plan("cascade").steps if s.kind == "gate")
    assert gate.condition is not None
    condition = gate.condition.model_dump()  # fast.confidence lt 0.8, any
    assert ev.gate_side(condition, np.array([0.9, 0.5], np.float32), "value") == "then"
    assert ev.gate_side(condition, np.array([0.9], np.float32), "value") == "otherwise"
    assert ev.gate_side(condition, None, "value") == "otherwise"
    everything = {**condition, "reduce": "all"}  # `all` over no rows would hold in numpy
    assert ev.gate_side(everything, np.zeros((0,), np.float32), "value") == "otherwise"
    assert ev.gate_side(None, np.array([0.1], np.float32), "value") == "otherwise"


@pytest.mark.parametrize("kind", [ev.JSON, ev.ARRAYS], ids=["json", "arrays"])
def test_zero_rows_in_give_zero_row_outputs(kind: ev.TensorKind) -> None:
    """Any zero-row input skips the step; each declared output comes back with no rows."""
    step = _plan("cascade").step("accurate")
    one, none = (
        (_json("a", 1), _json("a", 0))
        if kind is ev.JSON
        else (np.zeros((1, 2), np.float32), np.zeros((0, 2), np.float32))
    )
    assert not ev.zero_rows({"a": one, "b": one}, kind)
    assert ev.zero_rows({"a": one, "b": none}, kind)
    empty = ev.empty_outputs(step.outputs, kind)
    assert list(empty) == [s.name for s in step.outputs]
    for spec in step.outputs:
        assert kind.rows(empty[spec.name]) == 0
    if kind is ev.JSON:
        scores = next(s for s in step.outputs if s.name == "scores")
        assert empty["scores"]["datatype"] == scores.datatype
        assert empty["scores"]["shape"][0] == 0 and empty["scores"]["data"] == []


def test_request_parameters_by_node() -> None:
    """Plain keys reach every node; `<node>.<key>` only that node, as `<key>`; a dotted key
    whose prefix is no node (a `gate-0.route` tag, `a.b` from a client) reaches every node."""
    nodes = [s.name for s in _plan("cascade").node_steps()]
    params = {"top_k": 3, "fast.top_k": 1, "accurate.truncate": True, "gate-0.route": 0}
    assert ev.node_parameters("fast", nodes, params) == {"top_k": 1, "gate-0.route": 0}
    assert ev.node_parameters("accurate", nodes, params) == {
        "top_k": 3,
        "truncate": True,
        "gate-0.route": 0,
    }


def test_unmapped_inputs_come_by_name_then_from_the_request() -> None:
    cls = component_class("question-answering")
    names = [s.name for s in cls.inputs]
    assert names[:2] == ["question", "context"]
    current = {"question": "from the previous step", "other": "ignored"}
    carried = {"request.question": "from the request", "request.context": "context"}
    assert ev.inputs_by_name(cls, current, carried) == {
        "question": "from the previous step",
        "context": "context",
    }
    assert ev.inputs_by_name(cls, {}, {}) == {}  # the component names what is missing
    assert ev.inputs_by_name(Identity, current, carried) == current


def test_the_trace_lists_reached_nodes_and_marks_skipped_ones() -> None:
    trace = ev.Trace()
    trace.reached("fast")
    trace.reached("accurate")
    trace.skip("accurate")
    member = ev.Trace(["fast", "other"], ["other"])
    trace.merge(member)
    assert trace.parameters() == {
        "graph.path": "fast,accurate,other",
        "accurate.skipped": 1,
        "other.skipped": 1,
    }
    assert ev.Trace().parameters() == {"graph.path": ""}


def test_array_kind_builds_declared_dtypes() -> None:
    spec = TensorSpec("labels", "BYTES", (-1, 5))
    empty = ev.ARRAYS.empty(spec)
    assert empty.shape == (0, 5) and empty.dtype == object
    assert ev.ARRAYS.rows(np.float32(1.0).reshape(())) == 1


@pytest.mark.parametrize("shape", ["3", 3, ["a"], [True], [None]])
def test_a_json_tensor_whose_shape_gives_no_rows_is_the_clients_error(shape: object) -> None:
    """The skip rule reads the first dimension of a tensor as it came: a shape that is not a
    list of integers is a 400 naming the tensor, not a bare TypeError answered as a 500."""
    tensor: Tensor = {"name": "pixels", "datatype": "FP32", "shape": shape, "data": [1.0]}
    with pytest.raises(InputError, match=r"'pixels'.*shape") as caught:
        ev.zero_rows({"x": tensor}, ev.JSON)
    assert status_for(caught.value).http == 400


# -- the adapters apply these rules, not their own -------------------------------------------
def test_every_adapter_hands_a_node_the_same_request_parameters() -> None:
    """The Seldon v1 unit (meta.tags) and the KServe step (carried parameters) give a node
    what the plan's rule gives it; before, v1 dropped dotted keys whose prefix is no node."""
    plan = _plan("cascade")
    nodes = [s.name for s in plan.node_steps()]
    params = {"top_k": 3, "fast.top_k": 1, "accurate.top_k": 2, "x.y": "kept", "gate-0.route": 1}
    expected = ev.node_parameters("fast", nodes, params)
    assert expected == {"top_k": 1, "x.y": "kept", "gate-0.route": 1}
    unit = InfergraphComponent(family="identity", node="fast", nodes=json.dumps(nodes))
    assert unit.request_parameters({"tags": params}) == expected
    wiring = StepWiring.parse({"step": "fast", "kind": "node", "inputs": {}, "nodes": nodes})
    seen: list[dict[str, Any]] = []

    async def call(feed: dict[str, Tensor], given: dict[str, Any]) -> dict[str, Tensor]:
        seen.append(given)
        return {}

    body = {"inputs": [_json("image", 1)], "parameters": params}
    asyncio.run(run_step(wiring, body, call))
    assert seen == [expected]


def test_an_absent_tensor_is_400_on_the_local_router_and_kserve() -> None:
    """Before, the local router answered 502 (a node's fault) where KServe answered 400."""
    plan = _plan("cascade")
    step = plan.step("fast")

    async def local() -> None:
        async with aiohttp.ClientSession() as session:
            executor = GraphExecutor(plan, {}, session)
            executor.feed(step, Run({}, {}))

    with pytest.raises(InputError) as caught:
        asyncio.run(local())
    assert status_for(caught.value).http == 400
    wiring = StepWiring.parse(
        {"step": "fast", "kind": "node", "inputs": {"image": ["request.image"]}}
    )

    async def never(feed: dict[str, Tensor], given: dict[str, Any]) -> dict[str, Tensor]:
        raise AssertionError("a step without its tensor is not called")

    with pytest.raises(InputError) as on_kserve:
        asyncio.run(run_step(wiring, {"inputs": [_json("other", 1)]}, never))
    assert str(on_kserve.value) == str(caught.value)


def test_a_kserve_gate_without_its_tensor_takes_otherwise() -> None:
    """As on the local router and the Seldon v1 ROUTER; before, KServe answered 400."""
    wiring = StepWiring.parse(
        {"step": "gate-0", "kind": "gate", "inputs": {"value": ["fast.confidence"]}}
    )

    async def never(feed: dict[str, Tensor], given: dict[str, Any]) -> dict[str, Tensor]:
        raise AssertionError("the gate model is not asked about a tensor that is absent")

    answer = asyncio.run(run_step(wiring, {"inputs": [_json("image", 1)]}, never))
    assert answer["carry"]["when"] == {"gate-0": {"otherwise": True}}


def test_a_v1_unit_fed_zero_rows_skips_its_component_and_says_so() -> None:
    """The step rule on Seldon v1: every declared output, zero rows, `<node>.skipped` tagged."""
    unit = InfergraphComponent(family="image-classification", node="fast")
    empty = {"image": {"datatype": "BYTES", "shape": [0], "data": []}}
    answer = unit.predict(empty)  # the model is never built: no call was needed
    outputs = [s.name for s in component_class("image-classification").outputs]
    assert sorted(k for k in answer if k.startswith("fast.")) == sorted(
        f"fast.{name}" for name in outputs
    )
    assert all(answer[f"fast.{name}"]["shape"][0] == 0 for name in outputs)
    assert unit.tags() == {"fast.skipped": 1}
    assert unit._component is None


ISOLATED = """
import sys
for name in ("torch", "transformers", "timm", "PIL", "mlserver", "seldon_core", "aiohttp"):
    sys.modules[name] = None  # any import of it now raises ImportError
from infergraph.graph import evaluate
from infergraph.serving import graph_step
assert evaluate.first_present(["a.x", "b.x"], {"b.x": 1}) == 1
assert not [m for m in sys.modules if m.startswith("infergraph.runner")], "serving -> runner"
print("ok")
"""


def test_the_rules_need_no_model_framework_server_or_runner() -> None:
    """Torch-free and server-free, and the KServe step no longer imports the local runner
    (the runner <-> serving cycle)."""
    result = subprocess.run(
        [sys.executable, "-c", ISOLATED], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("engine", ["seldon-v2", "seldon-v1", "kserve"])
def test_rendering_a_graph_file_compiles_it_once(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects and (Seldon v2) the model-settings files come from one compiled plan."""
    from infergraph.graph import plan as plan_module
    from infergraph.render import EXAMPLE_STORAGE, RenderOptions, render_files

    compiled: list[str] = []

    class Counting(plan_module._Compiler):  # every compile_plan, however it was imported
        def __init__(self, graph: Any) -> None:
            compiled.append(graph.name)
            super().__init__(graph)

    monkeypatch.setattr(plan_module, "_Compiler", Counting)
    options = RenderOptions(storage_uri=EXAMPLE_STORAGE)
    files = render_files(REPO / "k8s/graphs/cascade.yaml", engine, options)
    assert files and compiled == ["cascade"]
