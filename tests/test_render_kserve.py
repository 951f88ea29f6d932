"""KServe rendering: topology, runtime wiring, autoscaling classes, hardening, the webhook's rules.

Schema validity of every graph against ../shared/crds/kserve and the drift of
k8s/rendered/kserve are covered by tests/test_render_seldon.py (parametrized over ENGINES).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from infergraph.engines import engine as engine_named
from infergraph.errors import GraphValidationError, RenderError
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.render import render
from infergraph.render.cli import app as render_app
from infergraph.render.kserve import NOTES_ANNOTATION, render_notes
from tests.engines import kserve_keda
from tests.engines.kserve_hpa import router_hpa
from tests.test_render_seldon import GRAPH_FILES, GRAPHS, INLINE, OPTIONS, inline

GRAPH_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def objects(name: str) -> list[dict[str, Any]]:
    return render(load_graph(GRAPHS / f"{name}.yaml"), "kserve", OPTIONS)


def kind(objs: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == wanted]


def nodes_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return kind(objs, "InferenceGraph")[0]["spec"]["nodes"]


def webhook_problems(graph: dict[str, Any]) -> list[str]:
    """KServe's InferenceGraph admission rules (pkg/apis/serving/v1alpha1/
    inference_graph_validation.go): a `root` node, unique step names per node, exactly one
    of nodeName / serviceName / serviceUrl per step, a DNS-style name; plus what the router
    needs at run time: every nodeName exists (`routeStep` looks it up in `graph.Nodes`)."""
    import re

    problems = []
    nodes = graph["spec"]["nodes"]
    if "root" not in nodes:
        problems.append("no root node")
    if not re.match(GRAPH_NAME, graph["metadata"]["name"]):
        problems.append("bad name")
    for name, node in nodes.items():
        names = [s["name"] for s in node["steps"] if s.get("name")]
        if len(names) != len(set(names)):
            problems.append(f"{name}: duplicate step names {names}")
        for step in node["steps"]:
            targets = [k for k in ("nodeName", "serviceName", "serviceUrl") if step.get(k)]
            if len(targets) != 1:
                problems.append(f"{name}: step {step.get('name')} has targets {targets}")
            if step.get("nodeName") and step["nodeName"] not in nodes:
                problems.append(f"{name}: unknown node {step['nodeName']}")
        if node["routerType"] == "Switch":
            assert all(s.get("condition") for s in node["steps"])
    return problems


@pytest.mark.parametrize("path", GRAPH_FILES, ids=[p.stem for p in GRAPH_FILES])
def test_every_graph_passes_the_webhook_rules_and_is_hardened(path) -> None:
    objs = render(load_graph(path), "kserve", OPTIONS)
    assert not webhook_problems(kind(objs, "InferenceGraph")[0])
    runtimes = {r["metadata"]["name"]: r for r in kind(objs, "ServingRuntime")}
    for isvc in kind(objs, "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        runtime = runtimes[model["runtime"]]
        assert runtime["spec"]["protocolVersions"] == ["v2"]
        assert predictor["securityContext"]["runAsNonRoot"] is True
        assert predictor["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for sc in (model["securityContext"], runtime["spec"]["containers"][0]["securityContext"]):
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
        res = model["resources"]
        assert res["requests"] == res["limits"]
        gpu = res["requests"].get("nvidia.com/gpu", 0)
        assert ("cuda" in model["runtime"]) == bool(gpu)
        if gpu:
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
                predictor["tolerations"]
            )
        env = {e["name"]: e["value"] for e in model["env"]}
        assert env["MLSERVER_MODEL_NAME"] == isvc["metadata"]["name"]
        wiring = json.loads(env["MLSERVER_MODEL_EXTRA"])["graph_step"]
        assert wiring["step"] and wiring["kind"] in ("node", "gate", "combine", "merge")
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


def test_cascade_is_a_conditional_sequence_without_pass_through() -> None:
    objs = objects("cascade")
    nodes = nodes_of(objs)
    assert list(nodes) == ["root", "when-0"]
    assert [s["name"] for s in nodes["root"]["steps"]] == ["fast", "when-0"]
    assert [s["data"] for s in nodes["root"]["steps"]] == ["$request", "$response"]
    gate, accurate = nodes["when-0"]["steps"]
    assert gate["serviceUrl"].endswith("/v2/models/cascade-gate-0/infer/graph")
    assert accurate["condition"] == "carry.when.gate-0.then"
    names = {o["metadata"]["name"] for o in kind(objs, "InferenceService")}
    assert names == {"cascade-fast", "cascade-gate-0", "cascade-accurate"}  # no pass-0
    gate_isvc = next(o for o in kind(objs, "InferenceService") if "gate" in o["metadata"]["name"])
    env = {e["name"]: e["value"] for e in gate_isvc["spec"]["predictor"]["model"]["env"]}
    extra = json.loads(env["MLSERVER_MODEL_EXTRA"])
    assert extra["family"] == "gate"
    assert extra["options"]["condition"] == {
        "tensor": "fast.confidence",
        "op": "lt",
        "value": 0.8,
        "reduce": "any",
    }
    assert extra["graph_step"]["passes"]["pass-0"]["side"] == "otherwise"


def test_when_with_otherwise_is_a_switch() -> None:
    objs = render(inline("branches"), "kserve", OPTIONS)
    nodes = nodes_of(objs)
    switch = next(n for n in nodes.values() if n["routerType"] == "Switch")
    assert [s["condition"] for s in switch["steps"]] == [
        "carry.when.gate-0.then",
        "carry.when.gate-0.otherwise",
    ]
    assert not webhook_problems(kind(objs, "InferenceGraph")[0])


def test_ensembles_combine_after_the_router_merge_and_a_final_merge_step() -> None:
    nodes = nodes_of(objects("ensemble"))
    fan_out = next(
        n for n in nodes.values() if n["routerType"] == "Sequence" and n is not nodes["root"]
    )
    ensemble = next(n for n in nodes.values() if n["routerType"] == "Ensemble")
    assert [s["name"] for s in ensemble["steps"]] == ["resnet", "vit", "convnext"]
    assert fan_out["steps"][1]["name"] == "combine-0"
    # method: merge at the end: a merge step turns the router's {step: body} into outputs.
    root = nodes_of(objects("video-monitoring"))["root"]
    assert [s["name"] for s in root["steps"]][-1] == "merge-0"


def test_autoscaling_classes_follow_what_kserve_can_express() -> None:
    def classes(name: str) -> dict[str, str]:
        return {
            o["metadata"]["name"]: o["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"]
            for o in kind(objects(name), "InferenceService")
        }

    assert classes("cascade")["cascade-fast"] == "keda"  # rps: KServe writes the ScaledObject
    assert classes("cascade")["cascade-gate-0"] == "none"
    assert classes("ensemble")["ensemble-resnet"] == "external"  # gpu average: the kit's HPA
    assert classes("audio-sent")["audio-sent-sentiment"] == "external"  # Pods metric
    hpas = kind(objects("ensemble"), "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} >= {"ensemble-resnet-predictor"}
    accurate = next(
        o
        for o in kind(objects("cascade"), "InferenceService")
        if o["metadata"]["name"] == "cascade-accurate"
    )
    predictor = accurate["spec"]["predictor"]
    assert predictor["minReplicas"] == 0
    queries = [m["external"]["metric"]["query"] for m in predictor["autoScaling"]["metrics"]]
    assert any('model="cascade-gate-0"' in q for q in queries)  # what wakes it from zero


def test_scale_to_zero_note_names_the_cold_start() -> None:
    objs = objects("cascade")
    notes = [n for n in render_notes(objs) if not n.startswith("trace headers:")]
    assert len(notes) == 1 and notes[0].startswith("accurate: minReplicas 0")
    assert "#1247" in notes[0] and "#2882" in notes[0]
    assert NOTES_ANNOTATION in kind(objs, "InferenceGraph")[0]["metadata"]["annotations"]
    result = CliRunner().invoke(
        render_app,
        [str(GRAPHS / "cascade.yaml"), "--engine", "kserve", "--storage-uri", "s3://b/p"],
    )
    assert result.exit_code == 0
    assert "note: accurate: minReplicas 0" in result.output


def isvc_named(objs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return next(o for o in kind(objs, "InferenceService") if o["metadata"]["name"].endswith(suffix))


@pytest.mark.parametrize("metric", ["inflight", "cpu"])
def test_keda_class_carries_the_cooldown_as_kserves_scaled_object_takes_it(metric: str) -> None:
    """KServe writes the ScaledObject of a `keda` class InferenceService and takes its HPA
    windows from `autoScaling.behavior` only (tests.engines.kserve_keda): the node's
    cooldown is the scale-down window, scale-up unhindered as on the other engines. The
    1 -> 0 wait has no field there: KEDA's default 300 s, which the render notes."""
    doc = json.loads(json.dumps(INLINE["cascade"]))
    big = doc["spec"]["nodes"][1]
    low = 1 if metric == "cpu" else 0  # KEDA's cpu scaler cannot wake a node from zero
    big["autoscaling"] = {
        "engine": "keda",
        "minReplicas": low,
        "maxReplicas": 4,
        "metric": metric,
        "target": 2,
        "cooldownSeconds": 30,
    }
    objs = render(parse_graph(doc), "kserve", OPTIONS)
    isvc = isvc_named(objs, "-big")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    spec = kserve_keda.scaled_object_spec(isvc)
    assert kserve_keda.scale_down_window_s(spec) == 30
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"] == {"stabilizationWindowSeconds": 0}
    # A cluster's inferenceservice-config windows do not replace the graph's.
    configured = kserve_keda.scaled_object_spec(isvc, {"scaleDown": 600, "scaleUp": 60})
    assert configured == spec
    if metric != "cpu":
        assert kserve_keda.zero_cooldown_s(spec) == kserve_keda.KEDA_DEFAULT_COOLDOWN_S
        (note,) = (n for n in render_notes(objs) if n.startswith("big:"))
        assert "cooldownSeconds 30" in note and "300 s" in note


