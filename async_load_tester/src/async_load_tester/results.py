"""Results: one row per measured step, the run's settings, target, versions and machine."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import math
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.table import Table

from async_load_tester.engine import REFUSAL_KINDS, StepOutcome
from async_load_tester.recorder import (
    cdf_points,
    encode_histogram,
    histogram_summary,
    stage_summary,
)

_PACKAGES = (
    "async-load-tester",
    "infergraph",
    "uvloop",
    "grpcio",
    "protobuf",
    "orjson",
    "hdrhistogram",
    "aiohttp",
    "matplotlib",
)


@dataclass
class StepResult:
    """One measured step (an open-loop schedule or one concurrency level)."""

    label: str
    mode: str
    concurrency: int | None
    offered_rps: float | None
    sent: int
    ok: int
    errors: dict[str, int]
    error_samples: dict[str, str]
    late: int
    dropped: int
    max_late_ms: float
    in_flight_abandoned: int
    elapsed_s: float
    throughput_rps: float
    latency_ms: dict[str, float | None]
    service_ms: dict[str, float | None]
    slo_ms: float | None
    slo_percentile: float | None
    slo_attainment: float | None
    meets_slo: bool | None
    stages_ms: dict[str, dict[str, Any]]
    usd_per_million: float | None
    cdf: list[tuple[float, float]] = field(default_factory=list)
    histogram: str = ""
    window_s: float | None = None  # what throughput divides by; None: elapsed_s (--requests)
    # Answers of an overloaded server (`engine.REFUSAL_KINDS`), of `errors`; and the most, in
    # percent of the requests sent, the SLO allows (None: only the percentile limits them).
    # Defaults: results written before they were recorded still load.
    refused: int = 0
    max_refused_pct: float | None = None

    @classmethod
    def from_outcome(
        cls,
        label: str,
        mode: str,
        outcome: StepOutcome,
        *,
        concurrency: int | None,
        offered_rps: float | None,
        slo_ms: float | None,
        slo_percentile: float | None,
        usd_per_hour: float | None,
        max_refused_pct: float | None = None,
    ) -> StepResult:
        rec = outcome.recorder
        throughput = _throughput(outcome)
        attainment = rec.within_slo / rec.sent if slo_ms is not None and rec.sent else None
        refused = sum(rec.errors.get(kind, 0) for kind in REFUSAL_KINDS)
        meets = None
        if attainment is not None and slo_percentile is not None:
            meets = attainment >= slo_percentile / 100.0 - 1e-12
            if max_refused_pct is not None and rec.sent:
                meets = meets and 100.0 * refused / rec.sent <= max_refused_pct + 1e-9
        cost = None
        if usd_per_hour is not None:
            from infergraph.cost import usd_per_million

            cost = usd_per_million(usd_per_hour, throughput)
        return cls(
            label=label,
            mode=mode,
            concurrency=concurrency,
            offered_rps=offered_rps,
            sent=rec.sent,
            ok=rec.ok,
            errors=dict(sorted(rec.errors.items())),
            error_samples=dict(rec.error_samples),
            late=rec.late,
            dropped=rec.dropped,
            max_late_ms=rec.max_late_s * 1000.0,
            in_flight_abandoned=outcome.in_flight_abandoned,
            elapsed_s=outcome.elapsed_s,
            throughput_rps=throughput,
            latency_ms=histogram_summary(rec.hist),
            service_ms=histogram_summary(rec.service_hist),
            slo_ms=slo_ms,
            slo_percentile=slo_percentile,
            slo_attainment=attainment,
            meets_slo=meets,
            refused=refused,
            max_refused_pct=max_refused_pct,
            stages_ms=stage_summary(rec.stages),
            usd_per_million=cost,
            cdf=cdf_points(rec.hist),
            histogram=encode_histogram(rec.hist),
            window_s=outcome.window_s,
        )

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def refused_fraction(self) -> float:
        """The share of the requests sent that an overloaded server refused."""
        return self.refused / self.sent if self.sent else 0.0

    @property
    def late_or_dropped_pct(self) -> float:
        return 100.0 * (self.late + self.dropped) / self.sent if self.sent else 0.0

    def percentile_ms(self, p: float) -> float | None:
        key = f"p{p:g}"
        if key in self.latency_ms:
            return self.latency_ms[key]
        return None


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def _step_cells(s: StepResult, best: bool) -> list[str]:
    """A step's cells of the summary table up to its latencies (`best`: marked *)."""
    errors = ", ".join(f"{k}={v}" for k, v in s.errors.items()) or "0"
    return [
        s.label + (" *" if best else ""),
        str(s.sent),
        str(s.ok),
        errors,
        str(s.late),
        str(s.dropped),
        f"{s.throughput_rps:.1f}",
        *(_ms(s.latency_ms[k]) for k in ("p50", "p90", "p95", "p99", "p99.9", "max")),
    ]


