"""`infergraph plan`: from a graph, its profiles, an SLO and a load to a planned graph.

Searching runs on the workload's busiest window with the rate raised by the
headroom (bursts the trace did not show); the chosen plan is then simulated on
the whole workload as given, which is what the report's percentile and SLO
attainment describe. In that final run autoscaled nodes follow their tuned
autoscaler (`planner.autoscaler`), so the plan's $/hour is the time-averaged pod
cost and its attainment includes the autoscaler's lag; the peak-provisioned cost
is reported beside it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from infergraph.cost.pricing import NodeCost, PriceCatalog
from infergraph.graph.model import Autoscaling, InferenceGraph, Node
from infergraph.graph.plan import GraphPlan, parse_graph, plan_of
from infergraph.json_types import JSONObject, Manifest, at, object_or_empty
from infergraph.planner.autoscaler import RATE_WINDOW_S, ScalerModel
from infergraph.planner.pricing import PlanPricing
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
from infergraph.planner.workload import TraceError, Workload
from infergraph.render import seldon_v1

SEARCH_REQUESTS = 30_000
AutoscaleMode = Literal["graph", "all", "off"]
TARGET_MARGINS = (1.0, 0.85, 0.7, 0.55, 0.4)


DEFAULT_STARTUP_S = 60.0  # a new pod's start-up where nothing was measured


@dataclass
class PlanInputs:
    graph: InferenceGraph
    profile_paths: Sequence[Path]
    workload: Workload
    catalog: PriceCatalog
    settings: SearchSettings
    headroom: float = 0.1
    # graph: nodes with an autoscaling block follow it; all: the others get an HPA on their
    # request rate too; off: every node keeps its planned replicas (peak-provisioned).
    autoscale: AutoscaleMode = "graph"
    # Seconds from asking for a pod to its taking traffic, for every node; None: each node's
    # measured start (its profile's `startup_s`) after `pending_s`, DEFAULT_STARTUP_S where
    # nothing was measured.
    startup_s: float | None = None
    # Seconds a new pod is Pending before its container starts (scheduling, and the image
    # pull on a node that lacks the image): added to each node's measured start.
    pending_s: float = 0.0
    # The engine the plan is for: its sidecars priced into each replica and its own pods
    # into the plan (`planner.pricing`); None: each node's own resources, as run locally.
    engine: str | None = None


@dataclass
class PlanOutcome:
    inputs: PlanInputs
    topology: Topology
    profiles: ProfileSet
    search: SearchResult
    final: Evaluated  # the chosen plan on the whole workload (no headroom), autoscaled
    attainment: float
    scaling: dict[str, ScalingAdvice]
    seconds: float
    search_window: str
    # The tuner's margin on the targets (1.0: the planned peak load per replica); None when
    # no margin kept the SLO in the replay and every node is held at its planned replicas.
    margin: float | None = 1.0
    # Of the SLO's miss budget ((1 - percentile) of the requests), the share that pods'
    # start-up takes: the replay's misses less those of the same replay with instant pods.
    # None when no node autoscales.
    cold_start_budget_share: float | None = None
    # The pods the engine runs of its own for the planned graph, priced (none without one).
    engine_pods: tuple[NodeCost, ...] = ()
    # Whether the deployment refuses past a node's maxQueueRows, as the search simulated.
    queue_bounds_enforced: bool = True

    def startup_s(self, node: str) -> tuple[float, str]:
        """A new pod's start-up for `node` in the replay, and where the figure comes from."""
        if self.inputs.startup_s is not None:
            return self.inputs.startup_s, "--replica-startup-s"
        profile = self.final.options[node].profile
        measured = profile.startup_s
        if measured is None:
            return DEFAULT_STARTUP_S, "default: the profile measured no load"
        source = "measured server start" if profile.server_start_s else "measured load"
        if self.inputs.pending_s:
            pending = self.inputs.pending_s
            return pending + measured, f"{source} after {pending:.3g} s pending"
        return measured, source

    @property
    def best(self) -> Evaluated:
        return self.search.best

    @property
    def engine_usd_per_hour(self) -> float:
        """What the engine's own pods cost (its executor, router or helper steps)."""
        return sum(c.usd_per_hour for c in self.engine_pods)

    def with_engine(self, evaluated: Evaluated) -> float:
        """$/hour of a combination's nodes and the engine's own pods, which are the same for
        every combination (the renderers size them apart from the nodes)."""
        return evaluated.usd_per_hour + self.engine_usd_per_hour

    @property
    def usd_per_hour(self) -> float:
        """What the plan costs over the whole workload: its nodes' time-averaged replicas
        and the engine's own pods."""
        return self.with_engine(self.final)

    @property
    def peak_usd_per_hour(self) -> float:
        """What the plan costs with every node held at its planned (peak) replicas."""
        return self.with_engine(self.best)

    def autoscaled(self, node: str) -> bool:
        return node in scaler_models(self)

    def usd_per_million(self) -> float:
        rps = self.inputs.workload.mean_rps
        return self.usd_per_hour / (rps * 3600.0) * 1e6