def test_cpu_scale_metric_uses_kserve_hpa_class() -> None:
    doc = json.loads(json.dumps(INLINE["cascade"]))
    doc["spec"]["nodes"][0]["autoscaling"] = {
        "engine": "hpa",
        "maxReplicas": 3,
        "metric": "cpu",
        "target": 60,
    }
    objs = render(parse_graph(doc), "kserve", OPTIONS)
    small = next(
        o for o in kind(objs, "InferenceService") if o["metadata"]["name"].endswith("small")
    )
    assert small["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
    metric = small["spec"]["predictor"]["autoScaling"]["metrics"][0]
    assert metric == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
    }


def test_gpu_on_a_cpu_only_family_fails_naming_the_node() -> None:
    doc = json.loads(json.dumps(INLINE["chain"]))
    graph = parse_graph(doc)
    graph.spec.nodes[1].resources.gpu = 1
    with pytest.raises((RenderError, GraphValidationError), match="post"):
        render(graph, "kserve", OPTIONS)


def test_graph_step_route_names_what_is_wrong_with_a_body() -> None:
    import asyncio

    from infergraph.errors import InputError
    from infergraph.serving import graph_step

    plan_objs = objects("nlp")
    summarize = next(
        o for o in kind(plan_objs, "InferenceService") if o["metadata"]["name"] == "nlp-summarize"
    )
    env = {e["name"]: e["value"] for e in summarize["spec"]["predictor"]["model"]["env"]}
    wiring = graph_step.StepWiring.parse(json.loads(env["MLSERVER_MODEL_EXTRA"])["graph_step"])
    assert wiring.inputs == {"text": ["translate.translation", "pass-0.text"]}

    async def never(feed: dict, params: dict) -> dict:
        raise AssertionError("the component must not be called")

    with pytest.raises(InputError, match="neither a V2 request"):
        asyncio.run(graph_step.run_step(wiring, {"resnet": {"error": "boom"}}, never))
    # The gate chose `then` but no translation is carried: the message names input and refs.
    body = {"inputs": [], "carry": {"when": {"gate-0": {"then": True}}}}
    with pytest.raises(InputError, match=r"text.*translate\.translation \| pass-0\.text"):
        asyncio.run(graph_step.run_step(wiring, body, never))


