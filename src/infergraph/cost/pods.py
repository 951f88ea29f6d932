"""The pods an engine runs for a rendered graph, and what each asks the scheduler for.

A graph on a cluster costs what its pods request, not only its nodes' `resources`: Seldon
v2 puts an agent and an rclone sidecar beside every model server and runs the helper steps
on a server of their own, Seldon v1 runs the executor in a pod of its own and each helper
step as a unit, KServe runs each helper step as an InferenceService and the graph's router
as a Deployment. The rendered manifests say what every container requests; how each
engine turns its custom resources into pods is read from its source, cited where used.

Only what the engines create per graph is here: their control planes (Seldon's scheduler,
Kafka and Envoy; KServe's controller) are shared by every graph in a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from infergraph import quantities
from infergraph.cluster_names import NODE_LABEL
from infergraph.cost.pricing import CostError
from infergraph.json_types import JSONObject, Manifest, as_objects, object_or_empty

GPU = "nvidia.com/gpu"
# KServe's constants.DefaultMinReplicas (kserve pkg/constants/constants.go:225), its count
# where minReplicas is absent (reconcilers/hpa/hpa_reconciler.go:154-155).
KSERVE_MIN_REPLICAS = 1


@dataclass(frozen=True)
class PodShape:
    """One set of identical pods: what each requests, how many run, whose they are."""

    source: str  # the object that makes the engine create them, "Kind/name[/part]"
    node: str | None  # the graph node these pods serve; None for the engine's own
    replicas: int  # as rendered (a node's own count comes from the graph)
    max_replicas: int
    cpu: float  # cores per pod
    memory_gib: float
    gpus: int


def container_requests(container: JSONObject) -> tuple[float, float, int]:
    """A container's requests: (cores, GiB, GPUs). A resource given only as a limit is
    requested at its limit, as the API server defaults it (kubernetes
    pkg/apis/core/v1/defaults.go, SetDefaults_Pod: requests default to limits)."""
    resources = object_or_empty(container, "resources")
    asked = {**object_or_empty(resources, "limits"), **object_or_empty(resources, "requests")}
    cpu = quantities.parse_quantity(str(asked.get("cpu", 0)))
    memory = quantities.parse_quantity(str(asked.get("memory", 0))) / 2**30
    return cpu, memory, int(quantities.parse_quantity(str(asked.get(GPU, 0))))


def _summed(containers: Iterable[JSONObject]) -> tuple[float, float, int]:
    """A pod's requests: the sum over its (long-running) containers."""
    totals = [container_requests(c) for c in containers]
    return (
        sum(t[0] for t in totals),
        sum(t[1] for t in totals),
        sum(t[2] for t in totals),
    )


def _name(obj: Manifest) -> str:
    return str(object_or_empty(obj, "metadata").get("name", ""))


def _labels(meta: JSONObject) -> dict[str, object]:
    return dict(object_or_empty(meta, "labels"))


def _shape(
    source: str, node: object, replicas: int, maximum: int, containers: list[JSONObject]
) -> PodShape:
    cpu, memory, gpus = _summed(containers)
    owner = str(node) if node else None
    return PodShape(source, owner, replicas, max(replicas, maximum), cpu, memory, gpus)


