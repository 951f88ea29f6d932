"""Random small planning problems and their exhaustive optimum, to check the planner's search.

Each case is a graph of 2 or 3 nodes (a chain, a cascade whose last node runs on a
measured fraction of requests, or a fan-out whose two branches run in parallel), each
node profiled on 2 or 3 hardware classes with linear service times, a Poisson load and
a p99 SLO. The space is small enough to enumerate: every hardware class, max batch
size, max batch delay and replica count of every node. `exhaustive` walks all those
combinations in order of $/hour with the planner's own whole-graph simulation (same
arrivals, same seed), so the first one that meets the SLO is the true optimum of that
space, which `Planner.search` is then compared with.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import numpy as np

from infergraph.cost.pricing import PriceCatalog, load_catalog, node_cost
from infergraph.graph.model import Node
from infergraph.planner.profiles import BatchTiming, GraphProfile, NodeProfile, ProfileSet
from infergraph.planner.search import (
    Evaluated,
    InfeasibleSloError,
    Option,
    Planner,
    SearchSettings,
    deployed_node,
)
from infergraph.planner.simulator import gate_decisions, poisson_arrivals, reaches, simulate_node
from infergraph.planner.topology import Stage, Topology

CPU_CLASSES = ("c6i.2xlarge", "m6i.2xlarge", "c7i.2xlarge")
GPU_CLASSES = ("g4dn.xlarge", "g6.xlarge")
BATCH_SIZES = (1, 2, 4, 8)
DELAYS_MS = (0.0, 10.0)
MAX_REPLICAS = 4
DURATION_S = 10.0
SHAPES = ("chain", "cascade", "fan-out")
# Combinations whose cost is below the optimum are all simulated; past this many the case
# is reported as unresolved rather than given a wrong optimum.
EXHAUSTIVE_LIMIT = 60_000
OPTIMAL_PCT = 1e-6  # a gap this small is rounding: the planner found the optimum


@dataclass
class Case:
    """One planning problem: everything `Planner` takes, plus a label for the tables."""

    label: str
    topology: Topology
    nodes: dict[str, Node]
    profiles: ProfileSet
    arrivals: np.ndarray
    settings: SearchSettings

    def planner(self, catalog: PriceCatalog) -> Planner:
        return Planner(
            self.topology, self.nodes, self.profiles, catalog, self.arrivals, self.settings
        )


def _profile(node: str, hardware: str, base_ms: float, per_row_ms: float) -> NodeProfile:
    batches = tuple(
        BatchTiming(
            b, base_ms + per_row_ms * b, base_ms + per_row_ms * b, base_ms + per_row_ms * b, 50
        )
        for b in BATCH_SIZES
    )
    return NodeProfile(node, "image-classification", hardware, "cpu", batches, hop_ms=1.0)


def _topology(shape: str, names: list[str]) -> tuple[Topology, dict[str, float]]:
    """The stages of each shape, and the branch fraction of its gate (if it has one)."""
    first = Stage(names[0], names[0])
    if shape == "cascade":
        gate = Stage("gate-0", None, frozenset({names[0]}), is_gate=True)
        stages = [first, *(Stage(n, n, frozenset({names[0]})) for n in names[1:-1]), gate]
        last = Stage(names[-1], names[-1], frozenset({"gate-0"}), (("gate-0", "then"),))
        return Topology((*stages, last)), {"gate-0": 0.3}
    if shape == "fan-out":
        return Topology((first, *(Stage(n, n, frozenset({names[0]})) for n in names[1:]))), {}
    chain = [first] + [Stage(n, n, frozenset({p})) for p, n in itertools.pairwise(names)]
    return Topology(tuple(chain)), {}


def _classes(rng: np.random.Generator) -> list[str]:
    count = int(rng.integers(2, 4))
    gpus = int(rng.integers(0, min(2, count) + 1))
    picked = list(rng.choice(CPU_CLASSES, count - gpus, replace=False))
    return picked + list(rng.choice(GPU_CLASSES, gpus, replace=False))


def _costs(rng: np.random.Generator, hardware: str) -> tuple[float, float]:
    """Base and per-row ms: GPU classes pay a fixed launch cost and little per row."""
    if hardware in GPU_CLASSES:
        return float(rng.uniform(2.0, 6.0)), float(rng.uniform(0.2, 1.0))
    return float(rng.uniform(1.0, 5.0)), float(rng.uniform(2.0, 8.0))


def random_case(seed: int) -> Case:
    """A seeded random problem whose cheapest plan needs a few replicas somewhere."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 4))
    shape = str(rng.choice(SHAPES)) if count == 3 else str(rng.choice(("chain", "fan-out")))
    names = [f"n{i}" for i in range(count)]
    topology, branches = _topology(shape, names)
    classes = _classes(rng)
    by_node: dict[str, dict[str, NodeProfile]] = {}
    for name in names:
        by_node[name] = {hw: _profile(name, hw, *_costs(rng, hw)) for hw in classes}
    graph = GraphProfile("case", classes[0], by_node[names[0]])
    profiles = ProfileSet([graph], by_node, branches, ingress_ms=0.5)
    # CPU classes at batch 1 serve roughly 100-300 rows/s per replica: a load of 100-500
    # req/s makes replicas, batching and the GPU classes all worth weighing.
    rate = float(rng.uniform(100.0, 500.0))
    arrivals = poisson_arrivals(rate, DURATION_S, np.random.default_rng(seed + 1))
    slo_ms = float(rng.uniform(25.0, 120.0))
    nodes = {
        n: Node(name=n, family="image-classification", resources={"cpu": "2", "memory": "2Gi"})
        for n in names
    }
    settings = SearchSettings(
        slo_ms=slo_ms,
        percentile=99.0,
        batch_sizes=BATCH_SIZES,
        delays_ms=DELAYS_MS,
        max_replicas=MAX_REPLICAS,
        seed=seed,
    )
    label = f"{shape} {count} nodes, {len(classes)} classes, {rate:.0f} req/s, p99 {slo_ms:.0f} ms"
    return Case(label, topology, nodes, profiles, arrivals, settings)


