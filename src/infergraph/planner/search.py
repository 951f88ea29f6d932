"""Search per-node hardware, batching and replicas for the cheapest graph that meets the SLO.

How: every node's options are enumerated and simulated on their own (hardware class
x max batch size x max batch delay, with the fewest replicas that keep that node
within the SLO, and one more), and only each node's Pareto-optimal options (no
other option both cheaper and faster; up to three at one cost, see `pareto_options`)
are kept. Combinations of those are then
visited best-first in order of $/hour (a heap over index vectors), skipping any
whose lower bound (the slowest always-run node's own percentile) already breaks
the SLO or whose prefix of nodes the simulation already refused (`MissedPrefixes`),
and each is checked by the whole-graph simulation. The first one the
simulation accepts is the cheapest of all combinations of per-node Pareto options:
unlike InferLine's greedy descent from a feasible start, it cannot stop in a local
optimum where no single move helps but a pair of moves would. For graphs of a few
nodes each front holds a handful to a few dozen options, so the walk is short;
`max_simulations` caps it for larger graphs, and the report says when it was hit.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from infergraph.cost.pricing import CostError, PriceCatalog, node_cost
from infergraph.errors import InfergraphError
from infergraph.graph.model import Node
from infergraph.planner.autoscaler import ScalerModel
from infergraph.planner.profiles import NodeProfile, ProfileError, ProfileSet
from infergraph.planner.simulator import (
    NodeConfig,
    ServiceModel,
    SimResult,
    gate_decisions,
    percentile_s,
    reaches,
    sample_rows,
    simulate,
    simulate_node,
)
from infergraph.planner.topology import Topology

DEFAULT_DELAYS_MS = (0.0, 2.0, 5.0, 10.0, 20.0, 50.0)
TIES_PER_COST = 3  # options kept per node at one $/hour (see pareto_options)
SAME_LATENCY = 0.02  # options this close in their own percentile count as alike
NODE_REQUESTS = 8_000  # node visits simulated per option when ranking one node's options


class InfeasibleSloError(InfergraphError):
    """No configuration meets the SLO; carries the best achievable latency and its bottleneck."""

    def __init__(self, slo_ms: float, percentile: float, best_ms: float, node: str, why: str):
        self.best_ms = best_ms
        self.node = node
        best = f"{best_ms:.1f} ms" if math.isfinite(best_ms) else "no answer (requests refused)"
        super().__init__(
            f"no configuration meets p{percentile:g} <= {slo_ms:g} ms: the best achievable is "
            f"{best}, limited by node '{node}' ({why})"
        )


@dataclass(frozen=True)
class Option:
    """One way to deploy one node, with what it costs and how it behaves alone."""

    node: str
    hardware: str
    max_batch_size: int
    max_batch_time_ms: float
    replicas: int
    usd_per_hour: float
    usd_per_replica_hour: float
    latency_ms: float  # the node's own percentile at the search load
    profile: NodeProfile = field(repr=False, compare=False)
    max_queue_rows: int | None = None  # the node's own bound (batching.maxQueueRows), kept
    refused_fraction: float = 0.0  # the share of the node's requests its bound refused, alone

    @property
    def standing(self) -> tuple[float, float]:
        """How it ranks by speed: its percentile, then (where too many are refused for
        any percentile) the share refused."""
        return self.latency_ms, self.refused_fraction

    def config(self) -> NodeConfig:
        return node_config(
            self.profile,
            self.max_batch_size,
            self.max_batch_time_ms,
            self.replicas,
            self.max_queue_rows,
        )


@dataclass
class NodeSpace:
    """What searching one node found: its options within the SLO alone, the fastest
    configuration it tried, within the SLO or not (what the graph can do at best), and of
    those fast enough, the least share of all requests one refused."""

    options: list[Option]
    fastest: Option | None
    least_refused: float = math.inf

    @property
    def fastest_ms(self) -> float:
        return self.fastest.latency_ms if self.fastest is not None else math.inf

    def consider(self, option: Option, fast: bool, refused_share: float, excess: float) -> None:
        """`fast`: within the SLO's budget alone; `refused_share`: the share of all requests
        it refused, `excess` what of that is past the refusal limit."""
        if fast and not excess:
            self.options.append(option)
        if self.fastest is None or option.standing < self.fastest.standing:
            self.fastest = option
        if fast:
            self.least_refused = min(self.least_refused, refused_share)


@dataclass
class Evaluated:
    """A whole-graph combination and what the simulation said about it."""

    options: dict[str, Option]
    usd_per_hour: float
    latency_ms: float
    node_latency_ms: dict[str, float]
    utilisation: dict[str, float]
    feasible: bool
    mean_replicas: dict[str, float] = field(default_factory=dict)
    # Nodes every simulated request went through (none skipped by a gate or with no rows,
    # nor refused by a node before it).
    on_every_path: frozenset[str] = frozenset()
    attainment: float = 1.0  # the share of requests within the SLO
    refused_fraction: float = 0.0  # the share of requests a node's queue bound refused
    # Per node that refused some: the share of the requests reaching it that it refused, and
    # its percentile over those it answered (finite where the whole one is not).
    node_refused_fraction: dict[str, float] = field(default_factory=dict)
    node_answered_ms: dict[str, float] = field(default_factory=dict)
    # The share refused past the plan's limit (--max-refused-pct or
    # spec.slo.maxRefusedPercent); 0 where none is set; and per node that refused some, the
    # share of all requests it refused.
    refused_excess: float = 0.0
    node_refused_of_all: dict[str, float] = field(default_factory=dict)

    @property
    def standing(self) -> tuple[float, float, float]:
        """The share refused past the limit, its percentile, then the share refused: what
        still improves while refusals keep the percentile infinite."""
        return self.refused_excess, self.latency_ms, self.refused_fraction

    def node_standing(self, node: str) -> tuple[float, float]:
        """A node's own percentile, then the share of its requests it refused."""
        return self.node_latency_ms.get(node, 0.0), self.node_refused_fraction.get(node, 0.0)


