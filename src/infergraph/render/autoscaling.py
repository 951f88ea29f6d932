"""Per-node autoscaling: autoscaling/v2 HPAs and KEDA ScaledObjects from `node.autoscaling`.

Metric sources (the Prometheus-adapter rules and exporters they need are listed in
docs/rendering.md):

- cpu: the kubelet's resource metric (HPA `Resource`, KEDA `cpu` scaler).
- inflight / queue: per-pod gauges the runtimes export (`infergraph_inflight_requests`,
  `infergraph_batch_queue_size`).
- rps: the engine's own request counter (Seldon v2 agent `seldon_model_infer_total`,
  Seldon v1 executor `seldon_api_executor_client_requests_seconds_count`).
- gpu: DCGM exporter's `DCGM_FI_DEV_GPU_UTIL` per pod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infergraph.engines import engine as engine_named
from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph, Node
from infergraph.graph.plan import BranchRef, GraphPlan, Side
from infergraph.json_types import JSONObject, Manifest, at
from infergraph.render import common

PROMETHEUS_ANNOTATION = "infergraph.io/prometheus-url"
DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"

# Pods metrics served by the Prometheus adapter (names as the adapter exposes them).
PODS_METRICS = {
    "inflight": "infergraph_inflight_requests",
    "queue": "infergraph_batch_queue_size",
    "rps": "infergraph_requests_per_second",
    "gpu": "DCGM_FI_DEV_GPU_UTIL",
}
# Series that KEDA queries directly (no adapter in between).
SERIES = {
    "inflight": "infergraph_inflight_requests",
    "queue": "infergraph_batch_queue_size",
    "gpu": "DCGM_FI_DEV_GPU_UTIL",
}
V2_RPS_SERIES = "seldon_model_infer_total"
V1_RPS_SERIES = "seldon_api_executor_client_requests_seconds_count"
V2_PIPELINE_SERIES = "seldon_pipeline_infer_total"
# Object metrics on a Seldon v2 Model, served by the prometheus-adapter rules in
# `prometheus_adapter_rules()` (Seldon's HPA guide: one metric describing the Model, used by
# both the Model's and the Server's HPA so they scale in step).
OBJECT_METRICS = {
    "rps": "infergraph_model_rps",
    "inflight": "infergraph_model_inflight",
    "queue": "infergraph_model_queue",
}


@dataclass(frozen=True)
class Target:
    """What a scaler scales and how Prometheus finds its pods and requests."""

    api_version: str
    kind: str
    name: str
    pod_regex: str
    rps_selector: dict[str, str]
    rps_series: str
    # Request rate measured outside the scaled pods (executor / pipeline gateway): with zero
    # replicas the pods' own metrics vanish, so this is what wakes a scaled-to-zero node.
    wake_query: str | None = None
    # (apiVersion, kind, name) of the object an HPA `Object` metric describes (Seldon v2).
    described: tuple[str, str, str] | None = None


# A pod's generated name: the API server keeps at most 58 characters of generateName and
# adds 5 random ones (k8s.io/apiserver pkg/storage/names/generate.go).
GENERATED_PREFIX_MAX = 58
POD_TEMPLATE_HASH_MAX = 10  # a uint32 in decimal, safe-encoded (deployment/util)


def deployment_pod_regex(deployment: str) -> str:
    """The names of a Deployment's pods, as a Prometheus (fully anchored) regex.

    A pod is named from generateName `<deployment>-<pod-template-hash>-` (the ReplicaSet's
    name and a dash, kubernetes pkg/controller/controller_utils.go `getPodsPrefix`), cut to
    58 characters, plus 5 random ones: past a 46-character Deployment name the cut falls in
    the hash or its dash, and the pod has one dash fewer than a short name's pods.
    """
    if len(deployment) + POD_TEMPLATE_HASH_MAX + 2 <= GENERATED_PREFIX_MAX:
        return f"{deployment}-[a-z0-9]+-[a-z0-9]+"
    kept = f"{deployment}-"[:GENERATED_PREFIX_MAX]
    return f"{kept}[a-z0-9-]+"


def check(node: Node, engine: str) -> None:
    """Reject autoscaling settings the engine cannot honour, naming the node and field."""
    auto = node.autoscaling
    if auto is None:
        return
    where = f"node '{node.name}' autoscaling"
    if auto.max_replicas < auto.min_replicas:
        raise RenderError(
            engine,
            f"{where}: maxReplicas ({auto.max_replicas}) is below "
            f"minReplicas ({auto.min_replicas})",
        )
    if auto.metric == "gpu" and not node.resources.gpu:
        raise RenderError(engine, f"{where}: metric 'gpu' on a node that requests no GPU")
    if auto.min_replicas == 0:
        if auto.engine != "keda":
            raise RenderError(engine, f"{where}: minReplicas 0 (scale to zero) needs engine keda")
        if auto.metric == "cpu":
            raise RenderError(
                engine,
                f"{where}: scale to zero needs an event metric (rps, queue, inflight); "
                "CPU utilisation of zero pods is undefined, so KEDA's cpu scaler cannot wake it",
            )


def check_engine(node: Node, engine: str) -> None:
    """What an engine's own scaling model rules out, said at render time."""
    auto = node.autoscaling
    if auto is None:
        return
    why = engine_named(engine).refused_metrics.get(auto.metric)
    if why is not None:
        raise RenderError(engine, f"node '{node.name}' autoscaling: {why}")


