"""What the graph's pods cost and whether each could be scheduled at all, for its status.

Both come from the pods the engine runs for the rendered children (`infergraph.cost.pods`),
against one load of the price catalog: `pricePerHour` / `priceMessage`, and the
`Schedulable` condition. A pod that outgrows what one node of its `hardware` class lets pods
ask for (its allocatable, sidecars included) stays Pending on every such node; the graph is
still valid and applied, so this is a condition of its own, not a refusal: the children are
applied all the same, and a larger class or smaller request clears it.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergraph.cost import CostError, engine_cost, load_catalog, unschedulable
from infergraph.cost.observed import NodeRoom, with_rooms
from infergraph.cost.pods import PodShape
from infergraph.cost.pricing import PriceCatalog
from infergraph.engines import RENDERED
from infergraph.engines import engine as engine_named
from infergraph.graph.model import InferenceGraph
from infergraph.json_types import JSONObject, Manifest
from infergraph.operator.status import (
    EVENT_MESSAGE_LIMIT,
    FALSE,
    TRUE,
    UNKNOWN,
    Condition,
    Event,
    condition,
)

SCHEDULABLE = "Schedulable"
OUTGROWN = "PodOutgrowsClass"


@dataclass(frozen=True)
class Priced:
    """The status fields the price catalog decides."""

    price: str | None  # dollars per hour, as text
    problem: str  # why there is no price
    fit: Condition  # Schedulable


def priced(
    graph: InferenceGraph,
    catalog_path: str | None,
    engine: str,
    objs: list[Manifest],
    rooms: list[NodeRoom] | None = None,
) -> Priced:
    """The graph at its replicas as `engine` runs the rendered `objs`: its pods' price (their
    sidecars and the engine's own pods included) and whether each pod fits its class, a class
    the cluster has `rooms` (observed Nodes) of sized by them."""
    runs = engine_named(engine, RENDERED, "deploy a graph")
    try:
        catalog, observed = with_rooms(load_catalog(catalog_path), rooms or [])
    except CostError as exc:
        return _unpriced("CatalogUnavailable", exc)
    try:
        pods = runs.pods_of(objs)
    except CostError as exc:
        return _unpriced("PodsUnknown", exc)
    try:
        price, problem = f"{engine_cost(graph, engine, pods, catalog).usd_per_hour:.4f}", ""
    except CostError as exc:
        price, problem = None, str(exc)
    return Priced(price, problem, _fit(graph, engine, pods, catalog, observed))


def _unpriced(reason: str, exc: CostError) -> Priced:
    return Priced(None, str(exc), Condition(SCHEDULABLE, UNKNOWN, reason, str(exc)))


def outgrown_warning(previous: list[JSONObject], current: list[JSONObject]) -> list[Event]:
    """A Warning when `Schedulable` turns False or names other pods; not on every pass."""
    before, now = (_schedulable(c) for c in (previous, current))
    if not is_outgrown(current) or (before.get("status"), before.get("message")) == (
        FALSE,
        now.get("message"),
    ):
        return []
    return [("Warning", OUTGROWN, str(now.get("message", ""))[:EVENT_MESSAGE_LIMIT])]


def is_outgrown(conditions: list[JSONObject]) -> bool:
    return _schedulable(conditions).get("status") == FALSE


def _schedulable(conditions: list[JSONObject]) -> JSONObject:
    return condition(conditions, SCHEDULABLE)


def _fit(
    graph: InferenceGraph,
    engine: str,
    pods: list[PodShape],
    catalog: PriceCatalog,
    observed: list[str],
) -> Condition:
    seen = f" ({', '.join(observed)} as the cluster's Nodes leave it)" if observed else ""
    problems = unschedulable(graph, catalog, engine, pods)
    if problems:
        return Condition(SCHEDULABLE, FALSE, OUTGROWN, "; ".join(problems) + seen)
    checked = [n.name for n in graph.spec.nodes if n.hardware in catalog.classes]
    if not checked:
        why = "no node names a hardware class of the price catalog: nothing says what it runs on"
        return Condition(SCHEDULABLE, UNKNOWN, "NoHardwareClass", why)
    return Condition(
        SCHEDULABLE,
        TRUE,
        "PodsFitClasses",
        f"each pod of {', '.join(checked)} on {engine} fits what one node of its class lets "
        f"pods ask for{seen}",
    )
