"""Pieces every renderer shares: names, labels, images, pod hardening, resources, storage.

Everything here is deterministic (sorted keys, no timestamps) so the committed manifests under
k8s/rendered/ only change when the graph or the renderer does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from infergraph import __version__, container_images
from infergraph.cluster_names import NODE_LABEL, k8s_name
from infergraph.components.registry import component_class
from infergraph.cost.pricing import parse_cpu
from infergraph.engines import engine as engine_named
from infergraph.errors import RenderError
from infergraph.graph.model import Condition, InferenceGraph, Node
from infergraph.graph.model_settings import model_settings as shared_model_settings
from infergraph.json_types import JSONObject, Manifest
from infergraph.quantities import scaled_memory
from infergraph.render.options import RenderOptions

PART_OF = "infergraph"
MANAGED_BY = "infergraph-render"
GRAPH_LABEL = "infergraph.io/graph"
# Graph annotations the renderers read (documented in docs/rendering.md).
STORAGE_ANNOTATION = "infergraph.io/storage-uri"
IMAGE_TAG_ANNOTATION = "infergraph.io/image-tag"
MLSERVER_IMAGE = container_images.MLSERVER_RUNTIMES
SELDON_IMAGE = container_images.SELDON_COMPONENTS

SELDON_CLASS = "infergraph.serving.seldon_component.InfergraphComponent"

# The images run as this user (see images/*/Dockerfile); Kubernetes checks runAsNonRoot
# against the numeric id, so it is spelled out rather than left to the image.
RUN_AS_USER = 10001
CACHE_DIR = "/cache"
STORAGE_SCHEMES = ("gs://", "s3://", "az://", "azure://", "http://", "https://", "hf://")

GPU_RESOURCE = "nvidia.com/gpu"


def image(
    graph: InferenceGraph,
    which: str,
    node: Node | None = None,
    options: RenderOptions | None = None,
) -> str:
    """The image a container runs: the `-cuda` variant when its node asks for a GPU.

    Registry and tag come from `options` (default: `infergraph.container_images.DEFAULT_REGISTRY`
    and this package's version); the graph annotation `infergraph.io/image-tag` overrides the
    tag.
    """
    opts = options or RenderOptions()
    tag = graph.metadata.annotations.get(IMAGE_TAG_ANNOTATION, opts.image_tag)
    cuda = node is not None and bool(node.resources.gpu)
    return container_images.image_ref(which, opts.image_registry, tag, cuda)


def labels(graph: InferenceGraph, node: str | None, component: str) -> dict[str, str]:
    """Recommended labels plus the graph/node pair every selector and dashboard keys on."""
    out = dict(sorted(graph.metadata.labels.items()))
    out.update(
        {
            "app.kubernetes.io/name": node or graph.name,
            "app.kubernetes.io/instance": graph.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/version": __version__,
            GRAPH_LABEL: graph.name,
        }
    )
    if node:
        out[NODE_LABEL] = node
    return out


DEFAULT_NAMESPACE = "default"


def namespace(graph: InferenceGraph) -> str:
    """The namespace a graph renders into: its own, else `default`.

    Every Prometheus query names it (a query without one sums a same-named graph's series in
    every namespace), so every object names it too: applied elsewhere with `kubectl -n`, the
    API server refuses the mismatch instead of the scalers reading another namespace.
    """
    return graph.metadata.namespace or DEFAULT_NAMESPACE


def metadata(graph: InferenceGraph, name: str, node: str | None, component: str) -> JSONObject:
    meta: JSONObject = {"name": name, "namespace": namespace(graph)}
    meta["labels"] = labels(graph, node, component)
    return meta


def pod_security_context() -> JSONObject:
    """Restricted Pod Security Standard at pod level."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> JSONObject:
    """Restricted PSS per container; read-only root unless the image must write to it."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes(node: Node | None) -> list[JSONObject]:
    """Writable emptyDirs for a read-only root: /tmp and the model caches (HF hub, torch)."""
    cache_limit = node.resources.memory if node is not None else "1Gi"
    return [
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "cache", "emptyDir": {"sizeLimit": cache_budget(cache_limit)}},
    ]


def scratch_mounts() -> list[JSONObject]:
    return [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
    ]


# A weightless helper's container (gates, pass-throughs): its CPU request and limit.
HELPER_CPU = "250m"
HELPER_CPU_CORES = 0.25


def cache_env() -> list[JSONObject]:
    """Point every library cache at the writable emptyDir."""
    return [
        {"name": "HOME", "value": CACHE_DIR},
        {"name": "XDG_CACHE_HOME", "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "TORCH_HOME", "value": f"{CACHE_DIR}/torch"},
        {"name": "TMPDIR", "value": "/tmp"},
    ]


def threads_env(node: Node | None, processes: int = 1) -> list[JSONObject]:
    """`OMP_NUM_THREADS`: the container's whole CPUs (at least one), shared by its processes.

    torch sizes its intra-op thread pool from the CPUs the process may run on, which in a pod
    without the static CPU manager are all the host's, not the container's limit: a model
    limited to 2 CPUs on a 64-core node would split each operator over dozens of threads
    and spend its CFS quota being throttled. The MLServer runtime divides these threads
    among a model's instances (`device.forward_thread_setup`); a Seldon v1 unit's gunicorn
    workers are processes, so each is given its share here (`processes`).
    """
    cores = parse_cpu(node.resources.cpu) if node is not None else HELPER_CPU_CORES
    return [{"name": "OMP_NUM_THREADS", "value": str(max(1, int(cores) // max(1, processes)))}]


def cache_budget(memory: str) -> str:
    """The model cache's size limit: twice the memory request (weights plus tokenizer and
    config files, and a download's partial file beside the finished one)."""
    return scaled_memory(memory, Fraction(2))


def resources(node: Node | None, engine: str, copies: Fraction = Fraction(1)) -> JSONObject:
    """Requests equal limits: GPUs cannot be overcommitted, and equal memory avoids OOM kills.

    `copies` is how many of the node's replicas' worth of model the container holds (a
    Seldon v1 unit's gRPC process loads one more): its memory is the node's times that.
    """
    if node is None:
        req: JSONObject = {"cpu": HELPER_CPU, "memory": "512Mi"}
        return {"requests": dict(req), "limits": dict(req)}
    memory = node.resources.memory
    if copies != 1:
        memory = scaled_memory(memory, copies)
    req = {"cpu": node.resources.cpu, "memory": memory}
    if node.resources.gpu:
        req[GPU_RESOURCE] = node.resources.gpu
    return {"requests": dict(req), "limits": dict(req)}


def pull_secrets(options: RenderOptions) -> JSONObject:
    """`imagePullSecrets` for a pod that runs our images, when the deployment names any.

    Each engine makes its pods from the spec that carries them: Seldon v2 merges the
    ServerConfig's `podSpec` into the Server's StatefulSet (seldon-core v2.10.2
    operator/controllers/reconcilers/server/server_reconciler.go:127), Seldon v1 makes a
    componentSpec's `spec` its Deployment's pod template (v1.18.2
    operator/controllers/seldondeployment_controller.go:1022), KServe merges the predictor's
    inline PodSpec with its ServingRuntime's (aaac4e2 pkg/apis/serving/v1beta1/predictor.go:84,
    pkg/controller/v1beta1/inferenceservice/components/predictor.go:435)."""
    if not options.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in options.image_pull_secrets]}


