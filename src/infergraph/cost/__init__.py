"""Price catalog and $/1M-inference arithmetic (torch-free; used by the load tester)."""

from infergraph.cost.on_engine import engine_cost, replicas_on_engine, unschedulable
from infergraph.cost.pricing import (
    CostError,
    GraphCost,
    InstanceClass,
    NodeCost,
    PriceCatalog,
    graph_cost,
    load_catalog,
    node_cost,
    parse_cpu,
    parse_memory_gib,
    parse_price_overrides,
    parse_quantity,
    usd_per_million,
)

__all__ = [
    "CostError",
    "GraphCost",
    "InstanceClass",
    "NodeCost",
    "PriceCatalog",
    "engine_cost",
    "graph_cost",
    "load_catalog",
    "node_cost",
    "parse_cpu",
    "parse_memory_gib",
    "parse_price_overrides",
    "parse_quantity",
    "replicas_on_engine",
    "unschedulable",
    "usd_per_million",
]
