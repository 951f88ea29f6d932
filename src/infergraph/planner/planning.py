"""`infergraph plan`: from a graph, its profiles, an SLO and a load to a planned graph.

Searching runs on the workload's busiest window with the rate raised by the
headroom (bursts the trace did not show); the chosen plan is then simulated on
the whole workload as given, which is what the report's percentile and SLO
attainment describe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergraph.cost.pricing import PriceCatalog
from infergraph.graph.model import InferenceGraph
from infergraph.planner.profiles import ProfileSet, load_profile, match_profiles
from infergraph.planner.search import (
    Evaluated,
    Planner,
    SearchResult,
    SearchSettings,
    deployed_node,
    run_probability,
)
from infergraph.planner.topology import Topology, topology_of
from infergraph.planner.tuner import ScalingAdvice, tune
from infergraph.planner.workload import Workload

SEARCH_REQUESTS = 30_000


@dataclass
class PlanInputs:
    graph: InferenceGraph
    profile_paths: Sequence[Path]
    workload: Workload
    catalog: PriceCatalog
    settings: SearchSettings
    headroom: float = 0.1


@dataclass
class PlanOutcome:
    inputs: PlanInputs
    topology: Topology
    profiles: ProfileSet
    search: SearchResult
    final: Evaluated  # the chosen plan on the whole workload (no headroom)
    attainment: float
    scaling: dict[str, ScalingAdvice]
    seconds: float
    search_window: str

    @property
    def best(self) -> Evaluated:
        return self.search.best

    def usd_per_million(self) -> float:
        rps = self.inputs.workload.mean_rps
        return self.final.usd_per_hour / (rps * 3600.0) * 1e6


def plan_graph(inputs: PlanInputs) -> PlanOutcome:
    started = time.perf_counter()
    graph = inputs.graph
    topology = topology_of(graph)
    profiles = match_profiles(
        [load_profile(p) for p in inputs.profile_paths],
        graph.name,
        [n.name for n in graph.spec.nodes],
        topology.gates,
    )
    s = inputs.settings
    window = inputs.workload.busiest(SEARCH_REQUESTS)
    search_arrivals = window.arrivals(s.seed, scale=1.0 + inputs.headroom)
    nodes = {n.name: n for n in graph.spec.nodes}
    planner = Planner(topology, nodes, profiles, inputs.catalog, search_arrivals, s)
    result = planner.search()
    arrivals = inputs.workload.arrivals(s.seed + 1)
    final_sim = planner.simulate({n: o.config() for n, o in result.best.options.items()}, arrivals)
    final = planner.evaluated_from(result.best.options, final_sim)
    scaling = {}
    for node in graph.spec.nodes:
        option = result.best.options[node.name]
        p = run_probability(topology, node.name, profiles.branches)
        scaling[node.name] = tune(
            node.name,
            node.autoscaling,
            option.replicas,
            option.max_batch_size,
            peak_node_rps=window.peak_rps * (1.0 + inputs.headroom) * p,
            trough_node_rps=inputs.workload.trough_rps * p,
            utilisation=result.best.utilisation.get(node.name, 0.0),
            latency_s=result.best.node_latency_ms.get(node.name, 0.0) / 1000.0,
        )
    return PlanOutcome(
        inputs=inputs,
        topology=topology,
        profiles=profiles,
        search=result,
        final=final,
        attainment=final_sim.attainment(s.slo_ms),
        scaling=scaling,
        seconds=time.perf_counter() - started,
        search_window=window.label,
    )


def planned_manifest(outcome: PlanOutcome) -> dict[str, Any]:
    """The graph with the plan written into it: what serve, render and the operator read."""
    graph = outcome.inputs.graph
    s = outcome.inputs.settings
    updated = graph.model_copy(deep=True)
    nodes = []
    for node in updated.spec.nodes:
        option = outcome.best.options[node.name]
        planned = deployed_node(node, option.hardware, outcome.inputs.catalog)
        planned.batching = planned.batching.model_copy(
            update={
                "max_batch_size": option.max_batch_size,
                "max_batch_time_ms": option.max_batch_time_ms,
            }
        )
        planned.replicas = option.replicas
        if planned.autoscaling is not None:
            advice = outcome.scaling[node.name]
            planned.autoscaling = planned.autoscaling.model_copy(
                update={
                    "min_replicas": advice.min_replicas,
                    "max_replicas": advice.max_replicas,
                    "target": advice.target,
                }
            )
        nodes.append(planned)
    updated.spec.nodes = nodes
    manifest = updated.to_manifest()
    manifest["spec"]["slo"] = {"latencyMs": s.slo_ms, "percentile": s.percentile}
    annotations = manifest["metadata"].setdefault("annotations", {})
    annotations["infergraph.io/planned"] = (
        f"p{s.percentile:g} {outcome.final.latency_ms:.1f} ms <= {s.slo_ms:g} ms, "
        f"${outcome.final.usd_per_hour:.4f}/hour, {outcome.inputs.workload.label}"
    )
    return manifest
