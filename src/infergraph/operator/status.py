"""The InferenceGraph's status: conditions, per-node readiness, endpoint.

Readiness is read from the engine's own objects as the API server returns them after apply:
a `Ready` condition (Seldon v2 Model/Server/Pipeline, KEDA ScaledObject, KServe
InferenceService/InferenceGraph) or a SeldonDeployment's `status.state: Available` (Seldon v1
reports per deployment, not per condition). Before its controller has written a status such a
child is Unknown, never ready; so is one whose status says it describes an earlier spec
(`_stale`), and one whose generation the pass's own apply advanced (`_applied_anew`): no Seldon
kind says in its status which spec it describes, and its controller leaves the old Ready
standing until it reports on the new one, so only the pass knows it changed the spec.
Children with neither (ServerConfig, HorizontalPodAutoscaler, monitors) say nothing about
readiness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from infergraph.engines import RENDERED
from infergraph.engines import engine as engine_named
from infergraph.graph.model import InferenceGraph, Node
from infergraph.json_types import JSONObject, Manifest, as_int, as_objects, object_or_empty
from infergraph.operator.objects import (
    ChildKey,
    child_key,
    generation_of,
    kind_of,
    labels_of,
    name_of,
)
from infergraph.render.common import NODE_LABEL

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
CONDITION_TYPES = ("Valid", "Rendered", "Ready", "Schedulable")
EVENT_MESSAGE_LIMIT = 1000
Event = tuple[str, str, str]  # (type, reason, message)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def patched(status: JSONObject, patch: JSONObject) -> JSONObject:
    """`status` as the API server leaves it after `patch`, kopf's status patch of a pass: a
    JSON merge patch (RFC 7386), so objects merge key by key, null removes a key and anything
    else (a list included) replaces. `status` itself is left as it was."""
    merged = dict(status)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            merged[key] = patched(object_or_empty(merged, key), value)
        else:
            merged[key] = value
    return merged


def condition(conditions: list[JSONObject], kind: str) -> JSONObject:
    """The condition of type `kind` among a status's conditions, {} when there is none."""
    return next((c for c in conditions if c.get("type") == kind), {})


def conditions(previous: list[JSONObject], new: list[Condition]) -> list[JSONObject]:
    """Kubernetes condition list; `lastTransitionTime` moves only when `status` changes."""
    before = {c.get("type"): c for c in previous or []}
    updates = {c.type: c for c in new}
    out = []
    for kind in CONDITION_TYPES:
        if kind not in updates:
            if kind in before:
                out.append(before[kind])
            continue
        cond = updates[kind]
        old = before.get(kind, {})
        changed = old.get("status") != cond.status
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),
            }
        )
    return out


# Kinds whose controllers report readiness. Before their first status they are Unknown.
REPORTING = {
    ("mlops.seldon.io", "Model"),
    ("mlops.seldon.io", "Server"),
    ("mlops.seldon.io", "Pipeline"),
    ("keda.sh", "ScaledObject"),
    ("machinelearning.seldon.io", "SeldonDeployment"),
    ("serving.kserve.io", "InferenceService"),
    ("serving.kserve.io", "InferenceGraph"),
}
REPORTING_KINDS = ("Model", "Server", "Pipeline", "ScaledObject", "SeldonDeployment")
# Kinds whose `status.observedGeneration` is another object's: KServe copies its predictor
# Deployment's or Knative Service's there (kserve aaac4e2
# pkg/apis/serving/v1beta1/inference_service_status.go:455-457 and :635,
# pkg/controller/v1alpha1/inferencegraph/raw_ig.go:195), which count their own spec changes.
FOREIGN_GENERATION = {
    ("serving.kserve.io", "InferenceService"),
    ("serving.kserve.io", "InferenceGraph"),
}
# A Seldon v2 Pipeline's Ready is PipelineReady and ModelsReady (and the gateway's) together
# (seldon-core v2.10.2 operator/apis/mlops/v1alpha1/pipeline_types.go:280-284); ModelsReady
# goes False when a step's Model has no replica (operator/scheduler/pipeline.go:228-231).
MODELS_READY = "ModelsReady"
# Per-node states in `status.nodes[].state`.
READY, IDLE, NOT_READY = "Ready", "Idle", "NotReady"
Verdict = tuple[bool | None, str]  # (True, False or None: not reported yet; why)


class NodeStatus(TypedDict):
    """One entry of the graph's `status.nodes` (the CRD schema's shape)."""

    name: str
    ready: bool
    state: str
    message: str


def _group_kind(obj: Manifest) -> tuple[str, object]:
    return str(obj.get("apiVersion", "")).split("/")[0], obj.get("kind")


def _reports(obj: Manifest) -> bool:
    """A kind whose controller reports readiness (known by its kind alone, too, where that is
    unambiguous, for an object read without its apiVersion)."""
    return _group_kind(obj) in REPORTING or obj.get("kind") in REPORTING_KINDS