@dataclass
class SearchSettings:
    slo_ms: float
    percentile: float = 99.0
    batch_sizes: Sequence[int] | None = None  # None: 1, 2, 4, ... up to each profile's largest
    delays_ms: Sequence[float] = DEFAULT_DELAYS_MS
    max_replicas: int = 256
    max_simulations: int = 200
    seed: int = 0
    # False where the engine the plan is for does not refuse past a node's maxQueueRows
    # (`render.seldon_v1.enforces_queue_bounds`): the bound then caps batches only.
    queue_bounds_enforced: bool = True
    # The share of all requests a plan may refuse through the nodes' queue bounds
    # (--max-refused-pct or spec.slo.maxRefusedPercent, / 100); None: only the percentile
    # limits it (a refusal is a miss).
    max_refused: float | None = None
    # Where `max_refused` came from, as the messages name it.
    max_refused_from: str = "--max-refused-pct"

    def refused_excess(self, refused_fraction: float) -> float:
        """The share refused past `max_refused` (0 within it, or without one)."""
        if self.max_refused is None:
            return 0.0
        return max(0.0, refused_fraction - self.max_refused)

    def limit_words(self) -> str:
        """The refusal limit as the option (or graph field) that set it."""
        return f"{self.max_refused_from} {(self.max_refused or 0.0) * 100:g}"


@dataclass
class SearchResult:
    best: Evaluated
    evaluated: list[Evaluated]
    fronts: dict[str, list[Option]]
    simulations: int
    capped: bool
    seconds: float
    repaired: bool = False  # no Pareto combination passed; replicas were added to the plan
    notes: tuple[str, ...] = ()  # settings asked for that the search could not use

    @property
    def pareto(self) -> list[Evaluated]:
        """Combinations no other evaluated one beats on both $/hour and latency (those with
        a percentile, refusing no more than the limit: one refusing past its share has none)."""
        front: list[Evaluated] = []
        answering = [
            e for e in self.evaluated if math.isfinite(e.latency_ms) and not e.refused_excess
        ]
        for ev in sorted(answering, key=lambda e: (e.usd_per_hour, e.latency_ms)):
            if not front or ev.latency_ms < front[-1].latency_ms - 1e-9:
                front.append(ev)
        return front


def node_config(
    profile: NodeProfile,
    batch: int,
    delay_ms: float,
    replicas: int,
    max_queue_rows: int | None = None,
) -> NodeConfig:
    """The simulator's view of a node deployed with these settings."""
    top = max(batch, profile.max_batch_size)
    service = ServiceModel(
        tuple(profile.median_ms(b) / 1000.0 for b in range(1, top + 1)),
        tuple(profile.sigma(b) for b in range(1, top + 1)),
    )
    total = sum(profile.rows.values()) or 1
    rows = tuple((r, n / total) for r, n in sorted(profile.rows.items()))
    return NodeConfig(
        batch,
        delay_ms / 1000.0,
        replicas,
        service,
        profile.hop_ms / 1000.0,
        rows,
        hop_sigma=profile.hop_sigma,
        response_s=profile.response_ms / 1000.0,
        turnaround_s=profile.turnaround_ms / 1000.0,
        max_queue_rows=max_queue_rows,
    )