def v2_branch_rate(
    graph: InferenceGraph, plan: GraphPlan, node: str, model_name: Callable[[str], str]
) -> str:
    """Requests that reach a node on Seldon v2: what wakes it from zero replicas.

    Outside any branch that is the pipeline's rate. Inside a `when` branch it is the gate's
    rate less the rate of the other side's first step (a cascade's pass-through): the
    requests the gate actually sends this way, not the whole pipeline's traffic. Both sides
    are `or vector(0)`: the agent creates a model's counter on its first request
    (sc2:scheduler/pkg/metrics/agent.go:222), and `A - B` is empty while B has none, which
    KEDA reads as 0 (keda:pkg/scalers/prometheus_scaler.go:267-271): never a wake.
    """
    ns = {"namespace": common.namespace(graph)}
    branch = plan.step(node).branch
    if not branch:
        return rate_query(V2_PIPELINE_SERIES, {**ns, "pipeline": graph.name})
    gate, side = branch[-1].gate, branch[-1].side
    other: Side = "otherwise" if side == "then" else "then"
    on_other = [s for s in plan.steps if s.branch and s.branch[-1] == BranchRef(gate, other)]
    gate_rate = rate_query(V2_RPS_SERIES, {**ns, "model": model_name(gate)})
    if not on_other:
        return gate_rate
    other_rate = rate_query(V2_RPS_SERIES, {**ns, "model": model_name(on_other[0].name)})
    return f"(({gate_rate} or vector(0)) - ({other_rate} or vector(0)))"


def wake(rate: str) -> str:
    """A request rate as a 0/1 "work is waiting" signal for a wake trigger.

    KEDA's prometheus triggers are AverageValue (KServe writes no metricType, keda:pkg/scalers/
    scaler.go:101-110), and the HPA asks `ceil(value / threshold)` replicas per metric and
    takes the largest (k8s:replica_calculator.go GetExternalPerPodMetricReplicas). A rate
    against a threshold would set the replica count in request units; 0/1 against
    WAKE_THRESHOLD asks for exactly one replica while there is work and none without, and
    the node's own metric scales beyond that. `or vector(0)`: a rate of a counter no
    request has created yet is empty, and an empty wake is indistinguishable from a broken one.
    """
    return f"(({rate}) or vector(0)) > bool 0"


