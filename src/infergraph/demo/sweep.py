"""Find the knee: probe the served graph, then sweep open-loop rates up to saturation.

Two short closed-loop probes come first: one request at a time (the unloaded latency,
which decides the demo's SLO) and a few at a time (roughly what the graph carries,
which places the rates). Each rate is then an open-loop Poisson run with its own
warm-up, long enough for a usable p95, and the sweep stops at the first rate the graph
no longer carries, so no step queues behind a saturated one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

from async_load_tester.schedule import Arrival

from async_load_tester import LoadConfig, StepResult, run_load
from infergraph.graph.model import InferenceGraph

# Offered rates as fractions of the probed capacity; the last ones straddle saturation. A
# closed loop at the probe's concurrency batches more than an open loop does, so the probe
# overstates what open-loop arrivals are carried at; the rates are dense in its lower half.
DEFAULT_FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.1)
MIN_RATES = 5  # fewer before saturation: bisect between the last carried and the first not
CARRIED = 0.95  # a rate is carried when at least this share of what was sent is answered
SATURATED_SLO = 3.0  # ... and its latency stays within this many times the SLO
KNEE_GROWTH = 2.0  # the knee: the last carried rate whose p95 is within 2x the lightest's


@dataclass(frozen=True)
class SweepSettings:
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    min_requests: int = 50  # per rate: enough for a p95 that means something
    min_step_s: float = 8.0
    max_step_s: float = 20.0
    warmup_s: float = 2.0
    probe_s: float = 6.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Slo:
    """The SLO the demo measures against, and the sentence that says why it was chosen."""

    latency_ms: float
    percentile: float
    reason: str


@dataclass
class Sweep:
    unloaded: StepResult
    capacity: StepResult
    slo: Slo
    rates: list[tuple[float, StepResult]] = field(default_factory=list)

    def carried(self) -> list[tuple[float, StepResult]]:
        return [(r, s) for r, s in self.rates if is_carried(s)]


def is_carried(step: StepResult) -> bool:
    """Whether the graph kept up: nearly every request sent in the step was answered in it,
    and its latency at the SLO's percentile stayed within `SATURATED_SLO` times the SLO.

    Answers are compared with what was sent, not with the nominal rate: a short Poisson
    step sends 10-15 % more or fewer requests than rate x seconds by chance alone. The
    latency bound catches a queue that grew all through a step too short to leave
    requests unanswered.
    """
    answered = step.sent > 0 and step.ok >= CARRIED * step.sent
    if not answered or step.error_count > 0.01 * step.sent:
        return False
    if step.slo_ms is None or step.slo_percentile is None:
        return True
    latency = step.percentile_ms(step.slo_percentile) or step.latency_ms["p99"] or 0.0
    return latency <= SATURATED_SLO * step.slo_ms


def payload_for(graph: InferenceGraph) -> tuple[str, str]:
    """(payload spec, input name): synthetic data of the kind the graph's first input takes."""
    first = graph.spec.inputs[0]
    kind = first.name if first.name in ("image", "text", "audio") else "image"
    return f"synthetic:{kind}", first.name


class LoadShape(TypedDict, total=False):
    """The LoadConfig fields a step varies: a closed loop (concurrency) or an open one (rate)."""

    concurrency: int
    rate: float
    arrival: Arrival
    duration: float
    seed: int


class Runner:
    """Runs one load step against the served graph with the demo's fixed settings."""

    def __init__(self, url: str, graph: InferenceGraph, priced_graph: Path, s: SweepSettings):
        self.url, self.graph, self.priced_graph, self.settings = url, graph, priced_graph, s

    def run(self, slo: Slo | None, **shape: Unpack[LoadShape]) -> StepResult:
        payload, input_name = payload_for(self.graph)
        config = LoadConfig(
            target=self.url,
            model=self.graph.name,
            payload=payload,
            input_name=input_name,
            warmup=self.settings.warmup_s,
            timeout_s=self.settings.timeout_s,
            graph=self.priced_graph,
            slo_ms=slo.latency_ms if slo else None,
            slo_percentile=slo.percentile if slo else None,
            progress=False,
            **shape,
        )
        return run_load(config).steps[-1]


def choose_slo(graph: InferenceGraph, unloaded: StepResult) -> Slo:
    """The graph's own SLO when this machine meets it unloaded with room to spare, else one
    it can meet: twice the unloaded latency at the SLO's percentile, rounded up."""
    own = graph.spec.slo
    percentile = own.percentile if own else 95.0
    measured = unloaded.percentile_ms(percentile) or unloaded.latency_ms["p99"] or 0.0
    if own and measured <= 0.6 * own.latency_ms:
        return Slo(
            own.latency_ms,
            percentile,
            f"the graph's own SLO: one request at a time takes p{percentile:g} "
            f"{measured:.0f} ms here, so there is room for queueing and batching",
        )
    target = nice_ceil(2.0 * measured)
    why = (
        "the graph declares no SLO"
        if own is None
        else (
            f"the graph's own {own.latency_ms:g} ms is for the GPU its file asks for; one request "
            f"at a time already takes p{percentile:g} {measured:.0f} ms on this machine"
        )
    )
    return Slo(target, percentile, f"{why}, so the demo allows twice that, rounded up")