def deployed_node(node: Node, hardware: str, catalog: PriceCatalog) -> Node:
    """The node as it would run on `hardware`: GPU request follows the class."""
    has_gpu = catalog.get(hardware).gpus > 0
    gpu = max(node.resources.gpu, 1) if has_gpu else 0
    resources = node.resources.model_copy(update={"gpu": gpu})
    return node.model_copy(update={"hardware": hardware, "resources": resources})


# $/hour of one replica of a node as deployed on its class (`deployed_node`); a CostError
# where it does not fit there. `planner.pricing` gives one for each engine.
ReplicaPrice = Callable[[Node], float]


def own_resources_price(catalog: PriceCatalog) -> ReplicaPrice:
    """A replica at its node's own `resources`: what the local runner runs."""
    return lambda node: node_cost(node, catalog, replicas=1).usd_per_hour


def run_probability(topology: Topology, node: str, branches: Mapping[str, float]) -> float:
    stage = next(s for s in topology.stages if s.node == node)
    p = 1.0
    for gate, side in stage.branch:
        p *= branches[gate] if side == "then" else 1.0 - branches[gate]
    return p


class Planner:
    """Holds what every evaluation needs: topology, profiles, prices and the search load."""

    def __init__(
        self,
        topology: Topology,
        nodes: Mapping[str, Node],
        profiles: ProfileSet,
        catalog: PriceCatalog,
        arrivals_s: np.ndarray,
        settings: SearchSettings,
        replica_usd: ReplicaPrice | None = None,
    ) -> None:
        self.topology = topology
        self.nodes = nodes
        self.profiles = profiles
        self.catalog = catalog
        self.arrivals = arrivals_s
        self.settings = settings
        self.ingress_s = profiles.ingress_ms / 1000.0
        self.simulations = 0
        self.notes: set[str] = set()  # asked-for settings the search could not use
        self.replica_usd = replica_usd or own_resources_price(catalog)
        check_priced(profiles, catalog)

    # -- one node -----------------------------------------------------------------------------
    def _node_arrivals(self, node: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The requests the whole-graph simulation sends `node` (its own gate draws, same
        seed): sized on another draw, a gated node can look too slow for its cheapest option
        when that draw happens to pass a few percent more requests."""
        n = self.arrivals.size
        gates = gate_decisions(
            self.topology, n, self.profiles.branches, np.random.default_rng(self.settings.seed)
        )
        stage = next(s for s in self.topology.stages if s.node == node)
        picked = self.arrivals[reaches(stage, gates, n)]
        profile = next(iter(self.profiles.by_node[node].values()))
        rows = sample_rows(node_config(profile, 1, 0, 1).rows, picked.size, rng)
        keep = rows > 0
        return densest(picked[keep], rows[keep], NODE_REQUESTS)

    def _batches(self, profile: NodeProfile) -> list[int]:
        """Batch limits to try: those asked for up to the largest batch the node was timed
        at on this class (past it the pass time would be a guess), else powers of two; none
        past the node's own queue bound (`batching.maxQueueRows`), which a batch's rows wait
        in while it forms, so that no larger batch could fill (the graph's validator)."""
        node, bound = profile.node, self._queue_rows(profile.node)
        if self.settings.batch_sizes is not None:
            where = f"node '{node}' was profiled up to {profile.max_batch_size} on "
            where += profile.hardware_class
            asked = sorted({b for b in self.settings.batch_sizes if b >= 1})
            timed = self._asked_up_to(
                asked, profile.max_batch_size, f": {where}", f"{where}: give sizes up to that"
            )
            if bound is None:
                return timed
            return self._asked_up_to(
                timed,
                bound,
                f" on node '{node}': its batching.maxQueueRows {bound} holds no larger batch",
                f"node '{node}' holds at most {bound} rows waiting (batching.maxQueueRows): "
                "give sizes up to that",
            )
        top = min(profile.max_batch_size, bound or profile.max_batch_size)
        out, b = [], 1
        while b <= top:
            out.append(b)
            b *= 2
        if bound is not None and bound < profile.max_batch_size and out[-1] < bound:
            out.append(bound)  # the largest batch the bound allows
        return out

    def _queue_rows(self, node: str) -> int | None:
        return self.nodes[node].batching.max_queue_rows

    def _simulated_bound(self, node: str) -> int | None:
        """The bound the simulator applies: the node's, where the engine enforces it."""
        return self._queue_rows(node) if self.settings.queue_bounds_enforced else None

    def _asked_up_to(self, sizes: list[int], cap: int, left_out: str, none_left: str) -> list[int]:
        """The asked-for `sizes` up to `cap`; those past it said (`left_out`), none left an
        error (`none_left`)."""
        kept = [b for b in sizes if b <= cap]
        if not kept:
            raise ProfileError("--batch-sizes", none_left)
        if len(kept) < len(sizes):
            beyond = ",".join(str(b) for b in sizes if b > cap)
            self.notes.add(f"--batch-sizes {beyond} not tried{left_out}")
        return kept

    def node_options(self, node: str) -> tuple[list[Option], float]:
        """Every (hardware, batch, delay) with the fewest replicas that keep the node in SLO.

        Also returns the lowest latency seen, for the message when nothing fits.
        """
        space = self.node_space(node)
        return space.options, space.fastest_ms

    def node_space(self, node: str) -> NodeSpace:
        """The node's options within the SLO alone, and the fastest one tried at all."""
        s = self.settings
        rng = np.random.default_rng(s.seed + 17)
        arrivals, rows = self._node_arrivals(node, rng)
        span = float(arrivals[-1] - arrivals[0]) if arrivals.size > 1 else 1.0
        row_rate = rows.sum() / max(span, 1e-9)
        budget_ms = s.slo_ms - self.profiles.ingress_ms
        space = NodeSpace([], None)
        for hardware, per_replica in self.per_replica_usd(node).items():
            profile = self.profiles.by_node[node][hardware]
            for batch in self._batches(profile):
                delays = [0.0] if batch == 1 else self._delays(budget_ms)
                capacity = batch / (profile.median_ms(batch) / 1000.0)
                for delay in delays:
                    # At least one try: past the replica limit the node is too slow there.
                    k = min(max(1, math.ceil(row_rate / capacity)), s.max_replicas)
                    found, previous, excess_before = 0, math.inf, math.inf
                    while k <= s.max_replicas and found < 2:
                        lat, refused = self._node_latency(profile, batch, delay, k, arrivals, rows)
                        option = Option(
                            node, hardware, batch, delay, k, per_replica * k, per_replica, lat,
                            profile, self._simulated_bound(node), refused,
                        )  # fmt: skip
                        # Of all the search's requests: a lower bound on the share the whole
                        # graph's run refuses here (these are some of the node's visits).
                        share = refused * arrivals.size / self.arrivals.size
                        excess = s.refused_excess(share)
                        space.consider(option, lat <= budget_ms, share, excess)
                        if lat <= budget_ms and not excess:
                            found += 1
                            k += 1
                        elif lat <= budget_ms:  # fast enough, refusing past the limit
                            if excess > excess_before * 0.99:
                                break  # more replicas no longer shorten its queue
                            excess_before, k = excess, k + 1
                        elif lat > previous * 0.99:
                            break  # more replicas no longer help: service time is the limit
                        else:
                            previous = lat
                            k = k + 1 if lat < 4 * budget_ms else math.ceil(k * 1.5)
        return space

    def _delays(self, budget_ms: float) -> list[float]:
        """Batch delays to try: a batch may wait up to half the SLO's budget; a delay the
        user asked for past that is said, not dropped quietly."""
        tried = [d for d in self.settings.delays_ms if d < budget_ms / 2]
        if tuple(self.settings.delays_ms) != DEFAULT_DELAYS_MS:
            for d in sorted(set(self.settings.delays_ms) - set(tried)):
                self.notes.add(
                    f"--delays-ms {d:g} not tried: a batch may wait at most half the SLO's "
                    f"budget ({budget_ms / 2:.1f} ms)"
                )
        return tried

    def per_replica_usd(self, node: str) -> dict[str, float]:
        """$/hour of one replica of `node` on each profiled class it fits on.

        A class it fits on nowhere leaves nothing to plan: the error gives each class's reason.
        """
        costs: dict[str, float] = {}
        reasons: list[str] = []
        for hardware in sorted(self.profiles.by_node[node]):
            try:
                deployed = deployed_node(self.nodes[node], hardware, self.catalog)
                costs[hardware] = self.replica_usd(deployed)
            except CostError as exc:
                reasons.append(exc.reason)
        if not costs:
            raise CostError(
                f"node '{node}'",
                f"fits none of its profiled hardware classes: {'; '.join(reasons)}",
            )
        return costs

    def _node_latency(
        self,
        profile: NodeProfile,
        batch: int,
        delay: float,
        replicas: int,
        arrivals: np.ndarray,
        rows: np.ndarray,
    ) -> tuple[float, float]:
        """The node's own percentile (ms) alone at the search load, and the share refused."""
        if not arrivals.size:
            if not any(r > 0 for r in profile.rows):
                return 0.0, 0.0  # every request skips it (no crops): it never runs
            return profile.hop_ms + profile.median_ms(1), 0.0  # rare: one must still fit
        config = node_config(profile, batch, delay, replicas, self._simulated_bound(profile.node))
        _, run = simulate_node(arrivals, rows, config, np.random.default_rng(self.settings.seed))
        latency_ms = percentile_s(run.latency_s, self.settings.percentile) * 1000.0
        return latency_ms, run.refused / arrivals.size

    # -- whole graph --------------------------------------------------------------------------
    def evaluate(
        self, options: Mapping[str, Option], arrivals: np.ndarray | None = None
    ) -> Evaluated:
        configs = {n: o.config() for n, o in options.items()}
        result = self.simulate(configs, arrivals)
        return self.evaluated_from(dict(options), result)

    def simulate(
        self,
        configs: Mapping[str, NodeConfig],
        arrivals: np.ndarray | None = None,
        scalers: Mapping[str, ScalerModel] | None = None,
    ) -> SimResult:
        self.simulations += 1
        arr = self.arrivals if arrivals is None else arrivals
        return simulate(
            self.topology,
            configs,
            arr,
            self.profiles.branches,
            self.ingress_s,
            self.settings.seed,
            scalers,
        )

    def evaluated_from(self, options: dict[str, Option], result: SimResult) -> Evaluated:
        """Cost from the pod time each node held (its planned replicas unless autoscaled)."""
        p = self.settings.percentile
        latency = result.percentile_ms(p)
        excess = self.settings.refused_excess(result.refused_fraction)
        mean = {
            n: result.mean_replicas(n, o.replicas) if n in result.nodes else float(o.replicas)
            for n, o in options.items()
        }
        return Evaluated(
            options=options,
            usd_per_hour=sum(o.usd_per_replica_hour * mean[n] for n, o in options.items()),
            mean_replicas=mean,
            latency_ms=latency,
            node_latency_ms={n: result.node_percentile_ms(n, p) for n in result.nodes},
            utilisation={n: result.utilisation(n, options[n].replicas) for n in result.nodes},
            feasible=latency <= self.settings.slo_ms and not excess,
            on_every_path=frozenset(
                n for n, run in result.nodes.items() if run.latency_s.size == result.latency_s.size
            ),
            attainment=result.attainment(self.settings.slo_ms),
            refused_fraction=result.refused_fraction,
            node_refused_fraction={
                n: r.refused / r.latency_s.size for n, r in result.nodes.items() if r.refused
            },
            node_answered_ms={
                n: result.node_answered_percentile_ms(n, p)
                for n, r in result.nodes.items()
                if r.refused
            },
            refused_excess=excess,
            node_refused_of_all={
                n: r.refused / result.latency_s.size for n, r in result.nodes.items() if r.refused
            },
        )

    def search(self) -> SearchResult:
        started = time.perf_counter()
        s = self.settings
        spaces = {node: self.node_space(node) for node in self.topology.nodes}
        if not all(space.options for space in spaces.values()):
            raise self.unreachable(spaces)
        fronts = self._fronts(spaces)
        names = list(fronts)
        always = [
            n for n in names if run_probability(self.topology, n, self.profiles.branches) >= 1.0
        ]
        evaluated: list[Evaluated] = []
        best: Evaluated | None = None
        capped = False
        missed = MissedPrefixes(
            self.topology, names, s.slo_ms - self.profiles.ingress_ms, s.max_refused
        )
        start = (0,) * len(names)
        heap = [self._key(names, fronts, start)]
        seen = {start}
        extra = 0
        while heap:
            *_, idx = heapq.heappop(heap)
            self._push_next(heap, seen, idx, names, fronts)
            chosen = {n: fronts[n][i] for n, i in zip(names, idx, strict=True)}
            bound = (
                max((chosen[n].latency_ms for n in always), default=0.0) + self.profiles.ingress_ms
            )
            if bound > s.slo_ms or missed.holds(idx):
                continue
            if self.simulations >= s.max_simulations:
                capped = True
                break
            ev = self.evaluate(chosen)
            missed.learn(idx, ev)
            evaluated.append(ev)
            if ev.feasible and best is None:
                best = ev
            if best is not None:
                extra += 1
                if extra > 12:  # a few dearer points for the Pareto front
                    break
        fastest = self.evaluate({n: min(f, key=lambda o: o.latency_ms) for n, f in fronts.items()})
        evaluated.append(fastest)
        repaired = best is None
        return SearchResult(
            best or self.repair(fastest, evaluated),
            evaluated,
            fronts,
            self.simulations,
            capped,
            time.perf_counter() - started,
            repaired,
            tuple(sorted(self.notes)),
        )

    def _fronts(self, spaces: Mapping[str, NodeSpace]) -> dict[str, list[Option]]:
        """Each node's Pareto options (with a refusal limit, the least refusing too)."""
        refusals = self.settings.max_refused is not None
        return {n: pareto_options(sp.options, refusals=refusals) for n, sp in spaces.items()}

    def _push_next(
        self,
        heap: list[tuple[float, float, tuple[int, ...]]],
        seen: set[tuple[int, ...]],
        idx: tuple[int, ...],
        names: list[str],
        fronts: dict[str, list[Option]],
    ) -> None:
        """Queue the combinations one option dearer than `idx` on one node, each once."""
        for pos in range(len(names)):
            if idx[pos] + 1 < len(fronts[names[pos]]):
                nxt = (*idx[:pos], idx[pos] + 1, *idx[pos + 1 :])
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, self._key(names, fronts, nxt))

    def unreachable(self, spaces: Mapping[str, NodeSpace]) -> InfeasibleSloError:
        """Why no plan exists when some node cannot meet the SLO even alone.

        The best achievable percentile is the whole graph's with every node at its fastest
        configuration (simulated, so a chain's nodes add up), and the node that limits it is
        the one slowest on its own there: not merely the first node found wanting.
        """
        s = self.settings
        fastest = {n: sp.fastest for n, sp in spaces.items() if sp.fastest is not None}
        best = self.evaluate(fastest)
        budget_ms = s.slo_ms - self.profiles.ingress_ms
        # Nodes fast enough alone that found no option: each refused past the limit.
        refusing = [n for n, sp in spaces.items() if not sp.options and sp.fastest_ms <= budget_ms]
        if refusing:
            node = max(refusing, key=lambda n: (spaces[n].least_refused, n))
            why = (
                f"alone, on any profiled hardware, batch size and replica count"
                f"{self._replica_cap(fastest[node])}, its queue bound (batching.maxQueueRows "
                f"{self._queue_rows(node)}) refuses at least "
                f"{_percent(spaces[node].least_refused)} of all requests, more than "
                f"{s.limit_words()} allows"
            )
            return InfeasibleSloError(s.slo_ms, s.percentile, best.latency_ms, node, why)
        limiting = max(fastest, key=lambda n: (*best.node_standing(n), n))
        own = max(best.node_latency_ms.get(limiting, 0.0), spaces[limiting].fastest_ms)
        limit = self._replica_cap(fastest[limiting])
        if math.isinf(own):
            why = (
                f"at its fastest{limit} its queue bound (batching.maxQueueRows "
                f"{self._queue_rows(limiting)}) still refuses more than "
                f"{100 - s.percentile:g}% of the requests it gets; the graph refuses "
                f"{best.refused_fraction * 100:.1f}% of all"
            )
        else:
            why = (
                f"alone, on any profiled hardware, batch size and replica count{limit}, its "
                f"own p{s.percentile:g} is at least {own:.1f} ms"
            )
        return InfeasibleSloError(s.slo_ms, s.percentile, best.latency_ms, limiting, why)

    def _replica_cap(self, option: Option) -> str:
        """Words for the replica limit, where the option reached it."""
        if option.replicas < self.settings.max_replicas:
            return ""
        return f" (at most {self.settings.max_replicas} replicas: --max-replicas)"

    def repair(
        self, start: Evaluated, evaluated: list[Evaluated], arrivals: np.ndarray | None = None
    ) -> Evaluated:
        """When no combination of per-node options passes together, add replicas where it hurts.

        Nodes that each meet the SLO alone can miss it together: a batching node hands its
        successor whole batches at once, a burstier stream than the one it was sized for.
        Starting from the fastest combination, the node with the worst percentile (among
        infinite ones, or where the graph refuses past its refusal limit, the one refusing
        the largest share) gets a quarter more replicas (at least one) while that keeps
        helping, by the share refused past the limit, the percentile or the share refused.
        `arrivals`: the load to repair on (the search's, unless given).
        """
        s = self.settings
        current, stalls = start, 0
        # The search's own repair shares its budget; a repair on another load has its own.
        until = s.max_simulations + (self.simulations if arrivals is not None else 0)
        while not current.feasible and stalls < 3 and self.simulations < until:
            worst = _slowest(current)
            option = current.options[worst]
            more = option.replicas + max(1, option.replicas // 4)
            if more > s.max_replicas:
                break
            grown = replace(option, replicas=more, usd_per_hour=option.usd_per_replica_hour * more)
            trial = self.evaluate({**current.options, worst: grown}, arrivals)
            evaluated.append(trial)
            stalls = 0 if _improves(trial, current) else stalls + 1
            if trial.standing < current.standing:
                current = trial
        if current.feasible:
            return current
        limiting = _slowest(current)
        own = current.node_latency_ms[limiting]
        where = f"is {own:.1f} ms" if math.isfinite(own) else "has too many refused requests"
        refused = f"the graph refuses {_percent(current.refused_fraction)}"
        if current.refused_excess:
            refused += f", more than {s.limit_words()} allows"
        raise InfeasibleSloError(
            s.slo_ms,
            s.percentile,
            current.latency_ms,
            limiting,
            f"its own p{s.percentile:g} {where} in the fastest configuration found ({refused}), "
            "and more replicas no longer help",
        )

    @staticmethod
    def _key(
        names: list[str], fronts: dict[str, list[Option]], idx: tuple[int, ...]
    ) -> tuple[float, float, tuple[int, ...]]:
        """Heap order: $/hour, then (among equal costs) the summed own latencies, so the
        likelier of tied combinations is simulated first."""
        chosen = [fronts[n][i] for n, i in zip(names, idx, strict=True)]
        cost = round(sum(o.usd_per_hour for o in chosen), 9)
        return cost, sum(o.latency_ms for o in chosen), idx


def _slowest(ev: Evaluated) -> str:
    """The node with the worst own percentile (infinite ones: the one refusing the largest
    share of its requests; where the graph refuses past its limit, the one refusing most of
    all requests)."""
    if ev.refused_excess:
        return max(ev.node_latency_ms, key=lambda n: ev.node_refused_of_all.get(n, 0.0))
    return max(ev.node_latency_ms, key=ev.node_standing)


def _improves(trial: Evaluated, current: Evaluated) -> bool:
    """By more than 1 %: the share refused past the limit, the percentile, or where both
    are infinite the share refused."""
    if current.refused_excess:
        return trial.refused_excess < current.refused_excess * 0.99
    if math.isinf(trial.latency_ms) and math.isinf(current.latency_ms):
        return trial.refused_fraction < current.refused_fraction * 0.99
    return trial.latency_ms < current.latency_ms * 0.99


class MissedPrefixes:
    """Combinations the simulation would refuse, known without running it.

    A node's simulated requests depend only on the stages before it and its own: the
    simulator runs stages in topological order from one seeded generator, so two
    combinations that agree on every node up to this one's stage give it the very same
    latencies. When every request passes through the node, each one's end-to-end latency
    is at least its time there plus the ingress, so the graph's percentile is at least the
    node's plus the ingress: once that node's percentile is over `budget_ms` (the SLO less
    the ingress), every combination sharing that prefix misses the SLO too. On a bursty
    trace the per-node sizing (its densest stretch) can pass options the whole trace
    refuses, and the walk would otherwise simulate each of them with every option of every
    later node (the cascade of the cost check: 45 of 53 simulations). Likewise with a
    refusal limit: such a node's refusals are the graph's (none were refused before it), so
    once they pass `max_refused` every combination sharing the prefix refuses as many.
    """

    def __init__(
        self,
        topology: Topology,
        names: list[str],
        budget_ms: float,
        max_refused: float | None = None,
    ) -> None:
        position = {n: i for i, n in enumerate(names)}
        order = topology.nodes
        self._prefix = {
            n: tuple(position[m] for m in order[: order.index(n) + 1])
            for n in names
            if order.count(n) == 1
        }
        self._budget_ms = budget_ms
        self._max_refused = math.inf if max_refused is None else max_refused
        self._known: set[tuple[str, tuple[int, ...]]] = set()

    def _key(self, node: str, idx: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        return node, tuple(idx[i] for i in self._prefix[node])

    def holds(self, idx: tuple[int, ...]) -> bool:
        """Whether the combination at `idx` shares a prefix already seen to miss."""
        return any(self._key(n, idx) in self._known for n in self._prefix)

    def learn(self, idx: tuple[int, ...], ev: Evaluated) -> None:
        """Record the prefixes through which this evaluation's nodes alone miss the SLO."""
        for node in ev.on_every_path & self._prefix.keys():
            slow = ev.node_latency_ms.get(node, 0.0) > self._budget_ms + 1e-6
            if slow or ev.node_refused_fraction.get(node, 0.0) > self._max_refused:
                self._known.add(self._key(node, idx))


def _percent(share: float) -> str:
    """A share as a percentage to three significant figures (99.6 %, 0.19 %)."""
    return f"{share * 100:.3g}%"


def check_priced(profiles: ProfileSet, catalog: PriceCatalog) -> None:
    """Every class a profile was taken on must have a price, or no plan could cost it.

    Skipping such a class quietly would plan as if the user had not given that profile.
    """
    for prof in profiles.profiles:
        # The nodes' classes: a profile of nodes on different ones says "mixed" at the top.
        classes = {n.hardware_class for n in prof.nodes.values()}
        for hardware in sorted(classes - set(catalog.classes)):
            raise ProfileError(
                f"profile '{prof.source}'",
                f"was taken on hardware class '{hardware}', which the price catalog does not "
                f"have, so no plan can cost it: define '{hardware}' (vcpus, memory_gib, gpus, "
                "usd_per_hour) in a --catalog file, or profile on a class it has "
                f"({', '.join(sorted(catalog.classes))})",
            )


def densest(arrivals: np.ndarray, rows: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` consecutive arrivals that come closest together (the hardest stretch)."""
    if arrivals.size <= count:
        return arrivals, rows
    spans = arrivals[count - 1 :] - arrivals[: arrivals.size - count + 1]
    start = int(np.argmin(spans))
    return arrivals[start : start + count], rows[start : start + count]


def pareto_options(
    options: Sequence[Option], ties: int = TIES_PER_COST, refusals: bool = False
) -> list[Option]:
    """Options sorted by cost, keeping only those faster than every strictly cheaper one.

    At one cost (same class and replicas, another batch size or delay) up to `ties` options
    are kept, not only the fastest: a node's own percentile ranks them alone, but in the
    graph one a little slower alone can be the better neighbour (batch 1 hands its successor
    a smoother stream than batch 2). Checked against exhaustive search (`make bench-planner`,
    search part), keeping only the fastest missed the optimum in 4 of 59 small cases, each
    through such a tie. Options within `SAME_LATENCY` of each other behave alike alone: of
    such a group the fastest and the smallest batch (then delay) are kept, not its others.
    With `refusals` (a limit on the share refused), each cost also keeps the option refusing
    least where it refuses less than every option kept so far: the nodes' refusals add up in
    the graph, and a slower one that refuses nothing can be what keeps the sum in the limit.
    """
    front: list[Option] = []
    bar = math.inf  # the fastest option kept at a strictly lower cost
    calm = math.inf  # the least share refused by an option kept so far
    for level in _cost_levels(options):
        kept = [o for o in _distinct(level) if o.latency_ms < bar - 1e-9][:ties]
        if refusals:
            calm = min([calm, *(o.refused_fraction for o in kept)])
            calmest = min(level, key=lambda o: (o.refused_fraction, o.latency_ms))
            if calmest.refused_fraction < calm - 1e-12:
                kept.append(calmest)
                calm = calmest.refused_fraction
        front.extend(kept)
        bar = min([bar, *(o.latency_ms for o in kept)])
    return front


def _distinct(level: Sequence[Option]) -> list[Option]:
    """One cost's options, fastest first, with each group of alike ones cut to its fastest
    and its smallest batch (then delay): the smoothest stream for what follows."""
    groups: list[list[Option]] = []
    for opt in level:  # fastest first
        if groups and opt.latency_ms <= groups[-1][0].latency_ms * (1 + SAME_LATENCY):
            groups[-1].append(opt)
        else:
            groups.append([opt])
    out: list[Option] = []
    for group in groups:
        smallest = min(group, key=lambda o: (o.max_batch_size, o.max_batch_time_ms))
        out.extend([group[0]] if smallest is group[0] else [group[0], smallest])
    return out


def _cost_levels(options: Sequence[Option]) -> list[list[Option]]:
    """Options grouped by equal $/hour, cheapest group first, each fastest first."""
    levels: list[list[Option]] = []
    for opt in sorted(options, key=lambda o: (o.usd_per_hour, o.latency_ms)):
        if levels and opt.usd_per_hour <= levels[-1][0].usd_per_hour * (1 + 1e-9):
            levels[-1].append(opt)
        else:
            levels.append([opt])
    return levels