WAKE_THRESHOLD = "1"


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def _query(graph: InferenceGraph, node: Node, target: Target) -> tuple[str, str]:
    """PromQL for KEDA and its metricType (per-replica average unless already averaged)."""
    assert node.autoscaling is not None
    metric = node.autoscaling.metric
    ns = {"namespace": common.namespace(graph)}
    pods = f'{_selector(ns)},pod=~"{target.pod_regex}"'
    if metric == "rps":
        return rate_query(target.rps_series, {**ns, **target.rps_selector}), "AverageValue"
    if metric == "gpu":
        return f"avg({once(f'{SERIES[metric]}{{{pods}}}')})", "Value"
    return f"sum({once(f'{SERIES[metric]}{{{pods}}}')})", "AverageValue"


def _threshold(value: float) -> str:
    return f"{value:g}"


def _hpa_metric(node: Node, target: Target) -> JSONObject:
    assert node.autoscaling is not None
    auto = node.autoscaling
    if target.described is not None:
        api, kind, name = target.described
        return {
            "type": "Object",
            "object": {
                "describedObject": {"apiVersion": api, "kind": kind, "name": name},
                "metric": {"name": OBJECT_METRICS[auto.metric]},
                "target": {"type": "AverageValue", "averageValue": _threshold(auto.target)},
            },
        }
    if auto.metric == "cpu":
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": round(auto.target)},
            },
        }
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": PODS_METRICS[auto.metric]},
            "target": {"type": "AverageValue", "averageValue": _threshold(auto.target)},
        },
    }


def stabilization_windows(node: Node) -> JSONObject:
    """The HPA behavior's windows alone: the node's cooldown before scaling down, none
    before scaling up (what KServe's `autoScaling.behavior` carries into its ScaledObject)."""
    assert node.autoscaling is not None
    return {
        "scaleDown": {"stabilizationWindowSeconds": node.autoscaling.cooldown_seconds},
        "scaleUp": {"stabilizationWindowSeconds": 0},
    }


def _behavior(node: Node) -> JSONObject:
    windows = stabilization_windows(node)
    return {
        "scaleDown": {
            **at(windows, "scaleDown"),
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        },
        "scaleUp": {
            **at(windows, "scaleUp"),
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
        },
    }


def hpa(graph: InferenceGraph, node: Node, target: Target, name: str) -> Manifest:
    """An autoscaling/v2 HPA with the node's metric, bounds and cooldown."""
    assert node.autoscaling is not None
    auto = node.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": common.metadata(graph, name, node.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target.api_version,
                "kind": target.kind,
                "name": target.name,
            },
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [_hpa_metric(node, target)],
            "behavior": _behavior(node),
        },
    }


def keda_triggers(graph: InferenceGraph, node: Node, target: Target) -> list[JSONObject]:
    assert node.autoscaling is not None
    auto = node.autoscaling
    if auto.metric == "cpu":
        return [
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": f"{auto.target:g}"}}
        ]
    query, metric_type = _query(graph, node, target)
    server = graph.metadata.annotations.get(PROMETHEUS_ANNOTATION, DEFAULT_PROMETHEUS)
    triggers: list[JSONObject] = [
        {
            "type": "prometheus",
            "name": f"{node.name}-{auto.metric}",
            "metricType": metric_type,
            "metadata": {
                "serverAddress": server,
                "query": query,
                "threshold": _threshold(auto.target),
                "activationThreshold": "0",
            },
        }
    ]
    if auto.min_replicas == 0 and target.wake_query and target.wake_query != query:
        # Activation only (see `wake`): one replica while work waits, the node's own metric
        # scales beyond that.
        triggers.append(
            {
                "type": "prometheus",
                "name": f"{node.name}-wake",
                "metricType": "AverageValue",
                "metadata": {
                    "serverAddress": server,
                    "query": wake(target.wake_query),
                    "threshold": WAKE_THRESHOLD,
                    "activationThreshold": "0",
                },
            }
        )
    return triggers


