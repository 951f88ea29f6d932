"""Seldon Core v1: one SeldonDeployment whose `graph` tree carries the topology.

The v1 executor walks a tree of units; per unit it runs `transform-input`/`predict`, then
its children (one picked by a ROUTER, or all of them, merged by a COMBINER's `aggregate`),
then `transform-output`. Data therefore only flows *down* a chain of MODEL/TRANSFORMER
units, and only an ancestor's OUTPUT_TRANSFORMER can run after a subtree. Mapping:

- sequence: MODEL/TRANSFORMER units chained parent -> child. A step that must follow a
  unit that finishes late (an output-transformer, an ensemble or a `when`) becomes an
  OUTPUT_TRANSFORMER wrapping everything before it (our components do the same work in
  `predict`, `transform_input` and `transform_output`).
- ensemble: a COMBINER unit (the graph's combiner node, or a synthesized `combine-N` for
  `method: average|vote|merge`) whose children are the members.
- when: a ROUTER unit (`gate-N`) with children [then, otherwise]; without `otherwise` the
  second child is an identity unit (`pass-N`) returning what it is given: a cascade.
- Not expressible (RenderError): an ensemble or `when` after a late-finishing unit, because
  no v1 unit type runs a subtree after its own children.

Protocol: `v2` (every unit an MLServer runtime from the mlserver-runtimes image) when the
graph is a plain chain whose steps consume exactly the previous step's output names, since
the executor only renames `outputs` to `inputs` between v2 units and has no route/aggregate
for them. Otherwise the Seldon protocol, every unit an `InfergraphComponent` under
`seldon-core-microservice` (seldon-components image), passing the graph's named tensors as
`jsonData` so any unit can read any upstream tensor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from fractions import Fraction

from infergraph import cluster_names
from infergraph.errors import RenderError
from infergraph.graph.model import REQUEST, InferenceGraph, Node
from infergraph.graph.plan import (
    Block,
    ChainBlock,
    FanOutBlock,
    FreshNames,
    GraphPlan,
    PlanStep,
    RouteBlock,
    Source,
    UnitBlock,
    plan_of,
)
from infergraph.json_types import JSONObject, Manifest, as_str, at
from infergraph.render import autoscaling, common
from infergraph.render.options import RenderOptions

ENGINE = "seldon-v1"
API = "machinelearning.seldon.io/v1"
PREDICTOR = cluster_names.SELDON_V1_PREDICTOR
HTTP_PORT = 9000
GRPC_PORT = 9500
# The graph annotation that turns the units' gRPC servers off ("false"): each loads a copy of
# the model (unit_copies), and only the executor's gRPC endpoint calls them.
GRPC_ANNOTATION = "infergraph.io/seldon-v1-grpc"
METRICS_PORT = 6000
NOTES_ANNOTATION = "infergraph.io/render-notes"
ROLE_TYPES = {
    "model": "MODEL",
    "transformer": "TRANSFORMER",
    "output-transformer": "OUTPUT_TRANSFORMER",
}


@dataclass
class Unit:
    """One graph unit and the container behind it (a node, or a synthesized helper)."""

    name: str
    type: str
    family: str
    node: Node | None
    parameters: JSONObject = field(default_factory=dict)
    children: list[Unit] = field(default_factory=list)
    model_uri: str | None = None

    def tree(self) -> JSONObject:
        out: JSONObject = {"name": self.name, "type": self.type}
        out["endpoint"] = {"type": "REST"}
        if self.model_uri:
            # The operator's storage initializer copies it to /mnt/models, the default path.
            out["modelUri"] = self.model_uri
        if self.parameters:
            out["parameters"] = [_parameter(k, v) for k, v in self.parameters.items()]
        out["children"] = [c.tree() for c in self.children]
        return out

    def walk(self) -> list[Unit]:
        units = [self]
        for child in self.children:
            units.extend(child.walk())
        return units


def _parameter(name: str, value: object) -> dict[str, str]:
    if isinstance(value, bool):
        return {"name": name, "type": "BOOL", "value": "true" if value else "false"}
    if isinstance(value, int):
        return {"name": name, "type": "INT", "value": str(value)}
    if isinstance(value, float):
        return {"name": name, "type": "DOUBLE", "value": repr(value)}
    if isinstance(value, str):
        return {"name": name, "type": "STRING", "value": value}
    return {"name": name, "type": "STRING", "value": json.dumps(value, sort_keys=True)}


@dataclass
class Partial:
    """A subtree under construction; `tail` is the unit the next chained step hangs from."""

    root: Unit
    tail: Unit | None


class _Builder:
    """The plan's block tree as SeldonDeployment units; every unit gets its resolved inputs."""

    def __init__(self, plan: GraphPlan, options: RenderOptions) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.options = options
        self.fresh = FreshNames(s.name for s in plan.steps)

    def inputs_param(self, step: PlanStep) -> dict[str, str]:
        """`input -> "a.x | b.x"`: qualified refs the unit looks up in the carried tensors."""
        return {k: " | ".join(s.ref for s in v) for k, v in step.inputs.items()}

    def carry(self, step: PlanStep) -> list[str]:
        """What the unit passes on: the refs later steps and the graph's outputs read (its own
        outputs always go), so a unit does not echo a large request back to the client."""
        later = self.plan.steps[self.plan.steps.index(step) + 1 :]
        refs = {s.ref for st in later for alts in st.inputs.values() for s in alts}
        refs |= {s.ref for alts in self.plan.outputs.values() for s in alts}
        return sorted(refs)

    def step_unit(self, step: PlanStep, unit_type: str) -> Unit:
        params: JSONObject = {"node": step.name, "family": step.family}
        node = step.node
        uri = None
        if node is not None:
            art = common.artifact(self.graph, node.name, node.family, node.model_uri, self.options)
            if art.runtime_uri:
                params["model_uri"] = art.runtime_uri
            params.update({"device": node.device, "dtype": node.dtype})
            params["max_batch_size"] = node.batching.max_batch_size
            if node.options:
                params["options"] = node.options
            # `<node>.<key>` request parameters address one of these (graph.evaluate's rule).
            params["nodes"] = [n.name for n in self.graph.spec.nodes]
            uri = art.storage_uri if art.weights_in_artifact else None
        if step.condition is not None:
            params["condition"] = common.condition_dict(step.condition)
        if step.method:
            params["method"] = step.method
        params["inputs"] = self.inputs_param(step)
        params["carry"] = self.carry(step)
        return Unit(step.name, unit_type, step.family, node, params, model_uri=uri)

    def build(self, block: Block, path: str) -> Partial:
        if isinstance(block, UnitBlock):
            step = self.plan.step(block.step)
            unit = self.step_unit(step, ROLE_TYPES[step.role])
            return Partial(unit, unit if step.role != "output-transformer" else None)
        if isinstance(block, ChainBlock):
            return self.sequence(block, path)
        if isinstance(block, FanOutBlock):
            return self.fan_out(block, path)
        return self.route(block, path)

    def sequence(self, chain: ChainBlock, path: str) -> Partial:
        acc: Partial | None = None
        for i, block in enumerate(chain.items):
            where = f"{path}[{i}]"
            if acc is None:
                acc = self.build(block, where)
            elif acc.tail is not None:
                sub = self.build(block, where)
                acc.tail.children = [sub.root]
                acc = Partial(acc.root, sub.tail)
            elif isinstance(block, UnitBlock):
                # Runs after a late-finishing subtree: wrap it as an output transformer.
                unit = self.step_unit(self.plan.step(block.step), "OUTPUT_TRANSFORMER")
                unit.children = [acc.root]
                acc = Partial(unit, None)
            else:
                kind = "an ensemble" if isinstance(block, FanOutBlock) else "a when"
                raise RenderError(
                    ENGINE,
                    f"{self.where(block)}: {kind} cannot follow '{acc.root.name}' "
                    f"({acc.root.type}): in a SeldonDeployment graph only an OUTPUT_TRANSFORMER "
                    "runs after a COMBINER/ROUTER/OUTPUT_TRANSFORMER subtree; render with "
                    "--engine seldon-v2, or move this step before it",
                )
        assert acc is not None
        return acc

    def where(self, block: Block) -> str:
        first = block
        while not isinstance(first, UnitBlock):
            if isinstance(first, ChainBlock):
                first = first.items[0]
            elif isinstance(first, FanOutBlock):
                first = first.members[0]
            else:
                return self.plan.step(first.gate).path
        return self.plan.step(first.step).path

    def fan_out(self, block: FanOutBlock, path: str) -> Partial:
        members = [self.build(m, f"{path}.members[{i}]") for i, m in enumerate(block.members)]
        if block.combine is not None:
            unit = self.step_unit(self.plan.step(block.combine), "COMBINER")
        else:
            name = self.fresh("merge")
            # Its members' steps are all in the plan before it: it carries what is read
            # after the last of them, not every member's tensor back to the client.
            steps = [self.plan.step(u.name) for u in self.units(members)]
            params: JSONObject = {"node": name, "method": "merge"}
            params["carry"] = self.carry(max(steps, key=self.plan.steps.index))
            unit = Unit(name, "COMBINER", "combiner", None, params)
        unit.children = [m.root for m in members]
        return Partial(unit, None)

    def units(self, members: list[Partial]) -> list[Unit]:
        """The plan steps' units under `members` (synthesized merges are no plan step)."""
        names = {st.name for st in self.plan.steps}
        return [u for m in members for u in m.root.walk() if u.name in names]

    def route(self, block: RouteBlock, path: str) -> Partial:
        router = self.step_unit(self.plan.step(block.gate), "ROUTER")
        then = self.build(block.then, f"{path}.then").root
        if block.otherwise is not None:
            other = self.build(block.otherwise, f"{path}.otherwise").root
        else:
            assert block.passthrough is not None
            other = self.step_unit(self.plan.step(block.passthrough), "MODEL")
        router.children = [then, other]
        return Partial(router, None)


