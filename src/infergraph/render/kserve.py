"""KServe: an InferenceService per step, one ServingRuntime, one InferenceGraph for the topology.

KServe's router (`cmd/router/main.go`) passes whole JSON bodies between steps and decides by
whether a GJSON path exists in a body, so every rendered InferenceService serves the graph
step route of `infergraph.serving.graph_step` (`/v2/models/<model>/infer/graph`), whose
response is also the next step's request and carries the tensors so far that a later step
or the graph's outputs read (`GraphPlan.carried_after`). Mapping of the
compiled plan (docs/rendering.md has the long form):

- sequence: a `Sequence` node; the first step takes `$request` (the node's input), every
  later one `$response` (the previous step's body). Every step is a `Hard` dependency, so
  the first failing step's status and error reach the client.
- ensemble: an `Ensemble` node (members get the same body; the router answers
  `{"<step name>": <member body>, ...}`, which the next step reads as one carry), followed by
  the combine step (the graph's combiner node or a synthesized `combine-N`). An ensemble
  that ends the graph with `method: merge` (also at the end of a `when` branch that ends the
  graph) is followed by a `merge-N` step (family identity) so the client gets the graph's
  outputs, not the router's `{step: body}` map.
- when: the gate step (family `gate`) records its decision in the carry
  (`carry.when.<gate>.then` exists only when the condition holds). With an `otherwise`
  branch a `Switch` node picks the side by that path; without one (a cascade) the then-branch
  is a `Sequence` step with `condition: carry.when.<gate>.then` after the gate: the router
  ends that Sequence early when the path is missing, returning the gate's body, in which the
  tensors a cascade forwards are still carried, so no pass-through hop is rendered.

Steps call their InferenceService by `serviceUrl` (the step route is not the `/infer` path
the controller would derive from `serviceName`, and a step may name only one target).
Autoscaling follows KServe's Standard deployment mode: `serving.kserve.io/autoscalerClass`
`hpa` (CPU only: KServe's HPA takes Resource metrics), `keda` (KServe writes the
ScaledObject from `autoScaling.metrics`), or `external` with the kit's own HPA / ScaledObject
on the predictor Deployment where KServe's spec cannot say it (Pods metrics, GPU average).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from infergraph import cluster_names
from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph, Node
from infergraph.graph.plan import (
    GATE_FAMILY,
    PASS_FAMILY,
    Block,
    ChainBlock,
    FanOutBlock,
    FreshNames,
    GraphPlan,
    PlanStep,
    RouteBlock,
    UnitBlock,
    plan_of,
)
from infergraph.json_types import JSONObject, Manifest, as_objects, as_str, at, object_or_empty
from infergraph.render import autoscaling, common
from infergraph.render.options import RenderOptions
from infergraph.serving import graph_step

ENGINE = "kserve"
ISVC_API = "serving.kserve.io/v1beta1"
GRAPH_API = "serving.kserve.io/v1alpha1"
MODEL_FORMAT = "infergraph"
HTTP_PORT = 8080
GRPC_PORT = 9000
METRICS_PORT = 8082
GRPC_MAX_MESSAGE_BYTES = 1048576000
NOTES_ANNOTATION = "infergraph.io/render-notes"
DEPLOYMENT_MODE = {"serving.kserve.io/deploymentMode": "Standard"}
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
REQUESTS_SERIES = "infergraph_requests_total"  # infergraph.serving.metrics.REQUESTS
ROUTER_RESOURCES = {"cpu": "500m", "memory": "512Mi"}
# Percent of the router's CPU request its HPA holds it at: KServe makes that HPA from the
# InferenceGraph's minReplicas, maxReplicas, scaleMetric and scaleTarget in Standard mode
# (kserve v0.20.0 pkg/controller/v1alpha1/inferencegraph/raw_ig.go:129-134; reconcilers/hpa/
# hpa_reconciler.go:150-180) and defaults a CPU target to this (pkg/constants/constants.go:298).
ROUTER_CPU_TARGET = 80
# The local runner's trace headers (`infergraph.runner.executor.TRACE_HEADERS`) as Go's net/http
# canonicalizes names: the router matches its patterns against `req.Header` keys (kserve
# v0.20.0 cmd/router/main.go:133-135), where `traceparent` arrives as `Traceparent`.
ROUTER_TRACE_HEADERS = ("Traceparent", "Tracestate", "X-Request-Id")
TRACE_NOTE = (
    "trace headers: KServe's router forwards a client header to the steps only when a pattern "
    "in the cluster's inferenceservice-config ConfigMap, key router, field headers.propagate, "
    "matches it (kserve v0.20.0 pkg/controller/v1alpha1/inferencegraph/raw_ig.go:89-97; "
    "nothing in an InferenceGraph can set it). Add " + ", ".join(ROUTER_TRACE_HEADERS) + " once "
    "per cluster with `infergraph kserve-router-config` (docs/rendering.md, Trace and "
    "request-id headers), or traceparent and x-request-id stop at the router."
)


@dataclass
class Service:
    """One InferenceService: a graph node, or a weightless step of the plan (gate, combine)."""

    step: str
    kind: str  # node | gate | combine | merge
    family: str
    name: str
    node: Node | None
    extra: JSONObject = field(default_factory=dict)


service_name = cluster_names.kserve_service


class _Topology:
    """The plan's block tree as InferenceGraph nodes (`root` first), creating Services."""

    def __init__(self, plan: GraphPlan) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.nodes: dict[str, JSONObject] = {}
        self.services: dict[str, Service] = {}
        self.fresh = FreshNames(s.name for s in plan.steps)

    def service_name(self, step: str) -> str:
        return service_name(self.graph.name, step)

    def service_step(self, step: PlanStep) -> JSONObject:
        if step.name not in self.services:
            kind = step.kind
            extra: JSONObject = {}
            if kind == "gate":
                assert step.condition is not None
                extra["condition"] = common.condition_dict(step.condition)
            elif kind == "combine":
                extra["method"] = step.method
            elif kind == "pass":
                raise RenderError(ENGINE, f"{step.path}: a pass-through is never a service")
            service = Service(
                step.name, kind, step.family, self.service_name(step.name), step.node, extra
            )
            self.services[step.name] = service
        return self.target(self.services[step.name])

    def target(self, service: Service) -> JSONObject:
        return {"name": service.step, "serviceUrl": service_url(self.graph, service.name)}

    def build(self) -> None:
        self.nodes["root"] = {}  # first in the manifest
        items = self.flatten(self.plan.root)
        if self.ends_in_map(items[-1]):
            name = self.fresh("merge")
            self.services[name] = Service(
                name, "merge", PASS_FAMILY, self.service_name(name), None, {}
            )
            items.append(name)
        self.nodes["root"] = self.sequence(items)
        for name, node in self.nodes.items():
            for step in as_objects(node["steps"], f"{name}.steps"):
                # Soft (the default) would hand a failed step's error body to the next step;
                # Hard stops the Sequence there and answers with that step's status and body.
                step["dependency"] = "Hard"

    def ends_in_map(self, item: Block | str) -> bool:
        """Whether the router's answer for `item` can be an Ensemble's `{step: body}` map: a
        combine-less ensemble, or a `when` one of whose branches ends in one (a Switch or a
        cascade Sequence answers with its branch's last step). The graph then needs a final
        `merge-N` step, which reads a map or one step's body alike, so the client always
        gets the graph's outputs."""
        if isinstance(item, FanOutBlock):
            return item.combine is None
        if isinstance(item, RouteBlock):
            branches = (item.then, item.otherwise)
            return any(self.ends_in_map(self.flatten(b)[-1]) for b in branches if b is not None)
        return False

    def flatten(self, block: Block) -> list[Block | str]:
        """A chain's items, nested chains inlined (a str item is a synthesized service)."""
        if isinstance(block, ChainBlock):
            return [i for item in block.items for i in self.flatten(item)]
        return [block]

    def sequence(self, items: list[Block | str]) -> JSONObject:
        steps = []
        for i, item in enumerate(items):
            step = self.ref(item)
            step["data"] = "$request" if i == 0 else "$response"
            steps.append(step)
        return {"routerType": "Sequence", "steps": steps}

    def ref(self, item: Block | str) -> JSONObject:
        """The InferenceStep that runs `item`: its service, or a node built for it."""
        if isinstance(item, str):
            return self.target(self.services[item])
        if isinstance(item, UnitBlock):
            return self.service_step(self.plan.step(item.step))
        if isinstance(item, ChainBlock):
            return self.add_node("chain", self.sequence(self.flatten(item)))
        if isinstance(item, FanOutBlock):
            return self.fan_out(item)
        return self.route(item)

    def add_node(self, kind: str, node: JSONObject) -> JSONObject:
        name = self.fresh(kind)
        self.nodes[name] = node
        return {"name": name, "nodeName": name}

    def fan_out(self, block: FanOutBlock) -> JSONObject:
        members = []
        for member in block.members:
            step = self.ref(member)
            members.append(step)
        names = [m["name"] for m in members]
        if len(set(names)) != len(names):
            raise RenderError(ENGINE, f"ensemble members share a step name: {names}")
        ensemble = self.add_node("ensemble", {"routerType": "Ensemble", "steps": members})
        if block.combine is None:
            return ensemble
        combine = self.service_step(self.plan.step(block.combine))
        ensemble["data"] = "$request"
        combine["data"] = "$response"
        return self.add_node("fan-out", {"routerType": "Sequence", "steps": [ensemble, combine]})

    def route(self, block: RouteBlock) -> JSONObject:
        gate = self.plan.step(block.gate)
        gate_step = self.service_step(gate)
        gate_step["data"] = "$request"
        then_path = f"{graph_step.CARRY}.when.{gate.name}.then"
        if block.otherwise is None:
            # A cascade: the router ends this Sequence after the gate unless the path exists.
            rest = [self.ref(item) for item in self.flatten(block.then)]
            for step in rest:
                step["data"] = "$response"
            rest[0]["condition"] = then_path
            return self.add_node("when", {"routerType": "Sequence", "steps": [gate_step, *rest]})
        then = self.ref(block.then)
        other = self.ref(block.otherwise)
        then["condition"] = then_path
        other["condition"] = f"{graph_step.CARRY}.when.{gate.name}.otherwise"
        for step in (then, other):
            step.pop("data", None)  # a Switch hands its own input to the route it picks
        switch = self.add_node("switch", {"routerType": "Switch", "steps": [then, other]})
        switch["data"] = "$response"
        return self.add_node("when", {"routerType": "Sequence", "steps": [gate_step, switch]})


