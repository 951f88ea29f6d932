"""Autoscaling read against the engines' source (issue 29, audit 2026-12 defects 4-7, 10, 15).

Each test names the defect it pins and the engine behaviour (file:line) that makes the
rendered object wrong or right. `tests/test_prometheus_queries.py` evaluates the same queries
in a real Prometheus; these tests pin the rendered text and the chart.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.render import ENGINES, EXAMPLE_STORAGE, RenderOptions, render
from infergraph.render.seldon_v1 import PREDICTOR
from tests.test_chart import REQUIRED, by_kind, template

REPO = Path(__file__).resolve().parent.parent
GRAPHS = REPO / "k8s" / "graphs"
OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)


def shipped(name: str) -> InferenceGraph:
    return load_graph(GRAPHS / f"{name}.yaml")


def prometheus_queries(objs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(object name, trigger name, query) of every Prometheus query a rendered file holds:
    KEDA ScaledObjects, Seldon v1 kedaSpecs and KServe's External autoScaling metrics."""
    out: list[tuple[str, str, str]] = []
    for obj in objs:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ScaledObject":
            triggers = obj["spec"]["triggers"]
        elif obj["kind"] == "SeldonDeployment":
            specs = obj["spec"]["predictors"][0]["componentSpecs"]
            triggers = [t for s in specs for t in s.get("kedaSpec", {}).get("triggers", [])]
        elif obj["kind"] == "InferenceService":
            metrics = obj["spec"]["predictor"].get("autoScaling", {}).get("metrics", [])
            triggers = [
                {"name": f"external-{i}", "metadata": m["external"]["metric"]}
                for i, m in enumerate(metrics)
                if m["type"] == "External"
            ]
        else:
            continue
        out.extend(
            (name, t.get("name", ""), t["metadata"]["query"])
            for t in triggers
            if "query" in t.get("metadata", {})
        )
    return out


def all_queries() -> list[tuple[str, str, str, str]]:
    """(engine, object, trigger, query) over every shipped graph on every engine."""
    out = []
    for path in sorted(GRAPHS.glob("*.yaml")):
        for engine in ENGINES:
            objs = render(load_graph(path), engine, OPTIONS)
            out.extend((engine, *q) for q in prometheus_queries(objs))
    return out


# -- defect 5: the chart's PodMonitors ------------------------------------------------------
def _chart_pod_monitors() -> dict[str, dict[str, Any]]:
    values = {**REQUIRED, "prometheus": {"podMonitors": {"enabled": True}}}
    return {d["metadata"]["name"]: d for d in by_kind(template(values), "PodMonitor")}


def test_chart_v2_pod_monitor_selects_the_labels_seldon_gives_server_pods() -> None:
    """Seldon 2.10.2 labels server pods `app.kubernetes.io/name: seldon-server` and
    `seldon-server-name` only (sc2:operator/controllers/reconcilers/server/
    statefulset_reconciler.go:68-70); `app: seldon-server` selects no pod."""
    monitor = next(m for n, m in _chart_pod_monitors().items() if n.endswith("seldon-v2-servers"))
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "seldon-server"}
    }


