"""What the operator creates for one graph: the renderer's objects, owned by the graph.

Every child gets the graph's namespace, the `infergraph.io/graph` label the renderers set, the
operator as `app.kubernetes.io/managed-by`, and a controller ownerReference to the graph, so
deleting the graph lets Kubernetes' garbage collector delete the children.
"""

from __future__ import annotations

from typing import Any

from infergraph.graph.model import InferenceGraph
from infergraph.operator.config import OperatorConfig
from infergraph.render import render
from infergraph.render.options import RenderOptions

ENGINE_ANNOTATION = "infergraph.io/engine"
MANAGED_BY = "infergraph-operator"


def engine_for(graph: InferenceGraph, config: OperatorConfig) -> str:
    """The graph's own choice (`spec.engine` where the model has it, else the
    `infergraph.io/engine` annotation), else the operator's default engine."""
    chosen = getattr(graph.spec, "engine", None) or graph.metadata.annotations.get(
        ENGINE_ANNOTATION
    )
    return str(chosen or config.default_engine)


def render_graph(graph: InferenceGraph, engine: str, options: RenderOptions) -> list[dict]:
    """The one call into the renderers: the same objects `infergraph render` writes."""
    return render(graph, engine, options)


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def own(obj: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A copy of `obj` in the owner's namespace, labelled and owned by it."""
    meta = dict(obj["metadata"])
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["labels"] = {**meta.get("labels", {}), "app.kubernetes.io/managed-by": MANAGED_BY}
    meta["ownerReferences"] = [owner_reference(owner)]
    return {**obj, "metadata": meta}


def children(owner: dict[str, Any], graph: InferenceGraph, config: OperatorConfig) -> list[dict]:
    """Render `graph` for its engine and own every object; RenderError says what cannot map."""
    engine = engine_for(graph, config)
    return [own(obj, owner) for obj in render_graph(graph, engine, config.render_options())]


def stale(previous: list[dict[str, str]], current: list[dict[str, str]]) -> list[dict[str, str]]:
    """Objects an earlier generation created that this one no longer renders."""
    keep = {(r["apiVersion"], r["kind"], r["name"]) for r in current}
    return [r for r in previous if (r["apiVersion"], r["kind"], r["name"]) not in keep]


def is_owned_by(obj: dict[str, Any] | None, uid: str) -> bool:
    refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)