def _queue_bounds_enforced(plan: GraphPlan, engine: str | None) -> bool:
    """Whether the deployment the plan is for refuses past a node's maxQueueRows: the
    runtime's batcher does, wherever it serves (locally, Seldon v2, KServe, Seldon v1's
    MLServer units); Seldon v1's Seldon-protocol units do not."""
    return engine != "seldon-v1" or seldon_v1.enforces_queue_bounds(plan)


def plan_graph(inputs: PlanInputs) -> PlanOutcome:
    started = time.perf_counter()
    graph = inputs.graph
    compiled = plan_of(graph)  # once: the topology and the engine's queue rule read it
    topology = topology_of(compiled)
    profiles = match_profiles(
        [load_profile(p) for p in inputs.profile_paths],
        graph.name,
        [n.name for n in graph.spec.nodes],
        topology.gates,
    )
    s = inputs.settings
    window = inputs.workload.busiest(SEARCH_REQUESTS)
    search_arrivals = window.arrivals(s.seed, scale=1.0 + inputs.headroom)
    if not search_arrivals.size:
        raise TraceError(
            f"the load ({inputs.workload.label}, {len(inputs.workload.counts)} s) draws no "
            "request to plan for: raise --rate or --duration"
        )
    nodes = {n.name: n for n in graph.spec.nodes}
    pricing = PlanPricing(graph, inputs.catalog, inputs.engine)
    s = replace(s, queue_bounds_enforced=_queue_bounds_enforced(compiled, inputs.engine))
    planner = Planner(
        topology, nodes, profiles, inputs.catalog, search_arrivals, s, pricing.replica_usd
    )
    result = planner.search()
    outcome = PlanOutcome(
        inputs=inputs,
        topology=topology,
        profiles=profiles,
        search=result,
        final=result.best,
        attainment=0.0,
        scaling={},
        seconds=0.0,
        search_window=window.label,
        queue_bounds_enforced=s.queue_bounds_enforced,
    )
    arrivals = inputs.workload.arrivals(s.seed + 1)
    configs = {n: o.config() for n, o in result.best.options.items()}
    # The tuner: the loosest autoscaling targets whose replay over the whole workload still
    # meets the SLO; if even the tightest does not, every node stays at its planned replicas.
    for margin in (*TARGET_MARGINS, None):
        outcome.margin = margin
        outcome.scaling = _advice(outcome, margin or TARGET_MARGINS[-1])
        final_sim = planner.simulate(configs, arrivals, scaler_models(outcome))
        outcome.final = planner.evaluated_from(result.best.options, final_sim)
        outcome.attainment = final_sim.attainment(s.slo_ms)
        if outcome.final.feasible or not scaler_models(outcome):
            break
    if not outcome.final.feasible:
        _repair_on_whole_load(planner, outcome, arrivals)
    if scaler_models(outcome):
        instant = planner.simulate(configs, arrivals, scaler_models(outcome, instant=True))
        budget = (1.0 - s.percentile / 100.0) * len(arrivals)  # misses the SLO allows
        extra = (instant.attainment(s.slo_ms) - outcome.attainment) * len(arrivals)
        outcome.cold_start_budget_share = extra / budget if budget > 0 else None
    outcome.engine_pods = pricing.engine_pods(parse_graph(planned_manifest(outcome)))
    outcome.seconds = time.perf_counter() - started
    return outcome


def _repair_on_whole_load(planner: Planner, outcome: PlanOutcome, arrivals: np.ndarray) -> None:
    """The search sized the plan on its busiest window, one draw of it; over the whole load
    (another draw) the plan can still miss, and no autoscaler target saved it. Replicas are
    added where it hurts on the whole load, as the search's own repair does, and every node
    is held at them; `InfeasibleSloError` names the node when more no longer help. A plan
    is never written as meeting an SLO its final simulation misses."""
    fixed = planner.repair(outcome.final, [], arrivals)  # a whole-load run, held replicas
    outcome.search = replace(outcome.search, best=fixed, repaired=True)
    outcome.margin = None
    outcome.final, outcome.attainment = fixed, fixed.attainment


