"""`make demo`: serve a graph, find its knee, price it, plan it, render it, in one run.

The graph server lives only as long as the steps that load it (the planner's
simulation then has the machine to itself), and any exit, an error or Ctrl-C
included, stops it and leaves a folder whose README says what the run got to. A
Ctrl-C while it stops kills it rather than abandoning the stop (`interrupts`).
"""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infergraph.cost.pricing import PriceCatalog, load_catalog
from infergraph.demo import plan_steps, report, steps
from infergraph.demo.cores import cpu_list, pinned, plan_cores
from infergraph.demo.findings import Findings, RatePoint
from infergraph.demo.folder import prepare_folder, release
from infergraph.demo.interrupts import Guard, interrupt_guard
from infergraph.demo.server import GraphServer, other_servers
from infergraph.demo.sizing import machine_cores, offline_scale
from infergraph.demo.steps import DemoSettings
from infergraph.demo.sweep import Sweep
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph

WIDTH = 100  # every table fits a 100-column terminal
# Ctrl-C to exit: longer than the server's own stop (30 s grace, 10 s for its children).
INTERRUPT_GRACE_S = 90.0


def run_demo(settings: DemoSettings, console: Console | None = None) -> Findings:
    """The five steps and the summary; the server is stopped on every way out, and the
    results folder is this run's alone while it runs."""
    con = console or Console(width=WIDTH)
    started = time.monotonic()
    catalog = load_catalog()
    instance = catalog.get(settings.hardware)  # bad input fails here, before the folder
    graph = load_graph(settings.graph_file)
    held = prepare_folder(settings.out)
    found = Findings(graph=graph.name, hardware=settings.hardware)
    found.cores = plan_cores(os.sched_getaffinity(0), settings.hardware, instance.vcpus)
    try:
        with interrupt_guard(INTERRUPT_GRACE_S) as guard:
            _run_steps(settings, graph, catalog, found, guard, con, started)
    finally:
        release(held)
    summary_screen(found, settings, con)
    return found


def _run_steps(
    settings: DemoSettings,
    graph: InferenceGraph,
    catalog: PriceCatalog,
    found: Findings,
    guard: Guard,
    con: Console,
    started: float,
) -> None:
    """Steps 1 to 5; on every way out the folder's README and summary.json say how far the
    run got, written whatever Ctrl-C is pressed meanwhile."""
    server: GraphServer | None = None
    complete = False
    try:
        served_file, served = steps.serve_setup(settings, graph, catalog, found, con)
        cores = found.cores
        server = GraphServer(
            served_file,
            offline_scale(settings.scale),
            settings.out / "server.log",
            cores.server if cores and cores.pinned else None,
        )
        guard.also_kill(server.kill)
        result, profile = _measure(settings, served, served_file, server, guard, found, con)
        planned = plan_steps.plan(settings, served, profile, result.slo, catalog, found, con)
        plan_steps.render(settings, planned, catalog, found, con)
        complete = True
    except KeyboardInterrupt:
        con.print(interrupted_text(server))
        raise
    finally:
        with guard.shield():
            found.seconds = time.monotonic() - started
            found.complete = complete
            _leave_results(settings.out, found)
            if not complete:
                con.print(
                    f"partial results are in {settings.out}/ (its README.md lists them)",
                    soft_wrap=True,  # a path broken over two lines cannot be copied
                )


def _measure(
    settings: DemoSettings,
    served: InferenceGraph,
    served_file: Path,
    server: GraphServer,
    guard: Guard,
    found: Findings,
    con: Console,
) -> tuple[Sweep, Path]:
    """Steps 2 to 4's measuring, the only time the server runs: the load generator on the
    CPUs the server does not have (where it has its own), the server stopped after."""
    others = other_servers()
    if others:
        con.print(
            "[yellow]other graph servers are running on this machine[/] (pid "
            f"{', '.join(map(str, others[:5]))}{', ...' if len(others) > 5 else ''}): they share "
            "its CPUs, so this run's figures come out lower than the machine gives alone"
        )
    cores = found.cores
    server.start()
    try:
        with pinned(cores.load if cores and cores.pinned else None):
            with con.status("building random-weight checkpoints and starting MLServer..."):
                found.ready_s = server.wait_ready(settings.ready_timeout_s)
            con.print(f"[green]ready[/] in {found.ready_s:.0f} s: {server.url}")
            result = steps.find_knee(settings, served, served_file, server.url, found, con)
            steps.price(result, served, found, settings.out, con)
            profile = plan_steps.profile(settings, served, server.url, con)
    finally:
        with guard.shield():  # a Ctrl-C now kills the server instead of abandoning its stop
            server.stop()
    return result, profile


