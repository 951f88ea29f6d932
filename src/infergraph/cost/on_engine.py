"""What a graph costs on an engine: the pods the engine runs for it, priced.

`graph_cost` charges each node's replicas the node's own `resources`, which is what the
local runner runs. On a cluster each engine adds to that (`cost.pods` says what and where
from): sidecars in a node's pods raise that node's share of its hardware class, and pods of
the engine's own (the executor, the router, helper steps) are charged on the cheapest class
without a GPU that holds them, since they ask for no accelerator and no node selector.
"""

from __future__ import annotations

from collections.abc import Mapping

from infergraph.cost.pods import PodShape
from infergraph.cost.pricing import (
    Asked,
    CostError,
    GraphCost,
    NodeCost,
    PriceCatalog,
    ReplicaMode,
    graph_cost,
    node_cost,
    priced,
)
from infergraph.graph.model import InferenceGraph


def engine_cost(
    graph: InferenceGraph,
    engine: str,
    pods: list[PodShape],
    catalog: PriceCatalog,
    default_hardware: str | None = None,
    replica_mode: ReplicaMode = "spec",
    replica_overrides: Mapping[str, int] | None = None,
) -> GraphCost:
    """`graph` on `engine`, which runs `pods` for it (its `Engine.pods` of the rendered
    objects): each node's replicas (counted as in `graph_cost`) at what its pod requests,
    then the engine's own pods."""
    counted = graph_cost(graph, catalog, default_hardware, replica_mode, replica_overrides)
    nodes = {node.name for node in graph.spec.nodes}
    priced_nodes = [replicas_on_engine(cost, pods, catalog, engine) for cost in counted.nodes]
    own = [_engine_pods(s, catalog, replica_mode) for s in pods if s.node not in nodes]
    return GraphCost(graph=graph.name, nodes=priced_nodes + own)


def replicas_on_engine(
    cost: NodeCost, pods: list[PodShape], catalog: PriceCatalog, engine: str
) -> NodeCost:
    """`cost` (a node's replicas at its own `resources`, from `node_cost`) repriced at what
    one of its replicas asks for on `engine`: its pods there, sidecars included. A
    CostError says when that no longer fits the node's class."""
    asked = _per_node([s for s in pods if s.node == cost.node]).get(cost.node)
    if asked is None:  # no pod of its own on this engine: its resources stand
        return cost
    hardware = cost.hardware
    instance = catalog.get(hardware)
    return priced(cost.node, hardware, instance, asked, cost.replicas, added_by=engine)


def _per_node(shapes: list[PodShape]) -> dict[str, Asked]:
    """What one replica of each node asks for on the engine, summed over its pods."""
    asked: dict[str, Asked] = {}
    for shape in shapes:
        assert shape.node is not None
        before = asked.get(shape.node, Asked(0.0, 0.0, 0))
        asked[shape.node] = Asked(
            before.cpu + shape.cpu,
            before.memory_gib + shape.memory_gib,
            before.gpus + shape.gpus,
        )
    return asked


def _engine_pods(shape: PodShape, catalog: PriceCatalog, replica_mode: ReplicaMode) -> NodeCost:
    asked = Asked(shape.cpu, shape.memory_gib, shape.gpus)
    hardware = catalog.cheapest_fit(asked, shape.source)
    count = shape.max_replicas if replica_mode == "max" else shape.replicas
    return priced(shape.source, hardware, catalog.get(hardware), asked, count, part="engine")


def unschedulable(
    graph: InferenceGraph,
    catalog: PriceCatalog,
    engine: str | None = None,
    pods: list[PodShape] | None = None,
) -> list[str]:
    """Why a pod of `graph` could never be scheduled: a node's replica that outgrows one
    instance of its class (its own `resources`, or with `engine` its pods there, from
    `pods`), or a pod of the engine's own that no class holds. Nodes without a class, or
    with one the catalog lacks, are not checked: nothing says what they run on."""
    problems = []
    for node in graph.spec.nodes:
        if node.hardware is None or node.hardware not in catalog.classes:
            continue
        try:
            cost = node_cost(node, catalog, replicas=1)
            if engine is not None:
                replicas_on_engine(cost, pods or [], catalog, engine)
        except CostError as exc:
            problems.append(str(exc))
    names = {node.name for node in graph.spec.nodes}
    for shape in pods or []:
        if shape.node in names:
            continue
        try:
            catalog.cheapest_fit(Asked(shape.cpu, shape.memory_gib, shape.gpus), shape.source)
        except CostError as exc:
            problems.append(str(exc))
    return problems