def once(expr: str) -> str:
    """Each series counted once however many monitors scrape it.

    With Seldon's own PodMonitors (sc2:prometheus/monitors/agent-podmonitor.yaml) installed
    beside the kit's, a pod's series is scraped twice and differs only in `job`
    (prometheus-operator sets it to <namespace>/<monitor>): a plain sum doubles.
    """
    return f"max without (job) ({expr})"


def rate_query(series: str, labels: dict[str, str]) -> str:
    """Requests per second over every matching series, each scraped series counted once."""
    return f"sum({once(f'rate({series}{{{_selector(labels)}}}[1m])')})"


def scaled_object(graph: InferenceGraph, node: Node, target: Target, name: str) -> Manifest:
    """A KEDA ScaledObject; minReplicaCount 0 is scale to zero."""
    assert node.autoscaling is not None
    auto = node.autoscaling
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": common.metadata(graph, name, node.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": target.api_version,
                "kind": target.kind,
                "name": target.name,
            },
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "cooldownPeriod": auto.cooldown_seconds,
            "pollingInterval": 15,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(node)}},
            "triggers": keda_triggers(graph, node, target),
        },
    }


def scalers(
    graph: InferenceGraph, node: Node, targets: list[tuple[Target, str]], engine: str
) -> list[JSONObject]:
    """One HPA or ScaledObject per target (v2 scales the Model and its Server in step)."""
    check(node, engine)
    check_engine(node, engine)
    if node.autoscaling is None:
        return []
    make = scaled_object if node.autoscaling.engine == "keda" else hpa
    return [make(graph, node, target, name) for target, name in targets]


def _adapter_rule(series: str, metric: str, query: str) -> JSONObject:
    return {
        "seriesQuery": f'{series}{{namespace!="",model!=""}}',
        "resources": {
            "overrides": {
                "namespace": {"resource": "namespace"},
                "model": {"group": "mlops.seldon.io", "resource": "model"},
            }
        },
        "name": {"as": metric},
        "metricsQuery": query,
    }


def prometheus_adapter_rules() -> JSONObject:
    """Values for the prometheus-adapter chart (`rules.custom`): the v2 Object metrics.

    Seldon's agent names a loaded model `<model>_<version>` inside MLServer
    (sc2:scheduler/pkg/agent/agent_svc_manager.go:686, 711-716), so the runtime's `model`
    label is mapped back to the Model's name before grouping; only such series count, so a
    KServe or v1 pod serving a same-named model in the namespace never adds to a Model.

    The namespace must be in the query itself: the adapter keys each result row by the
    resource label alone (pa:pkg/custom-provider/series_registry.go:171-202, `res[val.Metric
    [resourceLbl]]`), so a row of another namespace's same-named Model would be handed to this
    HPA. `<<.LabelMatchers>>` names the Model, not the runtime's `<model>_<version>`, so these
    rules take the namespace alone from `.LabelValuesByName`, keyed by label name, which the
    adapter fills with the HPA's namespace (pa:pkg/naming/metrics_query.go:96-102, 113-124,
    279). pa = kubernetes-sigs/prometheus-adapter @01919d0.
    """
    strip = (
        'label_replace({series}{{namespace="<<index .LabelValuesByName "namespace">>",'
        'model=~".+_[0-9]+"}}, "model", "$1", "model", "(.+)_[0-9]+$")'
    )
    rules = [
        _adapter_rule(
            V2_RPS_SERIES,
            OBJECT_METRICS["rps"],
            f"sum by (<<.GroupBy>>) ({once('rate(<<.Series>>{<<.LabelMatchers>>}[1m])')})",
        )
    ]
    for metric in ("inflight", "queue"):
        series = SERIES[metric]
        rules.append(
            _adapter_rule(
                series,
                OBJECT_METRICS[metric],
                f"sum by (model, namespace) ({once(strip.format(series=series))})",
            )
        )
    return {"rules": {"default": False, "custom": rules}}