def test_chart_v1_pod_monitor_scrapes_the_path_v1_units_serve() -> None:
    """The v1 operator sets PREDICTIVE_UNIT_METRICS_ENDPOINT / MLSERVER_METRICS_ENDPOINT to
    `/prometheus` (sc1:operator/controllers/seldondeployment_controller.go:867-876)."""
    monitor = next(m for n, m in _chart_pod_monitors().items() if n.endswith("seldon-v1-units"))
    assert {e["path"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"/prometheus"}


# -- defect 4: the v2 wake series is scraped and the difference never empty --------------
def test_v2_pod_monitor_scrapes_the_plumbing_server_the_wake_series_lives_on() -> None:
    """The gate and pass-through Models run on `<graph>-plumbing`; server pods are labelled
    with the Server's name (statefulset_reconciler.go:68-70), never a Model's."""
    objs = render(shipped("cascade"), "seldon-v2", OPTIONS)
    monitor = by_kind(objs, "PodMonitor")[0]
    (expr,) = monitor["spec"]["selector"]["matchExpressions"]
    assert expr["key"] == "seldon-server-name"
    servers = {o["metadata"]["name"] for o in by_kind(objs, "Server")}
    assert set(expr["values"]) == servers
    assert "cascade-plumbing" in servers


def test_v2_wake_query_guards_the_pass_through_side_with_no_series() -> None:
    """`A - B` is empty while B has no series; KEDA reads empty as 0 (keda:pkg/scalers/
    prometheus_scaler.go:267-271), so the node would never wake."""
    objs = render(shipped("cascade"), "seldon-v2", OPTIONS)
    wake = [q for _, t, q in prometheus_queries(objs) if t.endswith("-wake")]
    assert wake
    for query in wake:
        gate, passed = query.split(") - (")
        assert 'model="cascade-gate-0"' in gate and gate.endswith(" or vector(0)"), query
        assert 'model="cascade-pass-0"' in passed, query
        assert passed.split("[1m])))", 1)[1].startswith(" or vector(0)"), query


# -- defect 6: v1 Deployment naming -----------------------------------------------------------
def test_v1_queue_queries_match_the_pods_of_the_operators_deployments() -> None:
    """The v1 operator names a unit's Deployment `<sdep>-<predictor>-<componentSpec index>-
    <componentSpec metadata.name>` (sc1:operator/apis/machinelearning.seldon.io/v1/
    seldondeployment_types.go:120-136); pods add `-<replicaset hash>-<id>`."""
    checked = 0
    for name in ("cascade", "nlp", "caption", "audio-qa", "video-monitoring"):
        sdep = render(shipped(name), "seldon-v1", OPTIONS)[0]
        specs = sdep["spec"]["predictors"][0]["componentSpecs"]
        for index, spec in enumerate(specs):
            meta = spec["metadata"]
            deployment = f"{sdep['metadata']['name']}-{PREDICTOR}-{index}-{meta['name']}"
            for trigger in spec.get("kedaSpec", {}).get("triggers", []):
                match = re.search(r'pod=~"([^"]+)"', trigger["metadata"]["query"])
                if match is None:
                    continue
                assert re.fullmatch(match.group(1), f"{deployment}-7d9c8f6b5-x2x7q"), match[1]
                checked += 1
    assert checked >= 5


# -- defect 7: v2 gpu HPAs ----------------------------------------------------------------
@pytest.mark.parametrize("engine_kind", ["hpa", "keda"])
def test_v2_gpu_metric_is_refused_at_render_time(engine_kind: str) -> None:
    """A Model's scale selector is `server=<name>` (sc2:operator/scheduler/model.go:271) and
    matches no pod, so a per-pod GPU average (Value target) never computes on a Model."""
    doc = copy.deepcopy(shipped("ensemble").model_dump(by_alias=True, exclude_none=True))
    node = doc["spec"]["nodes"][0]
    node["resources"]["gpu"] = 1
    node["autoscaling"] = {
        "engine": engine_kind,
        "minReplicas": 1,
        "maxReplicas": 4,
        "metric": "gpu",
        "target": 70,
    }
    with pytest.raises(RenderError, match=r"metric 'gpu'.*Seldon Core v2"):
        render(parse_graph(doc), "seldon-v2", OPTIONS)


# -- defect 10: the wake trigger only wakes -------------------------------------------------
@pytest.mark.parametrize("engine", ["seldon-v2", "kserve"])
def test_wake_trigger_asks_for_one_replica_whatever_the_traffic(engine: str) -> None:
    """KEDA's prometheus triggers are AverageValue (KServe writes none, keda:pkg/scalers/
    scaler.go:101-110); the HPA asks `ceil(value / threshold)` per metric
    (k8s:replica_calculator.go GetExternalPerPodMetricReplicas). A 0/1 value against
    threshold 1 wakes one replica and never more; the node's own metric scales beyond."""
    wakes = []
    for name in ("cascade", "nlp"):
        objs = render(shipped(name), engine, OPTIONS)
        for obj in by_kind(objs, "ScaledObject"):
            wakes += [t for t in obj["spec"]["triggers"] if t["name"].endswith("-wake")]
        for obj in by_kind(objs, "InferenceService"):
            metrics = obj["spec"]["predictor"].get("autoScaling", {}).get("metrics", [])
            wakes += [
                {"metadata": {**m["external"]["metric"], "threshold": m["external"]["target"]}}
                for m in metrics[1:]
            ]
    assert wakes
    for trigger in wakes:
        meta = trigger["metadata"]
        assert meta["query"].endswith("> bool 0"), meta["query"]
        threshold = meta["threshold"]
        assert (threshold["value"] if isinstance(threshold, dict) else threshold) == "1"


# -- defect 15: namespaced, not double counted --------------------------------------------
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")


def test_every_rendered_query_names_its_namespace_and_counts_each_series_once() -> None:
    """Without a namespace a query sums a same-named graph in every namespace; with Seldon's
    own PodMonitors installed next to the kit's, each series is scraped twice under two
    `job` labels (prometheus-operator's job = <namespace>/<monitor>), so every series
    selector is wrapped in `max without (job)`."""
    queries = all_queries()
    assert len(queries) > 10
    for engine, obj, trigger, query in queries:
        selectors = SELECTOR.findall(query)
        assert selectors, query
        for _series, labels in selectors:
            assert re.search(r'namespace="[a-z0-9-]+"', labels), (engine, obj, trigger, query)
        assert query.count("max without (job)") == len(selectors), (engine, obj, query)


def test_rendered_objects_carry_the_namespace_their_queries_name() -> None:
    """A graph file without a namespace renders into `default`, and says so on every object,
    so `kubectl apply -n other` fails loudly instead of scaling on another namespace."""
    objs = render(shipped("cascade"), "kserve", OPTIONS)
    assert {o["metadata"].get("namespace") for o in objs} == {"default"}
    for _obj, _trigger, query in prometheus_queries(objs):
        assert 'namespace="default"' in query


# -- pod names as Kubernetes gives them ---------------------------------------------------------
def v1_operator_deployment(sdep: str, predictor: str, index: int, name: str) -> str:
    """seldon-core v1.18.2 operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go
    :120-136 `GetDeploymentName`: `<sdep>-<predictor>-<index>-<componentSpec metadata.name>`,
    `seldon-<md5>` past 63 characters (DEPLOYMENT_NAME_AS_PREFIX unset)."""
    import hashlib

    full = f"{sdep}-{predictor}-{index}-{name}"
    return full if len(full) <= 63 else "seldon-" + hashlib.md5(full.encode()).hexdigest()


def pod_names(deployment: str) -> list[str]:
    """Names a Deployment's pods can get. The ReplicaSet is `<deployment>-<pod-template-hash>`
    (kubernetes pkg/controller/deployment/sync.go, the hash a uint32 in decimal, safe-encoded:
    1 to 10 characters of `bcdfghjklmnpqrstvwxz2456789`); its pods are created with
    generateName `<replicaset>-` (pkg/controller/controller_utils.go `getPodsPrefix`), which the
    API server truncates to 58 characters before adding 5 random ones
    (k8s.io/apiserver pkg/storage/names/generate.go: maxNameLength 63, randomLength 5)."""
    return [f"{(f'{deployment}-{h}-')[:58]}x7k2q" for h in ("b", "7d9c8f6b5", "7d9c8f6b5z")]


def _pod_regex(query: str) -> str:
    found = re.search(r'pod=~"([^"]+)"', query)
    assert found, query
    return found[1]


@pytest.mark.parametrize("name", ["video-monitoring", "cascade", "nlp"])
def test_v1_and_kserve_pod_regexes_match_every_pod_name_kubernetes_can_give(name: str) -> None:
    """A queue/in-flight query's `pod=~` must match the scaled Deployment's pods however
    long its name: `video-monitoring`'s v1 detector Deployment is 52 characters, so its pods
    are `<deployment>-` plus 5 characters of the ReplicaSet hash and 5 random ones, one dash
    fewer than `<deployment>-[a-z0-9]+-[a-z0-9]+` wants."""
    graph = shipped(name)
    checked = 0
    sdep = render(graph, "seldon-v1", OPTIONS)[0]
    for index, spec in enumerate(sdep["spec"]["predictors"][0]["componentSpecs"]):
        deployment = v1_operator_deployment(graph.name, PREDICTOR, index, spec["metadata"]["name"])
        for trigger in spec.get("kedaSpec", {}).get("triggers", []):
            if "pod=~" in trigger["metadata"]["query"]:
                regex = _pod_regex(trigger["metadata"]["query"])
                assert all(re.fullmatch(regex, p) for p in pod_names(deployment)), regex
                checked += 1
    for isvc in by_kind(render(graph, "kserve", OPTIONS), "InferenceService"):
        for metric in isvc["spec"]["predictor"].get("autoScaling", {}).get("metrics", []):
            query = metric.get("external", {}).get("metric", {}).get("query", "")
            if "pod=~" in query:
                deployment = f"{isvc['metadata']['name']}-predictor"
                assert all(re.fullmatch(_pod_regex(query), p) for p in pod_names(deployment))
                checked += 1
    assert checked, f"{name}: no pod-matching query rendered"
