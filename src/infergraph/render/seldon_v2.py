"""Seldon Core v2: a Model, ServerConfig and Server per node, one Pipeline for the topology.

Topology mapping (docs/rendering.md has the long form):

- sequence: each step's `inputs` name the upstream step outputs (`<model>.outputs.<t>`) or
  the pipeline inputs (`<pipeline>.inputs.<t>`); `tensorMap` renames where names differ.
- ensemble: members share their inputs and run in parallel; a combiner step (the graph's
  combiner node, or a synthesized `combiner` model for `method: average|vote`) joins the
  members' score tensors renamed `scores_0..n`; `method: merge` just joins the members.
- when: a gate model (family `gate`) evaluates the condition and emits exactly one of the
  tensors `then` / `otherwise`; each branch's steps carry `triggers` on it. Without an
  `otherwise` branch a pass-through model (family `identity`) forwards the tensors that were
  current at the `when`, so downstream steps and the pipeline output join the two exclusive
  branches with join type `any`. This is how a cascade only runs the big model when the
  small one is unsure.

Weightless helpers (gates, pass-throughs, built-in combiners) share one small CPU Server.
"""

from __future__ import annotations

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

ENGINE = "seldon-v2"
API = "mlops.seldon.io/v1alpha1"
SELDON_VERSION = "2.10.2"
AGENT_IMAGE = f"docker.io/seldonio/seldon-agent:{SELDON_VERSION}"
RCLONE_IMAGE = f"docker.io/seldonio/seldon-rclone:{SELDON_VERSION}"
CAPABILITY = "infergraph"
GPU_CAPABILITY = "nvidia-gpu"
GATE_FAMILY = "gate"
PLUMBING = "plumbing"


