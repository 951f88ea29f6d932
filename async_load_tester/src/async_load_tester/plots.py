"""PNG plots (matplotlib, Agg backend): latency CDF, throughput vs latency, cost vs latency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from async_load_tester.results import RunResult


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
    paths: dict[str, Path] = {}
    steps = [s for s in result.steps if s.ok > 0]
    if not steps:
        return paths
    title = f"{result.target.get('model')} ({result.target.get('protocol')})"
    slo = result.steps[0].slo_ms

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in steps:
        xs = [max(x, 1e-3) for x, _ in s.cdf]
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
    paths["latency_cdf"] = out / "latency_cdf.png"
    fig.tight_layout()
    fig.savefig(paths["latency_cdf"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    tps = [s.throughput_rps for s in steps]
    for key, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
        ax.plot(tps, [s.latency_ms[key] for s in steps], marker=marker, label=key)
    for s in steps:
        ax.annotate(s.label, (s.throughput_rps, s.latency_ms["p95"] or 0), fontsize=7)
    if slo:
        ax.axhline(slo, color="red", linestyle="--", label=f"SLO {slo:g} ms")
    ax.set_xlabel("throughput (successful req/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"Throughput vs latency: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    paths["throughput_latency"] = out / "throughput_latency.png"
    fig.tight_layout()
    fig.savefig(paths["throughput_latency"], dpi=110)
    plt.close(fig)

    costed = [
        s for s in steps if s.usd_per_million is not None and math.isfinite(s.usd_per_million)
    ]
    if costed:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        points = [(s.usd_per_million, s.latency_ms["p95"], s.label) for s in costed]
        ax.scatter([p[1] for p in points], [p[0] for p in points], label="measured")
        for cost, p95, label in points:
            ax.annotate(label, (p95, cost), fontsize=7)
        front = pareto_front([(c, p, lbl) for c, p, lbl in points if p is not None])
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
        paths["cost_latency"] = out / "cost_latency.png"
        fig.tight_layout()
        fig.savefig(paths["cost_latency"], dpi=110)
        plt.close(fig)
    return paths