def test_a_malformed_step_wiring_is_refused_at_load_naming_its_path() -> None:
    """Before, a pass-through or an output spec of the wrong shape was stored as it came and
    failed later, per request, with a bare KeyError or TypeError."""
    from infergraph.errors import InputError
    from infergraph.serving import graph_step

    wiring: dict[str, object] = {"step": "a", "kind": "node", "inputs": {"x": ["request.x"]}}
    bad_spec = {**wiring, "specs": [["x", "FP32", [1, "n"]]]}
    with pytest.raises(InputError, match=r"specs\[0\]\[2\]\[1\]: expected an integer"):
        graph_step.StepWiring.parse(bad_spec)
    bad_pass = {**wiring, "passes": {"pass-0": {"gate": "gate-0", "side": 1, "inputs": {}}}}
    with pytest.raises(InputError, match=r"passes\.pass-0\.side: expected a string"):
        graph_step.StepWiring.parse(bad_pass)


@pytest.mark.parametrize(
    ("carry", "where"),
    [
        ({"when": ["gate-0"]}, "carry.when"),
        ({"when": {"gate-0": "then"}}, "carry.when.gate-0"),
        ({"parameters": [1]}, "carry.parameters"),
        ({"path": "a,b"}, "carry.path"),
        ({"skipped": [1]}, r"carry.skipped\[0\]"),
    ],
)
def test_a_step_body_whose_carry_is_malformed_is_the_clients_400(
    carry: dict[str, object], where: str
) -> None:
    """The carry comes from the client (or the router, from the previous step): a wrong
    shape is a 400 naming where it is; before, a list or a string where an object belongs
    was an AttributeError (500), and a string path was read as its letters."""
    import asyncio

    from infergraph.errors import InputError, status_for
    from infergraph.serving import graph_step

    wiring = graph_step.StepWiring.parse({"step": "a", "kind": "node", "inputs": {}})

    async def never(feed: dict, params: dict) -> dict:
        raise AssertionError("the component must not be called")

    with pytest.raises(InputError, match=where) as caught:
        asyncio.run(graph_step.run_step(wiring, {"inputs": [], "carry": carry}, never))
    assert status_for(caught.value).http == 400


