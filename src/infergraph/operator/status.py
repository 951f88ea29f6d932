"""The InferenceGraph's status: conditions, per-node readiness, endpoint, price per hour.

Readiness is read from the engine's own objects as the API server returns them after apply:
a `Ready` condition (Seldon v2 Model/Server/Pipeline, KEDA ScaledObject) or a SeldonDeployment's
`status.state: Available` (Seldon v1 reports per deployment, not per condition). Children with
neither (ServerConfig, HorizontalPodAutoscaler) say nothing about readiness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infergraph.cost import CostError, graph_cost, load_catalog
from infergraph.graph.model import InferenceGraph
from infergraph.render.common import NODE_LABEL
from infergraph.render.seldon_v1 import PREDICTOR

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
CONDITION_TYPES = ("Valid", "Rendered", "Ready")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(previous: list[dict[str, Any]], new: list[Condition]) -> list[dict[str, Any]]:
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


def object_ready(obj: dict[str, Any]) -> tuple[bool, str] | None:
    """(ready, why) from the engine object's status; None when the kind reports no readiness."""
    status = obj.get("status") or {}
    if obj.get("kind") == "SeldonDeployment":
        state = status.get("state")
        return state == "Available", f"SeldonDeployment state {state or 'not reported yet'}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            why = cond.get("message") or cond.get("reason") or ""
            return cond.get("status") == TRUE, f"{obj['kind']} Ready={cond.get('status')} {why}"
    if obj.get("kind") in ("Model", "Server", "Pipeline", "ScaledObject"):
        return False, f"{obj['kind']} has no Ready condition yet"
    return None


def _belongs(obj: dict[str, Any], node: str) -> bool:
    """A child labelled with `node`, or with no node label (graph-wide: Pipeline, monitor)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return labels.get(NODE_LABEL, node) == node


def node_readiness(
    graph: InferenceGraph,
    live: list[dict[str, Any]],
    blocked: Sequence[tuple[dict[str, Any], str]] = (),
) -> list[dict[str, Any]]:
    """Per node: ready when every readiness-reporting child labelled with it (or with no node
    label, i.e. graph-wide, such as a Pipeline or SeldonDeployment) is ready, and none of its
    children was left unapplied (`blocked`: the rendered object and why)."""
    out = []
    for node in graph.spec.nodes:
        waiting = [
            f"{obj['kind']}/{obj['metadata']['name']}: {why}"
            for obj, why in blocked
            if _belongs(obj, node.name)
        ]
        for obj in live:
            if not _belongs(obj, node.name):
                continue
            verdict = object_ready(obj)
            if verdict is not None and not verdict[0]:
                waiting.append(f"{obj['kind']}/{obj['metadata']['name']}: {verdict[1]}".strip())
        out.append({"name": node.name, "ready": not waiting, "message": "; ".join(waiting)})
    return out


def endpoint(graph: InferenceGraph, engine: str, namespace: str, live: list[dict]) -> str:
    """The URL a client in the cluster calls (Open Inference Protocol where the graph uses it).

    Seldon v2: the `seldon-mesh` Service routes `/v2/models/<graph>/infer` to the Pipeline when
    the request carries `Seldon-Model: <graph>.pipeline`. Seldon v1: the executor Service
    `<graph>-<predictor>` on port 8000.
    """
    if engine == "seldon-v2":
        return f"http://seldon-mesh.{namespace}/v2/models/{graph.name}/infer"
    if engine == "kserve":  # the InferenceGraph's router Service
        return f"http://{graph.name}.{namespace}"
    protocol = next(
        (o["spec"].get("protocol") for o in live if o.get("kind") == "SeldonDeployment"), "v2"
    )
    base = f"http://{graph.name}-{PREDICTOR}.{namespace}:8000"
    path = "/api/v1.0/predictions" if protocol == "seldon" else f"/v2/models/{graph.name}/infer"
    return base + path


def price_per_hour(graph: InferenceGraph, catalog_path: str | None) -> tuple[str | None, str]:
    """(dollars per hour as text, why not) from the price catalog at the graph's replicas."""
    try:
        catalog = load_catalog(catalog_path)
        return f"{graph_cost(graph, catalog).usd_per_hour:.4f}", ""
    except CostError as exc:
        return None, str(exc)
