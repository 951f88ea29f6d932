"""PNG plots (matplotlib, Agg backend): latency CDF, throughput vs latency, cost vs latency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from async_load_tester.results import RunResult, StepResult


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (cost, latency, label) not beaten on both cost and latency by another point."""
    finite = sorted(
        (p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])),
        key=lambda p: (p[0], p[1]),
    )
    front: list[tuple[float, float, str]] = []
    best_latency = math.inf
    for point in finite:
        if point[1] < best_latency:
            front.append(point)
            best_latency = point[1]
    return front


def write_plots(result: RunResult, out: Path) -> dict[str, Path]:
    """Write the plots the run has data for into `out`; returns them by name.

    Steps without a successful request have no latencies to draw and are left out; the cost
    plot is written only when some step has a finite $/1M (a run with a graph and prices).
    """
    steps = [s for s in result.steps if s.ok > 0]
    if not steps:
        return {}
    title = f"{result.target.get('model')} ({result.target.get('protocol')})"
    slo = result.steps[0].slo_ms
    paths = {
        "latency_cdf": _latency_cdf(steps, title, slo, out / "latency_cdf.png"),
        "throughput_latency": _throughput_latency(
            steps, title, slo, out / "throughput_latency.png"
        ),
    }
    costed = [
        s for s in steps if s.usd_per_million is not None and math.isfinite(s.usd_per_million)
    ]
    if costed:
        paths["cost_latency"] = _cost_latency(costed, title, slo, out / "cost_latency.png")
    return paths


def _save(fig: Figure, path: Path) -> Path:
    """Lay out, write and close one figure: closing frees it (pyplot keeps every open figure)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_cdf(steps: list[StepResult], title: str, slo: float | None, path: Path) -> Path:
    """One CDF line per step on a log axis: tails spread over decades read best there."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in steps:
        xs = [max(x, 1e-3) for x, _ in s.cdf]  # a log axis cannot show 0 ms
        ys = [y for _, y in s.cdf]
        ax.plot(xs, ys, label=s.label)
    if slo:
        ax.axvline(slo, color="red", linestyle="--", label=f"SLO {slo:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, from intended send time)")
    ax.set_ylabel("fraction of successful requests")
    ax.set_title(f"Latency CDF: {title}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _throughput_latency(steps: list[StepResult], title: str, slo: float | None, path: Path) -> Path:
    """p50/p95/p99 against achieved throughput, each point named: where latency turns up."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tps = [s.throughput_rps for s in steps]
    for key, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
        ax.plot(tps, [_ms(s, key) for s in steps], marker=marker, label=key)
    for s in steps:
        ax.annotate(s.label, (s.throughput_rps, s.latency_ms["p95"] or 0), fontsize=7)
    if slo:
        ax.axhline(slo, color="red", linestyle="--", label=f"SLO {slo:g} ms")
    ax.set_xlabel("throughput (successful req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Throughput vs latency: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _ms(step: StepResult, key: str) -> float:
    """A step's latency percentile, NaN where no request succeeded (matplotlib leaves a gap)."""
    value = step.latency_ms.get(key)
    return math.nan if value is None else value


def _cost_latency(costed: list[StepResult], title: str, slo: float | None, path: Path) -> Path:
    """$/1M against p95 per step, with the Pareto front: the configurations worth choosing."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(s.usd_per_million or math.nan, _ms(s, "p95"), s.label) for s in costed]
    ax.scatter([p[1] for p in points], [p[0] for p in points], label="measured")
    for cost, p95, label in points:
        ax.annotate(label, (p95, cost), fontsize=7)
    front = pareto_front(points)
    if front:
        ax.plot(
            [p[1] for p in front],
            [p[0] for p in front],
            color="green",
            marker="o",
            label="Pareto front",
        )
    if slo:
        ax.axvline(slo, color="red", linestyle="--", label=f"SLO {slo:g} ms")
    ax.set_xlabel("p95 latency (ms)")
    ax.set_ylabel("$ per 1M inferences")
    ax.set_title(f"Cost vs latency: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