def _all_options(planner: Planner, node: str) -> list[Option]:
    """Every way to deploy `node` in the searched space, cheapest first."""
    s = planner.settings
    out = []
    for hardware, profile in sorted(planner.profiles.by_node[node].items()):
        deployed = deployed_node(planner.nodes[node], hardware, planner.catalog)
        per_replica = node_cost(deployed, planner.catalog, replicas=1).usd_per_hour
        for batch in s.batch_sizes or BATCH_SIZES:
            # at batch size 1 the delay never applies: one setting, not several equal ones
            for delay in [0.0] if batch == 1 else s.delays_ms:
                for k in range(1, s.max_replicas + 1):
                    out.append(
                        Option(
                            node,
                            hardware,
                            batch,
                            delay,
                            k,
                            per_replica * k,
                            per_replica,
                            0.0,
                            profile,
                        )
                    )
    return sorted(out, key=lambda o: o.usd_per_hour)


def _violations_needed(total: int, percentile: float) -> int:
    """Fewest requests over the SLO that put the simulated percentile over it.

    np.percentile interpolates between the order statistics at floor(h) and floor(h) + 1,
    h = p/100 * (n - 1): once the one at floor(h) is over the SLO, so is the percentile.
    """
    return total - math.floor(percentile / 100.0 * (total - 1))


def _overloaded(option: Option, arrivals: np.ndarray, case: Case, total: int) -> bool:
    """Whether this node alone, served at its best throughput, already breaks the SLO.

    A bound, not a simulation: with R replicas of at most c rows/s each (the best batch
    size's rate), the k-th of the node's completions is no earlier than its first arrival
    plus the hop plus k / (R c). A request that completes at rank k or later, but arrived
    more than the SLO before that time, misses the SLO end to end; if at least
    `_violations_needed` must, no combination holding this option can pass.
    """
    if not arrivals.size:
        return False
    profile = option.profile
    per_row_s = min(profile.median_ms(b) / 1000.0 / b for b in range(1, option.max_batch_size + 1))
    rate = option.replicas / per_row_s
    budget_s = (case.settings.slo_ms - case.profiles.ingress_ms) / 1000.0
    rank = np.arange(1, arrivals.size + 1)
    earliest = arrivals[0] + profile.hop_ms / 1000.0 + rank / rate
    late_enough = arrivals.size - np.searchsorted(arrivals, earliest - budget_s, side="left")
    missed = (arrivals.size - rank + 1) - late_enough
    return bool(missed.max() >= _violations_needed(total, case.settings.percentile))


def _too_slow_first(option: Option, case: Case) -> bool:
    """Whether the first node alone, simulated as the graph simulates it, breaks the SLO.

    Exact for a node that every request reaches first: its completion times in the graph
    are these (service times are fixed, so no random draw changes them), and every
    request's end-to-end latency is at least its time there.
    """
    arrivals = case.arrivals
    rows = np.ones(arrivals.size, dtype=np.int64)
    _, run = simulate_node(arrivals, rows, option.config(), np.random.default_rng(0))
    over = run.latency_s * 1000.0 + case.profiles.ingress_ms > case.settings.slo_ms
    return int(over.sum()) >= _violations_needed(arrivals.size, case.settings.percentile)


