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

import json
from dataclasses import dataclass, field
from typing import Any

from infergraph.components.registry import component_class
from infergraph.errors import RenderError
from infergraph.graph.model import (
    REQUEST,
    EnsembleStep,
    InferenceGraph,
    Node,
    NodeStep,
    SequenceStep,
    Step,
    WhenStep,
)
from infergraph.graph.validate import split_alternatives
from infergraph.render import autoscaling, common

ENGINE = "seldon-v1"
API = "machinelearning.seldon.io/v1"
PREDICTOR = "default"
HTTP_PORT = 9000
GRPC_PORT = 9500
METRICS_PORT = 6000
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
    parameters: dict[str, Any] = field(default_factory=dict)
    children: list[Unit] = field(default_factory=list)
    model_uri: str | None = None

    def tree(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
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


def _parameter(name: str, value: Any) -> dict[str, str]:
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
    def __init__(self, graph: InferenceGraph) -> None:
        self.graph = graph
        self.counters: dict[str, int] = {}
        self.taken = {n.name for n in graph.spec.nodes}

    def helper(self, kind: str) -> str:
        while True:
            index = self.counters.get(kind, 0)
            self.counters[kind] = index + 1
            name = f"{kind}-{index}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def node_unit(self, step: NodeStep, unit_type: str) -> Unit:
        node = self.graph.node(step.node)
        params: dict[str, Any] = {"node": node.name, "family": node.family}
        art = common.artifact(self.graph, node.name, node.family, node.model_uri)
        if art.runtime_uri:
            params["model_uri"] = art.runtime_uri
        params.update({"device": node.device, "dtype": node.dtype})
        params["max_batch_size"] = node.batching.max_batch_size
        if node.options:
            params["options"] = node.options
        if step.inputs:
            params["inputs"] = dict(step.inputs)
        uri = art.storage_uri if art.weights_in_artifact else None
        return Unit(node.name, unit_type, node.family, node, params, model_uri=uri)

    def build(self, step: Step, path: str) -> Partial:
        if isinstance(step, NodeStep):
            unit = self.node_unit(step, ROLE_TYPES[step.role])
            return Partial(unit, unit if step.role != "output-transformer" else None)
        if isinstance(step, SequenceStep):
            return self.sequence(_flatten(step), path)
        if isinstance(step, EnsembleStep):
            return self.ensemble(step, path)
        if isinstance(step, WhenStep):
            return self.when(step, path)
        raise TypeError(step)

    def sequence(self, steps: list[tuple[Step, str]], path: str) -> Partial:
        acc: Partial | None = None
        for step, where in steps:
            if acc is None:
                acc = self.build(step, where)
                continue
            if acc.tail is not None:
                sub = self.build(step, where)
                acc.tail.children = [sub.root]
                acc = Partial(acc.root, sub.tail)
            elif isinstance(step, NodeStep):
                # Runs after a late-finishing subtree: wrap it as an output transformer.
                unit = self.node_unit(step, "OUTPUT_TRANSFORMER")
                unit.children = [acc.root]
                acc = Partial(unit, None)
            else:
                kind = "ensemble" if isinstance(step, EnsembleStep) else "when"
                raise RenderError(
                    ENGINE,
                    f"{where}: a{'n' if kind == 'ensemble' else ''} {kind} cannot follow "
                    f"'{acc.root.name}' ({acc.root.type}): in a SeldonDeployment graph only "
                    "an OUTPUT_TRANSFORMER runs after a COMBINER/ROUTER/OUTPUT_TRANSFORMER "
                    f"subtree, and a {'COMBINER' if kind == 'ensemble' else 'ROUTER'} has to "
                    "run its children after it; render with --engine seldon-v2, or move "
                    "this step before it",
                )
        assert acc is not None
        return acc

    def ensemble(self, step: EnsembleStep, path: str) -> Partial:
        members = [self.build(m, f"{path}.ensemble[{i}]") for i, m in enumerate(step.ensemble)]
        combine = step.combine
        params: dict[str, Any] = {"tensor": combine.tensor}
        if combine.node is not None:
            unit = self.node_unit(NodeStep(node=combine.node), "COMBINER")
            unit.parameters.update(params)
        else:
            name = self.helper("combine")
            params.update({"node": name, "family": "combiner", "method": combine.method})
            unit = Unit(name, "COMBINER", "combiner", None, params)
        unit.children = [m.root for m in members]
        return Partial(unit, None)

    def when(self, step: WhenStep, path: str) -> Partial:
        name = self.helper("gate")
        router = Unit(
            name,
            "ROUTER",
            "gate",
            None,
            {"node": name, "condition": common.condition_dict(step.when)},
        )
        then = self.build(step.then, f"{path}.then")
        if step.otherwise is not None:
            other = self.build(step.otherwise, f"{path}.otherwise").root
        else:
            pass_name = self.helper("pass")
            other = Unit(
                pass_name, "MODEL", "identity", None, {"node": pass_name, "family": "identity"}
            )
        router.children = [then.root, other]
        return Partial(router, None)


def _flatten(step: SequenceStep, path: str = "spec.graph") -> list[tuple[Step, str]]:
    out: list[tuple[Step, str]] = []
    for i, sub in enumerate(step.sequence):
        where = f"{path}.sequence[{i}]"
        if isinstance(sub, SequenceStep):
            out.extend(_flatten(sub, where))
        else:
            out.append((sub, where))
    return out


# -- protocol choice -------------------------------------------------------------------------
def v2_chain(graph: InferenceGraph) -> list[NodeStep] | None:
    """The node steps when the graph is a chain MLServer units can run with `protocol: v2`."""
    root = graph.spec.graph
    if isinstance(root, NodeStep):
        steps: list[Any] = [root]
    elif isinstance(root, SequenceStep):
        steps = [s for s, _ in _flatten(root)]
    else:
        return None
    if not all(isinstance(s, NodeStep) for s in steps):
        return None
    if any(s.role == "output-transformer" for s in steps[:-1]):
        return None
    current = {d.name for d in graph.spec.inputs}
    previous = REQUEST
    for step in steps:
        cls = component_class(graph.node(step.node).family)
        for name, ref in step.inputs.items():
            alts = split_alternatives(ref)
            if len(alts) != 1 or alts[0] != f"{previous}.{name}":
                return None
        if cls.passthrough:
            continue
        needed = {s.name for s in cls.inputs if not s.optional}
        if not needed <= current:
            return None
        current = {s.name for s in cls.outputs}
        previous = step.node
    return steps


# -- objects -----------------------------------------------------------------------------------
def _seldon_container(graph: InferenceGraph, unit: Unit) -> dict[str, Any]:
    return {
        "name": unit.name,
        "image": common.image(graph, common.SELDON_IMAGE),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--service-type", _service_type(unit.type)],
        "env": [
            {"name": "GUNICORN_WORKERS", "value": "1"},
            {"name": "GUNICORN_THREADS", "value": "4"},
            {"name": "SELDON_LOG_LEVEL", "value": "INFO"},
            *common.cache_env(),
        ],
        "ports": [
            {"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"},
            {"containerPort": GRPC_PORT, "name": "grpc", "protocol": "TCP"},
            {"containerPort": METRICS_PORT, "name": "metrics", "protocol": "TCP"},
        ],
        "resources": common.resources(unit.node, ENGINE),
        "securityContext": common.container_security_context(read_only_root=True),
        "volumeMounts": common.scratch_mounts(),
    }


def _service_type(unit_type: str) -> str:
    return {"OUTPUT_TRANSFORMER": "TRANSFORMER"}.get(unit_type, unit_type)


def _mlserver_container(graph: InferenceGraph, unit: Unit) -> dict[str, Any]:
    node = unit.node
    assert node is not None
    settings = common.model_settings(graph, unit.name, node, node.family, {})
    params = settings["parameters"]
    uri = params.get("uri") or "/mnt/models"
    env = [
        {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": settings["implementation"]},
        {"name": "MLSERVER_MODEL_URI", "value": uri},
        {"name": "MLSERVER_MODEL_EXTRA", "value": json.dumps(params["extra"], sort_keys=True)},
        {"name": "MLSERVER_MODEL_MAX_BATCH_SIZE", "value": str(settings["max_batch_size"])},
        {"name": "MLSERVER_MODEL_MAX_BATCH_TIME", "value": str(settings["max_batch_time"])},
        {"name": "MLSERVER_HTTP_PORT", "value": str(HTTP_PORT)},
        {"name": "MLSERVER_GRPC_PORT", "value": str(GRPC_PORT)},
        {"name": "MLSERVER_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"},
        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
        *common.cache_env(),
    ]
    return {
        "name": unit.name,
        "image": common.image(graph, common.MLSERVER_IMAGE),
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


def _hpa_spec(node: Node) -> dict[str, Any]:
    """The operator's hpaSpec (v2beta1-shaped metrics, as the v1 CRD defines them)."""
    assert node.autoscaling is not None
    auto = node.autoscaling
    if auto.metric == "cpu":
        metric: dict[str, Any] = {
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


def _keda_spec(graph: InferenceGraph, node: Node, deployment: str, unit: str) -> dict[str, Any]:
    assert node.autoscaling is not None
    auto = node.autoscaling
    ns = {"namespace": graph.metadata.namespace} if graph.metadata.namespace else {}
    selector = {"deployment_name": graph.name, "model_name": unit}
    target = autoscaling.Target(
        "apps/v1",
        "Deployment",
        deployment,
        f"{deployment}-[a-z0-9]+-[a-z0-9]+",
        selector,
        autoscaling.V1_RPS_SERIES,
        autoscaling.rate_query(autoscaling.V1_RPS_SERIES, {**ns, **selector}),
    )
    obj = autoscaling.scaled_object(graph, node, target, deployment)["spec"]
    return {
        "minReplicaCount": auto.min_replicas,
        "maxReplicaCount": auto.max_replicas,
        "cooldownPeriod": auto.cooldown_seconds,
        "pollingInterval": obj["pollingInterval"],
        "advanced": obj["advanced"],
        "triggers": obj["triggers"],
    }


def _component_spec(graph: InferenceGraph, unit: Unit, protocol: str) -> dict[str, Any]:
    node = unit.node
    deployment = common.k8s_name(graph.name, unit.name)
    container = (
        _mlserver_container(graph, unit) if protocol == "v2" else _seldon_container(graph, unit)
    )
    pod: dict[str, Any] = {
        "securityContext": common.pod_security_context(),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": common.scratch_volumes(node),
        **common.gpu_scheduling(node),
    }
    spec: dict[str, Any] = {
        "metadata": {
            "name": deployment,
            "labels": common.labels(graph, node.name if node else unit.name, unit.type.lower()),
        },
        "spec": pod,
    }
    if node is not None and node.autoscaling is not None:
        autoscaling.check(node, ENGINE)
        if node.autoscaling.engine == "keda":
            spec["kedaSpec"] = _keda_spec(graph, node, deployment, unit.name)
        else:
            spec["hpaSpec"] = _hpa_spec(node)
    else:
        spec["replicas"] = node.replicas if node is not None else 1
    return spec


def render(graph: InferenceGraph) -> list[dict[str, Any]]:
    """One SeldonDeployment (autoscalers ride inside it as hpaSpec/kedaSpec)."""
    chain = v2_chain(graph)
    protocol = "v2" if chain is not None else "seldon"
    root = _Builder(graph).build(graph.spec.graph, "spec.graph").root
    units = root.walk()
    if protocol == "v2":
        for unit in units:
            unit.parameters = {}
    for unit in units:
        if unit.node is not None:
            common.check_gpu(unit.node, ENGINE)
            autoscaling.check(unit.node, ENGINE)
    component_specs = [_component_spec(graph, u, protocol) for u in units]
    sdep = {
        "apiVersion": API,
        "kind": "SeldonDeployment",
        "metadata": common.metadata(graph, graph.name, None, "seldondeployment"),
        "spec": {
            "name": graph.name,
            "protocol": protocol,
            "annotations": {
                # The executor in its own pod: scaling a GPU node does not scale the executor.
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
    return [sdep]


def _timeout_ms(graph: InferenceGraph) -> int:
    """The executor's per-call timeout: the slowest node's timeout."""
    return int(max(n.timeout_ms for n in graph.spec.nodes))