def _advice(outcome: PlanOutcome, margin: float) -> dict[str, ScalingAdvice]:
    """Per-node targets at `margin` times the per-replica load of the planned peak.

    The autoscaler sees a windowed rate, so the peak the targets divide is the
    workload's peak over that window (not its peak second): the plan's replicas are
    what it asks for when that rate peaks, and bursts inside the window stay within
    the planned replicas' headroom.
    """
    inputs, best = outcome.inputs, outcome.search.best
    metric_peak = inputs.workload.peak_mean_rps(RATE_WINDOW_S) * margin
    advice = {}
    for node in inputs.graph.spec.nodes:
        option = best.options[node.name]
        p = run_probability(outcome.topology, node.name, outcome.profiles.branches)
        # Answered requests only: a refused one holds no slot in flight (and makes the
        # percentile infinite where a node refuses past its share).
        in_flight_ms = best.node_answered_ms.get(
            node.name, best.node_latency_ms.get(node.name, 0.0)
        )
        advice[node.name] = tune(
            node.name,
            node.autoscaling,
            option.replicas,
            option.max_batch_size,
            peak_node_rps=metric_peak * p,
            trough_node_rps=inputs.workload.trough_rps * p,
            utilisation=best.utilisation.get(node.name, 0.0) * margin,
            latency_s=in_flight_ms / 1000.0,
            max_queue_rows=node.batching.max_queue_rows,
        )
    return advice


def scaler_models(outcome: PlanOutcome, instant: bool = False) -> dict[str, ScalerModel]:
    """The autoscalers the planned graph will carry, as the replay models them (with
    `instant`, pods ready when asked for: what the replay would be without start-up)."""
    inputs = outcome.inputs
    if inputs.autoscale == "off" or outcome.margin is None:
        return {}
    models = {}
    for node in inputs.graph.spec.nodes:
        if node.autoscaling is None and inputs.autoscale != "all":
            continue
        advice = outcome.scaling[node.name]
        if advice.per_replica_rps <= 0:
            continue
        cooldown = node.autoscaling.cooldown_seconds if node.autoscaling else 300
        models[node.name] = ScalerModel(
            per_replica_rps=advice.per_replica_rps,
            min_replicas=advice.min_replicas,
            max_replicas=advice.max_replicas,
            stabilisation_s=float(cooldown),
            startup_s=0.0 if instant else outcome.startup_s(node.name)[0],
        )
    return models


def _planned_autoscaling(outcome: PlanOutcome, node: Node) -> Autoscaling | None:
    if not outcome.autoscaled(node.name):
        return None
    advice = outcome.scaling[node.name]
    base = node.autoscaling or Autoscaling(engine="hpa", metric="rps")
    return base.model_copy(
        update={
            "min_replicas": advice.min_replicas,
            "max_replicas": advice.max_replicas,
            "target": advice.per_replica_rps if node.autoscaling is None else advice.target,
        }
    )


def planned_manifest(outcome: PlanOutcome) -> Manifest:
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
        # The simulator runs one forward pass at a time per replica (one model instance):
        # the plan deploys what it simulated (`commands.plan` says so when it changes one).
        planned.instances = 1
        planned.autoscaling = _planned_autoscaling(outcome, node)
        nodes.append(planned)
    updated.spec.nodes = nodes
    manifest = updated.to_manifest()
    slo: JSONObject = {"latencyMs": s.slo_ms, "percentile": s.percentile}
    if s.max_refused is not None:
        # As the user gave it: 29 / 100 * 100 is 28.999999999999996 in binary floating point.
        slo["maxRefusedPercent"] = float(f"{s.max_refused * 100:.12g}")
    at(manifest, "spec")["slo"] = slo
    meta = at(manifest, "metadata")
    annotations = meta["annotations"] = object_or_empty(meta, "annotations")
    meets = "<=" if outcome.final.feasible else ">"
    annotations["infergraph.io/planned"] = (
        f"p{s.percentile:g} {outcome.final.latency_ms:.1f} ms {meets} {s.slo_ms:g} ms, "
        f"${outcome.usd_per_hour:.4f}/hour (${outcome.peak_usd_per_hour:.4f} at peak "
        f"replicas){_priced_on(outcome)}, {outcome.inputs.workload.label}"
    )
    return manifest


def _priced_on(outcome: PlanOutcome) -> str:
    engine = outcome.inputs.engine
    return f" on {engine}" if engine else ""