# KServe v0.20.0's shipped `router` value (config/configmap/inferenceservice.yaml:733-741).
KSERVE_DEFAULT_ROUTER = """{
    "image" : "kserve/router:latest",
    "memoryRequest": "100Mi",
    "memoryLimit": "1Gi",
    "cpuRequest": "100m",
    "cpuLimit": "1",
    "imagePullPolicy": "IfNotPresent"
}"""


def test_router_trace_headers_are_the_runners_in_go_canonical_form() -> None:
    """The router matches patterns against Go's canonical header names (kserve v0.20.0
    cmd/router/main.go:133-135 over `req.Header`), so the names rendered for it are the
    local runner's trace headers in that form."""
    from infergraph.render.kserve import ROUTER_TRACE_HEADERS
    from infergraph.runner.executor import TRACE_HEADERS
    from tests.engines.kserve_router import canonical_header

    assert tuple(canonical_header(h) for h in TRACE_HEADERS) == ROUTER_TRACE_HEADERS


def test_router_config_gains_the_trace_headers_and_keeps_the_rest() -> None:
    from infergraph.render.kserve import ROUTER_TRACE_HEADERS, router_config_with_trace_headers

    merged = json.loads(router_config_with_trace_headers(KSERVE_DEFAULT_ROUTER))
    assert merged["headers"]["propagate"] == list(ROUTER_TRACE_HEADERS)
    assert {k: v for k, v in merged.items() if k != "headers"} == json.loads(KSERVE_DEFAULT_ROUTER)
    own = json.dumps({**merged, "headers": {"propagate": ["X-Tenant", "Traceparent"]}})
    again = json.loads(router_config_with_trace_headers(own))
    wanted = ["X-Tenant", "Traceparent", "Tracestate", "X-Request-Id"]
    assert again["headers"]["propagate"] == wanted


