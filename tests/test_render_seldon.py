"""Renderers: every graph, both engines, validated against the real CRDs and core schemas.

Also pins how each topology maps (cascade -> gate + triggers / ROUTER, ensemble -> combiner
step / COMBINER), the pod hardening, labels, GPU resources and autoscaling objects, and that
the committed k8s/rendered/ tree matches the renderer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infergraph.container_images import DEFAULT_REGISTRY, MLSERVER_RUNTIMES
from infergraph.errors import GraphValidationError, RenderError
from infergraph.graph.plan import compile_plan, load_graph, parse_graph
from infergraph.render import (
    ENGINES,
    EXAMPLE_STORAGE,
    RenderOptions,
    drift,
    render,
    render_tree,
    to_yaml,
)
from infergraph.render.cli import app as render_app
from tests.test_render_schemas import CRDS, REPO, crds_available, validate

GRAPHS = REPO / "k8s" / "graphs"
RENDERED = REPO / "k8s" / "rendered"
GRAPH_FILES = sorted(GRAPHS.glob("*.yaml")) if GRAPHS.is_dir() else []

needs_crds = pytest.mark.skipif(
    not crds_available(),
    reason=f"CRD schemas not found at {CRDS}: clone the repo with ../shared beside it",
)

OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)


def graph_doc(name: str, nodes: list[dict[str, Any]], graph: dict[str, Any], **spec: Any) -> dict:
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name, "namespace": "ml"},
        "spec": {
            "inputs": spec.pop("inputs", [{"name": "text", "datatype": "BYTES", "shape": [-1]}]),
            "nodes": nodes,
            "graph": graph,
            **spec,
        },
    }


def clf(name: str, gpu: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "family": "text-classification",
        "modelUri": f"org/{name}",
        "resources": {"cpu": "1", "memory": "2Gi", "gpu": gpu},
        **extra,
    }


INLINE: dict[str, dict[str, Any]] = {
    "chain": graph_doc(
        "chain",
        [clf("sentiment", gpu=1), {"name": "post", "family": "identity"}],
        {"sequence": [{"node": "sentiment"}, {"node": "post", "role": "output-transformer"}]},
    ),
    "cascade": graph_doc(
        "cascade-x",
        [
            clf(
                "small",
                autoscaling={"engine": "hpa", "maxReplicas": 3, "metric": "inflight", "target": 4},
            ),
            clf(
                "big",
                gpu=1,
                autoscaling={
                    "engine": "keda",
                    "minReplicas": 0,
                    "maxReplicas": 2,
                    "metric": "queue",
                    "target": 4,
                    "cooldownSeconds": 120,
                },
            ),
        ],
        {
            "sequence": [
                {"node": "small"},
                {
                    "when": {"tensor": "small.confidence", "op": "lt", "value": 0.8},
                    "then": {"node": "big", "inputs": {"text": "request.text"}},
                },
            ]
        },
    ),
    "ensemble": graph_doc(
        "ensemble-x",
        [clf("a"), clf("b", gpu=1), {"name": "vote", "family": "combiner"}, clf("c"), clf("d")],
        {
            "sequence": [
                {
                    "ensemble": [{"node": "a"}, {"node": "b"}],
                    "combine": {"node": "vote", "tensor": "scores"},
                },
            ]
        },
    ),
    "builtin": graph_doc(
        "builtin",
        [clf("a"), clf("b"), clf("c")],
        {
            "sequence": [
                {"node": "c"},
                {"ensemble": [{"node": "a"}, {"node": "b"}], "combine": {"method": "average"}},
            ]
        },
    ),
    "branches": graph_doc(
        "branches",
        [clf("lang"), clf("fr"), clf("en"), {"name": "tail", "family": "identity"}],
        {
            "sequence": [
                {"node": "lang"},
                {
                    "when": {"tensor": "lang.label", "op": "eq", "value": "fr"},
                    "then": {"node": "fr", "inputs": {"text": "request.text"}},
                    "otherwise": {"node": "en", "inputs": {"text": "request.text"}},
                },
                {"node": "tail", "role": "output-transformer"},
            ]
        },
    ),
}
# ensemble-x declares c/d for nothing: drop them (validation wants every node used).
INLINE["ensemble"]["spec"]["nodes"] = INLINE["ensemble"]["spec"]["nodes"][:3]


def inline(name: str):
    return parse_graph(copy.deepcopy(INLINE[name]))


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "ServerConfig":
        return [obj["spec"]["podSpec"]]
    if obj["kind"] == "SeldonDeployment":
        return [c["spec"] for p in obj["spec"]["predictors"] for c in p["componentSpecs"]]
    return []


def check_hardening(objs: list[dict[str, Any]]) -> None:
    """Restricted Pod Security Standard, resources everywhere, GPU requests == limits."""
    for obj in objs:
        for pod in pod_specs(obj):
            sc = pod["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            volumes = {v["name"] for v in pod["volumes"]}
            assert {"tmp", "cache"} <= volumes
            for c in pod["containers"]:
                csc = c["securityContext"]
                assert csc["allowPrivilegeEscalation"] is False
                assert csc["capabilities"] == {"drop": ["ALL"]}
                assert csc["runAsNonRoot"] is True
                assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
                res = c["resources"]
                assert res["requests"] and res["limits"], c["name"]
                gpu = res["requests"].get("nvidia.com/gpu")
                assert gpu == res["limits"].get("nvidia.com/gpu")
                if c["image"].startswith(f"{DEFAULT_REGISTRY}/"):
                    assert csc["readOnlyRootFilesystem"] is True
                    mounts = {m["mountPath"] for m in c["volumeMounts"]}
                    assert {"/tmp", "/cache"} <= mounts
                    env = {e["name"]: e.get("value") for e in c["env"]}
                    assert env["HF_HOME"].startswith("/cache")


def check_labels(objs: list[dict[str, Any]], graph: str) -> None:
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "infergraph"
        assert labels["app.kubernetes.io/managed-by"] == "infergraph-render"
        assert labels["infergraph.io/graph"] == graph
        assert labels["app.kubernetes.io/name"]
        if obj["kind"] not in (
            "Pipeline",
            "SeldonDeployment",
            "PodMonitor",
            "InferenceGraph",
            "ServingRuntime",
        ):
            assert labels["infergraph.io/node"], obj["metadata"]["name"]


# -- every graph, both engines -----------------------------------------------------------------
@needs_crds
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("path", GRAPH_FILES, ids=[p.stem for p in GRAPH_FILES])
def test_graph_files_render_valid_manifests(path: Path, engine: str) -> None:
    from infergraph.graph.plan import load_graph

    graph = load_graph(path)
    objs = render(graph, engine, OPTIONS)
    problems = [p for obj in objs for p in validate(obj)]
    assert not problems, "\n".join(problems)
    check_hardening(objs)
    check_labels(objs, graph.name)
    # The YAML round-trips to the same objects (what kubectl apply reads).
    assert list(yaml.safe_load_all(to_yaml(objs))) == objs


@needs_crds
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", sorted(INLINE))
def test_inline_topologies_render_valid_manifests(name: str, engine: str) -> None:
    graph = inline(name)
    objs = render(graph, engine, OPTIONS)
    problems = [p for obj in objs for p in validate(obj)]
    assert not problems, "\n".join(problems)
    check_hardening(objs)
    check_labels(objs, graph.name)


def test_graph_folder_is_not_empty() -> None:
    if not GRAPHS.is_dir():
        pytest.skip("k8s/graphs not present yet")
    assert GRAPH_FILES


# -- topology mapping ------------------------------------------------------------------------------
def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_cascade_v2_gate_triggers_and_any_output() -> None:
    objs = render(inline("cascade"), "seldon-v2", OPTIONS)
    pipeline = by_kind(objs, "Pipeline")[0]["spec"]
    steps = {s["name"]: s for s in pipeline["steps"]}
    gate = steps["cascade-x-gate-0"]
    assert gate["inputs"] == ["cascade-x-small.outputs.confidence"]
    assert gate["tensorMap"] == {"cascade-x-small.outputs.confidence": "value"}
    big = steps["cascade-x-big"]
    assert big["inputs"] == ["cascade-x.inputs.text"]
    assert big["triggers"] == ["cascade-x-gate-0.outputs.then"]
    passthrough = steps["cascade-x-pass-0"]
    assert passthrough["triggers"] == ["cascade-x-gate-0.outputs.otherwise"]
    assert "cascade-x-small.outputs.scores" in passthrough["inputs"]
    output = pipeline["output"]
    assert output["stepsJoin"] == "any"
    assert "cascade-x-big.outputs.scores" in output["steps"]
    assert "cascade-x-pass-0.outputs.scores" in output["steps"]
    models = {m["metadata"]["name"]: m["spec"] for m in by_kind(objs, "Model")}
    assert models["cascade-x-big"]["requirements"] == ["infergraph", "nvidia-gpu"]
    assert models["cascade-x-big"]["server"] == "cascade-x-big"
    # No min/max on the Model: those switch on Seldon's own autoscaling (see the HPA guide).
    assert "minReplicas" not in models["cascade-x-big"]
    assert models["cascade-x-gate-0"]["server"] == "cascade-x-plumbing"


def test_cascade_v2_model_settings_carry_condition_and_hub_id() -> None:
    from infergraph.render.seldon_v2 import model_settings

    settings = model_settings(inline("cascade"), OPTIONS)
    gate = settings["cascade-x-gate-0"]
    assert gate["implementation"] == "infergraph.serving.mlserver_runtime.ComponentRuntime"
    assert gate["parameters"]["extra"]["family"] == "gate"
    assert gate["parameters"]["extra"]["options"]["condition"]["op"] == "lt"
    big = settings["cascade-x-big"]
    assert big["parameters"]["uri"] == "org/big"
    assert big["parameters"]["extra"]["family"] == "text-classification"


def test_cascade_v1_router_with_pass_through() -> None:
    sdep = render(inline("cascade"), "seldon-v1", OPTIONS)[0]
    predictor = sdep["spec"]["predictors"][0]
    root = predictor["graph"]
    assert sdep["spec"]["protocol"] == "seldon"
    assert (root["name"], root["type"]) == ("small", "MODEL")
    router = root["children"][0]
    assert router["type"] == "ROUTER"
    assert [c["name"] for c in router["children"]] == ["big", "pass-0"]
    params = {p["name"]: p["value"] for p in router["parameters"]}
    assert '"tensor": "small.confidence"' in params["condition"]
    specs = {c["metadata"]["name"]: c for c in predictor["componentSpecs"]}
    big = specs["cascade-x-big"]
    # Scale to zero would take the whole v1 graph down (the executor's readiness dials every
    # unit): rendered at one replica, and the SeldonDeployment says so.
    assert big["kedaSpec"]["minReplicaCount"] == 1
    assert (
        "minReplicas 0 rendered as 1"
        in sdep["metadata"]["annotations"]["infergraph.io/render-notes"]
    )
    assert big["kedaSpec"]["cooldownPeriod"] == 120
    assert "replicas" not in big  # the operator leaves replicas to KEDA
    triggers = big["kedaSpec"]["triggers"]
    assert [t["name"] for t in triggers] == ["big-queue"]
    small = specs["cascade-x-small"]
    assert small["hpaSpec"]["metrics"][0]["pods"]["metricName"] == "infergraph_inflight_requests"
    container = big["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"] == ["--service-type", "MODEL"]
    assert big["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_ensemble_v2_combiner_step_and_v1_combiner_unit() -> None:
    objs = render(inline("ensemble"), "seldon-v2", OPTIONS)
    steps = {s["name"]: s for s in by_kind(objs, "Pipeline")[0]["spec"]["steps"]}
    vote = steps["ensemble-x-vote"]
    assert vote["inputs"] == ["ensemble-x-a.outputs.scores", "ensemble-x-b.outputs.scores"]
    assert vote["tensorMap"] == {
        "ensemble-x-a.outputs.scores": "scores_0",
        "ensemble-x-b.outputs.scores": "scores_1",
    }
    sdep = render(inline("ensemble"), "seldon-v1", OPTIONS)[0]
    root = sdep["spec"]["predictors"][0]["graph"]
    assert (root["name"], root["type"]) == ("vote", "COMBINER")
    assert [c["name"] for c in root["children"]] == ["a", "b"]


def test_builtin_average_synthesizes_a_combiner() -> None:
    objs = render(inline("builtin"), "seldon-v2", OPTIONS)
    models = {m["metadata"]["name"] for m in by_kind(objs, "Model")}
    assert "builtin-combine-0" in models
    sdep = render(inline("builtin"), "seldon-v1", OPTIONS)[0]
    root = sdep["spec"]["predictors"][0]["graph"]
    combiner = root["children"][0]
    assert (combiner["name"], combiner["type"]) == ("combine-0", "COMBINER")
    params = {p["name"]: p["value"] for p in combiner["parameters"]}
    assert params["method"] == "average"


def test_v1_merge_unit_carries_only_what_later_steps_and_the_outputs_read() -> None:
    """A synthesized `merge-N` COMBINER had no `carry`, so it echoed every carried tensor
    (the request image, the detector's crops) back to the client; it carries as a step
    unit does: what later steps and the graph's outputs read."""
    graph = load_graph(GRAPHS / "video-monitoring.yaml")
    sdep = by_kind(render(graph, "seldon-v1", OPTIONS), "SeldonDeployment")[0]
    units: list[dict[str, Any]] = []
    todo = [sdep["spec"]["predictors"][0]["graph"]]
    while todo:
        unit = todo.pop()
        units.append(unit)
        todo.extend(unit.get("children", []))
    merges = [u for u in units if u["name"].startswith("merge-")]
    assert merges
    for merge in merges:
        params = {p["name"]: p["value"] for p in merge.get("parameters", [])}
        assert "carry" in params, params
        carried = json.loads(params["carry"])
        outputs = {s.ref for alts in compile_plan(graph).outputs.values() for s in alts}
        assert outputs <= set(carried)
        assert "request.image" not in carried and "detector.crops" not in carried


def test_when_with_otherwise_then_output_transformer() -> None:
    objs = render(inline("branches"), "seldon-v2", OPTIONS)
    steps = {s["name"]: s for s in by_kind(objs, "Pipeline")[0]["spec"]["steps"]}
    assert steps["branches-en"]["triggers"] == ["branches-gate-0.outputs.otherwise"]
    tail = steps["branches-tail"]
    assert tail["inputsJoinType"] == "any"
    sdep = render(inline("branches"), "seldon-v1", OPTIONS)[0]
    root = sdep["spec"]["predictors"][0]["graph"]
    # The step after the ROUTER wraps the whole subtree as an OUTPUT_TRANSFORMER.
    assert (root["name"], root["type"]) == ("tail", "OUTPUT_TRANSFORMER")
    assert root["children"][0]["name"] == "lang"
    assert root["children"][0]["children"][0]["type"] == "ROUTER"


def test_plain_chain_uses_protocol_v2_with_mlserver_units() -> None:
    sdep = render(inline("chain"), "seldon-v1", OPTIONS)[0]
    assert sdep["spec"]["protocol"] == "v2"
    predictor = sdep["spec"]["predictors"][0]
    root = predictor["graph"]
    # A leaf OUTPUT_TRANSFORMER transforms what its parent returns.
    assert (root["name"], root["type"]) == ("sentiment", "MODEL")
    assert (root["children"][0]["name"], root["children"][0]["type"]) == (
        "post",
        "OUTPUT_TRANSFORMER",
    )
    container = predictor["componentSpecs"][0]["spec"]["containers"][0]
    assert container["image"].startswith(f"{DEFAULT_REGISTRY}/{MLSERVER_RUNTIMES}:")
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["MLSERVER_MODEL_URI"] == "org/sentiment"
    assert '"family": "text-classification"' in env["MLSERVER_MODEL_EXTRA"]


def test_hpa_objects_for_v2_model_and_server() -> None:
    objs = render(inline("cascade"), "seldon-v2", OPTIONS)
    hpas = {h["metadata"]["name"]: h["spec"] for h in by_kind(objs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"cascade-x-small-model", "cascade-x-small-server"}
    model = hpas["cascade-x-small-model"]
    assert model["scaleTargetRef"] == {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "name": "cascade-x-small",
    }
    # Seldon's HPA guide: an Object metric describing the Model, the same for its Server.
    assert model["metrics"][0]["object"] == {
        "describedObject": {
            "apiVersion": "mlops.seldon.io/v1alpha1",
            "kind": "Model",
            "name": "cascade-x-small",
        },
        "metric": {"name": "infergraph_model_inflight"},
        "target": {"type": "AverageValue", "averageValue": "4"},
    }
    assert hpas["cascade-x-small-server"]["metrics"] == model["metrics"]
    assert model["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    scaled = {s["metadata"]["name"]: s["spec"] for s in by_kind(objs, "ScaledObject")}
    assert set(scaled) == {"cascade-x-big-model", "cascade-x-big-server"}
    server = scaled["cascade-x-big-server"]
    assert server["minReplicaCount"] == 0 and server["cooldownPeriod"] == 120
    assert server["triggers"][0]["metadata"]["query"].startswith(
        "sum(max without (job) (infergraph_batch_queue_size"
    )
    assert 'namespace="ml"' in server["triggers"][0]["metadata"]["query"]
    # The wake trigger follows what the gate sends on: the gate's rate less the pass-through's.
    wake = server["triggers"][1]["metadata"]["query"]
    assert 'model="cascade-x-gate-0"' in wake and 'model="cascade-x-pass-0"' in wake


def _scaled_targets(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiVersion, kind, name) of every object a rendered HPA or ScaledObject scales."""
    out = set()
    for obj in objs:
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            ref = obj["spec"]["scaleTargetRef"]
            out.add((ref.get("apiVersion", "apps/v1"), ref.get("kind", "Deployment"), ref["name"]))
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "source", [*(p.stem for p in GRAPH_FILES), *(f"inline:{n}" for n in sorted(INLINE))]
)
def test_autoscaled_objects_carry_no_replica_count(source: str, engine: str) -> None:
    """The HPA (or KEDA's HPA) owns `spec.replicas` of its target through the `/scale`
    subresource (the Seldon v2 CRDs' `specReplicasPath: .spec.replicas`): a manifest that also
    sets it is applied back over every scale decision by `kubectl apply` and by the operator."""
    from infergraph.graph.plan import load_graph

    try:
        graph = (
            inline(source.split(":", 1)[1])
            if source.startswith("inline:")
            else load_graph(GRAPHS / f"{source}.yaml")
        )
        objs = render(graph, engine, OPTIONS)
    except RenderError:
        pytest.skip(f"{source} does not render for {engine}")
    targets = _scaled_targets(objs)
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        if key in targets:
            assert "replicas" not in obj["spec"], f"{key} is autoscaled but sets spec.replicas"


# -- bad specs -------------------------------------------------------------------------------------
def test_max_below_min_is_a_clear_error() -> None:
    doc = copy.deepcopy(INLINE["cascade"])
    doc["spec"]["nodes"][0]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 2}
    with pytest.raises(GraphValidationError, match=r"maxReplicas \(2\) is below minReplicas"):
        parse_graph(doc)
    # A graph edited after validation (or built in code) is caught by the renderer itself.
    graph = inline("cascade")
    auto = graph.node("small").autoscaling
    assert auto is not None
    auto.min_replicas, auto.max_replicas = 3, 2
    for engine in ENGINES:
        with pytest.raises(RenderError, match=r"node 'small' autoscaling: maxReplicas \(2\)"):
            render(graph, engine, OPTIONS)


def test_gpu_on_cpu_only_component_is_a_clear_error() -> None:
    doc = copy.deepcopy(INLINE["chain"])
    doc["spec"]["nodes"][1]["resources"] = {"gpu": 1}
    with pytest.raises(GraphValidationError, match="family 'identity' cannot use one"):
        parse_graph(doc)
    graph = inline("chain")
    graph.node("post").resources.gpu = 1
    for engine in ENGINES:
        with pytest.raises((RenderError, GraphValidationError), match="'identity'"):
            render(graph, engine, OPTIONS)


def test_gpu_metric_without_gpu_and_cpu_scale_to_zero_are_errors() -> None:
    graph = inline("cascade")
    auto = graph.node("small").autoscaling
    assert auto is not None
    auto.metric = "gpu"
    with pytest.raises(RenderError, match="metric 'gpu' on a node that requests no GPU"):
        render(graph, "seldon-v2", OPTIONS)
    graph = inline("cascade")
    big = graph.node("big").autoscaling
    assert big is not None
    big.metric = "cpu"
    with pytest.raises(RenderError, match="scale to zero needs an event metric"):
        render(graph, "seldon-v1", OPTIONS)


def test_v1_cannot_run_a_cascade_after_an_ensemble() -> None:
    doc = graph_doc(
        "late",
        [clf("a"), clf("b"), clf("big")],
        {
            "sequence": [
                {"ensemble": [{"node": "a"}, {"node": "b"}], "combine": {"method": "average"}},
                {
                    "when": {"tensor": "a.confidence", "op": "lt", "value": 0.5},
                    "then": {"node": "big", "inputs": {"text": "request.text"}},
                },
            ]
        },
    )
    graph = parse_graph(doc)
    with pytest.raises(RenderError, match=r"seldon-v1: .*a when cannot follow 'combine-0'"):
        render(graph, "seldon-v1", OPTIONS)
    # Seldon v2 expresses it with a gate after the combiner.
    assert by_kind(render(graph, "seldon-v2", OPTIONS), "Pipeline")


def test_v2_cannot_mix_branch_alternatives_with_fixed_inputs() -> None:
    doc = graph_doc(
        "mixed",
        [
            clf("lang"),
            {"name": "tr", "family": "translation", "modelUri": "org/tr"},
            {"name": "qa", "family": "question-answering", "modelUri": "org/qa"},
        ],
        {
            "sequence": [
                {"node": "lang"},
                {
                    "when": {"tensor": "lang.label", "op": "ne", "value": "en"},
                    "then": {"node": "tr", "inputs": {"text": "request.text"}},
                },
                {
                    "node": "qa",
                    "inputs": {
                        "question": "tr.translation | request.text",
                        "context": "request.text",
                    },
                },
            ]
        },
    )
    graph = parse_graph(doc)
    with pytest.raises(RenderError, match=r"seldon-v2: .*one join type for all its inputs"):
        render(graph, "seldon-v2", OPTIONS)
    # v1 units resolve alternatives at run time from the carried tensors.
    assert render(graph, "seldon-v1", OPTIONS)


# -- committed manifests and the CLI ----------------------------------------------------------
def test_committed_manifests_match_the_renderer() -> None:
    if not GRAPH_FILES:
        pytest.skip("no graphs under k8s/graphs")
    problems = drift(render_tree(GRAPHS, options=OPTIONS), RENDERED)
    assert not problems, (
        "k8s/rendered is out of date; run `infergraph render --all --out k8s/rendered`:\n"
        + "\n".join(problems)
    )


def test_cli_renders_one_graph_and_checks_drift(tmp_path: Path) -> None:
    source = tmp_path / "cascade.yaml"
    source.write_text(yaml.safe_dump(INLINE["cascade"]))
    runner = CliRunner()
    result = runner.invoke(
        render_app, [str(source), "--engine", "seldon-v1", "--storage-uri", EXAMPLE_STORAGE]
    )
    assert result.exit_code == 0, result.output
    sdep = next(iter(yaml.safe_load_all(result.output)))
    assert sdep["kind"] == "SeldonDeployment"

    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "cascade.yaml").write_text(source.read_text())
    out = tmp_path / "rendered"
    args = ["--all", "--graphs", str(graphs), "--out", str(out), "--storage-uri", EXAMPLE_STORAGE]
    assert runner.invoke(render_app, args).exit_code == 0
    assert (out / "seldon-v2" / "cascade-x.yaml").is_file()
    settings = out / "seldon-v2" / "cascade-x" / "model-settings" / "cascade-x-big"
    assert (settings / "model-settings.json").is_file()
    assert runner.invoke(render_app, [*args, "--check"]).exit_code == 0
    (out / "seldon-v1" / "cascade-x.yaml").write_text("stale\n")
    result = runner.invoke(render_app, [*args, "--check"])
    assert result.exit_code == 1
    assert "seldon-v1/cascade-x.yaml: differs" in result.output


def test_cli_reports_bad_specs_without_a_traceback(tmp_path: Path) -> None:
    doc = copy.deepcopy(INLINE["cascade"])
    doc["spec"]["nodes"][0]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(render_app, [str(bad), "--engine", "seldon-v2"])
    assert result.exit_code == 2
    assert "maxReplicas (1) is below minReplicas (3)" in result.output


@pytest.mark.parametrize("path", GRAPH_FILES, ids=lambda p: p.stem)
def test_v2_liveness_probe_waits_out_a_loading_runtime(path: Path) -> None:
    """The agent loads Models after startup, under the livenessProbe (audit 12): every mlserver
    container answers within 5 s and is restarted only after a minute without an answer."""
    graph = parse_graph(yaml.safe_load(path.read_text()))
    for config in by_kind(render(graph, "seldon-v2", OPTIONS), "ServerConfig"):
        containers = {c["name"]: c for c in config["spec"]["podSpec"]["containers"]}
        env = {e["name"]: e.get("value") for e in containers["mlserver"]["env"]}
        assert env["MLSERVER_LOAD_MODELS_AT_STARTUP"] == "false"  # the startupProbe misses loads
        probe = containers["mlserver"]["livenessProbe"]
        assert probe["httpGet"] == {"path": "/v2/health/live", "port": "server-http"}
        assert probe["timeoutSeconds"] >= 5
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 60


def test_v2_joins_that_may_wait_for_a_node_scaled_to_zero_get_a_cold_start_window() -> None:
    """Seldon v2 drops a join's message after 60 s (audit 16): a join fed by a node with
    minReplicas 0 waits as long as the server may take to start; others keep the default."""
    from infergraph.render.seldon_v2 import COLD_START_JOIN_WINDOW_MS

    doc = copy.deepcopy(INLINE["ensemble"])
    keda = {"engine": "keda", "minReplicas": 0, "maxReplicas": 2, "metric": "queue", "target": 4}
    doc["spec"]["nodes"][1]["autoscaling"] = keda  # b, an ensemble member, scales to zero
    pipeline = by_kind(render(parse_graph(doc), "seldon-v2", OPTIONS), "Pipeline")[0]["spec"]
    steps = {s["name"]: s for s in pipeline["steps"]}
    assert steps["ensemble-x-vote"]["joinWindowMs"] == COLD_START_JOIN_WINDOW_MS
    assert COLD_START_JOIN_WINDOW_MS >= 60 * 10 * 1000  # the mlserver startupProbe's budget
    for single in ("ensemble-x-a", "ensemble-x-b"):  # one topic each: nothing to join
        assert "joinWindowMs" not in steps[single]
    warm = by_kind(render(inline("ensemble"), "seldon-v2", OPTIONS), "Pipeline")[0]["spec"]
    assert all("joinWindowMs" not in s for s in warm["steps"])
    assert "joinWindowMs" not in warm["output"]


def test_v2_cascade_any_join_behind_a_cold_node_needs_no_window() -> None:
    """The shipped cascade's cold node (accurate, minReplicas 0) feeds only the output's `any`
    join, whose window is a fixed 1 ms whatever the spec says (Joiner.kt:105-121)."""
    graph = parse_graph(yaml.safe_load((GRAPHS / "cascade.yaml").read_text()))
    pipeline = by_kind(render(graph, "seldon-v2", OPTIONS), "Pipeline")[0]["spec"]
    assert pipeline["output"]["stepsJoin"] == "any"
    assert "joinWindowMs" not in pipeline["output"]


def test_a_node_named_like_an_object_the_engine_names_itself_is_refused() -> None:
    """Seldon v2 runs the helper steps on `<graph>-plumbing`; a node called `plumbing` would
    render a second Server and ServerConfig of that name, and applying both would leave one
    of the two model servers. Any two objects of one kind and name are refused, naming them."""
    data = yaml.safe_load((GRAPHS / "cascade.yaml").read_text())
    data["spec"]["nodes"][1]["name"] = "plumbing"
    data["spec"]["graph"]["sequence"][1]["then"]["node"] = "plumbing"
    graph = parse_graph(data)
    with pytest.raises(RenderError, match=r"ServerConfig 'default-cascade-plumbing'.*rename"):
        render(graph, "seldon-v2", OPTIONS)
    assert render(graph, "kserve", OPTIONS)  # its names do not collide there


def _server_configs_seldon_reads(objs: list[dict], seldon_namespace: str) -> dict[str, dict]:
    """Seldon v2.10.2's controller looks a Server's `spec.serverConfig` up by name in its own
    namespace only: `GetServerConfigForServer` gets `{Name: serverConfig, Namespace:
    constants.SeldonNamespace}` (operator/apis/mlops/v1alpha1/serverconfig_types.go:75-87),
    `SeldonNamespace` being the controller pod's POD_NAMESPACE, `seldon-mesh` by default
    (operator/pkg/constants/constants.go:33)."""
    found = {
        o["metadata"]["name"]: o
        for o in by_kind(objs, "ServerConfig")
        if o["metadata"]["namespace"] == seldon_namespace
    }
    return {
        s["metadata"]["name"]: found.get(s["spec"]["serverConfig"]) for s in by_kind(objs, "Server")
    }


def test_v2_servers_find_their_server_configs_where_seldons_controller_reads_them() -> None:
    """Audit defect 1 on the render path: `infergraph render` (and the committed files the
    README applies with plain kubectl) put ServerConfigs in the graph's namespace, where no
    Server of a standard install ever finds one. They go to Seldon's namespace (default
    `seldon-mesh`), named `<graph namespace>-<name>` as the operator names them."""
    graph = inline("cascade")  # namespace ml
    objs = render(graph, "seldon-v2", OPTIONS)
    for server, config in _server_configs_seldon_reads(objs, "seldon-mesh").items():
        assert config is not None, f"Server {server}: no ServerConfig in seldon-mesh"
        assert config["metadata"]["name"] == f"ml-{server}"
    assert all(o["metadata"]["namespace"] == "ml" for o in objs if o["kind"] != "ServerConfig")
    # A namespaced Seldon install (its controller in the graph's namespace) keeps them there.
    home = render(
        graph, "seldon-v2", RenderOptions(storage_uri=EXAMPLE_STORAGE, seldon_namespace="ml")
    )
    assert all(_server_configs_seldon_reads(home, "ml").values())


def test_committed_v2_manifests_apply_on_a_standard_seldon_install() -> None:
    """The README's `kubectl apply -f k8s/rendered/seldon-v2/cascade.yaml`: every Server's
    ServerConfig is in `seldon-mesh`."""
    objs = list(yaml.safe_load_all((RENDERED / "seldon-v2" / "cascade.yaml").read_text()))
    assert all(_server_configs_seldon_reads([o for o in objs if o], "seldon-mesh").values())


def test_render_cli_takes_seldons_namespace(tmp_path: Path) -> None:
    """`--seldon-namespace` names the controller's namespace; empty keeps the graph's own."""
    path = GRAPHS / "cascade.yaml"
    for flag, where in (("seldon-system", "seldon-system"), ("", "default")):
        result = CliRunner().invoke(
            render_app,
            [
                str(path),
                "-e",
                "seldon-v2",
                "--storage-uri",
                EXAMPLE_STORAGE,
                "--seldon-namespace",
                flag,
            ],
        )
        assert result.exit_code == 0, result.output
        objs = [o for o in yaml.safe_load_all(result.stdout) if o]
        assert all(_server_configs_seldon_reads(objs, where).values())


def test_regenerate_hints_name_a_command_that_works(tmp_path: Path) -> None:
    """The committed files' header and `render --check`'s hint said `infergraph render --all
    --out k8s/rendered`, which stops without a storage prefix; `make render` passes one."""
    from infergraph.render import HEADER

    assert "make render" in HEADER and "render --all --out k8s/rendered`" not in HEADER
    result = CliRunner().invoke(
        render_app,
        ["--all", "--out", str(tmp_path), "--storage-uri", EXAMPLE_STORAGE, "--check"],
    )
    assert result.exit_code == 1
    assert "make render" in result.output


def test_a_queue_bound_seldon_v1_units_cannot_keep_is_said_in_the_notes() -> None:
    """seldon-core-microservice answers each request on its own worker, with no queue of ours
    to bound: `batching.maxQueueRows` does nothing there, and the SeldonDeployment says so
    rather than promising a 503 that never comes."""
    data = copy.deepcopy(INLINE["cascade"])
    data["spec"]["nodes"][0]["batching"] = {"maxBatchSize": 4, "maxQueueRows": 16}
    sdep = render(parse_graph(data), "seldon-v1", OPTIONS)[0]
    assert sdep["spec"]["protocol"] == "seldon"
    notes = sdep["metadata"]["annotations"]["infergraph.io/render-notes"]
    assert "small: batching.maxQueueRows is not enforced" in notes, notes
    plain = render(inline("cascade"), "seldon-v1", OPTIONS)[0]
    assert "maxQueueRows" not in plain["metadata"]["annotations"]["infergraph.io/render-notes"]
