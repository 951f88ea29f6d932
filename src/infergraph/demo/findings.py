"""What a demo run measured and decided: the summary screen and `summary.json` read this.

Each step fills its own fields; a run stopped early leaves the later ones at their
defaults, so the summary of a partial run says how far it got.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from async_load_tester import StepResult
from infergraph.demo.cores import CorePlan
from infergraph.demo.sweep import Slo


@dataclass(frozen=True)
class RatePoint:
    """One measured offered rate, as the summary reports it."""

    offered_rps: float
    served_rps: float
    latency_ms: float | None  # at the SLO's percentile
    usd_per_million: float | None

    @classmethod
    def at(cls, rate: float, step: StepResult, percentile: float) -> RatePoint:
        return cls(rate, step.throughput_rps, step.percentile_ms(percentile), step.usd_per_million)

    @classmethod
    def of(cls, point: tuple[float, StepResult] | None, percentile: float) -> RatePoint | None:
        return None if point is None else cls.at(*point, percentile)


@dataclass(frozen=True)
class PlannedNode:
    hardware: str
    max_batch_size: int
    max_batch_time_ms: float
    replicas: int


@dataclass(frozen=True)
class PlanSummary:
    """The planner's answer for the stated rate."""

    rate_rps: float
    predicted_ms: float  # at the SLO's percentile
    attainment: float
    usd_per_hour: float
    usd_per_million: float
    nodes: dict[str, PlannedNode]
    graph: str  # the planned graph file


@dataclass(frozen=True)
class EnginePrice:
    """A graph's hourly price on one engine at its replicas (what the operator's
    `status.pricePerHour` would say), or why its pods have none there."""

    usd_per_hour: float | None
    added_usd_per_hour: float | None  # over its nodes' own resources: sidecars, own pods
    problem: str | None = None  # a pod that does not fit its class on this engine


@dataclass
class Findings:
    graph: str
    hardware: str
    scale: str = ""
    cores: CorePlan | None = None  # the CPUs the server and the load generator ran on
    checkpoints_swapped: dict[str, dict[str, str]] = field(default_factory=dict)
    usd_per_hour_as_run: float = 0.0
    ready_s: float = 0.0
    slo: Slo | None = None
    rates: list[float] = field(default_factory=list)
    knee: RatePoint | None = None
    cheapest_meeting_slo: RatePoint | None = None
    limiting_node: str | None = None  # when no rate met the SLO
    stages_at_knee: dict[str, dict[str, float]] = field(default_factory=dict)
    pareto_front: list[RatePoint] = field(default_factory=list)
    plan_rate_rps: float | None = None
    plan: PlanSummary | None = None
    plan_error: str | None = None
    manifests: dict[str, list[str]] = field(default_factory=dict)
    priced_on_engines: str | None = None  # the graph file `on_engines` prices
    on_engines: dict[str, EnginePrice] = field(default_factory=dict)
    seconds: float = 0.0
    complete: bool = False

    def write(self, path: Path, when: str) -> Path:
        """summary.json: every field, non-finite numbers as null."""
        data = {"when": when, **asdict(self)}
        path.write_text(json.dumps(json_safe(data), indent=2))
        return path


def json_safe(value: object) -> object:
    """The value with NaN and infinities as null: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
