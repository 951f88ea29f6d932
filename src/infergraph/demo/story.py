"""`make demo`: serve a graph, find its knee, price it, plan it, render it, in one run.

The graph server lives only as long as the steps that load it (the planner's
simulation then has the machine to itself), and any exit, an error or Ctrl-C
included, stops it and leaves a folder whose README says what the run got to.
"""

from __future__ import annotations

import platform
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infergraph.cost.pricing import load_catalog
from infergraph.demo import plan_steps, report, steps
from infergraph.demo.findings import Findings, RatePoint
from infergraph.demo.interrupts import interrupt_guard
from infergraph.demo.server import DemoError, GraphServer
from infergraph.demo.sizing import machine_cores, offline_scale
from infergraph.demo.steps import DemoSettings
from infergraph.graph.plan import load_graph

MARKER = ".infergraph-demo"
WIDTH = 100  # every table fits a 100-column terminal
# Ctrl-C to exit: longer than the server's own stop (30 s grace, 10 s for its children).
INTERRUPT_GRACE_S = 90.0


def prepare_folder(out: Path) -> None:
    """Empty the folder of an earlier demo run; never a folder the demo did not write."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise DemoError(
            f"'{out}' exists and was not written by the demo; pass another --out or move it"
        )
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / MARKER).write_text("written by `infergraph demo`; the next run replaces it\n")


def run_demo(settings: DemoSettings, console: Console | None = None) -> Findings:
    """The five steps and the summary; the server is stopped on every way out."""
    con = console or Console(width=WIDTH)
    started = time.monotonic()
    catalog = load_catalog()
    catalog.get(settings.hardware)  # bad input fails here, before the folder is touched
    graph = load_graph(settings.graph_file)
    prepare_folder(settings.out)
    found = Findings(graph=graph.name, hardware=settings.hardware)
    complete = False
    try:
        served_file, served = steps.serve_setup(settings, graph, catalog, found, con)
        scale = offline_scale(settings.scale)
        server_log = settings.out / "server.log"
        with (
            GraphServer(served_file, scale, server_log) as server,
            interrupt_guard(INTERRUPT_GRACE_S, server.kill),
        ):
            with con.status("building random-weight checkpoints and starting MLServer..."):
                found.ready_s = server.wait_ready(settings.ready_timeout_s)
            con.print(f"[green]ready[/] in {found.ready_s:.0f} s: {server.url}")
            result = steps.find_knee(settings, served, served_file, server.url, found, con)
            steps.price(result, served, found, settings.out, con)
            profile = plan_steps.profile(settings, served, server.url, con)
        planned = plan_steps.plan(settings, served, profile, result.slo, catalog, found, con)
        plan_steps.render(settings, planned, catalog, found, con)
        complete = True
    except KeyboardInterrupt:
        con.print("\n[bold yellow]interrupted[/]: every process the demo started is stopped")
        raise
    finally:
        found.seconds = time.monotonic() - started
        found.complete = complete
        _leave_results(settings.out, found)
        if not complete:
            con.print(
                f"partial results are in {settings.out}/ (its README.md lists them)",
                soft_wrap=True,  # a path broken over two lines cannot be copied
            )
    summary_screen(found, settings, con)
    return found


def _leave_results(out: Path, found: Findings) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.processor() or platform.machine()}, {machine_cores()} cores, no GPU used"
    found.write(out / "summary.json", when)
    report.write_readme(out, when, machine)


def summary_screen(found: Findings, settings: DemoSettings, con: Console) -> None:
    """Step 6: one screen with the answer to each step, and where its files are."""
    con.rule(f"[bold]summary[/]: '{found.graph}' in {found.seconds:.0f} s")
    p = f"p{found.slo.percentile:g}" if found.slo else "p95"
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row(
        "served",
        f"{found.scale} size, random weights, ready in {found.ready_s:.0f} s, priced as one "
        f"{found.hardware} (${found.usd_per_hour_as_run:.4f}/hour)",
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
