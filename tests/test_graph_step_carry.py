"""What a KServe graph step carries onward: only the tensors a later step or the graph's outputs
read (issue 27). The KServe router hands each step's whole body to the next, so a tensor left
in `inputs` travels every later hop; the request image did, through every step of a graph that
reads it once.

The steps here are the rendered InferenceServices' own wiring (`MLSERVER_MODEL_EXTRA`) run by
`graph_step.run_step` on the real weightless components (image preprocessing, the gate,
identity) the services would load; the router's hand-over (a cascade's gate body going to the
step after the `when`) is done by hand, as `tests/engines/kserve_router.py` does it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.json_types import JSONObject
from infergraph.render import render
from infergraph.serving import graph_step
from infergraph.tensors.v2json import from_tensor, to_tensor
from tests.graph_payloads import request_for
from tests.test_render_seldon import GRAPHS, OPTIONS, graph_doc

# a, then b only when a.text is "x", then c (reads the request), then d (b's text, else a's):
# d's fallback is forwarded by the cascade's pass-through, which sits before c in the plan.
LATE_FALLBACK = graph_doc(
    "late",
    [{"name": n, "family": "identity"} for n in "abcd"],
    {
        "sequence": [
            {"node": "a"},
            {
                "when": {"tensor": "a.text", "op": "eq", "value": "x", "reduce": "any"},
                "then": {"node": "b"},
            },
            {"node": "c", "inputs": {"text": "request.text"}},
            {"node": "d", "inputs": {"text": "b.text | a.text"}},
        ]
    },
)


def services(objs: list[dict[str, Any]]) -> dict[str, JSONObject]:
    """Each rendered InferenceService's MLSERVER_MODEL_EXTRA, by its graph step."""
    out: dict[str, JSONObject] = {}
    for isvc in (o for o in objs if o["kind"] == "InferenceService"):
        env = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["model"]["env"]}
        extra = json.loads(env["MLSERVER_MODEL_EXTRA"])
        out[extra["graph_step"]["step"]] = extra
    return out


def component_call(extra: JSONObject) -> graph_step.Call:
    """The service's component, called as the MLServer runtime calls it (V2 JSON in and out)."""
    cls = component_class(str(extra["family"]))
    component = cls(ComponentSettings(options=dict(extra.get("options") or {}), warmup=False))
    component.start()

    async def call(feed: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        arrays = {name: from_tensor(t, name) for name, t in feed.items()}
        outputs = component.predict(arrays, params).outputs
        return {name: to_tensor(name, array) for name, array in outputs.items()}

    return call


def step(extra: JSONObject, body: Any) -> JSONObject:
    wiring = graph_step.StepWiring.parse(dict(extra["graph_step"]))
    return asyncio.run(graph_step.run_step(wiring, body, component_call(extra)))


def carried(body: JSONObject) -> set[str]:
    return {t["name"] for t in body["inputs"]}


def test_the_request_image_is_not_carried_past_the_step_that_reads_it() -> None:
    graph = load_graph(GRAPHS / "preprocess.yaml")
    prep = services(render(graph, "kserve", OPTIONS))["prep"]
    request = request_for(graph)
    answer = step(prep, request)
    # The classifier reads prep.pixel_values; the graph returns the classifier's outputs.
    assert carried(answer) == {"prep.pixel_values"}
    assert len(json.dumps(answer)) < len(json.dumps(request)) + len(
        json.dumps(next(t for t in answer["inputs"] if t["name"] == "prep.pixel_values"))
    )


def test_a_gate_drops_the_tensor_it_tested_and_keeps_what_its_cascade_forwards() -> None:
    nlp = services(render(load_graph(GRAPHS / "nlp.yaml"), "kserve", OPTIONS))
    text = {"name": "request.text", "datatype": "BYTES", "shape": [1], "data": ["Bonjour"]}
    language = {"name": "langid.language", "datatype": "BYTES", "shape": [1], "data": ["fr"]}
    body = {"inputs": [text, language], "carry": {"path": ["langid"], "when": {}}}
    answer = step(nlp["gate-0"], body)
    assert answer["carry"]["when"] == {"gate-0": {"then": True}}
    # translate reads request.text; summarize falls back to it (pass-0.text) when not French.
    assert carried(answer) == {"request.text"}


def test_a_fallback_forwarded_before_the_step_still_travels_through_it() -> None:
    """d's `a.text` arrives through the cascade's pass-through, which the plan lists before c:
    c must carry it although no step after c names it."""
    steps = services(render(parse_graph(copy.deepcopy(LATE_FALLBACK)), "kserve", OPTIONS))
    text = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["y"]}
    body = step(steps["a"], {"inputs": [text]})
    body = step(steps["gate-0"], body)  # a.text is not "x": otherwise, the cascade skips b
    assert body["carry"]["when"] == {"gate-0": {"otherwise": True}}
    body = step(steps["c"], body)  # the router hands the gate's body to c
    assert carried(body) == {"a.text"}  # c's own output is read by nobody
    body = step(steps["d"], body)
    assert body["outputs"][0]["data"] == ["y"]
    assert carried(body) == {"d.text"}