def _count(value: object, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def seldon_v2_pods(objs: list[Manifest]) -> list[PodShape]:
    """A Server's pods are its ServerConfig's pod template (merged with the Server's own
    `podSpec`, which we never render), `spec.replicas` of them, 1 when absent (seldon-core
    v2.10.2 operator/controllers/reconcilers/server/server_reconciler.go:119-145;
    operator/apis/mlops/v1alpha1/model_types.go:98-112)."""
    configs = {_name(o): o for o in objs if o.get("kind") == "ServerConfig"}
    shapes = []
    for server in (o for o in objs if o.get("kind") == "Server"):
        spec = object_or_empty(server, "spec")
        config = configs.get(str(spec.get("serverConfig")), {})
        pod = object_or_empty(object_or_empty(config, "spec"), "podSpec")
        replicas = _count(spec.get("replicas"), 1)
        node = _labels(object_or_empty(server, "metadata")).get(NODE_LABEL)
        shapes.append(_shape(f"Server/{_name(server)}", node, replicas, replicas, _containers(pod)))
    return shapes


def _containers(pod: JSONObject) -> list[JSONObject]:
    return as_objects(pod.get("containers") or [], "containers")


def seldon_v1_pods(objs: list[Manifest]) -> list[PodShape]:
    """Each componentSpec is a Deployment of `replicas` (else the predictor's, else the
    deployment's) pods (seldon-core v1.18.2 operator/controllers/
    seldondeployment_controller.go:514-519); with `seldon.io/engine-separate-pod` in
    `spec.annotations` the executor is a Deployment of its own, sized by `svcOrchSpec`
    (:473-476; seldondeployment_engine.go:295, :423-428)."""
    shapes = []
    for sdep in (o for o in objs if o.get("kind") == "SeldonDeployment"):
        spec = object_or_empty(sdep, "spec")
        separate = str(object_or_empty(spec, "annotations").get("seldon.io/engine-separate-pod"))
        if separate.lower() != "true":
            raise CostError(
                f"SeldonDeployment/{_name(sdep)}",
                "its executor shares a unit's pod (no seldon.io/engine-separate-pod), "
                "which is not priced",
            )
        for predictor in as_objects(spec.get("predictors") or [], "spec.predictors"):
            default = _count(predictor.get("replicas"), _count(spec.get("replicas"), 1))
            shapes += _v1_units(f"SeldonDeployment/{_name(sdep)}", predictor, default)
            orchestrator = object_or_empty(predictor, "svcOrchSpec")
            replicas = _count(orchestrator.get("replicas"), default)
            shapes.append(
                _shape(
                    f"SeldonDeployment/{_name(sdep)}/executor",
                    None,
                    replicas,
                    replicas,
                    [{"resources": orchestrator.get("resources") or {}}],
                )
            )
    return shapes


def _v1_units(source: str, predictor: JSONObject, default: int) -> list[PodShape]:
    shapes = []
    for component in as_objects(predictor.get("componentSpecs") or [], "componentSpecs"):
        node = _labels(object_or_empty(component, "metadata")).get(NODE_LABEL)
        replicas = _count(component.get("replicas"), default)
        pod = object_or_empty(component, "spec")
        shapes.append(_shape(f"{source}/{node}", node, replicas, replicas, _containers(pod)))
    return shapes


def kserve_pods(objs: list[Manifest]) -> list[PodShape]:
    """A predictor's pod is its ServingRuntime's container with the predictor's `model`
    patched over it, key by key (kserve pkg/controller/v1beta1/inferenceservice/utils/
    utils.go:505, MergeRuntimeContainers, a strategic merge: pkg/utils/container_merge.go:32);
    an InferenceGraph's router pod asks for `spec.resources` (pkg/controller/v1alpha1/
    inferencegraph/knative_reconciler.go:260-280). Both run minReplicas (1 when absent)."""
    runtimes = {_name(o): o for o in objs if o.get("kind") == "ServingRuntime"}
    shapes = []
    for isvc in (o for o in objs if o.get("kind") == "InferenceService"):
        predictor = object_or_empty(object_or_empty(isvc, "spec"), "predictor")
        model = object_or_empty(predictor, "model")
        runtime = runtimes.get(str(model.get("runtime")), {})
        base = _containers(object_or_empty(runtime, "spec"))
        container = _patched(base[0] if base else {}, model)
        node = _labels(object_or_empty(isvc, "metadata")).get(NODE_LABEL)
        low, high = _kserve_replicas(predictor)
        shapes.append(_shape(f"InferenceService/{_name(isvc)}", node, low, high, [container]))
    for graph in (o for o in objs if o.get("kind") == "InferenceGraph"):
        spec = object_or_empty(graph, "spec")
        low, high = _kserve_replicas(spec)
        router = {"resources": spec.get("resources") or {}}
        shapes.append(_shape(f"InferenceGraph/{_name(graph)}", None, low, high, [router]))
    return shapes


def _patched(base: JSONObject, model: JSONObject) -> JSONObject:
    """The runtime container's requests and limits with the model's own over them."""
    ours = object_or_empty(base, "resources")
    theirs = object_or_empty(model, "resources")
    merged = {
        part: {**object_or_empty(ours, part), **object_or_empty(theirs, part)}
        for part in ("requests", "limits")
    }
    return {"resources": merged}


def _kserve_replicas(spec: JSONObject) -> tuple[int, int]:
    low = _count(spec.get("minReplicas"), KSERVE_MIN_REPLICAS)
    return low, _count(spec.get("maxReplicas"), low)