def nice_ceil(ms: float) -> float:
    """Round up to 1, 2 or 5 times a power of ten (a target a person would write)."""
    if ms <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(ms))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if ms <= step * power + 1e-9:
            return step * power
    return 10.0 * power


def nice_nearest(value: float) -> float:
    """The 1, 2, 2.5 or 5 times a power of ten nearest `value` by ratio (a rate a person
    would write that is at most about 1.4x off, where rounding up can be 2x off)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    steps = [step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0)]
    return min(steps, key=lambda nice: abs(math.log(nice / value)))


def two_figures(value: float) -> float:
    """A rate a person would read: two significant figures (8.21 -> 8.2, 36.96 -> 37)."""
    if value <= 0:
        return 0.0
    return round(value, 1 - math.floor(math.log10(value)))


def step_seconds(rate: float, s: SweepSettings, unloaded_ms: float) -> float:
    """Long enough for `min_requests` (up to `max_step_s`), and never under ten unloaded
    request times: a request still in flight when its step ends is not counted, so a step
    barely longer than one request would show a slow graph as saturated."""
    wanted = min(max(s.min_requests / rate, s.min_step_s), s.max_step_s)
    return max(wanted, 10.0 * unloaded_ms / 1000.0)


def sweep(
    runner: Runner, probe_concurrency: int, tell: Callable[[str], None] | None = None
) -> Sweep:
    """Probe, choose the SLO, then run each rate until the graph stops carrying one."""
    s = runner.settings
    say = tell or (lambda _: None)
    say("probe: one request at a time")
    unloaded = runner.run(None, concurrency=1, duration=s.probe_s)
    slo = choose_slo(runner.graph, unloaded)
    say(f"probe: {probe_concurrency} requests at a time")
    capacity = runner.run(slo, concurrency=probe_concurrency, duration=s.probe_s)
    result = Sweep(unloaded=unloaded, capacity=capacity, slo=slo)
    top = max(capacity.throughput_rps, unloaded.throughput_rps, 0.1)
    for fraction in s.fractions:
        step = _at(runner, result, two_figures(top * fraction), say)
        if step is not None and not is_carried(step[1]):
            break
    while len(result.rates) < MIN_RATES and len(result.carried()) < len(result.rates):
        below = max((r for r, _ in result.carried()), default=0.0)
        above = min(r for r, st in result.rates if not is_carried(st))
        if _at(runner, result, two_figures((below + above) / 2), say) is None:
            break  # the midpoint rounds onto a rate already measured
    result.rates.sort(key=lambda p: p[0])
    return result


def _at(
    runner: Runner, result: Sweep, rate: float, say: Callable[[str], None]
) -> tuple[float, StepResult] | None:
    """Measure one offered rate (None: not positive, or already measured)."""
    s = runner.settings
    if rate <= 0 or any(rate == r for r, _ in result.rates):
        return None
    seconds = step_seconds(rate, s, result.unloaded.latency_ms["p95"] or 0.0)
    say(f"{rate:g} req/s for {seconds:.0f} s")
    step = runner.run(
        result.slo, rate=rate, arrival="poisson", duration=seconds, seed=len(result.rates)
    )
    result.rates.append((rate, step))
    return rate, step


def knee(result: Sweep) -> tuple[float, StepResult] | None:
    """The highest carried rate before p95 more than doubles over the lightest load's."""
    carried = result.carried()
    if not carried:
        return None
    floor = carried[0][1].latency_ms["p95"] or 0.0
    within = [(r, s) for r, s in carried if (s.latency_ms["p95"] or 0.0) <= KNEE_GROWTH * floor]
    return within[-1] if within else carried[0]


def cheapest_meeting_slo(result: Sweep) -> tuple[float, StepResult] | None:
    """The rate with the lowest $ per million among those that met the SLO."""
    passing = [
        (r, s)
        for r, s in result.carried()
        if s.meets_slo and s.usd_per_million is not None and math.isfinite(s.usd_per_million)
    ]
    return min(passing, key=lambda p: p[1].usd_per_million or math.inf) if passing else None


def limiting_node(step: StepResult, nodes: list[str]) -> tuple[str, float] | None:
    """The node that took the most of an average request's time, in ms per request.

    A node a cascade skips for some requests counts only the requests it ran for.
    """
    times = {}
    for n in nodes:
        stage = step.stages_ms.get(f"{n}.total_ms")
        if stage:
            times[n] = float(stage["mean"]) * stage["count"] / max(step.ok, 1)
    if not times:
        return None
    name = max(times, key=lambda n: times[n])
    return name, times[name]
