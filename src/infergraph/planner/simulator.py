"""Discrete-event simulation of a graph served by replicas of the runtime's micro-batcher.

The batcher modelled is `infergraph.serving.batcher.MicroBatcher`, as it behaves:

* one forward pass at a time per replica; when a pass ends the loop goes straight
  back to collecting;
* collecting takes the oldest waiting request at once (or waits for one), sets its
  deadline to *that moment* + max_batch_time, takes whatever else is queued and
  then whatever arrives before the deadline, and stops as soon as it holds
  max_batch_size rows (the request that crosses the limit still joins: a batch may
  overshoot, and is then run as consecutive passes of at most max_batch_size rows);
* with max_batch_time 0 it takes only what is already queued;
* every member of a batch gets its answer when the last pass of the batch ends.

A node may bound its queue (`batching.maxQueueRows`, `MicroBatcher._admit`): a request
that finds the rows waiting plus its own past the bound is refused at once; rows wait from
their arrival until their pass starts (a forming batch's rows count). A refused request is
never answered: its latency is infinite, it reaches no later stage, and it counts against
every percentile and the SLO's attainment.

Replicas of a node each run their own batcher; requests reach them round-robin
(a Kubernetes Service). A node may instead follow its autoscaler
(`planner.autoscaler`): then round-robin is over the replicas ready at each
arrival, and a request that finds none waits for the first to become ready.
Each node visit also costs a per-request `hop` (router to node and back, request
decoding, preprocessing), which is not queued: fixed, or log-normal around the
measured median with the spread its p99 showed, so requests may reach the batcher
in another order than they left the router. The answers then leave each replica
through its response path, one request at a time (`response_s` apiece, first come
first served; a request's own turn is in its hop): the members of a batch leave one
after another, so the time after the pass grows with the batch size and, through
queueing, with the rate.

The graph is a DAG of stages, so nodes are simulated one at a time in topological
order: a stage's arrivals are its dependencies' completions. That is exact for a
feed-forward network and keeps the simulation a tight loop over batches, which numba
compiles: a day of cluster traffic is tens of millions of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from infergraph.errors import MissingExtraError

try:
    import numba
except ModuleNotFoundError as exc:  # numba is the `planner` extra
    raise MissingExtraError("numba", "planner", "the planner's simulator") from exc

from infergraph.planner.autoscaler import ReplicaSchedule, ScalerModel, replay
from infergraph.planner.topology import Stage, Topology


@dataclass(frozen=True)
class ServiceModel:
    """Forward-pass time of a batch of b rows: log-normal, median `median_s[b-1]`, spread
    `sigma[b-1]`, each pass drawn independently (or from a node's known draws)."""

    median_s: tuple[float, ...]
    sigma: tuple[float, ...]

    @property
    def max_rows(self) -> int:
        return len(self.median_s)

    def median(self, b: int) -> float:
        return self.median_s[min(b, self.max_rows) - 1]

    @classmethod
    def constant(cls, seconds: Sequence[float]) -> ServiceModel:
        """Deterministic times (tests, and M/D/1-style checks)."""
        return cls(tuple(seconds), tuple(0.0 for _ in seconds))


@dataclass(frozen=True)
class NodeConfig:
    """How one node is deployed: its batcher settings, replicas and costs."""

    max_batch_size: int
    max_batch_time_s: float
    replicas: int
    service: ServiceModel
    hop_s: float = 0.0  # median per-request hop
    rows: tuple[tuple[int, float], ...] = ((1, 1.0),)  # rows per request -> probability
    schedule: ReplicaSchedule | None = None  # autoscaled: ready replicas over time
    hop_sigma: float = 0.0  # log-normal spread of the hop (0: every request pays hop_s)
    # Standard-normal draws of the passes' log-time deviations in pass order, the same for
    # every replica: a node whose draws are known (the controlled benchmark node's seeded
    # sequence), so a check compares the queueing model on the very passes that were served.
    # None: fresh draws from the run's generator.
    draws: np.ndarray | None = None
    # Per-request time of the replica's response path (answer handed to the loop, output
    # assembled and encoded, read by the router), one request at a time: the members of a
    # batch, which all finish together, leave one after another (`respond_in_turn`).
    response_s: float = 0.0
    # The forward thread's time from one pass's end to the next pass's start when requests
    # wait: handing the answers over and collecting the next batch (the profile measures it
    # through the real batcher). It delays the next pass, not the answers of the last.
    turnaround_s: float = 0.0
    # Rows that may wait for a pass (the node's batching.maxQueueRows); None: no bound.
    max_queue_rows: int | None = None


@dataclass
class NodeRun:
    """One node's simulated visits: latency (queue + batch + hop) and busy time."""

    latency_s: np.ndarray
    busy_s: float
    batches: int
    rows: int
    forward_per_request_s: float = 0.0  # mean forward time of each answered request's batch
    replica_seconds: float = 0.0  # billed pod time; 0: static replicas over the whole horizon
    response_per_request_s: float = 0.0  # mean time from the pass's end to an answer leaving
    refused: int = 0  # requests its queue bound refused (their latency is infinite)


@dataclass
class SimResult:
    latency_s: np.ndarray  # end to end, per request
    nodes: dict[str, NodeRun]
    horizon_s: float
    stage_done: dict[str, np.ndarray] = field(default_factory=dict)

    def percentile_ms(self, p: float) -> float:
        return percentile_s(self.latency_s, p) * 1000.0

    def node_percentile_ms(self, node: str, p: float) -> float:
        return percentile_s(self.nodes[node].latency_s, p) * 1000.0

    def node_answered_percentile_ms(self, node: str, p: float) -> float:
        """The node's percentile over the requests it answered (what was in flight there)."""
        latency = self.nodes[node].latency_s
        return percentile_s(latency[np.isfinite(latency)], p) * 1000.0

    @property
    def refused_fraction(self) -> float:
        """The share of requests a node's queue bound refused (never answered)."""
        if not self.latency_s.size:
            return 0.0
        return float(np.mean(~np.isfinite(self.latency_s)))

    def utilisation(self, node: str, replicas: int) -> float:
        return self.nodes[node].busy_s / self.replica_seconds(node, replicas)

    def replica_seconds(self, node: str, replicas: int) -> float:
        """Pod time the node held: its autoscaled billing, or static replicas throughout."""
        return self.nodes[node].replica_seconds or self.horizon_s * max(replicas, 1)

    def mean_replicas(self, node: str, replicas: int) -> float:
        return self.replica_seconds(node, replicas) / self.horizon_s

    def attainment(self, slo_ms: float) -> float:
        if not self.latency_s.size:
            return 1.0
        return float(np.mean(self.latency_s * 1000.0 <= slo_ms + 1e-9))


def percentile_s(latency_s: np.ndarray, p: float) -> float:
    """numpy's (linear) percentile, where a refused request (infinite latency) ranks after
    every answered one: infinite once the percentile's position passes the last answer.
    numpy's own interpolation turns infinities into NaN, so they stand in as the largest
    answer, which the interpolation then never reaches past."""
    if not latency_s.size:
        return 0.0
    answered = np.isfinite(latency_s)
    if answered.all():
        return float(np.percentile(latency_s, p))
    count = int(np.count_nonzero(answered))
    if not count or p / 100.0 * (latency_s.size - 1) > count - 1:
        return math.inf
    return float(np.percentile(np.where(answered, latency_s, latency_s[answered].max()), p))


def run_batcher(
    arrivals: Sequence[float] | np.ndarray,
    rows: Sequence[int] | np.ndarray,
    max_batch_size: int,
    max_batch_time_s: float,
    service: ServiceModel,
    noise: np.ndarray,
    single_rows: bool = False,
    turnaround_s: float = 0.0,
    max_queue_rows: int | None = None,
) -> tuple[np.ndarray, float, int, float]:
    """One replica's batcher over time-ordered arrivals: completion time of each request.

    `noise` holds standard-normal draws, one per forward pass (reused cyclically if short).
    `single_rows` says every request holds one row (skips the row bookkeeping).
    `turnaround_s` passes between one pass's end and the next one's start (`NodeConfig`).
    `max_queue_rows` bounds the rows waiting: a refused request completes at infinity.
    Returns (completion times, busy seconds, batches, summed forward time of each request's
    batch).
    """
    times = np.asarray(arrivals, dtype=np.float64)
    counts = np.asarray(rows, dtype=np.int64)
    if single_rows:
        counts = np.ones(times.size, dtype=np.int64)
    done = np.empty(times.size, dtype=np.float64)
    law = (
        np.asarray(service.median_s, dtype=np.float64),
        np.asarray(service.sigma, dtype=np.float64),
        np.asarray(noise, dtype=np.float64) if noise.size else np.zeros(1),
    )
    knobs = (max(1, max_batch_size), float(max_batch_time_s), float(turnaround_s))
    busy, batches, per_request = _replica_loop(
        times, counts, single_rows, done, law, knobs, max_queue_rows or 0
    )
    return done, busy, batches, per_request


# A node's pass times: (median seconds by rows, log-normal spread by rows, the passes'
# standard-normal draws in order); and its batcher: (rows a pass, batch delay s, turnaround s).
PassLaw = tuple[np.ndarray, np.ndarray, np.ndarray]
Knobs = tuple[int, float, float]


@numba.njit(cache=True, nogil=True)
def _replica_loop(
    arrivals: np.ndarray,
    rows: np.ndarray,
    ones: bool,
    done: np.ndarray,
    law: PassLaw,
    knobs: Knobs,
    limit: int,
) -> tuple[float, int, float]:
    """One replica's batcher: bounded by `limit` rows waiting (> 0), else unbounded."""
    if limit > 0:
        return _bounded_batch_loop(arrivals, rows, done, law, knobs, limit)
    cum = np.zeros(arrivals.size + 1, dtype=np.int64)
    if not ones:
        cum[1:] = np.cumsum(rows)
    return _batch_loop(arrivals, cum, ones, done, law, knobs)


@numba.njit(cache=True, nogil=True)
def _batch_loop(
    arrivals: np.ndarray, cum: np.ndarray, ones: bool, done: np.ndarray, law: PassLaw, knobs: Knobs
) -> tuple[float, int, float]:
    """The batcher's loop, one iteration per batch, compiled (a trace is millions of batches).

    `cum[i]` is the rows held by requests 0..i-1 (unused when every request holds one row).
    Each pass's log-time deviation is the next draw of the law's.
    Fills `done` and returns (busy seconds, forward passes, summed per-request forward time).
    """
    cap, max_batch_time_s, turnaround_s = knobs
    n = arrivals.size
    free = 0.0
    busy = 0.0
    per_request = 0.0
    batches = 0
    i = 0
    while i < n:
        t0 = max(arrivals[i], free)
        deadline = t0 + max_batch_time_s
        # full: the smallest j such that requests i..j-1 hold >= cap rows (the crossing one joins).
        full = i + cap if ones else i + 1 + np.searchsorted(cum[i + 1 :], cum[i] + cap)
        if full <= n:
            by_time = i + 1 + np.searchsorted(arrivals[i + 1 : full], deadline, side="right")
            if by_time == full:
                j = full
                start = max(arrivals[j - 1], t0)
            else:
                j, start = by_time, deadline
        else:
            j = i + 1 + np.searchsorted(arrivals[i + 1 :], deadline, side="right")
            start = deadline
        total = j - i if ones else cum[j] - cum[i]
        service_s, passes = _pass_time(total, cap, law, batches)
        batches += passes
        end = start + service_s
        busy += service_s
        per_request += service_s * (j - i)
        done[i:j] = end
        free = end + turnaround_s
        i = j
    return busy, batches, per_request


@numba.njit(cache=True, nogil=True)
def _pass_time(total: int, cap: int, law: PassLaw, first: int) -> tuple[float, int]:
    """A batch of `total` rows run as passes of at most `cap`: (seconds, passes), the
    passes drawing the law's deviations from position `first` on."""
    medians, sigmas, z = law
    top = medians.size
    seconds = 0.0
    passes = 0
    while total > 0:
        b = min(total, cap)
        k = min(b, top) - 1
        dev = z[(first + passes) % z.size]
        seconds += medians[k] * (b / (k + 1)) * math.exp(sigmas[k] * dev)
        total -= b
        passes += 1
    return seconds, passes


@numba.njit(cache=True, nogil=True)
def _admit(
    k: int, rows: np.ndarray, limit: int, queue: np.ndarray, tail: int, waiting: int,
    done: np.ndarray,
) -> tuple[int, int, bool]:  # fmt: skip
    """Queue request `k` unless its rows would take those waiting past `limit`; a refused
    one completes at infinity. Returns (tail, waiting, admitted)."""
    if waiting + rows[k] > limit:
        done[k] = math.inf
        return tail, waiting, False
    queue[tail] = k
    return tail + 1, waiting + rows[k], True


@numba.njit(cache=True, nogil=True)
def _bounded_collect(
    arrivals: np.ndarray, rows: np.ndarray, cap: int, max_batch_time_s: float, limit: int,
    queue: np.ndarray, head: int, tail: int, waiting: int, k: int, t0: float, done: np.ndarray,
) -> tuple[int, int, int, int, int, float]:  # fmt: skip
    """The batch the batcher takes at `t0` from `queue[head:tail]`, then from arrivals until
    its deadline, each admitted against the rows waiting (the forming batch's included).
    Returns (its end in the queue, tail, waiting, next arrival, rows, start)."""
    j, taken = head, 0
    while j < tail and taken < cap:
        taken += rows[queue[j]]
        j += 1
    if taken >= cap:
        return j, tail, waiting, k, taken, t0
    deadline = t0 + max_batch_time_s  # every queued request joined: wait for more
    while k < arrivals.size and arrivals[k] <= deadline:
        tail, waiting, admitted = _admit(k, rows, limit, queue, tail, waiting, done)
        k += 1
        if admitted:
            taken += rows[k - 1]
            j = tail
            if taken >= cap:
                return j, tail, waiting, k, taken, max(arrivals[k - 1], t0)
    return j, tail, waiting, k, taken, deadline


@numba.njit(cache=True, nogil=True)
def _bounded_batch_loop(
    arrivals: np.ndarray, rows: np.ndarray, done: np.ndarray, law: PassLaw, knobs: Knobs, limit: int
) -> tuple[float, int, float]:
    """`_batch_loop` with the queue bounded at `limit` rows (`MicroBatcher._admit`).

    Each arrival is admitted, in time order, against the rows then waiting: those admitted
    before it whose pass has not started (a forming batch's included: `_run_group` releases
    rows when their pass starts). A refused request completes at infinity.
    """
    cap, max_batch_time_s, turnaround_s = knobs
    n = arrivals.size
    queue = np.empty(n, dtype=np.int64)  # admitted requests not yet in a started pass
    head, tail, waiting, k = 0, 0, 0, 0  # k: the next arrival to admit or refuse
    free, busy, per_request, batches = 0.0, 0.0, 0.0, 0
    while k < n or head < tail:
        if head == tail:  # nothing waits: the next arrival meets an empty queue
            tail, waiting, _ = _admit(k, rows, limit, queue, tail, waiting, done)
            k += 1
            continue
        t0 = max(arrivals[queue[head]], free)
        while k < n and arrivals[k] <= t0:  # queued while the replica was busy
            tail, waiting, _ = _admit(k, rows, limit, queue, tail, waiting, done)
            k += 1
        j, tail, waiting, k, taken, start = _bounded_collect(
            arrivals, rows, cap, max_batch_time_s, limit, queue, head, tail, waiting, k, t0,
            done,
        )  # fmt: skip
        service_s, passes = _pass_time(taken, cap, law, batches)
        batches += passes
        end = start + service_s
        busy += service_s
        per_request += service_s * (j - head)
        for m in range(head, j):  # their pass started: they wait no more
            done[queue[m]] = end
            waiting -= rows[queue[m]]
        head = j
        free = end + turnaround_s
    return busy, batches, per_request


@numba.njit(cache=True, nogil=True)
def _fifo(done: np.ndarray, each_s: float) -> np.ndarray:
    """Departures of a single first-come first-served server taking `each_s` per request,
    for requests ready at `done` (ascending); a refused one (infinite) takes no turn."""
    out = done.copy()
    free = -np.inf
    for k in range(done.size):
        if math.isfinite(done[k]):
            free = max(done[k], free) + each_s
            out[k] = free
    return out


def respond_in_turn(done: np.ndarray, each_s: float) -> np.ndarray:
    """When each request's answer leaves a replica whose response path serves one request
    at a time, `each_s` apiece: a batch's members finish together and leave `each_s` apart
    (in arrival order), and at a high rate answers queue for that path as for any server.

    Only the wait for the path counts here: a request's own turn on it is part of its hop,
    which the profile measures (a lone answer leaves as its pass ends). The router reports
    the wait as hop too, which therefore grows with the batch size and the rate (the
    controlled check, issue 28); a fixed hop alone under-predicts every batched row."""
    if each_s <= 0 or not done.size:
        return done
    order = np.argsort(done, kind="stable")
    out = np.empty_like(done)
    out[order] = _fifo(done[order], float(each_s)) - each_s
    return out


def _assign(t_in: np.ndarray, config: NodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Which replica each (time-sorted) request goes to, and when it can reach one."""
    if config.schedule is None:
        replicas = max(1, config.replicas)
        return np.arange(t_in.size) % replicas, t_in
    steps, ready = config.schedule.times, config.schedule.ready
    return _walk_schedule(
        np.asarray(steps, dtype=np.float64), np.asarray(ready, dtype=np.int64), t_in
    )


@numba.njit(cache=True, nogil=True)
def _walk_schedule(
    steps: np.ndarray, ready: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`_assign` under a schedule for time-sorted `t`, in one pass with pointers into its
    steps: what `next_ready` and `ready_at` give, without a binary search and three
    temporaries per request (a day's ten million requests took seconds a node).

    A request reaches a pod at `t`, or at the first step at or after it with ready pods
    (never: at `t`, the last pod serves it), and goes round-robin over the pods ready then.
    """
    n, m = t.size, steps.size
    next_up = np.full(m + 1, m)  # the first step at or after i with ready pods
    for i in range(m - 1, -1, -1):
        next_up[i] = i if ready[i] > 0 else next_up[i + 1]
    replica = np.empty(n, dtype=np.int64)
    reach = np.empty(n)
    at, after, at_reach = -1, 0, -1  # last step <= t; first step >= t; last step <= reach
    for j in range(n):
        while at + 1 < m and steps[at + 1] <= t[j]:
            at += 1
        while after < m and steps[after] < t[j]:
            after += 1
        r = t[j]
        if not (at >= 0 and ready[at] > 0) and next_up[after] < m:
            r = steps[next_up[after]]
        while at_reach + 1 < m and steps[at_reach + 1] <= r:
            at_reach += 1
        pods = ready[at_reach] if at_reach >= 0 else 0
        reach[j] = r
        replica[j] = j % max(pods, 1)
    return replica, reach


def _groups(replica: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Requests grouped by replica: positions (ascending within each replica) and each
    replica's start among them (`starts[r]:starts[r + 1]`).

    One stable sort of the replica numbers (a radix sort at 16 bits), not a scan of every
    request per replica: a day's trace of ten million requests over sixty replicas made
    that scan most of a plan's time."""
    if not replica.size:
        return np.empty(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    narrow = replica.astype(np.uint16 if replica.max() < 2**16 else np.uint32)
    order = np.argsort(narrow, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(narrow)))).astype(np.int64)
    return order, starts


def _group_draws(
    rng: np.random.Generator, starts: np.ndarray, config: NodeConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(draws, each replica's first draw, how many it has), in replica order: the node's
    known draws for every replica, or fresh ones, one per pass and at least 64, for each
    replica that got requests, taken in one call (the generator's stream is the same,
    split or whole)."""
    counts = np.diff(starts)
    if config.draws is not None and config.draws.size:
        sizes = np.where(counts > 0, config.draws.size, 0)
        return config.draws, np.zeros(counts.size, dtype=np.int64), sizes
    sizes = np.where(counts > 0, np.maximum(64, counts), 0)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    return rng.standard_normal(int(sizes.sum())), offsets, sizes


@numba.njit(cache=True, nogil=True)
def _serve_groups(
    order: np.ndarray,
    starts: np.ndarray,
    t_in: np.ndarray,
    r_in: np.ndarray,
    ones: bool,
    cap: int,
    max_batch_time_s: float,
    medians: np.ndarray,
    sigmas: np.ndarray,
    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
    turnaround_s: float,
    response_s: float,
    done_out: np.ndarray,
    limit: int,
) -> tuple[float, int, float, float]:
    """Every replica's batcher and response path in one compiled call (a Python loop per
    replica cost more than the batching itself on plans of dozens of replicas). Fills
    `done_out` (by position) and returns (busy s, passes, summed per-request forward s,
    summed response-path wait s)."""
    z_all, z_first, z_count = draws
    busy, passes, per_request, responding = 0.0, 0, 0.0, 0.0
    for g in range(starts.size - 1):
        idx = order[starts[g] : starts[g + 1]]
        if idx.size == 0:
            continue
        done = np.empty(idx.size)
        law = (medians, sigmas, z_all[z_first[g] : z_first[g] + z_count[g]])
        b, n, pr = _replica_loop(
            t_in[idx], r_in[idx], ones, done, law, (cap, max_batch_time_s, turnaround_s), limit
        )
        busy, passes, per_request = busy + b, passes + n, per_request + pr
        left = _fifo(done, response_s) - response_s if response_s > 0 else done
        if limit > 0:  # a refused request (infinite) waited for no answer
            answered = np.isfinite(done)
            responding += np.sum(left[answered] - done[answered])
        else:
            responding += np.sum(left - done)
        done_out[idx] = left
    return busy, passes, per_request, responding


def simulate_node(
    arrivals: np.ndarray, rows: np.ndarray, config: NodeConfig, rng: np.random.Generator
) -> tuple[np.ndarray, NodeRun]:
    """Completion times for requests reaching a node at `arrivals` (any order)."""
    hop = config.hop_s
    if config.hop_sigma > 0 and hop > 0:
        hop = hop * np.exp(config.hop_sigma * rng.standard_normal(arrivals.size))
    reached = arrivals + hop
    order = np.argsort(reached, kind="stable")
    replica, t_in = _assign(reached[order], config)
    r_in = rows[order].astype(np.int64, copy=False)
    done_sorted = np.empty_like(t_in)
    groups, starts = _groups(replica)
    busy, batches, per_request, responding = _serve_groups(
        groups,
        starts,
        t_in,
        r_in,
        bool((r_in == 1).all()),
        max(1, config.max_batch_size),
        float(config.max_batch_time_s),
        np.asarray(config.service.median_s, dtype=np.float64),
        np.asarray(config.service.sigma, dtype=np.float64),
        _group_draws(rng, starts, config),
        float(config.turnaround_s),
        float(config.response_s),
        done_sorted,
        config.max_queue_rows or 0,
    )
    done_out = np.empty_like(done_sorted)
    done_out[order] = done_sorted
    refused = int(np.count_nonzero(~np.isfinite(done_out)))
    answered = max(arrivals.size - refused, 1)  # the means are over the requests served
    run = NodeRun(
        done_out - arrivals,
        busy,
        batches,
        int(rows.sum()),
        per_request / answered,
        config.schedule.replica_seconds if config.schedule is not None else 0.0,
        responding / answered,
        refused,
    )
    return done_out, run


def sample_rows(dist: Sequence[tuple[int, float]], n: int, rng: np.random.Generator) -> np.ndarray:
    values = np.array([r for r, _ in dist], dtype=np.int64)
    weights = np.array([w for _, w in dist], dtype=float)
    if values.size == 1:
        return np.full(n, values[0], dtype=np.int64)
    return rng.choice(values, size=n, p=weights / weights.sum())


def gate_decisions(
    topology: Topology, n: int, branch_then: Mapping[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Which of `n` requests take each gate's `then` side: the first draws of a run.

    `simulate` draws them before anything else from a generator seeded with its seed, so
    the search can size a gated node on exactly the requests the whole-graph run sends it.
    """
    return {g: rng.random(n) < branch_then.get(g, 1.0) for g in topology.gates}


def reaches(stage: Stage, taken: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """The requests whose gate decisions lead to `stage` (all of them for an ungated one)."""
    active = np.ones(n, dtype=bool)
    for gate, side in stage.branch:
        active &= taken[gate] if side == "then" else ~taken[gate]
    return active


def simulate(
    topology: Topology,
    configs: Mapping[str, NodeConfig],
    arrivals_s: np.ndarray,
    branch_then: Mapping[str, float],
    ingress_s: float = 0.0,
    seed: int = 0,
    scalers: Mapping[str, ScalerModel] | None = None,
) -> SimResult:
    """Run every request through the graph; latency from its arrival to the last stage's end.

    Nodes named in `scalers` follow their autoscaler over the run instead of a fixed count.
    """
    rng = np.random.default_rng(seed)
    n = arrivals_s.size
    begin = float(arrivals_s.min()) if n else 0.0
    horizon_end = float(arrivals_s.max()) if n else 0.0
    taken = gate_decisions(topology, n, branch_then, rng)
    done: dict[str, np.ndarray] = {}
    runs: dict[str, NodeRun] = {}
    finish = arrivals_s.copy()
    for stage in topology.stages:
        ready = arrivals_s.copy()
        for dep in stage.depends_on:
            np.maximum(ready, done[dep], out=ready)
        # A request refused upstream (infinitely late) reaches no later stage.
        active = reaches(stage, taken, n) & np.isfinite(ready)
        end = ready.copy()
        if stage.node is not None:
            config = configs[stage.node]
            rows = sample_rows(config.rows, n, rng)
            active &= rows > 0  # a zero-row input skips the node
            idx = np.flatnonzero(active)
            if scalers and stage.node in scalers:
                # Stable (timsort): a node's ready times come nearly in order, and sorted
                # runs cost one pass; the default introsort took most of a replay's time.
                schedule = replay(
                    scalers[stage.node],
                    np.sort(ready[idx], kind="stable"),
                    begin,
                    max(horizon_end, begin + 1),
                )
                config = replace(config, schedule=schedule)
            node_done, run = simulate_node(ready[idx], rows[idx], config, rng)
            end[idx] = node_done
            runs[stage.node] = run
        done[stage.name] = end
        np.maximum(finish, end, out=finish)
    horizon = float(arrivals_s.max() - arrivals_s.min()) if n > 1 else 1.0
    latency = finish - arrivals_s + ingress_s
    return SimResult(latency, runs, max(horizon, 1e-9), done)


def poisson_arrivals(rate: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals at a constant rate."""
    count = rng.poisson(rate * duration_s)
    return np.sort(rng.uniform(0.0, duration_s, size=count))


def trace_arrivals(
    counts: Sequence[float], rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    """Per-second counts -> arrival times, Poisson within each second (as the load tester does)."""
    parts = []
    for second, count in enumerate(counts):
        k = rng.poisson(count * scale)
        parts.append(second + np.sort(rng.uniform(0.0, 1.0, size=k)))
    return np.concatenate(parts) if parts else np.empty(0)