def gpu_scheduling(node: Node | None, options: RenderOptions | None = None) -> JSONObject:
    """GPU pods tolerate the usual nvidia.com/gpu taint, plus the deployment's own placement
    (`RenderOptions.gpu_scheduling`: nodeSelector, tolerations, affinity, runtimeClassName)."""
    if node is None or not node.resources.gpu:
        return {}
    placement = (options or RenderOptions()).gpu_scheduling
    tolerations: list[JSONObject] = [
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    ]
    tolerations += [t for t in placement.tolerations if t not in tolerations]
    out: JSONObject = {"tolerations": tolerations}
    if placement.node_selector:
        out["nodeSelector"] = dict(sorted(placement.node_selector.items()))
    if placement.affinity:
        out["affinity"] = placement.affinity
    if placement.runtime_class_name:
        out["runtimeClassName"] = placement.runtime_class_name
    return out


def family_default_model(family: str) -> str:
    return str(getattr(component_class(family), "default_model", "") or "")


def is_storage_uri(uri: str | None) -> bool:
    return uri is not None and uri.startswith(STORAGE_SCHEMES) and not uri.startswith("hf://")


def is_local_path(uri: str | None) -> bool:
    return uri is not None and uri.startswith(("file://", "/", "."))


def _storage_prefix(graph: InferenceGraph, options: RenderOptions | None) -> str | None:
    """Where model-settings.json folders go: the user's bucket, never a default one (None:
    none given)."""
    base = (
        graph.metadata.annotations.get(STORAGE_ANNOTATION)
        or (options or RenderOptions()).storage_uri
    )
    return base.rstrip("/") if base else None


