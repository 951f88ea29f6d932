"""What a planned replica costs, and what else a plan pays for, on the engine that runs it.

Without an engine a replica costs its node's `resources` on its class (`cost.node_cost`),
which is what the local runner runs. On a cluster each engine adds sidecars to a node's pods
and runs pods of its own (`cost.pods`), and the operator's `status.pricePerHour` charges
both (`cost.engine_cost`). A plan made for an engine prices its replicas the same way, from
the same rendering, so its $/hour is what the cluster will report and no node is planned on
a class its pod, sidecars included, does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infergraph.cost import NodeCost, PriceCatalog, engine_cost, node_cost, replicas_on_engine
from infergraph.graph.model import InferenceGraph, Node
from infergraph.render import engine_pods


@dataclass
class PlanPricing:
    """Prices one graph's replicas for the search, and the engine's own pods for the plan."""

    graph: InferenceGraph
    catalog: PriceCatalog
    engine: str | None = None  # None: each node's own resources, whatever runs it
    _replica_usd: dict[tuple[str, str], float] = field(default_factory=dict)

    def replica_usd(self, node: Node) -> float:
        """$/hour of one replica of `node` as it would be deployed (hardware and GPU set by
        `search.deployed_node`); a CostError where its pod does not fit that class."""
        assert node.hardware is not None
        key = (node.name, node.hardware)
        if key not in self._replica_usd:
            self._replica_usd[key] = self._priced(node).usd_per_replica_hour
        return self._replica_usd[key]

    def _priced(self, node: Node) -> NodeCost:
        alone = node_cost(node, self.catalog, replicas=1)
        if self.engine is None:
            return alone
        # The graph with this node as deployed: the engine's pods for it depend on its class
        # (a GPU node asks for its GPU), the others' only on themselves.
        nodes = [node if n.name == node.name else n for n in self.graph.spec.nodes]
        deployed = self.graph.model_copy(
            update={"spec": self.graph.spec.model_copy(update={"nodes": nodes})}
        )
        pods = engine_pods(deployed, self.engine)
        return replicas_on_engine(alone, pods, self.catalog, self.engine)

    def engine_pods(self, planned: InferenceGraph) -> tuple[NodeCost, ...]:
        """The pods the engine runs of its own for the planned graph (its executor, router,
        helper steps), priced as the operator prices them; none without an engine."""
        if self.engine is None:
            return ()
        cost = engine_cost(planned, self.engine, engine_pods(planned, self.engine), self.catalog)
        return tuple(c for c in cost.nodes if c.part == "engine")