@dataclass(frozen=True)
class Ref:
    """One way a tensor can arrive: a Seldon tensor path, and the branch it is confined to."""

    path: str
    gate: str | None = None
    side: str | None = None

    @property
    def tensor(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def step(self) -> str:
        return self.path.split(".", 1)[0]


Value = tuple[Ref, ...]  # exclusive alternatives; more than one only after a `when`


@dataclass
class Scope:
    available: dict[str, Value] = field(default_factory=dict)
    current: dict[str, Value] = field(default_factory=dict)

    def copy(self) -> Scope:
        return Scope(dict(self.available), dict(self.current))


@dataclass
class Unit:
    """A Seldon Model to render: a graph node, or a synthesized weightless helper."""

    name: str
    family: str
    node: Node | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Gate:
    name: str
    has_otherwise: bool
    pass_step: dict[str, Any] | None = None


class _Compiler:
    def __init__(self, graph: InferenceGraph) -> None:
        self.graph = graph
        self.pipeline = graph.name
        self.steps: list[dict[str, Any]] = []
        self.units: list[Unit] = []
        self.gates: dict[str, Gate] = {}
        self.counters: dict[str, int] = {}
        self.taken = {n.name for n in graph.spec.nodes}

    # -- names ---------------------------------------------------------------------------
    def model_name(self, node: str) -> str:
        return common.k8s_name(self.graph.name, node)

    def helper(self, kind: str) -> str:
        while True:
            index = self.counters.get(kind, 0)
            self.counters[kind] = index + 1
            name = f"{kind}-{index}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    # -- entry -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        scope = Scope()
        for decl in self.graph.spec.inputs:
            value = (Ref(f"{self.pipeline}.inputs.{decl.name}"),)
            scope.available[f"{REQUEST}.{decl.name}"] = value
            scope.current[decl.name] = value
        scope = self.step(self.graph.spec.graph, scope, None, "spec.graph")
        return self.output(scope)

    def step(self, step: Step, scope: Scope, ctx: tuple[str, str] | None, path: str) -> Scope:
        if isinstance(step, NodeStep):
            return self.node_step(step, scope, ctx, path)
        if isinstance(step, SequenceStep):
            for i, sub in enumerate(step.sequence):
                scope = self.step(sub, scope, ctx, f"{path}.sequence[{i}]")
            return scope
        if isinstance(step, EnsembleStep):
            return self.ensemble(step, scope, ctx, path)
        if isinstance(step, WhenStep):
            return self.when(step, scope, ctx, path)
        raise TypeError(step)

    # -- references ------------------------------------------------------------------------
    def resolve(self, ref: str, scope: Scope, path: str) -> Value:
        """`a.x | b.x`: every alternative that can arrive, made exclusive where possible."""
        found: list[Ref] = []
        for alt in split_alternatives(ref):
            for r in scope.available.get(alt, ()):
                if r not in found:
                    found.append(r)
        if not found:
            raise RenderError(ENGINE, f"{path}: tensor '{ref}' is not produced before this step")
        if len(found) == 1 or len(split_alternatives(ref)) == 1:
            return tuple(found)
        gates = {r.gate for r in found if r.gate}
        if len(gates) > 1:
            raise RenderError(
                ENGINE,
                f"{path}: '{ref}' picks between branches of different `when` steps; a Pipeline "
                "step joins its inputs one way (inner/outer/any), so only alternatives from "
                "the two branches of one `when` can be expressed",
            )
        if not gates:
            # Several unconditional producers: the first alternative always exists.
            return (found[0],)
        gate = self.gates[gates.pop()]
        out: list[Ref] = []
        for r in found:
            if r.gate:
                out.append(r)
                continue
            if gate.has_otherwise or gate.pass_step is None:
                raise RenderError(
                    ENGINE,
                    f"{path}: '{ref}' falls back to '{r.path}', which exists whether or not the "
                    f"`when` behind gate '{gate.name}' took its then-branch; with an explicit "
                    "otherwise branch a Pipeline cannot tell which arrived first. Reference "
                    "the otherwise branch's output instead",
                )
            out.append(self.forward(gate, r, path))
        return tuple(out)

    def forward(self, gate: Gate, ref: Ref, path: str) -> Ref:
        """Route an unconditional tensor through the gate's pass-through so it is exclusive."""
        step = gate.pass_step
        assert step is not None
        name = ref.tensor
        for existing in step["inputs"]:
            target = step.get("tensorMap", {}).get(existing, existing.rsplit(".", 1)[-1])
            if existing == ref.path:
                return Ref(f"{step['name']}.outputs.{target}", gate.name, "otherwise")
            if target == name:
                raise RenderError(
                    ENGINE,
                    f"{path}: pass-through '{step['name']}' already forwards a tensor named "
                    f"'{name}' from '{existing}'; rename one of them with inputs:",
                )
        step["inputs"].append(ref.path)
        return Ref(f"{step['name']}.outputs.{name}", gate.name, "otherwise")

    # -- steps -----------------------------------------------------------------------------
    def add_step(
        self,
        name: str,
        inputs: dict[str, Value],
        ctx: tuple[str, str] | None,
        path: str,
    ) -> dict[str, Any]:
        step: dict[str, Any] = {"name": name, "inputs": []}
        tensor_map: dict[str, str] = {}
        multi = [k for k, v in inputs.items() if len(v) > 1]
        fixed = [k for k in inputs if k not in multi]
        if multi and fixed:
            raise RenderError(
                ENGINE,
                f"{path}: input '{multi[0]}' comes from one of two exclusive branches while "
                f"other inputs ({', '.join(fixed)}) always arrive; a Pipeline step has one "
                "join type for all its inputs, so it cannot wait for all of them and for "
                "either branch at once",
            )
        if multi:
            # `any` takes the first message to arrive: right when each branch's tensors all
            # come from one step, so that message carries every input.
            sides: dict[tuple[str | None, str | None], set[str]] = {}
            for value in inputs.values():
                for ref in value:
                    sides.setdefault((ref.gate, ref.side), set()).add(ref.step)
            spread = [sorted(steps) for steps in sides.values() if len(steps) > 1]
            if spread:
                raise RenderError(
                    ENGINE,
                    f"{path}: one branch delivers this step's inputs from several steps "
                    f"({', '.join(spread[0])}); joined with `any` the step would fire on the "
                    "first of them with the rest missing",
                )
        for input_name, value in inputs.items():
            for ref in value:
                if ref.path not in step["inputs"]:
                    step["inputs"].append(ref.path)
                if ref.tensor != input_name:
                    tensor_map[ref.path] = input_name
        if multi:
            step["inputsJoinType"] = "any"
        if tensor_map:
            step["tensorMap"] = dict(sorted(tensor_map.items()))
        if ctx is not None:
            step["triggers"] = [f"{ctx[0]}.outputs.{ctx[1]}"]
        self.steps.append(step)
        return step

    def node_inputs(self, step: NodeStep, scope: Scope, path: str) -> dict[str, Value]:
        node = self.graph.node(step.node)
        cls = component_class(node.family)
        if cls.passthrough:
            if step.inputs:
                return {
                    k: self.resolve(v, scope, f"{path}.inputs.{k}") for k, v in step.inputs.items()
                }
            return dict(scope.current)
        inputs: dict[str, Value] = {}
        for spec in cls.inputs:
            if spec.name in step.inputs:
                ref = step.inputs[spec.name]
                inputs[spec.name] = self.resolve(ref, scope, f"{path}.inputs.{spec.name}")
            elif spec.name in scope.current:
                inputs[spec.name] = scope.current[spec.name]
            elif f"{REQUEST}.{spec.name}" in scope.available:
                inputs[spec.name] = scope.available[f"{REQUEST}.{spec.name}"]
        return inputs

    def node_step(
        self, step: NodeStep, scope: Scope, ctx: tuple[str, str] | None, path: str
    ) -> Scope:
        node = self.graph.node(step.node)
        name = self.model_name(node.name)
        inputs = self.node_inputs(step, scope, path)
        self.add_step(name, inputs, ctx, path)
        self.units.append(Unit(name, node.family, node))
        cls = component_class(node.family)
        produced = list(inputs) if cls.passthrough else [s.name for s in cls.outputs]
        return self.produce(scope, node.name, name, produced, ctx)

    def produce(
        self,
        scope: Scope,
        owner: str | None,
        step_name: str,
        tensors: list[str],
        ctx: tuple[str, str] | None,
    ) -> Scope:
        out = scope.copy()
        gate, side = ctx if ctx else (None, None)
        out.current = {}
        for t in tensors:
            value = (Ref(f"{step_name}.outputs.{t}", gate, side),)
            if owner:
                out.available[f"{owner}.{t}"] = value
            out.current[t] = value
        return out

    def ensemble(
        self, step: EnsembleStep, scope: Scope, ctx: tuple[str, str] | None, path: str
    ) -> Scope:
        results = [
            self.step(m, scope, ctx, f"{path}.ensemble[{i}]") for i, m in enumerate(step.ensemble)
        ]
        merged = scope.copy()
        for res in results:
            merged.available.update(res.available)
        combine = step.combine
        if combine.node is None and combine.method == "merge":
            merged.current = {}
            for res in results:
                merged.current.update(res.current)
            return merged
        if combine.node is not None:
            node = self.graph.node(combine.node)
            family, name, owner, extra = node.family, self.model_name(node.name), node.name, {}
        else:
            helper = self.helper("combine")
            family, name, owner = "combiner", self.model_name(helper), None
            extra = {"method": combine.method}
            node = None
        if family == "combiner":
            inputs: dict[str, Value] = {}
            for i, res in enumerate(results):
                value = res.current.get(combine.tensor)
                if value is None:
                    raise RenderError(
                        ENGINE,
                        f"{path}.ensemble[{i}]: member does not output '{combine.tensor}'",
                    )
                inputs[f"{combine.tensor}_{i}"] = value
            produced = [s.name for s in component_class(family).outputs]
        else:
            current: dict[str, Value] = {}
            for res in results:
                current.update(res.current)
            inner = Scope(merged.available, current)
            assert combine.node is not None
            inputs = self.node_inputs(NodeStep(node=combine.node), inner, f"{path}.combine")
            produced = [s.name for s in component_class(family).outputs]
        self.add_step(name, inputs, ctx, f"{path}.combine")
        self.units.append(Unit(name, family, node, extra))
        return self.produce(merged, owner, name, produced, ctx)

    def when(self, step: WhenStep, scope: Scope, ctx: tuple[str, str] | None, path: str) -> Scope:
        gate_name = self.model_name(self.helper("gate"))
        cond = self.resolve(step.when.tensor, scope, f"{path}.when.tensor")
        self.add_step(gate_name, {"value": cond}, ctx, f"{path}.when")
        self.units.append(
            Unit(gate_name, GATE_FAMILY, None, {"condition": common.condition_dict(step.when)})
        )
        gate = Gate(gate_name, step.otherwise is not None)
        self.gates[gate_name] = gate
        then = self.step(step.then, scope, (gate_name, "then"), f"{path}.then")
        if step.otherwise is not None:
            other = self.step(step.otherwise, scope, (gate_name, "otherwise"), f"{path}.otherwise")
        else:
            pass_name = self.model_name(self.helper("pass"))
            flat = {k: v for k, v in scope.current.items()}
            gate.pass_step = self.add_step(
                pass_name, flat, (gate_name, "otherwise"), f"{path} (pass-through)"
            )
            self.units.append(Unit(pass_name, "identity", None))
            other = self.produce(scope, None, pass_name, list(flat), (gate_name, "otherwise"))
            other.available = dict(scope.available)
        out = scope.copy()
        out.available.update(then.available)
        out.available.update(other.available)
        out.current = {}
        for name in list(other.current) + [n for n in then.current if n not in other.current]:
            refs = then.current.get(name, ()) + other.current.get(name, ())
            out.current[name] = refs
        return out

    # -- output ------------------------------------------------------------------------------
    def output(self, scope: Scope) -> dict[str, Any]:
        steps: list[str] = []
        exclusive = any(len(v) > 1 for v in scope.current.values())
        for value in scope.current.values():
            for ref in value:
                if ref.step not in steps:
                    steps.append(ref.step)
        if exclusive and any(len(v) == 1 and v[0].gate is None for v in scope.current.values()):
            raise RenderError(
                ENGINE,
                "the graph's result mixes tensors from exclusive `when` branches with tensors "
                "that always exist; the Pipeline output has a single join type",
            )
        out: dict[str, Any] = {"steps": steps}
        if exclusive:
            out["stepsJoin"] = "any"
        return out


# -- objects ---------------------------------------------------------------------------------
def _server_config(graph: InferenceGraph, name: str, node: Node | None) -> dict[str, Any]:
    caps = ["mlserver", CAPABILITY] + ([GPU_CAPABILITY] if node and node.resources.gpu else [])
    mlserver_env = [
        {"name": "MLSERVER_HTTP_PORT", "value": "9000"},
        {"name": "MLSERVER_GRPC_PORT", "value": "9500"},
        {"name": "MLSERVER_MODELS_DIR", "value": "/mnt/agent/models"},
        {"name": "MLSERVER_MODEL_PARALLEL_WORKERS", "value": "0"},
        {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"},
        {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"},
        *common.cache_env(),
    ]
    sidecar_resources = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "100m", "memory": "128Mi"},
    }
    agent_env = [
        {"name": "SELDON_SERVER_CAPABILITIES", "value": ",".join(caps)},
        {"name": "SELDON_OVERCOMMIT_PERCENTAGE", "value": "10"},
        {"name": "SELDON_SERVER_HTTP_PORT", "value": "9000"},
        {"name": "SELDON_SERVER_GRPC_PORT", "value": "9500"},
        {"name": "SELDON_REVERSE_PROXY_HTTP_PORT", "value": "9001"},
        {"name": "SELDON_REVERSE_PROXY_GRPC_PORT", "value": "9501"},
        {"name": "SELDON_SCHEDULER_HOST", "value": "seldon-scheduler"},
        {"name": "SELDON_SCHEDULER_PORT", "value": "9005"},
        {"name": "SELDON_METRICS_PORT", "value": "9006"},
        {"name": "SELDON_SERVER_TYPE", "value": "mlserver"},
        {"name": "SELDON_ENVOY_HOST", "value": "seldon-mesh"},
        {"name": "SELDON_ENVOY_PORT", "value": "80"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "MEMORY_REQUEST",
            "valueFrom": {
                "resourceFieldRef": {"containerName": "mlserver", "resource": "requests.memory"}
            },
        },
    ]
    health = {"path": "/v2/health/ready", "port": "server-http"}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": 120,
        "serviceAccountName": "seldon-server",
        "automountServiceAccountToken": True,
        "securityContext": common.pod_security_context(),
        "containers": [
            {
                "name": "rclone",
                "image": RCLONE_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 5572, "name": "rclone", "protocol": "TCP"}],
                "readinessProbe": {
                    "tcpSocket": {"port": 5572},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 5,
                },
                "resources": sidecar_resources,
                "securityContext": common.container_security_context(read_only_root=False),
                "volumeMounts": [{"name": "mlserver-models", "mountPath": "/mnt/agent"}],
            },
            {
                "name": "agent",
                "image": AGENT_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/agent"],
                "args": ["--tracing-config-path=/mnt/tracing/tracing.json"],
                "env": agent_env,
                "ports": [
                    {"containerPort": 9501, "name": "grpc", "protocol": "TCP"},
                    {"containerPort": 9001, "name": "http", "protocol": "TCP"},
                    {"containerPort": 9006, "name": "metrics", "protocol": "TCP"},
                ],
                "resources": sidecar_resources,
                "securityContext": common.container_security_context(read_only_root=False),
                "volumeMounts": [
                    {"name": "mlserver-models", "mountPath": "/mnt/agent"},
                    {"name": "config-volume", "mountPath": "/mnt/config"},
                    {"name": "tracing-config-volume", "mountPath": "/mnt/tracing"},
                ],
            },
            {
                "name": "mlserver",
                "image": common.image(graph, common.MLSERVER_IMAGE),
                "imagePullPolicy": "IfNotPresent",
                "env": mlserver_env,
                "ports": [
                    {"containerPort": 9500, "name": "server-grpc", "protocol": "TCP"},
                    {"containerPort": 9000, "name": "server-http", "protocol": "TCP"},
                    {"containerPort": 8082, "name": "server-metrics", "protocol": "TCP"},
                ],
                "resources": common.resources(node, ENGINE),
                "securityContext": common.container_security_context(read_only_root=True),
                "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "server-http"}},
                "readinessProbe": {"httpGet": health, "initialDelaySeconds": 5, "periodSeconds": 5},
                "startupProbe": {"httpGet": health, "failureThreshold": 60, "periodSeconds": 10},
                "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 10"]}}},
                "volumeMounts": [
                    {"name": "mlserver-models", "mountPath": "/mnt/agent", "readOnly": True},
                    *common.scratch_mounts(),
                ],
            },
        ],
        "volumes": [
            {"name": "config-volume", "configMap": {"name": "seldon-agent"}},
            {"name": "tracing-config-volume", "configMap": {"name": "seldon-tracing"}},
            *common.scratch_volumes(node),
        ],
        **common.gpu_scheduling(node),
    }
    storage = common._double(node.resources.memory) if node else "1Gi"
    return {
        "apiVersion": API,
        "kind": "ServerConfig",
        "metadata": common.metadata(graph, name, node.name if node else PLUMBING, "server-config"),
        "spec": {
            "podSpec": pod,
            "volumeClaimTemplates": [
                {
                    "name": "mlserver-models",
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }


def _replicas(node: Node | None) -> dict[str, int]:
    if node is None:
        return {"replicas": 1}
    if node.autoscaling is None:
        return {"replicas": node.replicas}
    auto = node.autoscaling
    return {
        "replicas": max(auto.min_replicas, 1),
        "minReplicas": auto.min_replicas,
        "maxReplicas": auto.max_replicas,
    }


def _server(graph: InferenceGraph, name: str, node: Node | None) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Server",
        "metadata": common.metadata(graph, name, node.name if node else PLUMBING, "server"),
        "spec": {"serverConfig": name, **_replicas(node)},
    }


def _model(graph: InferenceGraph, unit: Unit, server: str) -> dict[str, Any]:
    node = unit.node
    if node is not None:
        art = common.artifact(graph, node.name, unit.family, node.model_uri)
    else:
        art = common.artifact(graph, unit.name, None, None)
    requirements = [CAPABILITY] + ([GPU_CAPABILITY] if node and node.resources.gpu else [])
    spec: dict[str, Any] = {
        "storageUri": art.storage_uri,
        "requirements": requirements,
        "memory": node.resources.memory if node else "256Mi",
        "server": server,
        **_replicas(node),
    }
    return {
        "apiVersion": API,
        "kind": "Model",
        "metadata": common.metadata(graph, unit.name, node.name if node else unit.name, "model"),
        "spec": spec,
    }


def _pipeline(graph: InferenceGraph, compiler: _Compiler, output: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Pipeline",
        "metadata": common.metadata(graph, graph.name, None, "pipeline"),
        "spec": {"steps": compiler.steps, "output": output},
    }


def compile_graph(graph: InferenceGraph) -> tuple[_Compiler, dict[str, Any]]:
    compiler = _Compiler(graph)
    output = compiler.run()
    return compiler, output


def render(graph: InferenceGraph) -> list[dict[str, Any]]:
    """Every object for one graph: per node ServerConfig/Server/Model (+ scalers), then Pipeline."""
    compiler, output = compile_graph(graph)
    objs: list[dict[str, Any]] = []
    helpers = [u for u in compiler.units if u.node is None]
    for unit in compiler.units:
        if unit.node is None:
            continue
        node = unit.node
        autoscaling.check(node, ENGINE)
        objs.append(_server_config(graph, unit.name, node))
        objs.append(_server(graph, unit.name, node))
        objs.append(_model(graph, unit, unit.name))
        ns = {"namespace": graph.metadata.namespace} if graph.metadata.namespace else {}
        wake = autoscaling.rate_query(
            autoscaling.V2_PIPELINE_SERIES, {**ns, "pipeline": graph.name}
        )
        targets = [
            (
                autoscaling.Target(
                    API,
                    kind,
                    unit.name,
                    f"{unit.name}-[0-9]+",
                    {"model": unit.name},
                    autoscaling.V2_RPS_SERIES,
                    wake,
                ),
                common.k8s_name(unit.name, kind.lower()),
            )
            for kind in ("Model", "Server")
        ]
        objs.extend(autoscaling.scalers(graph, node, targets, ENGINE))
    if helpers:
        server = common.k8s_name(graph.name, PLUMBING)
        objs.append(_server_config(graph, server, None))
        objs.append(_server(graph, server, None))
        objs.extend(_model(graph, unit, server) for unit in helpers)
    objs.append(_pipeline(graph, compiler, output))
    return objs


def model_settings(graph: InferenceGraph) -> dict[str, dict[str, Any]]:
    """model-settings.json per Model, keyed by Model name: upload into each storageUri folder."""
    compiler, _ = compile_graph(graph)
    return {
        unit.name: common.model_settings(graph, unit.name, unit.node, unit.family, unit.extra)
        for unit in compiler.units
    }