def service_url(graph: InferenceGraph, name: str) -> str:
    """The predictor Service of a Standard-mode InferenceService (`<isvc>-predictor`, port 80)
    and the step route; without a namespace the short name resolves in the graph's own."""
    ns = graph.metadata.namespace
    host = f"{name}-predictor.{ns}.svc.cluster.local" if ns else f"{name}-predictor"
    return f"http://{host}/v2/models/{name}{graph_step.ROUTE_SUFFIX}"


def wiring(plan: GraphPlan, service: Service) -> JSONObject:
    """`parameters.extra.graph_step` for one service: where its inputs and the outputs are, and
    which tensors its answer carries on (`GraphPlan.carried_after`; a merge step ends the
    graph, so it carries the outputs only)."""
    passes = {
        s.name: {
            "gate": s.branch[-1].gate,
            "side": s.branch[-1].side,
            "inputs": {k: [src.ref for src in v] for k, v in s.inputs.items()},
        }
        for s in plan.steps
        if s.kind == "pass"
    }
    inputs: dict[str, list[str]] = {}
    specs: list[list[object]] = []
    last = service.kind == "merge"
    if not last:
        step = plan.step(service.step)
        inputs = {k: [src.ref for src in v] for k, v in step.inputs.items()}
        specs = [[s.name, s.datatype, list(s.shape)] for s in step.outputs]
    return {
        "step": service.step,
        "kind": service.kind,
        "inputs": inputs,
        "outputs": {k: [src.ref for src in v] for k, v in plan.outputs.items()},
        "passes": passes,
        "specs": specs,
        # In the plan's order: a step joining ensemble members lists its path in it.
        "nodes": [s.name for s in plan.node_steps()],
        "carry": sorted(plan.carried_after(None if last else service.step)),
        # What a client's request must hold exactly: the first step refuses the rest (400).
        "graph": plan.graph.name,
        "graph_inputs": sorted(t.name for t in plan.graph.spec.inputs),
    }


