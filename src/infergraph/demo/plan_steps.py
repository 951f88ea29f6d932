"""Steps 4 and 5: profile the served graph, plan it for a stated rate, render both graphs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from infergraph.cost import CostError, PriceCatalog, engine_cost, graph_cost
from infergraph.demo.findings import EnginePrice, Findings, PlannedNode, PlanSummary
from infergraph.demo.sizing import for_planning
from infergraph.demo.steps import DemoSettings
from infergraph.demo.sweep import Slo, nice_nearest
from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph
from infergraph.render import ENGINES, EXAMPLE_STORAGE, engine_pods, render_files
from infergraph.render.options import RenderOptions

if TYPE_CHECKING:
    from infergraph.planner.planning import PlanInputs
    from infergraph.planner.search import Option

PLAN_MULTIPLE = 10  # the stated rate: about ten machines' worth of what the knee served


def profile(settings: DemoSettings, served: InferenceGraph, url: str, con: Console) -> Path:
    """Each node's pass per batch size, timed through the served graph's own endpoints."""
    from infergraph.planner.endpoints import parse_endpoints
    from infergraph.planner.profiler import ProfileSettings, batch_sizes, profile_graph

    con.rule("[bold]4. plan it[/]: profile the served nodes, then search for the cheapest plan")
    profile_settings = ProfileSettings(
        endpoints=parse_endpoints(url, [], served, "local"),
        hardware_class=settings.hardware,
        repeats=settings.profile_repeats,
        requests=settings.profile_requests,
    )
    total = sum(len(batch_sizes(n.batching.max_batch_size)) for n in served.spec.nodes)
    total += 2 * settings.profile_requests
    path = settings.out / "profile.json"
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=True,
    ) as bar:
        task = bar.add_task("profiling", total=total)
        result = profile_graph(
            served, profile_settings, lambda what, n: bar.update(task, advance=n, description=what)
        )
    result.write(path)
    con.print(f"profiled every node through {url} -> {path}", soft_wrap=True)
    return path


def stated_rate(settings: DemoSettings, found: Findings) -> float:
    """`--plan-rate`, else the round rate nearest `PLAN_MULTIPLE` times what the knee served:
    rounding up instead once planned for 18x and called it 10x."""
    if settings.plan_rate is not None:
        return settings.plan_rate
    return nice_nearest(PLAN_MULTIPLE * _knee_served(found))


def _knee_served(found: Findings) -> float:
    return max(found.knee.served_rps if found.knee else 1.0, 0.1)


def rate_reason(settings: DemoSettings, found: Findings, rate: float) -> str:
    """Where the planned rate came from, with the multiple of the knee it really is."""
    if settings.plan_rate is not None:
        return "as asked (--plan-rate)"
    served = _knee_served(found)
    return (
        f"{rate / served:.1f}x the {served:.2f} req/s the knee served here: "
        f"{PLAN_MULTIPLE}x, rounded to the nearest round rate"
    )


def plan(
    settings: DemoSettings,
    served: InferenceGraph,
    profile_path: Path,
    slo: Slo,
    catalog: PriceCatalog,
    found: Findings,
    con: Console,
) -> Path | None:
    """`infergraph plan` for the stated rate; a plan that cannot be made is said plainly."""
    from infergraph.planner.planning import plan_graph
    from infergraph.planner.report import node_table, verdict, write_outputs

    inputs = _plan_inputs(settings, served, profile_path, slo, catalog, found, con)
    try:
        with con.status("planning..."):
            outcome = plan_graph(inputs)
        files = write_outputs(outcome, settings.out / "plan")
    except InfergraphError as exc:
        con.print(f"[bold red]no plan[/]: {exc}")
        found.plan_error = str(exc)
        return None
    con.print(node_table(outcome))
    con.print(verdict(outcome))
    con.print(f"planned in {outcome.seconds:.1f} s -> {files['graph']}", soft_wrap=True)
    final = outcome.final
    found.plan = PlanSummary(
        rate_rps=inputs.workload.mean_rps,
        predicted_ms=final.latency_ms,
        attainment=outcome.attainment,
        usd_per_hour=outcome.usd_per_hour,
        usd_per_million=outcome.usd_per_million(),
        nodes={n: _planned(o) for n, o in final.options.items()},
        graph=str(files["graph"]),
    )
    return files["graph"]


def _plan_inputs(
    settings: DemoSettings,
    served: InferenceGraph,
    profile_path: Path,
    slo: Slo,
    catalog: PriceCatalog,
    found: Findings,
    con: Console,
) -> PlanInputs:
    """What `infergraph plan` is given, said on screen: rate, SLO, class and start-up time."""
    from infergraph.planner.planning import PlanInputs
    from infergraph.planner.search import DEFAULT_DELAYS_MS, SearchSettings
    from infergraph.planner.workload import Workload

    rate = stated_rate(settings, found)
    found.plan_rate_rps = rate  # recorded before planning: a plan that fails still says it
    startup = max(1.0, found.ready_s or 60.0)
    why = rate_reason(settings, found, rate)
    con.print(
        f"planning for [bold]{rate:g} req/s[/] (Poisson; {why}), p{slo.percentile:g} <= "
        f"{slo.latency_ms:g} ms, each replica one {settings.hardware}, a new replica taking "
        f"traffic {startup:.0f} s after it is asked for (this server's measured start)"
    )
    return PlanInputs(
        graph=for_planning(served, settings.hardware, catalog),
        profile_paths=[profile_path],
        workload=Workload.constant(rate, 120),
        catalog=catalog,
        settings=SearchSettings(
            slo_ms=slo.latency_ms,
            percentile=slo.percentile,
            delays_ms=DEFAULT_DELAYS_MS,
            # The graph's refusal limit, which the demo's load steps hold it to (`--graph`).
            max_refused=served.spec.slo.max_refused_fraction if served.spec.slo else None,
            max_refused_from="spec.slo.maxRefusedPercent",
        ),
        startup_s=startup,
    )


def _planned(option: Option) -> PlannedNode:
    return PlannedNode(
        option.hardware, option.max_batch_size, option.max_batch_time_ms, option.replicas
    )


def render(
    settings: DemoSettings,
    planned: Path | None,
    catalog: PriceCatalog,
    found: Findings,
    con: Console,
) -> None:
    """Step 5: the graph file as given, and the planned one, for every engine, and what the
    last of them costs on each."""
    con.rule("[bold]5. deploy it[/]: the same graph rendered for Seldon Core v2, v1 and KServe")
    sources = {"original": settings.graph_file}
    if planned is not None:
        sources["planned"] = planned
    found.manifests = {
        label: _render_one(source, settings.out / "manifests" / label, con)
        for label, source in sources.items()
    }
    priced = planned or settings.graph_file
    found.priced_on_engines = str(priced)
    found.on_engines = _on_engines(load_graph(priced), catalog)
    con.print(_engine_table(priced, found.on_engines))
    con.print("\n".join(_cluster_commands(settings, planned, found.on_engines)))


def _on_engines(graph: InferenceGraph, catalog: PriceCatalog) -> dict[str, EnginePrice]:
    """What `graph` costs on each engine at its replicas, its pods as the engine runs them
    (`infergraph.cost.engine_cost`, the operator's `status.pricePerHour`), or why a pod of
    it fits its class on none there."""
    try:
        own = graph_cost(graph, catalog).usd_per_hour
    except CostError as exc:  # a node without a class: no engine can price it either
        return {engine: EnginePrice(None, None, str(exc)) for engine in ENGINES}
    prices = {}
    for engine in ENGINES:
        try:
            total = engine_cost(graph, engine, engine_pods(graph, engine), catalog).usd_per_hour
        except InfergraphError as exc:
            prices[engine] = EnginePrice(None, None, str(exc))
            continue
        prices[engine] = EnginePrice(total, total - own)
    return prices


def _engine_table(source: Path, prices: dict[str, EnginePrice]) -> Table:
    table = Table(title=f"{source.name} on a cluster, at its replicas")
    table.add_column("engine")
    table.add_column("$/hour", justify="right")
    table.add_column("what the engine adds (sidecars, its own pods)")
    for engine, price in prices.items():
        if price.usd_per_hour is None or price.added_usd_per_hour is None:
            table.add_row(engine, "-", f"[red]{price.problem}[/]")
            continue
        own = price.usd_per_hour - price.added_usd_per_hour
        added = f"+{price.added_usd_per_hour:.4f}"
        if own > 0:
            added += f" (+{price.added_usd_per_hour / own * 100:.1f} %)"
        table.add_row(engine, f"{price.usd_per_hour:.4f}", added)
    return table


def _render_one(source: Path, folder: Path, con: Console) -> list[str]:
    """Every engine's files for one graph under `folder/<engine>/`."""
    options = RenderOptions(storage_uri=EXAMPLE_STORAGE)
    written = []
    for engine in ENGINES:
        for rel, text in render_files(source, engine, options).items():
            target = folder / engine / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(str(target))
    con.print(f"{source}: {folder}/<engine>/")
    return written


def _cluster_commands(
    settings: DemoSettings, planned: Path | None, prices: dict[str, EnginePrice]
) -> list[str]:
    """The two commands that would put the graph on a cluster, each graph file named, the
    planned one with the engines its pods fit on."""
    gpus = sum(n.resources.gpu for n in load_graph(settings.graph_file).spec.nodes)
    lines = [
        "to put it on a cluster (Seldon Core v2 or v1, or KServe, installed; a bucket you own):",
        "  helm install infergraph charts/infergraph -n infergraph --create-namespace \\",
        "    --set storageUri=s3://<your-bucket>/infergraph",
        f"  kubectl apply -n ml -f {settings.graph_file}   # as written"
        + (f": {gpus} GPU(s)" if gpus else ""),
    ]
    if planned is not None:
        fits = [engine for engine, price in prices.items() if price.problem is None]
        where = f"on {', '.join(fits)}" if fits else "on no engine: its pods outgrow the class"
        lines.append(
            f"  kubectl apply -n ml -f {planned}   # as planned: {settings.hardware} nodes, "
            + where
        )
        lines.append(
            f"  (a pod fits by what a {settings.hardware} node keeps back by default, its "
            "provider's rule; your Nodes' DaemonSets take more: `infergraph node-catalog` writes "
            "what they leave, for `infergraph validate --engine E --catalog`)"
        )
    lines.append(
        f"the files under {settings.out / 'manifests'}/ are the same objects for `kubectl apply` "
        f"without the operator; they name the placeholder bucket {EXAMPLE_STORAGE}, so render "
        "again with `infergraph render GRAPH --engine ENGINE --storage-uri s3://<your-bucket>/...`"
    )
    return lines