def first_units(unit: Unit) -> list[Unit]:
    """The units the client's message reaches as it was sent, which check it against the
    graph's inputs: a MODEL or TRANSFORMER root, else the first units under a ROUTER,
    COMBINER or OUTPUT_TRANSFORMER, whose children the executor hands the message it was given
    (seldon-core v1.18.2 executor/predictor/predictor_process.go:95-113: only MODEL and
    TRANSFORMER units transform it on the way down; :289-331: every child, or the routed
    one, gets `msg`). A ROUTER does not check it: the executor drops a failing ROUTER's
    answer (executor/api/rest/client.go:364-370), so its child's 400 is the one that names
    the tensor."""
    if unit.type in ("MODEL", "TRANSFORMER"):
        return [unit]
    return [first for child in unit.children for first in first_units(child)]


# -- protocol choice -------------------------------------------------------------------------
def enforces_queue_bounds(plan: GraphPlan) -> bool:
    """Whether the deployment's units refuse past `batching.maxQueueRows`: MLServer units
    (`protocol: v2`, a chain) run the runtime's batcher; Seldon-protocol units answer each
    request on its own seldon-core-microservice worker, which calls the model there and then
    (seldon_core 1.18.2 wrapper.py:71-74 for REST, 240-241 for gRPC: `seldon_methods.predict`
    on the request), with no queue to bound."""
    return v2_chain(plan) is not None