def _throughput(outcome: StepOutcome) -> float:
    """Successes per second of the step's measurement window.

    A step with a fixed window counts the answers that landed inside it (warm-up requests'
    included) over its length, as perf_analyzer does: dividing the measured requests by the
    time to their last answer would stretch the window by a latency and bias throughput, and
    $/1M with it, low. A --requests step has no fixed window: its successes over the time
    from its start to its last answer.
    """
    rec = outcome.recorder
    if outcome.window_s is not None and outcome.window_s > 0:
        return rec.window_ok / outcome.window_s
    return rec.ok / outcome.elapsed_s if outcome.elapsed_s > 0 else 0.0


def environment() -> dict[str, Any]:
    """Versions and machine facts every result carries, so numbers can be compared fairly."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cpu_model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "versions": versions,
    }


@dataclass
class RunResult:
    """A whole run: settings, target, environment, cost basis and every step."""

    config: dict[str, Any]
    target: dict[str, Any]
    environment: dict[str, Any]
    started_at: str
    finished_at: str = ""
    graph_cost: dict[str, Any] | None = None
    steps: list[StepResult] = field(default_factory=list)
    sweep: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @staticmethod
    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="seconds")

    # ------------------------------------------------------------------ outputs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for step in data["steps"]:
            cost = step.get("usd_per_million")
            if cost is not None and not math.isfinite(cost):
                step["usd_per_million"] = None
        return data

    def to_json(self) -> str:
        return orjson.dumps(
            self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
        ).decode()

    CSV_FIELDS = (
        "label",
        "mode",
        "concurrency",
        "offered_rps",
        "sent",
        "ok",
        "errors",
        "refused",
        "late",
        "dropped",
        "throughput_rps",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p99.9_ms",
        "max_ms",
        "mean_ms",
        "slo_attainment",
        "meets_slo",
        "usd_per_million",
        "error_kinds",
    )

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.CSV_FIELDS)
        writer.writeheader()
        for s in self.steps:
            lat = s.latency_ms
            writer.writerow(
                {
                    "label": s.label,
                    "mode": s.mode,
                    "concurrency": s.concurrency,
                    "offered_rps": s.offered_rps,
                    "sent": s.sent,
                    "ok": s.ok,
                    "errors": s.error_count,
                    "refused": s.refused,
                    "late": s.late,
                    "dropped": s.dropped,
                    "throughput_rps": round(s.throughput_rps, 3),
                    "p50_ms": lat["p50"],
                    "p90_ms": lat["p90"],
                    "p95_ms": lat["p95"],
                    "p99_ms": lat["p99"],
                    "p99.9_ms": lat["p99.9"],
                    "max_ms": lat["max"],
                    "mean_ms": lat["mean"],
                    "slo_attainment": s.slo_attainment,
                    "meets_slo": s.meets_slo,
                    "usd_per_million": s.usd_per_million,
                    "error_kinds": ";".join(f"{k}={v}" for k, v in s.errors.items()),
                }
            )
        return out.getvalue()

    def write(self, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
        """results.json, results.csv and (unless disabled) PNG plots under `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "results.json", "csv": out / "results.csv"}
        paths["json"].write_text(self.to_json())
        paths["csv"].write_text(self.to_csv())
        if plots:
            from async_load_tester.plots import write_plots

            paths.update(write_plots(self, out))
        return paths

    def summary_table(self) -> Table:
        """A rich table, one row per step."""
        table = Table(
            title=f"{self.target.get('model')} @ {self.target.get('url')} "
            f"({self.target.get('protocol')})"
        )
        for col in (
            "step",
            "sent",
            "ok",
            "errors",
            "late",
            "drop",
            "req/s",
            "p50",
            "p90",
            "p95",
            "p99",
            "p99.9",
            "max",
        ):
            table.add_column(col, justify="right")
        has_slo = any(s.slo_attainment is not None for s in self.steps)
        has_cost = any(s.usd_per_million is not None for s in self.steps)
        limits = {s.max_refused_pct for s in self.steps if s.max_refused_pct is not None}
        if has_slo:
            table.add_column("SLO ok", justify="right")
        if has_slo and limits:
            table.add_column(f"refused (<= {min(limits):g}%)", justify="right")
        if has_cost:
            table.add_column("$/1M", justify="right")
        best = (self.sweep or {}).get("best")
        for s in self.steps:
            row = _step_cells(s, best == s.label)
            if has_slo:
                row.append("-" if s.slo_attainment is None else f"{100 * s.slo_attainment:.1f}%")
            if has_slo and limits:
                row.append(f"{100 * s.refused_fraction:.2f}%")
            if has_cost:
                cost = s.usd_per_million
                row.append("-" if cost is None or not math.isfinite(cost) else f"{cost:.4f}")
            table.add_row(*row)
        table.caption = "latency in ms from each request's intended send time" + (
            "; * cheapest step meeting the SLO" if best else ""
        )
        return table

    def stages_table(self) -> Table | None:
        rows = [(s.label, name, st) for s in self.steps for name, st in s.stages_ms.items()]
        if not rows:
            return None
        table = Table(title="per-stage timings reported by the target (ms)")
        for col in ("step", "stage", "count", "mean", "p50", "p95", "p99"):
            table.add_column(col, justify="right")
        for label, name, st in rows:
            table.add_row(
                label,
                name,
                str(st["count"]),
                *(f"{st[k]:.3f}" for k in ("mean", "p50", "p95", "p99")),
            )
        return table