def model_settings(
    plan: GraphPlan, service: Service, options: RenderOptions
) -> tuple[JSONObject, common.Artifact | None]:
    graph = plan.graph
    node = service.node
    settings = common.model_settings(
        graph,
        service.name,
        node,
        service.family,
        options,
        component_options=service.extra,
        graph_step=wiring(plan, service),
    )
    art = None
    if node is not None:
        art = common.artifact(graph, node.name, node.family, node.model_uri, options)
    return settings, art


# -- objects -----------------------------------------------------------------------------------
def runtime_name(graph: InferenceGraph, cuda: bool) -> str:
    return common.k8s_name(graph.name, "mlserver-cuda" if cuda else "mlserver")


def serving_runtime(graph: InferenceGraph, cuda: bool, options: RenderOptions) -> Manifest:
    """The kit's MLServer image as a ServingRuntime; per-model settings come from each
    InferenceService's MLSERVER_MODEL_* env, as in KServe's own `kserve-mlserver` runtime."""
    gpu_node = next((n for n in graph.spec.nodes if n.resources.gpu), None) if cuda else None
    env = [
        {"name": "MLSERVER_HTTP_PORT", "value": str(HTTP_PORT)},
        {"name": "MLSERVER_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "MLSERVER_METRICS_PORT", "value": str(METRICS_PORT)},
        # No model-settings.json under it: MLServer then builds the one model from the env.
        {"name": "MLSERVER_MODELS_DIR", "value": "/tmp"},
        {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "true"},
        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
        {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"},
        {"name": "MLSERVER_GRPC_MAX_MESSAGE_LENGTH", "value": str(GRPC_MAX_MESSAGE_BYTES)},
        # The runtime's own container (a weightless step's); a model's env sets its own.
        *common.threads_env(None),
        *common.cache_env(),
    ]
    health = {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT}}
    container = {
        "name": "kserve-container",
        "image": common.image(graph, common.MLSERVER_IMAGE, gpu_node, options),
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [
            {"containerPort": HTTP_PORT, "name": "http1", "protocol": "TCP"},
            {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
        ],
        "readinessProbe": {**health, "periodSeconds": 5},
        "startupProbe": {**health, "failureThreshold": 60, "periodSeconds": 10},
        "resources": common.resources(None, ENGINE),
        "securityContext": common.container_security_context(read_only_root=True),
        "volumeMounts": common.scratch_mounts(),
    }
    return {
        "apiVersion": GRAPH_API,
        "kind": "ServingRuntime",
        "metadata": common.metadata(graph, runtime_name(graph, cuda), None, "serving-runtime"),
        "spec": {
            "annotations": {
                "prometheus.kserve.io/port": str(METRICS_PORT),
                "prometheus.kserve.io/path": "/metrics",
            },
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": False}],
            "protocolVersions": ["v2"],
            "multiModel": False,
            "containers": [container],
            "volumes": common.scratch_volumes(gpu_node),
        },
    }


def _env(settings: JSONObject, uri: str | None) -> list[dict[str, str]]:
    """model-settings.json as MLServer's MLSERVER_MODEL_* environment (ModelSettings fields)."""
    extra = at(settings, "parameters", "extra")
    implementation = as_str(settings["implementation"], "implementation")
    env = [
        {"name": "MLSERVER_MODEL_NAME", "value": as_str(settings["name"], "name")},
        {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": implementation},
        {"name": "MLSERVER_MODEL_MAX_BATCH_SIZE", "value": str(settings["max_batch_size"])},
        {"name": "MLSERVER_MODEL_MAX_BATCH_TIME", "value": str(settings["max_batch_time"])},
        {"name": "MLSERVER_MODEL_EXTRA", "value": json.dumps(extra, sort_keys=True)},
    ]
    if uri:
        env.insert(2, {"name": "MLSERVER_MODEL_URI", "value": uri})
    return env


def inference_service(
    plan: GraphPlan, service: Service, options: RenderOptions
) -> tuple[Manifest, list[Manifest], str]:
    """The InferenceService, any scaler KServe leaves to the kit, and a note (or "")."""
    graph = plan.graph
    node = service.node
    settings, art = model_settings(plan, service, options)
    written = at(settings, "parameters").get("uri")
    uri = None if written is None else as_str(written, "parameters.uri")
    model: JSONObject = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": runtime_name(graph, bool(node and node.resources.gpu)),
        "protocolVersion": "v2",
    }
    if art is not None and art.weights_in_artifact:
        model["storageUri"] = art.storage_uri
        uri = "/mnt/models"  # where KServe's storage initializer puts the artifact
    model["env"] = [*_env(settings, uri), *common.threads_env(node)]
    model["resources"] = common.resources(node, ENGINE)
    model["securityContext"] = common.container_security_context(read_only_root=True)
    model["volumeMounts"] = common.scratch_mounts()
    label_node = node.name if node else service.step
    predictor: JSONObject = {
        "labels": common.labels(graph, label_node, "predictor"),
        "securityContext": common.pod_security_context(),
        "automountServiceAccountToken": False,
        "volumes": common.scratch_volumes(node),
        **common.gpu_scheduling(node, options),
        **common.pull_secrets(options),
    }
    if node is not None:
        predictor["timeout"] = max(1, round(node.timeout_ms / 1000.0))
    annotations = dict(DEPLOYMENT_MODE)
    scalers, note = _scaling(plan, service, predictor, annotations)
    predictor["model"] = model
    meta = common.metadata(graph, service.name, label_node, "inference-service")
    meta["annotations"] = annotations
    isvc: Manifest = {"apiVersion": ISVC_API, "kind": "InferenceService", "metadata": meta}
    isvc["spec"] = {"predictor": predictor}
    return isvc, scalers, note


def wake_query(graph: InferenceGraph, plan: GraphPlan, service: Service) -> str:
    """Requests that head for a step while it has no pods: what wakes it from zero.

    The pods' own series vanish at zero replicas, so this is the rate of the step that sends
    it work: the gate of its `when` branch (every request the gate decides on, an upper
    bound), else the first step of the graph. No series tells a gate's decisions apart (the
    runtime counts requests per model and outcome, infergraph.serving.metrics.REQUESTS), so
    the node stays awake while its gate sees traffic; `autoscaling.wake` makes this a 0/1
    signal, so the gate's total traffic never sets the node's replica count.
    """
    ns = {"namespace": common.namespace(graph)}
    branch = plan.step(service.step).branch
    upstream = branch[-1].gate if branch else plan.steps[0].name
    labels = {**ns, "model": service_name(graph.name, upstream)}
    return autoscaling.rate_query(REQUESTS_SERIES, labels)


def _scaling(
    plan: GraphPlan,
    service: Service,
    predictor: JSONObject,
    annotations: dict[str, str],
) -> tuple[list[Manifest], str]:
    """The predictor's replica bounds and autoscaler: KServe's own (CPU, or KEDA metrics it
    writes a ScaledObject for) where it can express the rule, else the kit's own HPA or
    ScaledObject with KServe told to keep out. Returns the extra objects and a zero-scale note."""
    graph = plan.graph
    node = service.node
    auto = node.autoscaling if node else None
    if node is None or auto is None:
        replicas = node.replicas if node else 1
        predictor.update({"minReplicas": replicas, "maxReplicas": replicas})
        annotations[AUTOSCALER_CLASS] = "none"
        return [], ""
    autoscaling.check(node, ENGINE)
    predictor.update({"minReplicas": auto.min_replicas, "maxReplicas": auto.max_replicas})
    deployment = f"{service.name}-predictor"
    target = autoscaling.Target(
        "apps/v1",
        "Deployment",
        deployment,
        autoscaling.deployment_pod_regex(deployment),
        {"model": service.name},
        REQUESTS_SERIES,
        wake_query(graph, plan, service) if auto.min_replicas == 0 else None,
    )
    note = ""
    if auto.min_replicas == 0:
        note = _zero_note(node)
    if auto.metric == "cpu":
        annotations[AUTOSCALER_CLASS] = auto.engine
        utilization = min(100, max(1, round(auto.target)))
        resource: JSONObject = {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": utilization},
        }
        predictor["autoScaling"] = _kserve_autoscaling(
            node, [{"type": "Resource", "resource": resource}]
        )
        return [], note
    if auto.engine == "keda" and auto.metric != "gpu":
        # KServe writes the ScaledObject: one prometheus trigger per External metric.
        annotations[AUTOSCALER_CLASS] = "keda"
        triggers = autoscaling.keda_triggers(graph, node, target)
        predictor["autoScaling"] = _kserve_autoscaling(node, _external_metrics(triggers))
        if note:
            note += _zero_cooldown_note(node)
        return [], note
    # KServe's HPA class takes CPU/memory only, and its KEDA triggers are AverageValue: the
    # kit's own scaler on the predictor Deployment, with KServe told to keep out.
    annotations[AUTOSCALER_CLASS] = "external"
    name = common.k8s_name(service.name, "autoscaler")
    make = autoscaling.scaled_object if auto.engine == "keda" else autoscaling.hpa
    return [make(graph, node, target, name)], note


def _kserve_autoscaling(node: Node, metrics: list[JSONObject]) -> JSONObject:
    """`predictor.autoScaling`: the metrics, and for the `keda` class the node's cooldown as
    the HPA's scale-down window. KServe's ScaledObject takes the two stabilization windows
    from `autoScaling.behavior` and nothing else of it, falling back to the
    `inferenceservice-config` values for a window left out (kserve@aaac4e2 pkg/controller/
    v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go:202-227, 258-275), so both
    are rendered. Its `hpa` class ignores `behavior` (reconcilers/hpa/hpa_reconciler.go:179
    writes an empty one): no window there, the HPA's 300 s default holds."""
    assert node.autoscaling is not None
    out: JSONObject = {"metrics": list(metrics)}
    if node.autoscaling.engine == "keda":
        out["behavior"] = autoscaling.stabilization_windows(node)
    return out


def _external_metrics(triggers: list[JSONObject]) -> list[JSONObject]:
    """KEDA's prometheus triggers in the shape of KServe's `autoScaling.metrics` (External,
    Value targets), from which KServe writes the ScaledObject itself."""
    return [_external_metric(at(trigger, "metadata")) for trigger in triggers]


def _external_metric(metadata: JSONObject) -> JSONObject:
    """One trigger's metadata (address, query, threshold) as an External metric."""
    return {
        "type": "External",
        "external": {
            "metric": {
                "backend": "prometheus",
                "serverAddress": metadata["serverAddress"],
                "query": metadata["query"],
            },
            "target": {"type": "Value", "value": metadata["threshold"]},
        },
    }


# KEDA's wait from the last active trigger to zero replicas where a ScaledObject sets no
# `cooldownPeriod`, as KServe's never does (kedacore/keda@8b4f083 pkg/scaling/executor/
# scale_executor.go:37, scale_scaledobjects.go:204-208; kserve keda_reconciler.go:241-256).
KEDA_DEFAULT_COOLDOWN_S = 300


def _zero_note(node: Node) -> str:
    gpu = f" with {node.resources.gpu} free nvidia.com/gpu" if node.resources.gpu else ""
    return (
        f"{node.name}: minReplicas 0. In KServe's Standard mode no activator holds a request "
        f"while KEDA wakes the predictor: the requests that reach it at zero replicas fail "
        f"(the router answers 500) until the scheduler has found a node{gpu}, the pod has "
        "pulled the image and loaded the model: minutes on a GPU cold start (KServe issues "
        "#1247 and #2882 show the router and activator timing out on exactly this); keep "
        "minReplicas 1 where every request counts."
    )


def _zero_cooldown_note(node: Node) -> str:
    """What of a `keda` class node's cooldown KServe's ScaledObject cannot carry."""
    assert node.autoscaling is not None
    cooldown = node.autoscaling.cooldown_seconds
    if cooldown == KEDA_DEFAULT_COOLDOWN_S:
        return ""
    return (
        f" Its cooldownSeconds {cooldown} is the HPA's scale-down window only: the "
        "ScaledObject KServe writes has no cooldownPeriod, so the last replica goes "
        f"{KEDA_DEFAULT_COOLDOWN_S} s after the last request (KEDA's default)."
    )


def inference_graph(graph: InferenceGraph, topology: _Topology, notes: list[str]) -> Manifest:
    per_call = max(1, math.ceil(max(n.timeout_ms for n in graph.spec.nodes) / 1000.0))
    total = max(1, math.ceil(sum(n.timeout_ms for n in graph.spec.nodes) / 1000.0)) + 5
    meta = common.metadata(graph, graph.name, None, "inference-graph")
    annotations = dict(DEPLOYMENT_MODE)
    if notes:
        annotations[NOTES_ANNOTATION] = "\n".join(notes)
    meta["annotations"] = annotations
    return {
        "apiVersion": GRAPH_API,
        "kind": "InferenceGraph",
        "metadata": meta,
        "spec": {
            "nodes": topology.nodes,
            "resources": {"requests": dict(ROUTER_RESOURCES), "limits": dict(ROUTER_RESOURCES)},
            "minReplicas": 1,
            "maxReplicas": router_max_replicas(graph),
            "scaleMetric": "cpu",
            "scaleTarget": ROUTER_CPU_TARGET,
            # One service call may take the slowest node's timeout (the router's http.Client);
            # a whole request every node's in turn (Go's WriteTimeout spans the handler).
            "routerTimeouts": {"serviceClient": per_call, "serverWrite": total},
            "timeout": total,
        },
    }


def router_max_replicas(graph: InferenceGraph) -> int:
    """How far the router may scale: every request crosses it, so as many replicas as the
    graph's nodes together may run. Pinned at one, a half-core router capped the graph
    however far its nodes scaled; its HPA adds replicas only as their CPU fills."""
    most = [n.autoscaling.max_replicas if n.autoscaling else n.replicas for n in graph.spec.nodes]
    return max(1, sum(most))


# KServe's webhook name rule for an InferenceService and an InferenceGraph (kserve@aaac4e2
# pkg/apis/serving/v1beta1/inference_service_validation.go:46, 55, 469-474; v1alpha1/
# inference_graph_validation.go:53, 60, 182): both are named after the graph.
KSERVE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


# KServe names the router's Deployment, Service and container after the InferenceGraph and
# labels them `serving.kserve.io/inferencegraph: <name>` (kserve@00dfe13 pkg/controller/
# v1alpha1/inferencegraph/raw_ig.go:60, 115, 118): a Service name or label value, <= 63.
KSERVE_GRAPH_NAME_MAX = 63


def check_graph_name(graph: InferenceGraph) -> None:
    """A graph name KServe refuses or cannot run, said at render time: the graph's name may
    start with a digit or run past 63 characters, and the InferenceGraph keeps it whole, as
    its URL is the graph's (a hash suffix shortens only the InferenceServices' names)."""
    if not KSERVE_NAME.fullmatch(graph.name):
        raise RenderError(
            ENGINE,
            f"graph '{graph.name}': KServe names the InferenceGraph and every InferenceService "
            f"after the graph, and its webhook requires those names to start with a letter "
            f"({KSERVE_NAME.pattern}); rename the graph",
        )
    if len(graph.name) > KSERVE_GRAPH_NAME_MAX:
        raise RenderError(
            ENGINE,
            f"graph '{graph.name}': the name is {len(graph.name)} characters; KServe names "
            f"the InferenceGraph's router Service and labels its pods after it, at most "
            f"{KSERVE_GRAPH_NAME_MAX}; rename the graph",
        )


def build(graph: InferenceGraph | GraphPlan) -> tuple[GraphPlan, _Topology]:
    plan = plan_of(graph)
    check_graph_name(plan.graph)
    for step in plan.steps:
        if step.kind == "gate" and step.family != GATE_FAMILY:
            raise RenderError(ENGINE, f"{step.path}: unknown gate family '{step.family}'")
    topology = _Topology(plan)
    topology.build()
    return plan, topology


def render(
    source: InferenceGraph | GraphPlan, options: RenderOptions | None = None
) -> list[Manifest]:
    """ServingRuntime(s), then per step an InferenceService (+ scaler), then the InferenceGraph."""
    options = options or RenderOptions()
    plan, topology = build(source)
    graph = plan.graph
    services = list(topology.services.values())
    cuda = sorted({bool(s.node and s.node.resources.gpu) for s in services})
    objs: list[Manifest] = [serving_runtime(graph, c, options) for c in cuda]
    notes: list[str] = [TRACE_NOTE]
    for service in services:
        isvc, scalers, note = inference_service(plan, service, options)
        objs.append(isvc)
        objs.extend(scalers)
        if note:
            notes.append(note)
    objs.append(inference_graph(graph, topology, notes))
    objs.append(pod_monitor(graph))
    return objs


def pod_monitor(graph: InferenceGraph) -> Manifest:
    """Scrape the runtime series the KEDA queries read (every predictor pod of the graph)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": common.metadata(graph, common.k8s_name(graph.name, "metrics"), None, "metrics"),
        "spec": {
            "selector": {"matchLabels": {common.GRAPH_LABEL: graph.name}},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics"}],
        },
    }


def router_config_with_trace_headers(router: str) -> str:
    """KServe's `inferenceservice-config` `router` value with the trace headers added to
    `headers.propagate`, everything else kept.

    The router forwards no header by default; the controller passes `headers.propagate`,
    joined with commas, to every router it deploys as PROPAGATE_HEADERS (raw_ig.go:89-97,
    knative_reconciler.go:247-256) and reads the ConfigMap on each InferenceGraph
    reconcile (controller.go:148-157). It is one value for the whole cluster, so the kit
    cannot render it per graph: this merges our names into the value the cluster has.
    """
    if not router.strip():
        raise RenderError(ENGINE, "the router value is empty: pass the ConfigMap's data.router")
    try:
        config = json.loads(router)
    except ValueError as exc:
        raise RenderError(ENGINE, f"the router value is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise RenderError(ENGINE, "the router value must be a JSON object (RouterConfig)")
    headers = config.get("headers") or {}
    patterns = headers.get("propagate", []) if isinstance(headers, dict) else None
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise RenderError(ENGINE, "router headers.propagate must be a list of strings")
    added = [name for name in ROUTER_TRACE_HEADERS if name not in patterns]
    config["headers"] = {**headers, "propagate": [*patterns, *added]}
    return json.dumps(config, indent=2)


def render_notes(objs: list[Manifest]) -> list[str]:
    """The render-time messages (trace headers, scale-to-zero cold starts) the CLI prints."""
    for obj in objs:
        if obj.get("kind") == "InferenceGraph":
            annotations = object_or_empty(at(obj, "metadata"), "annotations")
            where = f"metadata.annotations.{NOTES_ANNOTATION}"
            text = as_str(annotations.get(NOTES_ANNOTATION, ""), where)
            return [line for line in text.split("\n") if line]
    return []