def v2_chain(plan: GraphPlan) -> list[PlanStep] | None:
    """The steps when the graph is a chain MLServer units can run with `protocol: v2`: the
    executor only renames one unit's `outputs` to the next one's `inputs`, so each step must
    take exactly tensors of the step before it (the first: the graph's inputs), by name."""
    if plan.helper_steps() or any(s.role == "output-transformer" for s in plan.steps[:-1]):
        return None
    previous = REQUEST
    for step in plan.steps:
        for name, sources in step.inputs.items():
            if sources != (Source(previous, name),):
                return None
        previous = step.name
    return plan.steps


# -- objects -----------------------------------------------------------------------------------
def _seldon_container(graph: InferenceGraph, unit: Unit, options: RenderOptions) -> JSONObject:
    instances = unit.node.instances if unit.node is not None else 1
    grpc = grpc_workers(graph)
    return {
        "name": unit.name,
        "image": common.image(graph, common.SELDON_IMAGE, unit.node, options),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--service-type", _service_type(unit.type)],
        "env": [
            # Each gunicorn worker is a process with its own copy of the model: the node's
            # instances (seldon-core 1.18.2 seldon_core/microservice.py:265-270: `--workers`
            # defaults to GUNICORN_WORKERS).
            {"name": "GUNICORN_WORKERS", "value": str(instances)},
            # And each gRPC worker one more (:346-350, :510-527; `_run_grpc_server` loads the
            # model at :478-481); none at 0 (:650).
            {"name": "GRPC_WORKERS", "value": str(grpc)},
            {"name": "GUNICORN_THREADS", "value": "4"},
            {"name": "SELDON_LOG_LEVEL", "value": "INFO"},
            *common.threads_env(unit.node, processes=instances),
            *common.cache_env(),
        ],
        "ports": [
            {"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"},
            *([{"containerPort": GRPC_PORT, "name": "grpc", "protocol": "TCP"}] if grpc else []),
            {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
        ],
        "resources": common.resources(unit.node, ENGINE, unit_copies(instances, grpc)),
        "securityContext": common.container_security_context(read_only_root=True),
        "volumeMounts": common.scratch_mounts(),
    }


def grpc_workers(graph: InferenceGraph) -> int:
    """The gRPC worker processes of each Seldon protocol unit: one (seldon-core's default), as
    the executor answers its own gRPC endpoint by calling the units over gRPC
    (executor/cmd/executor/main.go:396-415: `clientGrpc` for `runGrpcServer`, `clientRest`
    for the REST server); none where the graph's `infergraph.io/seldon-v1-grpc` annotation
    is "false", for a deployment called over REST only."""
    value = graph.metadata.annotations.get(GRPC_ANNOTATION, "true")
    if value not in ("true", "false"):
        raise RenderError(ENGINE, f"annotation {GRPC_ANNOTATION} is '{value}'; use true or false")
    return 1 if value == "true" else 0


def unit_copies(instances: int, grpc_workers: int) -> Fraction:
    """A Seldon protocol unit's copies of the model, in the node's replicas: one per REST
    worker (its `instances`) and one per gRPC worker, each the memory the node gives one
    instance (a node that fits in 2Gi with one instance needs 4Gi as a unit)."""
    return Fraction(instances + grpc_workers, instances)


def _service_type(unit_type: str) -> str:
    return {"OUTPUT_TRANSFORMER": "TRANSFORMER"}.get(unit_type, unit_type)


def _mlserver_container(graph: InferenceGraph, unit: Unit, options: RenderOptions) -> JSONObject:
    node = unit.node
    assert node is not None
    # The executor hands each unit the previous unit's response parameters
    # (executor/api/rest/kfserving.go:10-35): units relay the request's, so a knob meant
    # for any unit reaches it (RuntimeSettings.relay_request_parameters).
    settings = common.model_settings(graph, unit.name, node, node.family, options, relay=True)
    params = at(settings, "parameters")
    uri = as_str(params.get("uri") or "/mnt/models", "parameters.uri")
    implementation = as_str(settings["implementation"], "implementation")
    env = [
        {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": implementation},
        {"name": "MLSERVER_MODEL_URI", "value": uri},
        {"name": "MLSERVER_MODEL_EXTRA", "value": json.dumps(params["extra"], sort_keys=True)},
        {"name": "MLSERVER_MODEL_MAX_BATCH_SIZE", "value": str(settings["max_batch_size"])},
        {"name": "MLSERVER_MODEL_MAX_BATCH_TIME", "value": str(settings["max_batch_time"])},
        {"name": "MLSERVER_HTTP_PORT", "value": str(HTTP_PORT)},
        {"name": "MLSERVER_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "MLSERVER_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"},
        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
        *common.threads_env(node),
        *common.cache_env(),
    ]
    return {
        "name": unit.name,
        "image": common.image(graph, common.MLSERVER_IMAGE, node, options),
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [
            {"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"},
            {"containerPort": GRPC_PORT, "name": "grpc", "protocol": "TCP"},
            {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
        ],
        "resources": common.resources(node, ENGINE),
        "securityContext": common.container_security_context(read_only_root=True),
        "volumeMounts": common.scratch_mounts(),
    }


def _hpa_spec(node: Node) -> JSONObject:
    """The operator's hpaSpec (v2beta1-shaped metrics, as the v1 CRD defines them)."""
    assert node.autoscaling is not None
    auto = node.autoscaling
    if auto.metric == "cpu":
        metric: JSONObject = {
            "type": "Resource",
            "resource": {"name": "cpu", "targetAverageUtilization": round(auto.target)},
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metricName": autoscaling.PODS_METRICS[auto.metric],
                "targetAverageValue": f"{auto.target:g}",
            },
        }
    return {
        "minReplicas": auto.min_replicas,
        "maxReplicas": auto.max_replicas,
        "metrics": [metric],
    }


def operator_deployment(graph: InferenceGraph, index: int, name: str) -> str:
    """The Deployment the v1 operator creates for componentSpecs[index] named `name`.

    `<sdep>-<predictor>-<index>-<metadata.name>`, or `seldon-<md5>` past 63 characters
    (sc1:operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go:120-136,
    GetDeploymentName; DEPLOYMENT_NAME_AS_PREFIX unset, its default).
    """
    full = f"{graph.name}-{PREDICTOR}-{index}-{name}"
    if len(full) > 63:
        return "seldon-" + hashlib.md5(full.encode()).hexdigest()
    return full


def _keda_spec(graph: InferenceGraph, node: Node, deployment: str, unit: str) -> JSONObject:
    """kedaSpec; `deployment` is the operator's Deployment name (its pods' name prefix)."""
    assert node.autoscaling is not None
    auto = node.autoscaling
    selector = {"deployment_name": graph.name, "model_name": unit}
    target = autoscaling.Target(
        "apps/v1",
        "Deployment",
        deployment,
        autoscaling.deployment_pod_regex(deployment),
        selector,
        autoscaling.V1_RPS_SERIES,
        None,  # never at zero replicas on v1 (see _notes): nothing to wake
    )
    obj = at(autoscaling.scaled_object(graph, node, target, deployment), "spec")
    return {
        "minReplicaCount": max(auto.min_replicas, 1),  # see _notes
        "maxReplicaCount": auto.max_replicas,
        "cooldownPeriod": auto.cooldown_seconds,
        "pollingInterval": obj["pollingInterval"],
        "advanced": obj["advanced"],
        "triggers": obj["triggers"],
    }


def _component_spec(
    graph: InferenceGraph, unit: Unit, index: int, protocol: str, options: RenderOptions
) -> JSONObject:
    node = unit.node
    deployment = common.k8s_name(graph.name, unit.name)
    container = (
        _mlserver_container(graph, unit, options)
        if protocol == "v2"
        else _seldon_container(graph, unit, options)
    )
    pod: JSONObject = {
        "securityContext": common.pod_security_context(),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": common.scratch_volumes(node),
        **common.gpu_scheduling(node, options),
        **common.pull_secrets(options),
    }
    spec: JSONObject = {
        "metadata": {
            "name": deployment,
            "labels": common.labels(graph, node.name if node else unit.name, unit.type.lower()),
        },
        "spec": pod,
    }
    if node is not None and node.autoscaling is not None:
        autoscaling.check(node, ENGINE)
        if node.autoscaling.engine == "keda":
            pods = operator_deployment(graph, index, deployment)
            spec["kedaSpec"] = _keda_spec(graph, node, pods, unit.name)
        else:
            spec["hpaSpec"] = _hpa_spec(node)
    else:
        spec["replicas"] = node.replicas if node is not None else 1
    return spec


def render(
    source: InferenceGraph | GraphPlan, options: RenderOptions | None = None
) -> list[Manifest]:
    """One SeldonDeployment (autoscalers ride inside it as hpaSpec/kedaSpec)."""
    options = options or RenderOptions()
    plan = plan_of(source)
    graph = plan.graph
    protocol = "v2" if v2_chain(plan) is not None else "seldon"
    root = _Builder(plan, options).build(plan.root, "spec.graph").root
    units = root.walk()
    if protocol == "v2":
        for unit in units:
            unit.parameters = {}
    else:
        for unit in first_units(root):
            # What a client's request must hold exactly: these units refuse the rest (400).
            unit.parameters["graph"] = graph.name
            unit.parameters["graph_inputs"] = sorted(t.name for t in graph.spec.inputs)
    for unit in units:
        if unit.node is not None:
            autoscaling.check(unit.node, ENGINE)
    component_specs = [_component_spec(graph, u, i, protocol, options) for i, u in enumerate(units)]
    meta = common.metadata(graph, graph.name, None, "seldondeployment")
    sdep: Manifest = {
        "apiVersion": API,
        "kind": "SeldonDeployment",
        "metadata": meta,
        "spec": {
            "name": graph.name,
            "protocol": protocol,
            "annotations": {
                # The executor in its own pod: scaling a GPU node does not scale the executor.
                # The price: no per-call timeout (see EXECUTOR_TIMEOUT_NOTE).
                "seldon.io/engine-separate-pod": "true",
                "seldon.io/rest-timeout": str(_timeout_ms(graph)),
            },
            "predictors": [
                {
                    "name": PREDICTOR,
                    "replicas": 1,
                    "labels": common.labels(graph, None, "predictor"),
                    "svcOrchSpec": {
                        "resources": {
                            "requests": {"cpu": "500m", "memory": "512Mi"},
                            "limits": {"cpu": "500m", "memory": "512Mi"},
                        }
                    },
                    "graph": root.tree(),
                    "componentSpecs": component_specs,
                }
            ],
        },
    }
    meta["annotations"] = {  # metadata() writes none
        NOTES_ANNOTATION: _notes(units, protocol, grpc_workers(graph), _timeout_ms(graph))
    }
    return [sdep, *common.pod_monitors(graph, [], ENGINE)]


# Why the executor keeps its own pod although no per-call timeout reaches it there
# (seldon-core v1.18.2; tests.engines.seldon_v1.executor_pod_annotations models it):
#
# - The executor times its calls to the units out only by `seldon.io/rest-timeout` (and
#   `seldon.io/grpc-timeout`) on its own pod, read from the downward-API file
#   /etc/podinfo/annotations at start (executor/k8s/annotation.go:11-14, 27-36;
#   executor/cmd/executor/main.go:359, 391; executor/api/rest/client.go:98-125, without it
#   `http.DefaultClient` and no timeout; executor/api/grpc/client.go:33-42).
# - No SeldonDeployment field reaches a separate executor pod's annotations:
#   `createEngineDeployment` gives its pod template only `prometheus.io/path` and
#   `prometheus.io/scrape` (operator/controllers/seldondeployment_engine.go:393-400),
#   `spec.annotations` go on the Deployment object alone (:387), predictor annotations
#   nowhere. What does reach its container, `svcOrchSpec.env` and the `seldon.io/engine-*`
#   annotations as environment (:340-358; controllers/utils/controller_utils.go:69-89), is
#   not read as a timeout: the executor takes none from its flags or environment
#   (main.go:57-99).
# - Embedded (no `seldon.io/engine-separate-pod`) the executor would get `spec.annotations`
#   on its pod (seldondeployment_controller.go:1011-1020), but it runs in componentSpecs[0]'s
#   Deployment: that spec's containers are made `localhost` (apis/machinelearning.seldon.io/
#   v1/defaults.go:130-131) and the executor joins the Deployment of the first such unit
#   (seldondeployment_controller.go:587-614; `GetEnginePredictiveUnit`,
#   seldondeployment_types.go:182-193). componentSpecs[0] is the graph's root unit, in most
#   shipped graphs a GPU node and often an autoscaled one: the executor, which every request
#   crosses, would scale with that GPU node, wait for a GPU to be scheduled and restart with it.
#
# So it stays separate and the render says so in its notes (EXECUTOR_TIMEOUT_NOTE).
# `seldon.io/rest-timeout` stays for Ambassador's route timeout, which reads it from the
# SeldonDeployment (operator/controllers/ambassador/v1.go:176; 3000 ms without it).
EXECUTOR_TIMEOUT_NOTE = (
    "A node's timeoutMs is not enforced between the executor and the units: the executor "
    "runs in its own pod (seldon.io/engine-separate-pod, so it never scales with a GPU node) "
    "and takes seldon.io/rest-timeout only from that pod's annotations, which no "
    "SeldonDeployment field sets (seldon-core v1.18.2 seldondeployment_engine.go:393-400), so "
    "a unit that hangs holds the request until the client or the ingress gives up. "
    "seldon.io/rest-timeout ({timeout_ms} ms, the slowest node's) is Ambassador's route timeout."
)


def _notes(units: list[Unit], protocol: str, grpc: int, timeout_ms: int) -> str:
    """What the SeldonDeployment does differently from the graph file, and why."""
    notes = [EXECUTOR_TIMEOUT_NOTE.format(timeout_ms=timeout_ms)]
    zero = [
        u.name
        for u in units
        if u.node and u.node.autoscaling and u.node.autoscaling.min_replicas == 0
    ]
    if zero:
        notes.append(
            f"{', '.join(zero)}: minReplicas 0 rendered as 1. The v1 executor's readiness "
            "dials every unit, so a unit at zero replicas would leave the whole graph unready "
            "and no request would reach the trigger that wakes it."
        )
    models = [u.name for u in units if u.node is not None]
    if protocol == "seldon" and models and grpc:
        notes.append(
            f"{', '.join(models)}: memory is the node's per instance times its instances plus "
            f"{grpc}. seldon-core-microservice runs the component, model and all, in each "
            "gunicorn worker (GUNICORN_WORKERS) and in each gRPC worker (GRPC_WORKERS), which "
            f'the executor\'s gRPC endpoint calls; {GRPC_ANNOTATION}: "false" turns them off.'
        )
    elif protocol == "seldon" and not grpc:
        notes.append(
            f"{GRPC_ANNOTATION} is false: the units run no gRPC server, so the "
            "SeldonDeployment answers over REST only (its gRPC endpoint fails every call)."
        )
    bounded = [u.name for u in units if u.node and u.node.batching.max_queue_rows]
    if protocol == "seldon" and bounded:  # as `enforces_queue_bounds` says
        notes.append(
            f"{', '.join(bounded)}: batching.maxQueueRows is not enforced. "
            "seldon-core-microservice answers each request on its own worker, with no queue "
            "of the runtime's to bound; no request is refused as overload."
        )
    return " ".join(notes)


def _timeout_ms(graph: InferenceGraph) -> int:
    """`seldon.io/rest-timeout`: the slowest node's timeout, for Ambassador's route (not the
    executor's calls: see EXECUTOR_TIMEOUT_NOTE)."""
    return int(max(n.timeout_ms for n in graph.spec.nodes))