@pytest.mark.parametrize(
    ("router", "wanted"),
    [
        ("", "empty"),
        ("{not json", "not JSON"),
        ('["a"]', "JSON object"),
        ('{"headers": {"propagate": "Traceparent"}}', "headers.propagate"),
    ],
)
def test_router_config_refuses_what_the_controller_could_not_read(router: str, wanted: str) -> None:
    from infergraph.render.kserve import router_config_with_trace_headers

    with pytest.raises(RenderError, match=wanted):
        router_config_with_trace_headers(router)


def test_kserve_router_config_command_prints_the_configmap_merge_patch() -> None:
    from infergraph.cli import app

    result = CliRunner().invoke(app, ["kserve-router-config"], input=KSERVE_DEFAULT_ROUTER)
    assert result.exit_code == 0, result.output
    patch = json.loads(result.stdout)
    assert list(patch) == ["data"] and list(patch["data"]) == ["router"]
    router = json.loads(patch["data"]["router"])
    assert router["headers"]["propagate"] == ["Traceparent", "Tracestate", "X-Request-Id"]
    bad = CliRunner().invoke(app, ["kserve-router-config"], input="")
    assert bad.exit_code != 0 and "empty" in bad.output


def test_every_kserve_render_notes_that_trace_headers_need_the_router_config() -> None:
    """The router forwards no header unless the cluster's `inferenceservice-config` says so
    (raw_ig.go:89-97): nothing in the InferenceGraph can, so each render says what to do."""
    for path in GRAPH_FILES:
        notes = render_notes(render(load_graph(path), "kserve", OPTIONS))
        assert any("headers.propagate" in n and "kserve-router-config" in n for n in notes), path


@pytest.mark.parametrize("name", [path.stem for path in GRAPH_FILES])
def test_the_router_scales_out_as_far_as_the_nodes_it_feeds(name: str) -> None:
    """Every request crosses the InferenceGraph's router Deployment (500m). KServe gives it
    an HPA on CPU (tests/engines/kserve_hpa.py, from its source); pinned at one replica it
    capped every graph at one half-core router however far its nodes scaled. It may now grow
    to as many replicas as its nodes together may have, and starts at one."""
    graph = load_graph(GRAPHS / f"{name}.yaml")
    widest = sum(
        n.autoscaling.max_replicas if n.autoscaling else n.replicas for n in graph.spec.nodes
    )
    router = kind(objects(name), "InferenceGraph")[0]
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}
    assert router_hpa(router) == {
        "minReplicas": 1,
        "maxReplicas": max(1, widest),
        "metrics": [{"type": "Resource", "resource": cpu}],
    }


