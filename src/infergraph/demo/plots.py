"""The demo's two pictures: latency against throughput, and cost against latency.

Each says in its title what was served and where, puts the SLO inside the picture,
labels every measured rate, and uses a log scale only where latencies span more than a
decade (near saturation they do).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from async_load_tester.plots import pareto_front
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from async_load_tester import StepResult
from infergraph.demo.sweep import CARRIED, SATURATED_SLO, Slo, is_carried

Point = tuple[float, StepResult]  # offered rate, what it measured


def _log_if_wide(ax: Axes, values: list[float], axis: str) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _slo_ms(points: list[Point], slo: Slo) -> list[float]:
    return [p.percentile_ms(slo.percentile) or math.nan for _, p in points]


def latency_throughput(
    points: list[Point], slo: Slo, knee: Point | None, title: str, path: Path
) -> Path:
    """p50 / SLO percentile / p99 against served throughput, the knee and the SLO marked."""
    fig, ax = plt.subplots(figsize=(8, 5))
    served = [s.throughput_rps for _, s in points]
    lines = {"p50": [s.latency_ms["p50"] or math.nan for _, s in points]}
    lines[f"p{slo.percentile:g}"] = _slo_ms(points, slo)
    lines["p99"] = [s.latency_ms["p99"] or math.nan for _, s in points]
    for (label, ys), marker in zip(lines.items(), "os^", strict=True):
        ax.plot(served, ys, marker=marker, label=label)
    _mark_saturated(ax, points, served, lines["p99"])
    for (rate, step), y in zip(points, lines[f"p{slo.percentile:g}"], strict=True):
        ax.annotate(
            f"{rate:g}/s offered",
            (step.throughput_rps, y),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    top = max([*_finite(lines["p99"]), slo.latency_ms]) * 1.5
    ax.axhspan(slo.latency_ms, top, color="red", alpha=0.05, label="over the SLO")
    ax.axhline(
        slo.latency_ms,
        color="red",
        linestyle="--",
        label=f"SLO p{slo.percentile:g} {slo.latency_ms:g} ms",
    )
    if knee is not None:
        ax.axvline(
            knee[1].throughput_rps,
            color="grey",
            linestyle=":",
            label=f"knee {knee[1].throughput_rps:.1f} req/s",
        )
    _log_if_wide(ax, [v for ys in lines.values() for v in ys if math.isfinite(v)], "y")
    ax.set_xlabel("served throughput (requests/s)")
    ax.set_ylabel("latency from intended send (ms)")
    return _save(fig, ax, f"Latency vs throughput: {title}", path)


def _mark_saturated(ax: Axes, points: list[Point], xs: list[float], ys: list[float]) -> None:
    """A cross on each rate the graph did not keep up with (its latencies undercount)."""
    marked = [(x, y) for (_, s), x, y in zip(points, xs, ys, strict=True) if not is_carried(s)]
    if marked:
        ax.scatter(
            [x for x, _ in marked],
            [y for _, y in marked],
            s=140,
            marker="x",
            color="black",
            zorder=4,
            label=f"saturated: over {SATURATED_SLO:g}x the SLO, or under {CARRIED:.0%} answered",
        )


def front_points(points: list[Point], slo: Slo) -> list[Point]:
    """The carried rates no other carried rate beats on both $ per million and latency,
    cheapest first.

    A saturated rate is left out: its queue grew all through a step too short to show it,
    so its latency undercounts and its $ per million is not one the graph can be run at.
    """
    candidates: list[tuple[float, float, str]] = []
    for i, (_, step) in enumerate(points):
        cost, latency = step.usd_per_million, step.percentile_ms(slo.percentile)
        if cost is not None and latency is not None and is_carried(step):
            candidates.append((cost, latency, str(i)))
    return [points[int(i)] for _, _, i in pareto_front(candidates)]


def _xy(steps: list[StepResult], slo: Slo) -> tuple[list[float], list[float]]:
    """(latency at the SLO percentile, $ per million) per step; NaN where one was not measured."""
    xs = [math.nan if (x := s.percentile_ms(slo.percentile)) is None else x for s in steps]
    ys = [math.nan if s.usd_per_million is None else s.usd_per_million for s in steps]
    return xs, ys


def cost_latency(
    points: list[Point], slo: Slo, cheapest: Point | None, title: str, path: Path
) -> Path:
    """$ per million against latency at the SLO percentile, the Pareto front drawn through."""
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = _slo_ms(points, slo)
    ys = [s.usd_per_million if s.usd_per_million is not None else math.nan for _, s in points]
    carried = [is_carried(s) for _, s in points]
    ax.scatter(
        [x for x, c in zip(xs, carried, strict=True) if c],
        [y for y, c in zip(ys, carried, strict=True) if c],
        color="tab:blue",
        label="measured rate",
        zorder=3,
    )
    _mark_saturated(ax, points, xs, ys)
    for (rate, _), x, y in zip(points, xs, ys, strict=True):
        ax.annotate(f"{rate:g}/s", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = front_points(points, slo)
    if front:
        ax.plot(
            *_xy([s for _, s in front], slo),
            color="green",
            marker="o",
            label="Pareto front of the carried rates (cheapest for its latency)",
        )
    if cheapest is not None:
        ax.scatter(
            *_xy([cheapest[1]], slo),
            s=160,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            zorder=4,
            label=f"cheapest meeting the SLO ({cheapest[0]:g}/s)",
        )
    ax.axvline(
        slo.latency_ms,
        color="red",
        linestyle="--",
        label=f"SLO p{slo.percentile:g} {slo.latency_ms:g} ms",
    )
    _log_if_wide(ax, [x for x in xs if math.isfinite(x)], "x")
    _log_if_wide(ax, [y for y in ys if math.isfinite(y)], "y")
    ax.set_xlabel(f"p{slo.percentile:g} latency (ms)")
    ax.set_ylabel("$ per million inferences")
    return _save(fig, ax, f"Cost vs latency: {title}", path)


def _save(fig: Figure, ax: Axes, title: str, path: Path) -> Path:
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