def _gated_arrivals(case: Case, node: str) -> np.ndarray:
    """Arrival times of the requests that run `node`: the simulator's own gate draws."""
    n = case.arrivals.size
    rng = np.random.default_rng(case.settings.seed)
    taken = gate_decisions(case.topology, n, case.profiles.branches, rng)
    return case.arrivals[reaches(case.topology.stage(node), taken, n)]


def exhaustive(case: Case, catalog: PriceCatalog) -> tuple[Evaluated | None, int]:
    """The cheapest combination the whole-graph simulation accepts, and how many it ran.

    Combinations are visited in order of $/hour (a heap over index vectors into each
    node's cost-sorted options), so the first accepted one is the optimum. Options that
    `_overloaded` proves infeasible are dropped first (a bound on every combination
    holding them, not a heuristic). None: no combination meets the SLO, or more than
    EXHAUSTIVE_LIMIT simulations were needed to tell.
    """
    planner = case.planner(catalog)
    names = case.topology.nodes
    total = case.arrivals.size
    first = case.topology.stages[0].node  # every shape here starts with one node all reach
    options = {}
    for n in names:
        arrivals = _gated_arrivals(case, n)
        kept = [o for o in _all_options(planner, n) if not _overloaded(o, arrivals, case, total)]
        if n == first:
            kept = [o for o in kept if not _too_slow_first(o, case)]
        options[n] = kept
    if not all(options.values()):
        return None, 0

    def cost(idx: tuple[int, ...]) -> float:
        return sum(options[n][i].usd_per_hour for n, i in zip(names, idx, strict=True))

    start = (0,) * len(names)
    heap, seen, runs = [(cost(start), start)], {start}, 0
    while heap and runs < EXHAUSTIVE_LIMIT:
        _, idx = heapq.heappop(heap)
        for pos in range(len(names)):
            if idx[pos] + 1 < len(options[names[pos]]):
                nxt = (*idx[:pos], idx[pos] + 1, *idx[pos + 1 :])
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (cost(nxt), nxt))
        runs += 1
        ev = planner.evaluate({n: options[n][i] for n, i in zip(names, idx, strict=True)})
        if ev.feasible:
            return ev, runs
    return None, runs


@dataclass
class Comparison:
    """The planner's choice beside the optimum of the same space, for one case."""

    label: str
    seed: int
    optimum_usd_per_hour: float | None
    planner_usd_per_hour: float | None  # None: the planner found no plan
    gap_pct: float | None  # None: the case has no feasible combination (not counted)
    exhaustive_simulations: int
    planner_simulations: int
    planner_seconds: float

    def as_row(self) -> dict[str, object]:
        return {"part": "search", **self.__dict__}


def compare(seed: int, catalog: PriceCatalog | None = None) -> Comparison:
    """Plan one random case with `Planner.search` and with `exhaustive`; the cost gap in %."""
    catalog = catalog or load_catalog()
    case = random_case(seed)
    best, runs = exhaustive(case, catalog)
    planner = case.planner(catalog)
    try:
        result = planner.search()
        found: float | None = result.best.usd_per_hour
        seconds = result.seconds
    except InfeasibleSloError:
        found, seconds = None, math.nan
    optimum = best.usd_per_hour if best is not None else None
    if optimum is None:
        gap = None
    elif found is None:
        gap = math.inf
    else:
        gap = (found - optimum) / optimum * 100.0
    return Comparison(case.label, seed, optimum, found, gap, runs, planner.simulations, seconds)


def search_rows(cases: int, first_seed: int = 0) -> list[dict[str, object]]:
    """Compare the planner with the exhaustive optimum on `cases` seeded random cases."""
    catalog = load_catalog()
    return [compare(seed, catalog).as_row() for seed in range(first_seed, first_seed + cases)]


def search_summary(rows: list[dict[str, object]]) -> dict[str, float | int | None]:
    """The summary keys: p95 of the cost gap and the share of cases the planner solved exactly.

    Cases with no feasible combination in the space are left out (there is nothing to
    miss); a case where the planner finds no plan but one exists counts as an infinite gap.
    """
    gaps = np.array([float(r["gap_pct"]) for r in rows if r["gap_pct"] is not None])  # type: ignore[arg-type]
    if not gaps.size:
        return {"optimality_gap_pct_p95": None, "optimal_fraction": None, "search_cases": 0}
    p95 = float(np.percentile(gaps, 95))
    return {
        "optimality_gap_pct_p95": p95 if math.isfinite(p95) else None,
        "optimal_fraction": float(np.mean(gaps <= OPTIMAL_PCT)),
        "within_2pct_fraction": float(np.mean(gaps <= 2.0)),
        "optimality_gap_pct_max": float(gaps.max()) if math.isfinite(gaps.max()) else None,
        "search_cases": int(gaps.size),
    }
