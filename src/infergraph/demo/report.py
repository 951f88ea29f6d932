"""What the demo shows a person: its tables, and the files it leaves in its folder.

Tables are sized for a 100-column terminal; every figure printed is also in
`sweep.json` / `summary.json`, so nothing on screen exists only there.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from async_load_tester import StepResult
from infergraph.demo.findings import Findings, json_safe
from infergraph.demo.sweep import Slo, Sweep, is_carried

STAGES = ("queue_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms")


def _ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.0f}"


def _usd(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"${value:,.2f}"


def sweep_table(result: Sweep, marks: dict[float, str]) -> Table:
    """One row per offered rate: what was served, its latency, $ per million, the verdict."""
    slo = result.slo
    p = f"p{slo.percentile:g}"
    table = Table(title=f"open-loop sweep (SLO: {p} <= {slo.latency_ms:g} ms)")
    for col in ("offered/s", "served/s", "p50 ms", f"{p} ms", "p99 ms", "errors", "$/million"):
        table.add_column(col, justify="right")
    table.add_column("verdict")
    for rate, step in result.rates:
        verdict = "[green]meets SLO[/]" if step.meets_slo else "[red]misses SLO[/]"
        if not is_carried(step):
            verdict = "[red]saturated[/]"
        table.add_row(
            f"{rate:g}",
            f"{step.throughput_rps:.2f}",
            _ms(step.latency_ms["p50"]),
            _ms(step.percentile_ms(slo.percentile)),
            _ms(step.latency_ms["p99"]),
            str(step.error_count),
            _usd(step.usd_per_million),
            verdict + (f" {marks[rate]}" if rate in marks else ""),
        )
    return table


def node_breakdown(step: StepResult, nodes: list[str]) -> dict[str, dict[str, float]]:
    """Per node: the share of requests it ran for, and its mean stage times (ms)."""
    out: dict[str, dict[str, float]] = {}
    for node in nodes:
        total = step.stages_ms.get(f"{node}.total_ms")
        if not total:
            continue
        row = {"ran_for": total["count"] / max(step.ok, 1)}
        for stage in STAGES:
            values = step.stages_ms.get(f"{node}.{stage}")
            row[stage] = float(values["mean"]) if values else math.nan
        out[node] = row
    return out


def breakdown_table(step: StepResult, nodes: list[str], where: str) -> Table:
    table = Table(title=f"where the time goes at {where}: mean ms per node pass")
    table.add_column("node")
    for col in ("ran for", "queue", "decode", "forward", "encode", "node total"):
        table.add_column(col, justify="right")
    for node, row in node_breakdown(step, nodes).items():
        table.add_row(
            node,
            f"{row['ran_for']:.0%}",
            *(f"{row[s]:.1f}" for s in STAGES),
        )
    return table


def step_row(rate: float, step: StepResult, slo: Slo) -> dict[str, float | int | bool | None]:
    return {
        "offered_rps": rate,
        "served_rps": step.throughput_rps,
        "sent": step.sent,
        "ok": step.ok,
        "errors": step.error_count,
        "p50_ms": step.latency_ms["p50"],
        f"p{slo.percentile:g}_ms": step.percentile_ms(slo.percentile),
        "p99_ms": step.latency_ms["p99"],
        "usd_per_million": step.usd_per_million,
        "meets_slo": step.meets_slo,
        "carried": is_carried(step),
        "late_or_dropped_pct": step.late_or_dropped_pct,
    }


def write_sweep(result: Sweep, found: Findings, out: Path) -> dict[str, Path]:
    """sweep.json (every step in full, probes included) and sweep.csv (one row per rate)."""
    slo = result.slo
    rows = [step_row(rate, step, slo) for rate, step in result.rates]
    data = {
        "slo": asdict(slo),
        "rows": rows,
        "knee": asdict(found.knee) if found.knee else None,
        "pareto_front": [asdict(p) for p in found.pareto_front],
        "probes": {
            "unloaded": _step_dict(result.unloaded),
            "capacity": _step_dict(result.capacity),
        },
        "steps": [{"offered_rps": r, **_step_dict(s)} for r, s in result.rates],
    }
    paths = {"sweep_json": out / "sweep.json", "sweep_csv": out / "sweep.csv"}
    paths["sweep_json"].write_text(json.dumps(json_safe(data), indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["offered_rps"])
    writer.writeheader()
    writer.writerows(rows)
    paths["sweep_csv"].write_text(buffer.getvalue())
    return paths


def _step_dict(step: StepResult) -> dict[str, object]:
    """A step as the load tester records it, less its encoded histogram."""
    return {k: v for k, v in asdict(step).items() if k != "histogram"}


README = """# demo-results

Written by `make demo` (`infergraph demo`) on {when}; a new run replaces this folder.
Everything here was measured on this machine: {machine}.

| file | what it is |
| --- | --- |
{rows}
"""

DESCRIPTIONS = {
    "summary.json": "the headline figures the last screen shows",
    "graph-as-run.yaml": "the graph exactly as served and priced: demo-size checkpoints, "
    "every node on one instance of the CPU class standing for this machine",
    "server.log": "the graph server's log (`infergraph serve`, MLServer)",
    "sweep.json": "every open-loop rate in full (latency percentiles, per-node stages, "
    "$ per million, SLO verdict), the probes, the knee and the SLO with why it was chosen",
    "sweep.csv": "one row per offered rate",
    "latency_throughput.png": "latency (p50, SLO percentile, p99) against served throughput",
    "cost_latency.png": "$ per million against latency, with the Pareto front of the rates "
    "the graph carried (saturated rates are crosses, off the front)",
    "profile.json": "each node's forward pass per batch size, hops and branch fractions, "
    "timed through the served graph's endpoints (`infergraph profile --endpoint`)",
    "plan": "`infergraph plan` on that profile: the planned graph, plan.json, pareto.png",
    "manifests/original": "the graph file as given, rendered for Seldon Core v2, v1 and KServe",
    "manifests/planned": "the planned graph rendered for the same three engines",
}


def write_readme(out: Path, when: str, machine: str) -> Path:
    """README.md naming each file the run left, and what it holds."""
    rows = [
        f"| `{name}` | {text} |" for name, text in DESCRIPTIONS.items() if (out / name).exists()
    ]
    path = out / "README.md"
    path.write_text(README.format(when=when, machine=machine, rows="\n".join(rows)))
    return path
