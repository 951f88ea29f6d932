"""What the rendered autoscaler does to a node's replicas over a workload.

The planner sizes each node for the busiest window; between peaks the autoscaler
runs fewer replicas, and during a ramp it lags the load. Replaying it over the
node's simulated arrivals gives a plan's real cost (replica-seconds, not peak
replicas around the clock) and an SLO attainment that includes the lag.

The replay follows the Kubernetes HPA controller, which KEDA also drives
(kubernetes `pkg/controller/podautoscaler/horizontal.go` and `replica_calculator.go`),
with the settings `render/autoscaling.py` writes:

* every `sync_s` the metric is read: the node's request rate over the last
  `window_s` (the rendered `rate(...[1m])`); desired = ceil(rate / target per
  replica), left unchanged while usage / target is within the 10 % tolerance;
* scale-up takes the newest recommendation (stabilisation window 0), scale-down
  the largest of the last `stabilisation_s` (the node's `cooldownSeconds`);
* rate limits as rendered: up by at most 2 pods per 30 s, down by at most half per 60 s;
* bounds min..max; with min 0 (KEDA) a node with no traffic goes to zero and the
  first request asks for one replica (activation);
* a new pod takes traffic `startup_s` after it is asked for (scheduling, image,
  model load) and is billed from the ask; a removed pod, the newest first, stops
  taking traffic at once and finishes what it holds (the drainer).

Every metric is replayed as a request rate: the tuner derives each target (rps,
utilisation, in flight, queue) from the same per-replica rate at the planned
peak, and the first three are proportional to it. A queue target is not (queues
grow sharply only near saturation), so for it the replay is an approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UP_PODS, UP_PERIOD_S = 2, 30.0  # render/autoscaling.py `_behavior` scaleUp policy
DOWN_FRACTION, DOWN_PERIOD_S = 0.5, 60.0  # ... and its scaleDown policy
TOLERANCE = 0.1  # the HPA controller's default --horizontal-pod-autoscaler-tolerance
RATE_WINDOW_S = 60  # the rendered queries' rate(...[1m])


@dataclass(frozen=True)
class ScalerModel:
    """One node's autoscaler: its per-replica target (as a rate) and its bounds and timings."""

    per_replica_rps: float
    min_replicas: int
    max_replicas: int
    stabilisation_s: float = 300.0
    startup_s: float = 60.0
    sync_s: float = 15.0  # KEDA pollingInterval as rendered; the HPA's default sync period
    window_s: float = RATE_WINDOW_S


@dataclass(frozen=True)
class ReplicaSchedule:
    """Ready replicas as a step function of time, and the pod-seconds billed."""

    times: np.ndarray  # change points, ascending
    ready: np.ndarray  # ready replicas from times[i] on
    replica_seconds: float
    peak: int

    def ready_at(self, t: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.times, t, side="right") - 1
        return np.where(pos >= 0, self.ready[np.maximum(pos, 0)], 0)

    def next_ready(self, t: np.ndarray) -> np.ndarray:
        """The first time at or after each `t` with a ready replica (inf if never)."""
        up = np.flatnonzero(self.ready > 0)
        if not up.size:
            return np.full(t.shape, np.inf)
        starts = self.times[up]
        pos = np.searchsorted(starts, t, side="left")
        shifted = np.where(pos < starts.size, starts[np.minimum(pos, starts.size - 1)], np.inf)
        return np.where(self.ready_at(t) > 0, t, shifted)


@dataclass
class _Pods:
    """Pods as a stack (the newest is removed first): ask time and removal time each."""

    asked: list[float]
    removed: list[float]
    live: list[int]  # indices of live pods, oldest first

    def count(self) -> int:
        return len(self.live)

    def add(self, t: float) -> None:
        self.live.append(len(self.asked))
        self.asked.append(t)
        self.removed.append(math.inf)

    def remove(self, t: float) -> None:
        self.removed[self.live.pop()] = t


def _recommend(model: ScalerModel, current: int, rate: float) -> int:
    if current == 0:
        wanted = 0 if rate <= 0 else max(1, math.ceil(rate / model.per_replica_rps))
    elif abs(rate / current / model.per_replica_rps - 1.0) <= TOLERANCE:
        wanted = current
    else:
        wanted = math.ceil(rate / model.per_replica_rps - 1e-9)
    floor = model.min_replicas if rate <= 0 else max(model.min_replicas, 1)
    return min(model.max_replicas, max(floor, wanted))


def _settled(model: ScalerModel, rate: float) -> int:
    """Where an HPA at `rate` rests: the fewest replicas whose usage is within tolerance."""
    if rate <= 0:
        return model.min_replicas
    wanted = math.ceil(rate / (model.per_replica_rps * (1.0 + TOLERANCE)) - 1e-9)
    return min(model.max_replicas, max(model.min_replicas, 1, wanted))


def _limited(current: int, desired: int, changes: list[tuple[float, int]], t: float) -> int:
    """Apply the rendered rate limits, counting the changes of the last period."""
    if desired > current:
        added = sum(d for when, d in changes if d > 0 and when > t - UP_PERIOD_S)
        return min(desired, current - added + UP_PODS)
    if desired < current:
        removed = -sum(d for when, d in changes if d < 0 and when > t - DOWN_PERIOD_S)
        return max(desired, math.ceil((current + removed) * (1.0 - DOWN_FRACTION)))
    return current


def replay(model: ScalerModel, arrivals: np.ndarray, start: float, end: float) -> ReplicaSchedule:
    """Replicas over [start, end] for a node that receives `arrivals` (sorted, seconds)."""
    if model.per_replica_rps <= 0:
        raise ValueError("per-replica target must be positive")
    first = float(np.searchsorted(arrivals, start + model.window_s) / model.window_s)
    steady = _settled(model, first)
    pods = _Pods([], [], [])
    for _ in range(steady):
        pods.add(start - model.startup_s)  # in steady state at the start: already ready
    history: list[tuple[float, int]] = []
    changes: list[tuple[float, int]] = []
    t = start + model.sync_s
    while t <= end:
        lo, hi = np.searchsorted(arrivals, [t - model.window_s, t], side="right")
        rate = (hi - lo) / min(model.window_s, max(t - start, model.sync_s))
        current = pods.count()
        history.append((t, _recommend(model, current, rate)))
        history = [(w, r) for w, r in history if w > t - model.stabilisation_s]
        newest = history[-1][1]  # scale up: the newest; down: the largest in the window
        desired = newest if newest > current else min(current, max(r for _, r in history))
        desired = _limited(current, desired, changes, t)
        for _ in range(desired - current):
            pods.add(t)
        for _ in range(current - desired):
            pods.remove(t)
        if desired != current:
            changes.append((t, desired - current))
            changes = [(w, d) for w, d in changes if w > t - max(UP_PERIOD_S, DOWN_PERIOD_S)]
        t += model.sync_s
    return _schedule(pods, model.startup_s, start, end)


def _schedule(pods: _Pods, startup_s: float, start: float, end: float) -> ReplicaSchedule:
    events: dict[float, int] = {start: 0}
    billed = 0.0
    for asked, removed in zip(pods.asked, pods.removed, strict=True):
        billed += max(0.0, min(removed, end) - max(asked, start))
        ready = max(asked + startup_s, start)
        if ready < removed:
            events[ready] = events.get(ready, 0) + 1
            if removed < math.inf:
                events[removed] = events.get(removed, 0) - 1
    times = np.array(sorted(events))
    ready_counts = np.cumsum([events[t] for t in times])
    peak = int(ready_counts.max(initial=0))
    return ReplicaSchedule(times, ready_counts.astype(np.int64), billed, peak)
