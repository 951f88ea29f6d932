"""The demo's steps, each printing its part and recording what it found in `Findings`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from infergraph.cost.pricing import PriceCatalog, graph_cost
from infergraph.demo import plots, report
from infergraph.demo.cores import cpu_list
from infergraph.demo.findings import Findings, RatePoint
from infergraph.demo.sizing import DEFAULT_HARDWARE, Scale, as_run, demo_sized, machine_cores
from infergraph.demo.sweep import (
    Runner,
    Sweep,
    SweepSettings,
    cheapest_meeting_slo,
    knee,
    limiting_node,
    sweep,
)
from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph


@dataclass(frozen=True)
class DemoSettings:
    graph_file: Path = Path("k8s/graphs/cascade.yaml")
    out: Path = Path("demo-results")
    scale: Scale = "demo"
    hardware: str = DEFAULT_HARDWARE
    plan_rate: float | None = None  # None: about ten times what the knee served
    sweep: SweepSettings = field(default_factory=SweepSettings)
    profile_repeats: int = 5
    profile_requests: int = 20
    ready_timeout_s: float = 900.0


def _write_graph(graph: InferenceGraph, path: Path) -> Path:
    path.write_text(yaml.safe_dump(graph.to_manifest(), sort_keys=False))
    return path


def serve_setup(
    settings: DemoSettings,
    graph: InferenceGraph,
    catalog: PriceCatalog,
    found: Findings,
    con: Console,
) -> tuple[Path, InferenceGraph]:
    """Step 1's preparation: the graph as the demo serves and prices it, written down."""
    sized, swaps = demo_sized(graph, settings.scale)
    served = as_run(sized, settings.hardware, catalog)
    path = _write_graph(served, settings.out / "graph-as-run.yaml")
    instance = catalog.get(settings.hardware)
    hourly = graph_cost(served, catalog).usd_per_hour
    con.rule(f"[bold]1. serve[/] '{graph.name}': {graph.spec.description}")
    con.print(
        "[bold yellow]RANDOM WEIGHTS: no model hub here, so every node is its real architecture "
        "with random weights. Outputs are meaningless; latency, throughput and cost are real.[/]"
    )
    for swap in swaps:
        con.print(
            f"  demo size: node '{swap.node}' serves {swap.served} instead of {swap.named} "
            "(same family, about a tenth of the compute; `--scale full` serves the file's)"
        )
    if settings.scale == "tiny":
        con.print("  tiny size: test-sized random checkpoints (`--scale tiny`)")
    room = instance.allocatable
    con.print(
        f"  priced as what it runs on: one {settings.hardware} ({instance.vcpus:g} vCPU, "
        f"{instance.memory_gib:g} GiB, {room.vcpus:.3g} vCPU and {room.memory_gib:.3g} GiB of "
        f"them allocatable, ${instance.usd_per_hour:g}/hour) shared by all "
        f"{len(served.spec.nodes)} nodes = ${hourly:.4f}/hour; written to {path}",
        soft_wrap=True,  # a path broken over two lines cannot be copied
    )
    if found.cores is not None:
        style = "bold yellow" if len(found.cores.machine) < instance.vcpus else "bold"
        con.print(f"  [{style}]CPUs[/]: {found.cores.describe()}")
    found.scale = settings.scale
    found.checkpoints_swapped = {s.node: {"graph": s.named, "served": s.served} for s in swaps}
    found.usd_per_hour_as_run = hourly
    return path, served


def find_knee(
    settings: DemoSettings,
    served: InferenceGraph,
    served_file: Path,
    url: str,
    found: Findings,
    con: Console,
) -> Sweep:
    """Step 2: probe, choose the SLO, sweep rates to saturation, name the knee."""
    con.rule("[bold]2. find the knee[/]: open-loop rates up to saturation")
    runner = Runner(url, served, served_file, settings.sweep)
    probe = max(2, min(16, sum(n.batching.max_batch_size for n in served.spec.nodes)))
    with con.status("measuring...") as status:
        result = sweep(runner, probe, lambda what: status.update(f"measuring: {what}"))
    if result.unloaded.ok == 0:
        samples = "; ".join(result.unloaded.error_samples.values()) or "no answer"
        raise DemoGraphError(f"no request to '{served.name}' succeeded: {samples}")
    slo = result.slo
    con.print(f"SLO for this demo: p{slo.percentile:g} <= {slo.latency_ms:g} ms ({slo.reason})")
    top = knee(result)
    cheapest = cheapest_meeting_slo(result)
    marks: dict[float, str] = {}
    if top:
        marks[top[0]] = "(knee)"
    if cheapest:
        marks[cheapest[0]] = marks.get(cheapest[0], "") + "(cheapest)"
    con.print(report.sweep_table(result, marks))
    nodes = [n.name for n in served.spec.nodes]
    if top:
        con.print(report.breakdown_table(top[1], nodes, f"the knee ({top[0]:g} req/s)"))
    found.slo = slo
    found.knee = RatePoint.of(top, slo.percentile)
    found.cheapest_meeting_slo = RatePoint.of(cheapest, slo.percentile)
    found.stages_at_knee = report.node_breakdown(top[1], nodes) if top else {}
    found.rates = [rate for rate, _ in result.rates]
    return result


class DemoGraphError(InfergraphError):
    """The served graph answered no request; the message carries what it said."""


def price(result: Sweep, served: InferenceGraph, found: Findings, out: Path, con: Console) -> None:
    """Step 3: $ per million per rate, the cheapest that meets the SLO, or what limits it."""
    con.rule("[bold]3. price it[/]: dollars per million inferences at each rate")
    slo = result.slo
    cheapest = cheapest_meeting_slo(result)
    p = f"p{slo.percentile:g}"
    if cheapest is not None:
        rate, step = cheapest
        con.print(
            f"cheapest rate that meets the SLO here: [bold]{rate:g} req/s offered[/] "
            f"({step.throughput_rps:.2f} served, {p} {step.percentile_ms(slo.percentile):.0f} ms) "
            f"at [bold]${step.usd_per_million:,.2f} per million[/]"
        )
    else:
        best_rate, best = min(
            result.rates, key=lambda p_: p_[1].percentile_ms(slo.percentile) or math.inf
        )
        limit = limiting_node(best, [n.name for n in served.spec.nodes])
        who = f"; node '{limit[0]}' takes {limit[1]:.0f} ms of it" if limit else ""
        con.print(
            f"[bold red]no rate met the SLO[/]: the best {p} reached was "
            f"{best.percentile_ms(slo.percentile) or math.nan:.0f} ms at {best_rate:g} req/s{who}"
        )
        found.limiting_node = limit[0] if limit else None
    cores = found.cores
    where = (
        f"CPUs {cpu_list(cores.server)} of {len(cores.machine)}"
        if cores and cores.pinned
        else f"{machine_cores()} CPU cores"
    )
    title = (
        f"'{served.name}' ({found.scale} size, random weights) on {where}, "
        f"priced as one {found.hardware}"
    )
    knee_point = knee(result)
    paths = [
        plots.latency_throughput(
            result.rates, slo, knee_point, title, out / "latency_throughput.png"
        ),
        plots.cost_latency(result.rates, slo, cheapest, title, out / "cost_latency.png"),
    ]
    found.pareto_front = [
        RatePoint.at(rate, step, slo.percentile)
        for rate, step in plots.front_points(result.rates, slo)
    ]
    report.write_sweep(result, found, out)
    con.print("plots: " + ", ".join(str(p_) for p_ in paths), soft_wrap=True)
