"""Run a configured load (one step, a concurrency range or an SLO sweep) and collect results.

Sweep: cost per million inferences on a fixed deployment is its hourly price over
its throughput, so the cheapest setting that meets the SLO is the highest-
throughput one whose SLO attainment holds. Concurrency doubles from 1 until
throughput gains fall under 2% (saturation: more concurrency only adds queueing)
or the SLO breaks; if it broke, bisection between the last passing and the
first failing level finds the highest passing concurrency. Every measured level
goes into the Pareto front of $/1M against p95.

The 2% rule compares throughputs counted the same way at every level: answers that land
inside the step's fixed window over its length (`results._throughput`). Dividing by the
time to the last answer instead would stretch each window by a latency, and latency grows
with concurrency, so the gains would shrink by more than the server's and a sweep stop early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import uvloop

from async_load_tester.config import LoadConfig
from async_load_tester.engine import Endpoint, GrpcDriver, HttpDriver, ProgressFn, StepPlan
from async_load_tester.errors import ConfigError
from async_load_tester.payloads import load_payload_source
from async_load_tester.plots import pareto_front
from async_load_tester.protocols.encode import (
    check_grpc,
    check_seldon_json,
    check_v2_json,
    encode_all,
)
from async_load_tester.recorder import Recorder
from async_load_tester.results import RunResult, StepResult, environment
from async_load_tester.schedule import Schedule, arrival_chunks, with_warmup

if TYPE_CHECKING:
    from infergraph.cost import GraphCost, PriceCatalog
    from infergraph.graph.model import InferenceGraph

SATURATION_GAIN = 0.02
MAX_BISECTIONS = 4

StepHook = Callable[[str, StepPlan], ProgressFn | None]


class Prepared:
    """Everything computed once before load: payload wires, endpoint, cost basis."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config.validated()
        scheme, host, port, _ = config.endpoint()
        self.endpoint = Endpoint(host, port, scheme in ("https", "grpcs"), host, config.insecure)
        source = load_payload_source(config.payload, config.input_name, config.seed)
        payloads = source.payloads
        self.payloads_available = source.available
        self.notes = [note] if (note := source.cap_note(config.payload)) else []
        self.wires = [
            e.wire
            for e in encode_all(
                payloads,
                config.protocol,
                model=config.model,
                version=config.model_version,
                path=config.path(),
                host=config.host_header(),
                headers=config.headers,
                parameters=config.request_parameters,
            )
        ]
        self.graph_cost: Any = None
        self.slo_ms = config.slo_ms
        self.slo_percentile = config.slo_percentile
        self.max_refused_pct = config.max_refused_pct
        if config.graph is not None:
            from infergraph.cost import load_catalog
            from infergraph.graph.plan import load_graph

            graph = load_graph(config.graph)
            catalog = load_catalog(config.catalog, config.prices)
            self.graph_cost = _priced(graph, catalog, config)
            if graph.spec.slo is not None:
                self.slo_ms = self.slo_ms or graph.spec.slo.latency_ms
                self.slo_percentile = self.slo_percentile or graph.spec.slo.percentile
                if self.max_refused_pct is None:
                    self.max_refused_pct = graph.spec.slo.max_refused_percent
        if self.slo_ms is not None and self.slo_percentile is None:
            self.slo_percentile = 95.0
        if self.max_refused_pct is not None and self.slo_ms is None:
            raise ConfigError(
                "--max-refused-pct",
                "limits the refusals of a step that meets an SLO: give --slo-ms, or a --graph "
                "with spec.slo",
            )
        self.schedule = config.parsed_schedule() if config.open_loop else None
        if config.protocol == "v2-grpc":
            self.checker = lambda body, _json_len: check_grpc(body)
        elif config.protocol == "seldon-rest":
            self.checker = check_seldon_json
        else:
            self.checker = check_v2_json

    def driver(self, recorder: Recorder) -> HttpDriver | GrpcDriver:
        c = self.config
        common: dict[str, Any] = {
            "timeout_s": c.timeout_s,
            "max_in_flight": c.max_in_flight,
            "late_s": c.late_ms / 1000.0,
            "checker": self.checker,
            "check_every": c.check_every,
            "track_stages": c.stages,
        }
        if c.protocol == "v2-grpc":
            metadata = [(k.lower(), v) for k, v in c.headers.items() if k.lower() != "host"]
            authority = next((v for k, v in c.headers.items() if k.lower() == "host"), None)
            return GrpcDriver(
                self.endpoint,
                self.wires,
                recorder,
                channels=c.grpc_channels,
                metadata=metadata,
                authority=authority,
                **common,
            )
        return HttpDriver(self.endpoint, self.wires, recorder, connections=c.connections, **common)

    def target(self) -> dict[str, Any]:
        c = self.config
        return {
            "url": c.target,
            "model": c.model,
            "protocol": c.protocol,
            "path": c.path() or None,
            "payloads": len(self.wires),
            "payloads_available": self.payloads_available,
            "payload_bytes": [len(w) for w in self.wires[:8]],
        }


