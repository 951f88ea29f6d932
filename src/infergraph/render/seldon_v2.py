"""Seldon Core v2: a Model, ServerConfig and Server per node, one Pipeline for the topology.

The Pipeline translates the compiled plan (`infergraph.graph.plan`) step for step; the
mapping (docs/rendering.md has the long form):

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

import hashlib
from dataclasses import dataclass, field

from infergraph import cluster_names
from infergraph.errors import RenderError
from infergraph.graph.model import REQUEST, InferenceGraph, Node
from infergraph.graph.plan import GraphPlan, PlanStep, Source, plan_of
from infergraph.json_types import JSONObject, Manifest, as_list, as_str, at
from infergraph.render import autoscaling, common
from infergraph.render.options import RenderOptions

ENGINE = "seldon-v2"
API = "mlops.seldon.io/v1alpha1"
SELDON_VERSION = "2.10.2"
AGENT_IMAGE = f"docker.io/seldonio/seldon-agent:{SELDON_VERSION}"
RCLONE_IMAGE = f"docker.io/seldonio/seldon-rclone:{SELDON_VERSION}"
CAPABILITY = "infergraph"
GPU_CAPABILITY = "nvidia-gpu"
GRPC_MAX_MESSAGE_BYTES = 1048576000
DRAINER_PORT = 9007
PLUMBING = "plumbing"
# The path segment for a graph read from a file without `metadata.namespace`.
DEFAULT_NAMESPACE = "default"
SETTINGS_FILE = "model-settings.json"


model_name = cluster_names.seldon_v2_model
pipeline_route = cluster_names.seldon_v2_pipeline_route


@dataclass
class Unit:
    """A Seldon Model to render: a graph node, or a weightless helper of the plan."""

    name: str
    family: str
    node: Node | None
    extra: JSONObject = field(default_factory=dict)


class _Translator:
    """The compiled plan as Pipeline steps: one step per plan step, named after its Model.

    Every plan input becomes step inputs: `<model>.outputs.<tensor>` or
    `<pipeline>.inputs.<tensor>`, renamed with `tensorMap`; alternatives (exclusive by
    construction) join with `any`. A step under a `when` branch carries a trigger on its
    gate's `then` / `otherwise` tensor, which the gate emits alone: without its trigger the
    dataflow never runs the step.
    """

    def __init__(self, plan: GraphPlan) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.steps: list[JSONObject] = []
        self.units: list[Unit] = []

    def model_name(self, step: str) -> str:
        return model_name(self.graph.name, step)

    def tensor_path(self, source: Source) -> str:
        if source.step == REQUEST:
            return f"{self.graph.name}.inputs.{source.tensor}"
        return f"{self.model_name(source.step)}.outputs.{source.tensor}"

    def run(self) -> JSONObject:
        for step in self.plan.steps:
            self.add_step(step)
            self.units.append(self.unit(step))
        return self.output()

    def unit(self, step: PlanStep) -> Unit:
        name = self.model_name(step.name)
        if step.kind == "gate":
            assert step.condition is not None
            return Unit(
                name, step.family, None, {"condition": common.condition_dict(step.condition)}
            )
        if step.kind == "combine":
            return Unit(name, step.family, None, {"method": step.method})
        return Unit(name, step.family, step.node)

    def add_step(self, step: PlanStep) -> None:
        inputs, tensor_map, join = self.join(step.inputs, step.path)
        spec: JSONObject = {"name": self.model_name(step.name), "inputs": inputs}
        if join:
            spec["inputsJoinType"] = join
        if tensor_map:
            spec["tensorMap"] = tensor_map
        if step.branch:
            branch = step.branch[-1]
            spec["triggers"] = [f"{self.model_name(branch.gate)}.outputs.{branch.side}"]
        self.steps.append(spec)

    def join(
        self, wanted: dict[str, tuple[Source, ...]], where: str
    ) -> tuple[list[str], dict[str, str], str | None]:
        """Tensor paths, renames and join type for named tensors with their alternatives."""
        paths: list[str] = []
        tensor_map: dict[str, str] = {}
        gated = {k for k, v in wanted.items() if any(self.side_of(s) for s in v)}
        alternatives = [k for k in wanted if k in gated]
        fixed = [k for k in wanted if k not in gated]
        if alternatives and fixed:
            raise RenderError(
                ENGINE,
                f"{where}: '{alternatives[0]}' comes from one of two exclusive branches while "
                f"{', '.join(fixed)} always arrive; a Pipeline step has one join type for all "
                "its inputs, so it cannot wait for all of them and for either branch at once",
            )
        if alternatives:
            self.check_one_step_per_branch(wanted, where)
        for name, sources in wanted.items():
            for source in sources:
                path = self.tensor_path(source)
                if path not in paths:
                    paths.append(path)
                if source.tensor != name:
                    tensor_map[path] = name
        return paths, dict(sorted(tensor_map.items())), "any" if alternatives else None

    def check_one_step_per_branch(self, wanted: dict[str, tuple[Source, ...]], where: str) -> None:
        """With `any`, the first message wins: each branch must deliver all from one step."""
        by_side: dict[tuple[str, str] | None, set[str]] = {}
        for sources in wanted.values():
            for source in sources:
                side = self.side_of(source)
                by_side.setdefault(side, set()).add(source.step)
        spread = sorted(next((s for s in by_side.values() if len(s) > 1), set()))
        if spread:
            raise RenderError(
                ENGINE,
                f"{where}: one branch delivers these tensors from several steps "
                f"({', '.join(spread)}); joined with `any` the step would fire on the first "
                "of them with the rest missing",
            )

    def side_of(self, source: Source) -> tuple[str, str] | None:
        if source.step == REQUEST:
            return None
        branch = self.plan.step(source.step).branch
        return (branch[-1].gate, branch[-1].side) if branch else None

    def output(self) -> JSONObject:
        paths, tensor_map, join = self.join(self.plan.outputs, "spec.outputs")
        out: JSONObject = {"steps": paths}
        if tensor_map:
            out["tensorMap"] = tensor_map
        if join:
            out["stepsJoin"] = join
        for spec in self.steps:
            join_type = as_str(spec.get("inputsJoinType", "inner"), "inputsJoinType")
            self.widen_join(spec, _references(spec, "inputs"), join_type)
        self.widen_join(out, paths, join or "inner")
        return out

    def widen_join(self, spec: JSONObject, refs: list[str], join: str) -> None:
        """`joinWindowMs` on a join that may wait for a node scaled to zero (see the constant)."""
        triggers = _references(spec, "triggers")
        topics = {".".join(r.split(".")[:2]) for r in refs}
        joins = bool(triggers) or (len(topics) > 1 and join != "any")
        producers = {r.split(".")[0] for r in refs + triggers}
        if joins and any(self.upstream(p) & self.cold_models() for p in producers):
            spec["joinWindowMs"] = COLD_START_JOIN_WINDOW_MS

    def cold_models(self) -> set[str]:
        """Models that may have no replica when a request arrives (minReplicas 0)."""
        return {
            self.model_name(s.name)
            for s in self.plan.steps
            if s.node is not None
            and s.node.autoscaling is not None
            and s.node.autoscaling.min_replicas == 0
        }

    def upstream(self, model: str) -> set[str]:
        """`model` and every Model whose output reaches it (the pipeline's inputs: none)."""
        by_name = {as_str(spec["name"], "steps[].name"): spec for spec in self.steps}
        seen: set[str] = set()
        todo = [model]
        while todo:
            name = todo.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            spec = by_name[name]
            refs = _references(spec, "inputs") + _references(spec, "triggers")
            todo.extend(r.split(".")[0] for r in refs)
        return seen


def _references(spec: JSONObject, key: str) -> list[str]:
    """A pipeline step's (or its output's) `inputs` or `triggers`: `<model>.<io>.<tensor>`
    strings; absent is none."""
    where = f"{spec.get('name', 'output')}.{key}"
    refs = as_list(spec.get(key, []), where)
    return [as_str(ref, f"{where}[{i}]") for i, ref in enumerate(refs)]


# The dataflow's inner and outer input joins and every trigger join drop a message whose partner
# has not arrived within `kafka.join.window.millis`, 60 s by default (seldon-core v2.10.2
# scheduler/data-flow/src/main/resources/local.properties:11; kafka/Joiner.kt:124-152,
# TriggerTransforms.kt:31-40). A node scaled to zero needs a pod scheduled, its image pulled
# and its model loaded before it answers: minutes. Every join that may wait for such a node
# (the node or one upstream of a joined topic has minReplicas 0) gets `joinWindowMs` as long as
# the mlserver startupProbe lets a server start (60 x 10 s); a step's or the output's
# `joinWindowMs` replaces the default (operator/apis/mlops/v1alpha1/pipeline_types.go:93-94,
# 141-142; data-flow kafka/PipelineStep.kt:50-57). `any` joins use a fixed 1 ms window
# (Joiner.kt:105-121) and are left alone.
COLD_START_JOIN_WINDOW_MS = 600_000

# -- objects ---------------------------------------------------------------------------------
# The agent loads Models after MLServer has started (MLSERVER_LOAD_MODELS_AT_STARTUP=false),
# so the startupProbe never covers a load: the livenessProbe does. Loads run in a worker
# thread (infergraph.serving.mlserver_runtime `_off_the_loop`), so the loop answers during a
# download; 5 s per answer (the kubelet's default is 1 s) and 6 misses in a row (a minute)
# leave room for a load that holds the GIL in Python code (tokenizer, weight init).
LIVENESS_PROBE: JSONObject = {
    "httpGet": {"path": "/v2/health/live", "port": "server-http"},
    "timeoutSeconds": 5,
    "periodSeconds": 10,
    "failureThreshold": 6,
}


# The agent's drainer (port 9007) lets in-flight requests finish before a pod stops.
_DRAIN: JSONObject = {"preStop": {"httpGet": {"path": "terminate", "port": DRAINER_PORT}}}


def _server_config(
    graph: InferenceGraph, name: str, node: Node | None, options: RenderOptions
) -> Manifest:
    """A node's ServerConfig: Seldon 2.10.2's own mlserver pod template (rclone, agent and
    MLServer containers) with the node's image, resources, GPU scheduling and a model volume
    twice its memory."""
    storage = common.cache_budget(node.resources.memory) if node else "1Gi"
    meta = common.metadata(graph, name, node.name if node else PLUMBING, "server-config")
    meta.update(name=server_config_name(graph, name, options), namespace=_seldons(graph, options))
    return {
        "apiVersion": API,
        "kind": "ServerConfig",
        "metadata": meta,
        "spec": {
            "podSpec": _pod_spec(graph, node, options),
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


def _seldons(graph: InferenceGraph, options: RenderOptions) -> str:
    """The namespace Seldon's controller reads this graph's ServerConfigs from."""
    return options.seldon_namespace or common.namespace(graph)


def server_config_name(graph: InferenceGraph, server: str, options: RenderOptions) -> str:
    """A Server's ServerConfig name: the Server's own in the graph's namespace; in Seldon's
    shared namespace prefixed by the graph's (graphs of many namespaces meet there)."""
    home = common.namespace(graph)
    if _seldons(graph, options) == home:
        return server
    return common.k8s_name(home, server, limit=253)


def _pod_spec(graph: InferenceGraph, node: Node | None, options: RenderOptions) -> JSONObject:
    """The server pod: its three containers, volumes and the node's GPU scheduling."""
    caps = ["mlserver", CAPABILITY] + ([GPU_CAPABILITY] if node and node.resources.gpu else [])
    return {
        "terminationGracePeriodSeconds": 120,
        "serviceAccountName": "seldon-server",
        "automountServiceAccountToken": True,
        "securityContext": common.pod_security_context(),
        "containers": [
            _rclone_container(),
            _agent_container(caps),
            _mlserver_container(graph, node, options),
        ],
        "volumes": [
            {"name": "config-volume", "configMap": {"name": "seldon-agent"}},
            {"name": "tracing-config-volume", "configMap": {"name": "seldon-tracing"}},
            *common.scratch_volumes(node),
        ],
        **common.gpu_scheduling(node, options),
        **common.pull_secrets(options),
    }


def _rclone_container() -> JSONObject:
    """rclone, which the agent asks to copy each Model's folder onto the shared volume."""
    # Upstream's sizes (seldon-core v2 k8s/yaml/components.yaml, ServerConfig mlserver).
    rclone_resources = {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    return {
        "name": "rclone",
        "image": RCLONE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 5572, "name": "rclone", "protocol": "TCP"}],
        "readinessProbe": {
            "tcpSocket": {"port": 5572},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
        },
        "resources": rclone_resources,
        "lifecycle": _DRAIN,
        "securityContext": common.container_security_context(read_only_root=False),
        "volumeMounts": [{"name": "mlserver-models", "mountPath": "/mnt/agent"}],
    }


def _agent_container(caps: list[str]) -> JSONObject:
    """Seldon's agent: registers the server's capabilities with the scheduler and proxies
    every request, so its CPU is not capped (upstream's sizes)."""
    agent_resources = {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    return {
        "name": "agent",
        "image": AGENT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/agent"],
        "args": ["--tracing-config-path=/mnt/tracing/tracing.json"],
        "env": _agent_env(caps),
        "ports": [
            {"containerPort": 9501, "name": "grpc", "protocol": "TCP"},
            {"containerPort": 9001, "name": "http", "protocol": "TCP"},
            {"containerPort": 9006, "name": "metrics", "protocol": "TCP"},
            {"containerPort": 9008, "name": "readiness-port", "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": 9008},
            "periodSeconds": 5,
            "failureThreshold": 1,
        },
        "resources": agent_resources,
        "lifecycle": _DRAIN,
        "securityContext": common.container_security_context(read_only_root=False),
        "volumeMounts": [
            {"name": "mlserver-models", "mountPath": "/mnt/agent"},
            {"name": "config-volume", "mountPath": "/mnt/config"},
            {"name": "tracing-config-volume", "mountPath": "/mnt/tracing"},
        ],
    }


def _agent_env(caps: list[str]) -> list[JSONObject]:
    """The agent's ports, scheduler and mesh addresses, as Seldon's own ServerConfig sets them."""
    return [
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


def _mlserver_container(
    graph: InferenceGraph, node: Node | None, options: RenderOptions
) -> JSONObject:
    """MLServer with the kit's runtime: the node's image and resources, read-only root."""
    health = {"path": "/v2/health/ready", "port": "server-http"}
    return {
        "name": "mlserver",
        "image": common.image(graph, common.MLSERVER_IMAGE, node, options),
        "imagePullPolicy": "IfNotPresent",
        "env": [*_mlserver_env(), *common.threads_env(node)],
        "ports": [
            {"containerPort": 9500, "name": "server-grpc", "protocol": "TCP"},
            {"containerPort": 9000, "name": "server-http", "protocol": "TCP"},
            {"containerPort": 8082, "name": "server-metrics", "protocol": "TCP"},
        ],
        "resources": common.resources(node, ENGINE),
        "securityContext": common.container_security_context(read_only_root=True),
        "livenessProbe": LIVENESS_PROBE,
        "readinessProbe": {"httpGet": health, "initialDelaySeconds": 5, "periodSeconds": 5},
        "startupProbe": {"httpGet": health, "failureThreshold": 60, "periodSeconds": 10},
        "lifecycle": _DRAIN,
        "volumeMounts": [
            {"name": "mlserver-models", "mountPath": "/mnt/agent", "readOnly": True},
            *common.scratch_mounts(),
        ],
    }


def _mlserver_env() -> list[JSONObject]:
    """MLServer's ports and model folder as the agent expects them."""
    return [
        {"name": "MLSERVER_HTTP_PORT", "value": "9000"},
        {"name": "MLSERVER_GRPC_PORT", "value": "9500"},
        {"name": "MLSERVER_MODELS_DIR", "value": "/mnt/agent/models"},
        # In-process: the runtime batches rows itself and exports its metrics on this port.
        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
        {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"},
        {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"},
        # Images, crops and audio between steps exceed gRPC's 4 MiB default (Seldon's own
        # mlserver ServerConfig sets the same 1000 MiB).
        {"name": "MLSERVER_GRPC_MAX_MESSAGE_LENGTH", "value": str(GRPC_MAX_MESSAGE_BYTES)},
        *common.cache_env(),
    ]


def _replicas(node: Node | None) -> dict[str, int]:
    """A fixed node's replica count; nothing at all for an autoscaled node.

    min/max on a Model or Server switch on Seldon's own autoscaling, which would fight the
    rendered HPA/KEDA scalers (Seldon's HPA guide sets neither). `replicas` is the field those
    scalers write through the `/scale` subresource (the CRDs' `specReplicasPath:
    .spec.replicas`): a manifest that sets it takes every scale decision back on the next
    `kubectl apply` or operator pass. Left out, Seldon starts one replica (the CRDs' "default
    1") and the scaler moves it within min/max from there.
    """
    if node is None:
        return {"replicas": 1}
    if node.autoscaling is None:
        return {"replicas": node.replicas}
    return {}


def _server(
    graph: InferenceGraph, name: str, node: Node | None, options: RenderOptions
) -> Manifest:
    config = server_config_name(graph, name, options)
    return {
        "apiVersion": API,
        "kind": "Server",
        "metadata": common.metadata(graph, name, node.name if node else PLUMBING, "server"),
        "spec": {"serverConfig": config, **_replicas(node)},
    }


def _artifact(graph: InferenceGraph, unit: Unit, options: RenderOptions) -> common.Artifact:
    if unit.node is not None:
        return common.artifact(graph, unit.node.name, unit.family, unit.node.model_uri, options)
    return common.artifact(graph, unit.name, None, None, options)


def _model(
    graph: InferenceGraph,
    unit: Unit,
    server: str,
    options: RenderOptions,
    served: ServedSettings | None = None,
) -> Manifest:
    """`served`: the operator serves this Model's settings, so its storageUri points there."""
    node = unit.node
    art = _artifact(graph, unit, options)
    requirements = [CAPABILITY] + ([GPU_CAPABILITY] if node and node.resources.gpu else [])
    spec: JSONObject = {
        "storageUri": settings_source(str(options.settings_url), served.path)
        if served
        else art.storage_uri,
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


def _pipeline(graph: InferenceGraph, translator: _Translator, output: JSONObject) -> Manifest:
    return {
        "apiVersion": API,
        "kind": "Pipeline",
        "metadata": common.metadata(graph, graph.name, None, "pipeline"),
        "spec": {"steps": translator.steps, "output": output},
    }


def translate(graph: InferenceGraph | GraphPlan) -> tuple[_Translator, Manifest]:
    translator = _Translator(plan_of(graph))
    output = translator.run()
    return translator, output


def _scalers(graph: InferenceGraph, translator: _Translator, unit: Unit) -> list[Manifest]:
    """The Model and its Server scale in step on the same Model-level metric."""
    node = unit.node
    assert node is not None
    if node.autoscaling is None:
        return []
    autoscaling.check(node, ENGINE)
    wake = autoscaling.v2_branch_rate(graph, translator.plan, node.name, translator.model_name)
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
                described=(API, "Model", unit.name),
            ),
            common.k8s_name(unit.name, kind.lower()),
        )
        for kind in ("Model", "Server")
    ]
    return autoscaling.scalers(graph, node, targets, ENGINE)


def render(
    source: InferenceGraph | GraphPlan, options: RenderOptions | None = None
) -> list[Manifest]:
    """Every object for one graph: per node ServerConfig/Server/Model (+ scalers), then Pipeline."""
    options = options or RenderOptions()
    translator, output = translate(source)
    graph = translator.plan.graph
    served = _served(graph, translator, options) if options.settings_url else {}
    objs: list[Manifest] = []
    helpers = [u for u in translator.units if u.node is None]
    for unit in translator.units:
        if unit.node is None:
            continue
        objs.append(_server_config(graph, unit.name, unit.node, options))
        objs.append(_server(graph, unit.name, unit.node, options))
        objs.append(_model(graph, unit, unit.name, options, served.get(unit.name)))
        objs.extend(_scalers(graph, translator, unit))
    if helpers:
        server = common.k8s_name(graph.name, PLUMBING)
        objs.append(_server_config(graph, server, None, options))
        objs.append(_server(graph, server, None, options))
        objs.extend(_model(graph, u, server, options, served.get(u.name)) for u in helpers)
    objs.append(_pipeline(graph, translator, output))
    # Server names, not Model names: server pods carry `seldon-server-name=<Server>`
    # (sc2:operator/controllers/reconcilers/server/statefulset_reconciler.go:68-70), and the
    # wake series of the gate and pass-through Models live on the plumbing Server.
    servers = [
        as_str(at(s, "metadata").get("name"), "metadata.name")
        for s in objs
        if s["kind"] == "Server"
    ]
    objs.extend(common.pod_monitors(graph, servers, ENGINE))
    return objs


def model_settings(
    source: InferenceGraph | GraphPlan, options: RenderOptions | None = None
) -> dict[str, JSONObject]:
    """model-settings.json per Model, keyed by Model name: upload into each storageUri folder."""
    options = options or RenderOptions()
    translator, _ = translate(source)
    graph = translator.plan.graph
    return {unit.name: _unit_settings(graph, unit, options) for unit in translator.units}


# The dataflow makes a Model's response parameters the next step's request parameters
# (data-flow kafka/StreamTransforms.kt:122-126): every Model relays the request's, so a knob
# sent with the request reaches steps fed by other steps too
# (infergraph.graph.runtime_settings RuntimeSettings.relay_request_parameters).


def _unit_settings(graph: InferenceGraph, unit: Unit, options: RenderOptions) -> JSONObject:
    """One Model's model-settings.json: the one source of the file written for upload and
    of the file the operator serves."""
    return common.model_settings(
        graph,
        unit.name,
        unit.node,
        unit.family,
        options,
        component_options=unit.extra,
        relay=True,
    )


# -- model-settings.json served by the operator -----------------------------------------------
@dataclass(frozen=True)
class ServedSettings:
    """One Model's model-settings.json as the operator's settings server holds it: the folder
    `<namespace>/<graph>/<model>/<hash>` (`<hash>` the file's content hash, so an edit gives a
    new folder and so a new `Model.spec.storageUri`) and the file's bytes."""

    path: str
    body: bytes


def settings_hash(body: bytes) -> str:
    """16 hex digits of the SHA-256 of the file: what makes a settings edit a Model edit."""
    return hashlib.sha256(body).hexdigest()[:16]


def settings_source(url: str, path: str) -> str:
    """`Model.spec.storageUri` for a folder of the settings server: an rclone connection
    string (`:<backend>,<param>=<value>:<path>`) for the `http` backend.

    Seldon's agent hands a Model without `spec.secretName` its `storageUri` as rclone's source
    unchanged (seldon-core v2.10.2 `scheduler/pkg/agent/rclone/rclone.go:320-332`, `srcFs`
    of `/sync/copy`), so the remote travels in the URI and no rclone Secret or SeldonConfig
    entry is needed; the URL holds `:`, so it is quoted as the agent itself quotes values
    (`rclone.go:265-270`)."""
    quoted = url.rstrip("/").replace('"', '""')
    return f':http,url="{quoted}":{path}'


def _served(
    graph: InferenceGraph, translator: _Translator, options: RenderOptions
) -> dict[str, ServedSettings]:
    """The Models whose weights are not in their storage folder (a hub id or family default
    the runtime downloads itself, or a weightless helper): their folder holds nothing but
    model-settings.json, so the operator can serve it. Artifact-backed Models keep theirs."""
    namespace = graph.metadata.namespace or DEFAULT_NAMESPACE
    served = {}
    for unit in translator.units:
        if _artifact(graph, unit, options).weights_in_artifact:
            continue
        body = common.dumps(_unit_settings(graph, unit, options)).encode()
        path = f"{namespace}/{graph.name}/{unit.name}/{settings_hash(body)}"
        served[unit.name] = ServedSettings(path, body)
    return served


def served_settings(
    source: InferenceGraph | GraphPlan, options: RenderOptions | None = None
) -> dict[str, ServedSettings]:
    """Model name -> the settings the operator serves for it, the same `_served` that wrote
    each Model's storageUri in `render` (empty without `options.settings_url`)."""
    options = options or RenderOptions()
    if not options.settings_url:
        return {}
    translator, _ = translate(source)
    return _served(translator.plan.graph, translator, options)