# -- names KServe can deploy ---------------------------------------------------------------
def deployable_isvc_name(name: str) -> list[str]:
    """Why KServe (commit aaac4e2) would not run an InferenceService of this name:
    - its webhook's name rule (pkg/apis/serving/v1beta1/inference_service_validation.go:46,
      55, 469-474), the same as the InferenceGraph's (v1alpha1/inference_graph_validation.go:
      53, 60, 182);
    - in Standard mode the predictor Deployment and Service are `<isvc>-predictor`
      (pkg/constants/constants.go:802-807; components/predictor.go:159) and its pods and
      selector carry `app: isvc.<isvc>-predictor` (constants.go:758-760; reconcilers/
      deployment/deployment_reconciler.go:146, 153): a label value of at most 63 characters,
      so the name may have at most 48."""
    problems = []
    if not re.match(GRAPH_NAME, name):
        problems.append(f"{name}: not {GRAPH_NAME}")
    if len(f"isvc.{name}-predictor") > 63:
        problems.append(f"{name}: app label isvc.{name}-predictor over 63 characters")
    return problems


def long_graph(name: str) -> dict[str, Any]:
    doc = json.loads(json.dumps(INLINE["cascade"]))
    doc["metadata"]["name"] = name
    doc["spec"]["nodes"][1]["name"] = "classifier-large-vit"
    doc["spec"]["graph"]["sequence"][1]["then"]["node"] = "classifier-large-vit"
    return doc


def test_long_names_are_shortened_to_what_kserve_deploys() -> None:
    graph = parse_graph(long_graph("customer-support-ticket-image-triage-pipeline"))
    objs = render(graph, "kserve", OPTIONS)
    names = [o["metadata"]["name"] for o in kind(objs, "InferenceService")]
    assert len(f"{graph.name}-gate-0") > 48  # joined in full: too long
    assert len(set(names)) == len(names)
    for isvc in kind(objs, "InferenceService"):
        name = isvc["metadata"]["name"]
        assert not deployable_isvc_name(name)
        env = {e["name"]: e["value"] for e in isvc["spec"]["predictor"]["model"]["env"]}
        assert env["MLSERVER_MODEL_NAME"] == name
    # The planner and the operator address the same object (the engine table's name).
    big = engine_named("kserve").served_name(graph.name, "classifier-large-vit")
    assert big in names
    urls = [
        s["serviceUrl"]
        for node in nodes_of(objs).values()
        for s in node["steps"]
        if s.get("serviceUrl")
    ]
    assert urls
    for url in urls:
        host = urlsplit(url).hostname or ""
        assert len(host.split(".")[0]) <= 63, host
        assert host.split(".")[0].removesuffix("-predictor") in names
    # The wake query counts the gate's requests under the gate's (served) name.
    isvc = isvc_named(objs, big)
    queries = [
        m["external"]["metric"]["query"]
        for m in isvc["spec"]["predictor"]["autoScaling"]["metrics"]
    ]
    gate = engine_named("kserve").served_name(graph.name, "gate-0")
    assert any(f'model="{gate}"' in q for q in queries), queries


def test_a_graph_name_starting_with_a_digit_is_refused_naming_the_rule() -> None:
    graph = parse_graph(long_graph("1-triage"))
    with pytest.raises(RenderError, match=r"graph '1-triage'.*start with a letter"):
        render(graph, "kserve", OPTIONS)


def test_a_graph_name_kserve_cannot_give_its_router_is_refused_naming_the_limit() -> None:
    """KServe names the router's Deployment, its Service and its container after the
    InferenceGraph, and labels them `serving.kserve.io/inferencegraph: <name>` (kserve@00dfe13
    pkg/controller/v1alpha1/inferencegraph/raw_ig.go:60, 115, 118): a Service name and a label
    value are at most 63 characters, which no hash suffix may change (the graph's URL is its
    name). Found at render time, not as a router that never starts."""
    name = "customer-support-ticket-image-triage-pipeline-europe-middle-east"
    assert len(name) == 64
    graph = parse_graph(long_graph(name))
    with pytest.raises(RenderError, match=rf"graph '{name}'.*64 characters.*at most 63"):
        render(graph, "kserve", OPTIONS)
    fits = parse_graph(long_graph(name[:63].rstrip("-")))
    assert kind(render(fits, "kserve", OPTIONS), "InferenceGraph")