def interrupted_text(server: GraphServer | None) -> str:
    """What an interrupted demo says of its processes: stopped only if none is left."""
    left = server.left_running() if server is not None else []
    if not left:
        return "\n[bold yellow]interrupted[/]: every process the demo started is stopped"
    pids = " ".join(str(pid) for pid in left)
    return (
        f"\n[bold yellow]interrupted[/]: [bold red]still running[/]: pid {pids} (the graph "
        f"server's); `kill -9 {pids}` ends them"
    )


def _leave_results(out: Path, found: Findings) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = f"{machine_cores()} cores"
    if found.cores and found.cores.pinned:
        cores += f", the graph server on CPUs {cpu_list(found.cores.server)}"
    machine = f"{platform.processor() or platform.machine()}, {cores}, no GPU used"
    found.write(out / "summary.json", when)
    report.write_readme(out, when, machine)


def summary_screen(found: Findings, settings: DemoSettings, con: Console) -> None:
    """Step 6: one screen with the answer to each step, and where its files are."""
    con.rule(f"[bold]summary[/]: '{found.graph}' in {found.seconds:.0f} s")
    p = f"p{found.slo.percentile:g}" if found.slo else "p95"
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    where = f" ({found.cores.short()})" if found.cores else ""
    table.add_row(
        "served",
        f"{found.scale} size, random weights, ready in {found.ready_s:.0f} s, priced as one "
        f"{found.hardware}{where} (${found.usd_per_hour_as_run:.4f}/hour)",
    )
    if found.slo:
        table.add_row("SLO", f"{p} <= {found.slo.latency_ms:g} ms: {found.slo.reason}")
    table.add_row("knee", _point_text(found.knee, p))
    cheapest = found.cheapest_meeting_slo
    table.add_row(
        "cheapest",
        _point_text(cheapest, p)
        if cheapest
        else f"no rate met the SLO; node '{found.limiting_node}' limits it",
    )
    table.add_row("plan", _plan_text(found, p))
    if found.on_engines:
        table.add_row("on a cluster", _engines_text(found))
    table.add_row("manifests", f"{settings.out}/manifests/{{original,planned}}/<engine>/")
    table.add_row("everything", f"{settings.out}/ (README.md says what each file is)")
    con.print(table)


def _engines_text(found: Findings) -> str:
    """Each engine's $/hour for the graph step 5 priced, or that its pods do not fit."""
    priced = [
        f"{engine} ${p.usd_per_hour:.4f}/hour"
        for engine, p in found.on_engines.items()
        if p.usd_per_hour is not None
    ]
    refused = [engine for engine, p in found.on_engines.items() if p.usd_per_hour is None]
    if refused:
        priced.append(f"{', '.join(refused)}: a pod outgrows its class (step 5 says which)")
    return f"{Path(found.priced_on_engines or '').name}: " + "; ".join(priced)


def _point_text(point: RatePoint | None, p: str) -> str:
    if point is None:
        return "-"
    return (
        f"{point.offered_rps:g} req/s offered, {point.served_rps:.2f} served, "
        f"{p} {point.latency_ms or 0:.0f} ms, ${point.usd_per_million or 0:,.2f}/million"
    )


def _plan_text(found: Findings, p: str) -> str:
    if found.plan_error:
        return f"no plan: {found.plan_error}"
    plan = found.plan
    if plan is None:
        return "-"
    per_node = ", ".join(
        f"{n} x{o.replicas} (batch {o.max_batch_size})" for n, o in plan.nodes.items()
    )
    return (
        f"{plan.rate_rps:g} req/s: {per_node}; predicted {p} {plan.predicted_ms:.0f} ms, "
        f"${plan.usd_per_hour:.2f}/hour, ${plan.usd_per_million:.2f}/million"
    )
