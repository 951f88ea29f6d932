"""What the operator creates for one graph: the renderer's objects, owned by the graph.

Every child gets the graph's namespace, the `infergraph.io/graph` label the renderers set, the
operator as `app.kubernetes.io/managed-by`, and a controller ownerReference to the graph, so
deleting the graph lets Kubernetes' garbage collector delete the children.
"""

from __future__ import annotations

from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, plan_of
from infergraph.json_types import JSONObject, Manifest, at
from infergraph.operator.config import OperatorConfig
from infergraph.operator.objects import (
    api_version_of,
    kind_of,
    labels_of,
    meta_str,
    name_of,
    owner_references,
)
from infergraph.render import render
from infergraph.render.common import namespace
from infergraph.render.options import RenderOptions

ENGINE_ANNOTATION = "infergraph.io/engine"
MANAGED_BY = "infergraph-operator"
# A graph on a cluster without KEDA or prometheus-operator lists the kinds it goes without.
OMIT_ANNOTATION = "infergraph.io/omit-kinds"
# Only add-ons the graph serves without: monitors, and the scalers (a node whose scaler is
# omitted stays at its engine's default replica count, since no replicas are rendered for it).
OPTIONAL_KINDS = ("PodMonitor", "ServiceMonitor", "ScaledObject", "HorizontalPodAutoscaler")
# A child outside the graph's namespace cannot carry an ownerReference to it (the garbage
# collector treats a cross-namespace owner as absent and deletes the child), so it names its
# graph by these labels instead; the operator's sweep deletes it once that graph is gone.
OWNER_UID_LABEL = "infergraph.io/owner-uid"
OWNER_NAMESPACE_LABEL = "infergraph.io/owner-namespace"
SERVER_CONFIG_API = "mlops.seldon.io/v1alpha1"


def engine_for(graph: InferenceGraph, config: OperatorConfig) -> str:
    """The graph's own choice (`spec.engine` where the model has it, else the
    `infergraph.io/engine` annotation), else the operator's default engine."""
    chosen = getattr(graph.spec, "engine", None) or graph.metadata.annotations.get(
        ENGINE_ANNOTATION
    )
    return str(chosen or config.default_engine)


def render_graph(
    graph: InferenceGraph | GraphPlan, engine: str, options: RenderOptions
) -> list[Manifest]:
    """The one call into the renderers: the same objects `infergraph render` writes."""
    return render(graph, engine, options)


def owner_reference(owner: Manifest) -> JSONObject:
    return {
        "apiVersion": api_version_of(owner),
        "kind": kind_of(owner),
        "name": name_of(owner),
        "uid": meta_str(owner, "uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def own(obj: Manifest, owner: Manifest, home: str | None = None) -> Manifest:
    """A copy of `obj` in the owner's namespace, labelled and owned by it. An object the
    renderer put outside the graph's namespace `home` (Seldon v2's ServerConfigs, in Seldon's
    controller namespace) stays there, owned through labels: an ownerReference cannot cross
    namespaces."""
    meta = dict(at(obj, "metadata"))
    labels = {**labels_of(obj), "app.kubernetes.io/managed-by": MANAGED_BY}
    meta["labels"] = labels
    elsewhere = meta.get("namespace")
    if home is not None and isinstance(elsewhere, str) and elsewhere != home:
        labels[OWNER_UID_LABEL] = meta_str(owner, "uid")
        labels[OWNER_NAMESPACE_LABEL] = meta_str(owner, "namespace")
        return {**obj, "metadata": meta}
    meta["namespace"] = meta_str(owner, "namespace")
    meta["ownerReferences"] = [owner_reference(owner)]
    return {**obj, "metadata": meta}


def omitted_kinds(graph: InferenceGraph, engine: str) -> set[str]:
    """The kinds the graph's `infergraph.io/omit-kinds` annotation (comma list) opts out of;
    a kind the graph cannot go without is a RenderError naming it and the allowed ones."""
    raw = graph.metadata.annotations.get(OMIT_ANNOTATION, "")
    kinds = {k.strip() for k in raw.split(",") if k.strip()}
    unknown = sorted(kinds - set(OPTIONAL_KINDS))
    if unknown:
        raise RenderError(
            engine,
            f"annotation {OMIT_ANNOTATION} names {', '.join(unknown)}; only "
            f"{', '.join(OPTIONAL_KINDS)} can be omitted",
        )
    return kinds


def children(
    owner: Manifest, source: InferenceGraph | GraphPlan, config: OperatorConfig
) -> list[Manifest]:
    """Render the graph for its engine and own every object the graph does not opt out of;
    RenderError says what cannot map."""
    plan = plan_of(source)
    engine = engine_for(plan.graph, config)
    omitted = omitted_kinds(plan.graph, engine)
    objs = render_graph(plan, engine, config.render_options())
    home = namespace(plan.graph)
    return [own(obj, owner, home) for obj in objs if kind_of(obj) not in omitted]


def _key(r: dict[str, str]) -> tuple[str, ...]:
    return (r["apiVersion"], r["kind"], r.get("namespace", ""), r["name"])


def stale(previous: list[dict[str, str]], current: list[dict[str, str]]) -> list[dict[str, str]]:
    """Objects an earlier generation created that this one no longer renders."""
    keep = {_key(r) for r in current}
    return [r for r in previous if _key(r) not in keep]


def is_owned_by(obj: Manifest | None, uid: str) -> bool:
    """This graph's: an ownerReference to it, or (outside its namespace) its owner-uid label."""
    return any(r.get("uid") == uid for r in owner_references(obj)) or (
        labels_of(obj).get(OWNER_UID_LABEL) == uid
    )