def _no_prefix(graph: str) -> str:
    return (
        f"graph '{graph}' has no storage prefix for its model-settings.json folders: "
        "pass `infergraph render --storage-uri s3://<your-bucket>/infergraph` (the chart's "
        f"`storageUri` value) or annotate the graph with `{STORAGE_ANNOTATION}`"
    )


@dataclass(frozen=True)
class Artifact:
    """Where a node's model artifact lives and what model-settings.json says about weights.

    `storage_uri` is the folder the storage initializer (rclone in v2, the v1 storage
    initializer) copies; `runtime_uri` is the hub id the runtime downloads itself (None:
    the weights are in the artifact folder next to model-settings.json).

    The folder is asked for only where an object names it (an unserved Seldon v2 Model, a
    local checkpoint uploaded next to its settings): a graph whose nodes load hub ids needs no
    bucket when the operator serves its settings, so a missing prefix is an error only then.
    """

    folder: str | None  # None: no storage prefix given (`missing` says how to give one)
    runtime_uri: str | None
    weights_in_artifact: bool
    missing: str = ""

    @property
    def storage_uri(self) -> str:
        if self.folder is None:
            raise RenderError("storage", self.missing)
        return self.folder


def artifact(
    graph: InferenceGraph,
    node_name: str,
    family: str | None,
    model_uri: str | None,
    options: RenderOptions | None = None,
) -> Artifact:
    """`family` None: a weightless helper whose artifact holds only model-settings.json."""
    if is_storage_uri(model_uri):
        return Artifact(str(model_uri), None, True)
    base = _storage_prefix(graph, options)
    own_folder = f"{base}/{graph.name}/{node_name}" if base else None
    missing = _no_prefix(graph.name)
    if is_local_path(model_uri):
        # A local checkpoint cannot travel; it is uploaded next to its model-settings.json.
        if own_folder is None:
            raise RenderError("storage", f"node '{node_name}' loads a local checkpoint: {missing}")
        return Artifact(own_folder, None, True)
    if model_uri:
        hub_id = model_uri.removeprefix("hf://")
        return Artifact(own_folder, hub_id, False, missing)
    default = family_default_model(family) if family else ""
    return Artifact(own_folder, default or None, False, missing)


def model_settings(
    graph: InferenceGraph,
    name: str,
    node: Node | None,
    family: str,
    options: RenderOptions | None = None,
    *,
    component_options: Mapping[str, object] | None = None,
    relay: bool = False,
    graph_step: Mapping[str, object] | None = None,
) -> JSONObject:
    """model-settings.json for a rendered Model: the hub id travels as `uri`, else the artifact.

    `component_options`, `relay` and `graph_step` as in graph.model_settings.model_settings."""
    uri = artifact(graph, node.name, family, node.model_uri, options).runtime_uri if node else None
    return shared_model_settings(
        name,
        family,
        node,
        uri,
        component_options=component_options,
        relay=relay,
        graph_step=graph_step,
    )


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def condition_dict(cond: Condition) -> JSONObject:
    """A WhenStep condition as the gate/router components take it (JSON-able)."""
    return {"tensor": cond.tensor, "op": cond.op, "value": cond.value, "reduce": cond.reduce}


SERVER_POD_LABEL = "seldon-server-name"  # seldon-core v2 operator/pkg/constants/constants.go


def pod_monitors(graph: InferenceGraph, servers: list[str], engine: str) -> list[Manifest]:
    """A PodMonitor scraping the runtime series the scalers use (prometheus-operator)."""
    if engine_named(engine).shared_servers:
        selector: JSONObject = {
            "matchExpressions": [
                {"key": SERVER_POD_LABEL, "operator": "In", "values": sorted(set(servers))}
            ]
        }
        endpoints = [{"port": "server-metrics", "path": "/metrics"}, {"port": "metrics"}]
    else:
        selector = {"matchLabels": {GRAPH_LABEL: graph.name}}
        endpoints = [{"port": "metrics", "path": "/prometheus"}]
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": metadata(graph, k8s_name(graph.name, "metrics"), None, "metrics"),
            "spec": {"selector": selector, "podMetricsEndpoints": endpoints},
        }
    ]