def _stale(obj: Manifest) -> str | None:
    """Why the status describes an earlier spec, if it says so: its controller wrote
    `status.observedGeneration` below `metadata.generation`, which the API server bumped when
    the operator applied a new spec. Judged from that status, Ready would call the new spec
    served while the old one still is. Nothing is known for a kind whose controller writes no
    observedGeneration (Seldon, KEDA) or another object's (FOREIGN_GENERATION)."""
    observed_value = object_or_empty(obj, "status").get("observedGeneration")
    generation_value = object_or_empty(obj, "metadata").get("generation")
    if None in (observed_value, generation_value) or _group_kind(obj) in FOREIGN_GENERATION:
        return None
    observed = as_int(observed_value, "status.observedGeneration")
    generation = as_int(generation_value, "metadata.generation")
    if observed >= generation:
        return None
    return (
        f"{obj['kind']} has not reported for generation {generation} yet "
        f"(its status is of generation {observed})"
    )


def _applied_anew(obj: Manifest, generation_before: int | None) -> str | None:
    """Why the status cannot describe the spec this pass applied: the apply advanced the
    object's generation (the API server counts a spec change there), so whatever its controller
    wrote, Ready=True included, was about the previous spec. Seldon v2's operator drops the
    scheduler's events of another generation and leaves that status standing until the
    scheduler reports on the new one (seldon-core v2.10.2 operator/scheduler/model.go:243-250,
    pipeline.go:212-219, server.go:181-182); no Seldon kind writes observedGeneration, so
    `_stale` cannot see it. A later pass, which did not advance it, reads the status again."""
    generation = generation_of(obj)
    if generation_before is None or generation is None or generation <= generation_before:
        return None
    return f"applied generation {generation}; waiting for its controller to report on it"


def object_ready(
    obj: Manifest, models_idle: bool = False, generation_before: int | None = None
) -> Verdict | None:
    """(ready, why) from the engine object's status; ready is None while the object has not
    reported yet (no status: no controller has seen it, or not on the spec this pass applied);
    None when the kind reports nothing.

    `models_idle`: some node is scaled to zero, so a Pipeline's ModelsReady=False is expected
    and its readiness is that of its other conditions. `generation_before`: the object's
    generation before this pass applied it (None: not known, or it did not exist)."""
    status = object_or_empty(obj, "status")
    reports = _reports(obj)
    unsaid = (_applied_anew(obj, generation_before) or _stale(obj)) if reports else None
    if unsaid:
        return None, unsaid
    if obj.get("kind") == "SeldonDeployment":
        state = status.get("state")
        if not state:
            return None, "SeldonDeployment has not reported a state yet"
        return state == "Available", f"SeldonDeployment state {state}"
    conds = as_objects(status.get("conditions") or [], "status.conditions")
    if models_idle and obj.get("kind") == "Pipeline":
        others = [c for c in conds if c.get("type") not in ("Ready", MODELS_READY)]
        if others and all(c.get("status") == TRUE for c in others):
            return True, "Pipeline ready; its scaled-to-zero Models are idle"
    for cond in conds:
        if cond.get("type") == "Ready" and cond.get("status") in (TRUE, FALSE):
            why = cond.get("message") or cond.get("reason") or ""
            return cond.get("status") == TRUE, f"{obj['kind']} Ready={cond.get('status')} {why}"
    if reports:
        return None, f"{obj['kind']} has not reported readiness yet"
    return None


def _node_label(obj: Manifest, nodes: set[str]) -> str | None:
    """The graph node a child serves; None for a graph-wide one (no node label, or a helper's
    label such as a v2 plumbing Server's or gate Model's: every node's requests pass it)."""
    label = labels_of(obj).get(NODE_LABEL)
    return label if label in nodes else None


def _idle(node: Node, live: list[Manifest], before: Mapping[ChildKey, int]) -> bool:
    """Scaled to zero by design: the node may scale to zero (minReplicas 0) and its engine
    object says it has no replica (`_at_zero`). Seldon v1 never gets here: its renderer keeps
    such a node at one replica (render/seldon_v1.py `_notes`)."""
    if node.autoscaling is None or node.autoscaling.min_replicas != 0:
        return False
    return any(
        labels_of(o).get(NODE_LABEL) == node.name and _at_zero(o, before.get(child_key(o)))
        for o in live
    )