async def _measure(prep: Prepared, plan: StepPlan, label: str, hook: StepHook | None) -> StepResult:
    slo_us = int(prep.slo_ms * 1000) if prep.slo_ms is not None else None
    recorder = Recorder(slo_us=slo_us)
    driver = prep.driver(recorder)
    progress = hook(label, plan) if hook else None
    outcome = await driver.run(plan, progress)
    offered = None
    if plan.mode == "open" and prep.schedule is not None:
        offered = prep.schedule.expected_requests / prep.schedule.duration
    return StepResult.from_outcome(
        label,
        plan.mode,
        outcome,
        concurrency=plan.concurrency if plan.mode == "closed" else None,
        offered_rps=offered,
        slo_ms=prep.slo_ms,
        slo_percentile=prep.slo_percentile,
        max_refused_pct=prep.max_refused_pct,
        usd_per_hour=prep.graph_cost.usd_per_hour if prep.graph_cost is not None else None,
    )


def _closed_plan(c: LoadConfig, concurrency: int) -> StepPlan:
    return StepPlan(
        "closed",
        c.warmup,
        c.duration if c.requests is None else None,
        c.requests,
        concurrency=concurrency,
        seed=c.seed,
    )


def _open_plan(c: LoadConfig, sched: Schedule) -> StepPlan:
    """The schedule's own length bounds the step: `parsed_schedule` already chose it (--duration
    for a rate or ramp, long enough for every send with --requests, a step or trace spec's
    sum), so --requests N is not cut off at --duration, as it is not in closed loop."""
    return StepPlan(
        "open",
        c.warmup,
        sched.duration,
        c.requests,
        segments=with_warmup(sched, c.warmup),
        arrival=c.arrival,
        seed=c.seed,
    )


def intended_sends(config: LoadConfig) -> npt.NDArray[np.float64]:
    """When an open-loop run of `config` means to send each request: seconds from its start,
    warm-up included (a run measures those at `config.warmup` or later).

    The same seeded draw the run makes, so a model of the target (a queueing simulator) can
    be fed exactly the arrivals the real target saw. A `requests` limit is not applied.
    """
    c = config.validated()
    if not c.open_loop:
        raise ConfigError("--rate/--schedule", "a closed-loop run has no intended send times")
    plan = _open_plan(c, c.parsed_schedule())
    chunks = [np.asarray(chunk) for chunk in arrival_chunks(plan.segments, plan.arrival, c.seed)]
    return np.concatenate(chunks) if chunks else np.empty(0)


async def run_load_async(config: LoadConfig, hook: StepHook | None = None) -> RunResult:
    """Run `config` on the current event loop (use `run_load` from synchronous code)."""
    prep = Prepared(config)
    c = prep.config
    result = RunResult(
        config=c.recorded(),
        target=prep.target(),
        environment=environment(),
        started_at=RunResult.now(),
        graph_cost=prep.graph_cost.to_dict() if prep.graph_cost is not None else None,
    )
    result.environment["event_loop"] = type(asyncio.get_running_loop()).__module__
    result.warnings.extend(prep.notes)
    if prep.schedule is not None:
        sched = prep.schedule
        plan = _open_plan(c, sched)
        label = (
            f"{sched.expected_requests / sched.duration:g}/s" if c.rate else (c.schedule or "open")
        )
        result.steps.append(await _measure(prep, plan, label, hook))
    elif c.sweep:
        result.sweep = await _sweep(prep, result, hook)
    else:
        for level in c.concurrency_levels():
            result.steps.append(await _measure(prep, _closed_plan(c, level), f"c={level}", hook))
    if result.steps and all(s.ok == 0 for s in result.steps):
        result.warnings.append("no request succeeded: check the target, model name and protocol")
    for s in result.steps:
        if s.sent and s.late_or_dropped_pct >= 1.0:
            result.warnings.append(
                f"{s.label}: {s.late_or_dropped_pct:.1f}% of sends were late or dropped; "
                "the tester (or its machine) could not hold the schedule, "
                "so latencies include its own delay"
            )
    if result.sweep is None and any(s.usd_per_million is not None for s in result.steps):
        result.sweep = _front(result.steps)
    result.finished_at = RunResult.now()
    return result


def _front(steps: list[StepResult]) -> dict[str, Any]:
    points = [
        (cost, p95, s.label)
        for s in steps
        if (cost := s.usd_per_million) is not None and (p95 := s.latency_ms["p95"]) is not None
    ]
    front = pareto_front(points)
    passing = [s for s in steps if s.meets_slo]
    best = None
    if passing:
        if all(s.usd_per_million is not None for s in passing):
            best = min(passing, key=lambda s: s.usd_per_million).label  # type: ignore[arg-type, return-value]
        else:
            best = max(passing, key=lambda s: s.throughput_rps).label
    return {
        "best": best,
        "pareto_front": [{"label": lbl, "usd_per_million": c, "p95_ms": p} for c, p, lbl in front],
    }


async def _sweep(prep: Prepared, result: RunResult, hook: StepHook | None) -> dict[str, Any]:
    c = prep.config
    measured: dict[int, StepResult] = {}

    async def at(level: int) -> StepResult:
        if level not in measured:
            measured[level] = await _measure(prep, _closed_plan(c, level), f"c={level}", hook)
            result.steps.append(measured[level])
        return measured[level]

    level, last_pass, first_fail, previous = 1, None, None, None
    reason = "reached --sweep-max-concurrency"
    while level <= c.sweep_max_concurrency:
        step = await at(level)
        if not step.meets_slo:
            first_fail, reason = level, "SLO broke"
            break
        last_pass = level
        if previous is not None and step.throughput_rps < previous.throughput_rps * (
            1 + SATURATION_GAIN
        ):
            reason = f"throughput gain under {SATURATION_GAIN:.0%} (saturated)"
            break
        previous, level = step, level * 2
    bisections = 0
    if last_pass is not None and first_fail is not None:
        lo, hi = last_pass, first_fail
        while hi - lo > 1 and bisections < MAX_BISECTIONS:
            mid = (lo + hi) // 2
            bisections += 1
            if (await at(mid)).meets_slo:
                lo = mid
            else:
                hi = mid
    result.steps.sort(key=lambda s: s.concurrency or 0)
    summary = _front(result.steps)
    summary.update({"stopped_because": reason, "bisections": bisections})
    if summary["best"] is None:
        result.warnings.append(
            f"no concurrency level met the SLO ({prep.slo_ms:g} ms at p{prep.slo_percentile:g})"
        )
    return summary


def run_load(config: LoadConfig, hook: StepHook | None = None) -> RunResult:
    """Run a load test to completion on a fresh uvloop event loop and return its results.

    Example (what `make demo` does against the local graph runner):

        result = run_load(LoadConfig(target="http://127.0.0.1:8080", model="cascade",
                                     payload="synthetic:image", rate=50, duration=30,
                                     graph=Path("k8s/graphs/cascade.yaml"), slo_ms=200))
        console.print(result.summary_table()); Path("r.json").write_text(result.to_json())
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("run_load", "called inside a running event loop; await run_load_async()")
    return uvloop.run(run_load_async(config, hook))


def _priced(graph: InferenceGraph, catalog: PriceCatalog, config: LoadConfig) -> GraphCost:
    """The graph's hourly cost: its nodes' resources, or with `--engine` the pods that engine
    runs for it (sidecars and its own pods included; `infergraph.cost.engine_cost`)."""
    from infergraph.cost import engine_cost, graph_cost

    if config.engine is None:
        return graph_cost(graph, catalog, config.default_hardware, config.replica_mode)
    from infergraph.render import engine_pods

    pods = engine_pods(graph, config.engine)
    return engine_cost(
        graph, config.engine, pods, catalog, config.default_hardware, config.replica_mode
    )