def _at_zero(obj: Manifest, generation_before: int | None) -> bool:
    """Seldon v2: the scaler set the Model's `spec.replicas` to 0 (through `/scale`). KServe
    (Standard mode): the InferenceService is Ready with no ready pod. The Deployment controller
    calls a Deployment at zero replicas Available (kubernetes pkg/controller/deployment/sync.go
    calculateStatus: availableReplicas >= replicas - maxUnavailable), KServe copies that to
    Ready (kserve aaac4e2 pkg/apis/serving/v1beta1/inference_service_status.go:360-400) and
    counts the ready pods in `status.modelStatus.copies.totalCopies`, omitted at 0, with the
    model state Pending (same file, 721-745): Ready alone would call the node serving. No
    `modelStatus` (KServe has not counted pods yet) is not taken for zero."""
    if obj.get("kind") == "Model":
        return object_or_empty(obj, "spec").get("replicas") == 0
    if obj.get("kind") != "InferenceService":
        return False
    model = object_or_empty(obj, "status", "modelStatus")
    copies = object_or_empty(obj, "status", "modelStatus", "copies").get("totalCopies") or 0
    verdict = object_ready(obj, generation_before=generation_before)  # not a previous spec's
    return bool(model) and verdict is not None and verdict[0] is True and copies == 0


def node_readiness(
    graph: InferenceGraph,
    live: list[Manifest],
    blocked: Sequence[tuple[Manifest, str]] = (),
    generations_before: Mapping[ChildKey, int] | None = None,
) -> list[NodeStatus]:
    """Per node: its `state` (Ready, Idle, NotReady, Unknown) from every readiness-reporting
    child that serves it (labelled with it, or graph-wide) and the children left unapplied
    (`blocked`: the rendered object and why). NotReady when one reported not ready or was not
    applied; Unknown when one has not reported yet (or not on the spec this pass applied: its
    generation is above the one in `generations_before`); Idle when it is scaled to zero by
    design (its own Model and Server then say nothing); `ready` is Ready or Idle."""
    names = {n.name for n in graph.spec.nodes}
    before = generations_before or {}
    idle = {n.name for n in graph.spec.nodes if _idle(n, live, before)}
    return [_node_entry(n.name, live, blocked, names, idle, before) for n in graph.spec.nodes]


def _node_entry(
    node: str,
    live: list[Manifest],
    blocked: Sequence[tuple[Manifest, str]],
    names: set[str],
    idle: set[str],
    before: Mapping[ChildKey, int],
) -> NodeStatus:
    waiting = [
        f"{kind_of(o)}/{name_of(o)}: {why}"
        for o, why in blocked
        if _node_label(o, names) in (None, node)
    ]
    pending: list[str] = []
    for obj in live:
        serves = _node_label(obj, names)
        if serves not in (None, node) or (serves in idle and obj.get("kind") != "ScaledObject"):
            continue
        verdict = object_ready(obj, bool(idle), before.get(child_key(obj)))
        if verdict is None or verdict[0] is True:
            continue
        line = f"{kind_of(obj)}/{name_of(obj)}: {verdict[1]}".strip()
        (pending if verdict[0] is None else waiting).append(line)
    state = NOT_READY if waiting else UNKNOWN if pending else IDLE if node in idle else READY
    message = "; ".join(waiting + pending)
    if state == IDLE:
        message = "scaled to zero by its autoscaler; wakes on traffic"
    return {"name": node, "ready": state in (READY, IDLE), "state": state, "message": message}


def graph_readiness(
    graph: InferenceGraph,
    live: list[Manifest],
    blocked: Sequence[tuple[Manifest, str]] = (),
    generations_before: Mapping[ChildKey, int] | None = None,
) -> tuple[list[NodeStatus], Condition]:
    """The nodes and the graph's Ready condition: True when every node is Ready or Idle, False
    when one is NotReady, Unknown while one waits on a child that has not reported (on the
    spec this pass applied, too: `node_readiness`)."""
    nodes = node_readiness(graph, live, blocked, generations_before)
    by_state = {s: [n for n in nodes if n["state"] == s] for s in (NOT_READY, UNKNOWN, IDLE)}
    detail = "; ".join(
        f"{n['name']}: {n['message']}" for n in by_state[NOT_READY] or by_state[UNKNOWN]
    )
    if by_state[NOT_READY]:
        return nodes, Condition("Ready", FALSE, "NodesNotReady", detail)
    if by_state[UNKNOWN]:
        return nodes, Condition("Ready", UNKNOWN, "NotReportedYet", detail)
    message = f"{len(nodes)} node(s) ready"
    if by_state[IDLE]:
        message += f" ({', '.join(n['name'] for n in by_state[IDLE])} idle at zero replicas)"
    return nodes, Condition("Ready", TRUE, "NodesReady", message)


def endpoint(graph: InferenceGraph, engine: str, namespace: str, live: list[Manifest]) -> str:
    """The URL a client in the cluster calls (Open Inference Protocol where the graph uses it),
    as the engine's own `cluster_url` in `infergraph.engines` builds it."""
    url = engine_named(engine, RENDERED, "deploy a graph").cluster_url
    assert url is not None, f"{engine} renders but names no cluster URL"
    return url(graph.name, namespace, live)
