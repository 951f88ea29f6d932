"""The `infergraph profile` and `infergraph plan` commands (typer), mounted by infergraph.cli."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from infergraph.engines import PROFILED, RENDERED, UnknownEngineError, listing, names
from infergraph.engines import engine as engine_named
from infergraph.errors import GraphValidationError, InfergraphError

if TYPE_CHECKING:
    from infergraph.graph.model import InferenceGraph
    from infergraph.planner.endpoints import Endpoints
    from infergraph.planner.planning import PlanOutcome
    from infergraph.planner.profiler import ProfileSettings
    from infergraph.planner.search import SearchSettings
    from infergraph.planner.workload import Workload

console = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")  # paths and lines print as written
    raise typer.Exit(1)


def _numbers[N: (int, float)](text: str | None, option: str, kind: type[N]) -> list[N] | None:
    if text is None:
        return None
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(f"{option}: '{text}' is not a comma-separated list of numbers")
    least = 1 if kind is int else 0  # a batch holds at least one row; a delay may be 0
    if not values or any(not math.isfinite(v) or v < least for v in values):
        _fail(f"{option}: give one or more numbers >= {least}")
    return values


# `infergraph profile` options whose help runs over several lines, named here so the command's
# signature stays readable; names, defaults and help are the CLI's.
_Requests = Annotated[
    int, typer.Option(help="sample requests per half of the graph pass (one at a time, loaded)")
]
_Load = Annotated[
    float | None,
    typer.Option(
        help="how busy the loaded half keeps the busiest node (0 to 0.95, default 0.5; "
        "0: no loaded half)"
    ),
]
_Rate = Annotated[
    float | None,
    typer.Option(
        help="the loaded half's request rate in req/s instead of --load: the rate the "
        "deployment is to carry"
    ),
]
_Endpoint = Annotated[
    str | None,
    typer.Option(
        help="base URL of the graph already served (its nodes at /v2/models/<node>/infer): "
        "time the nodes there instead of loading them here"
    ),
]
_NodeEndpoint = Annotated[
    list[str] | None,
    typer.Option(help="NODE=URL: that node's own base URL (repeat; with --endpoint)"),
]
_SkipServerStart = Annotated[
    bool,
    typer.Option(
        help="do not time each node alone in a fresh server, process start to ready (new "
        "pods then start in the load time alone)"
    ),
]
_Engine = Annotated[
    str,
    typer.Option(
        help="how the deployment names nodes: "
        + listing(PROFILED, lambda e: f"{e.name} ({e.naming})")
    ),
]


def profile(
    graph_file: Annotated[Path, typer.Argument(help="InferenceGraph YAML")],
    out: Annotated[Path, typer.Option(help="profile JSON to write")] = Path("profile.json"),
    hardware_class: Annotated[
        str | None,
        typer.Option(help="price-catalog class this machine stands for (default: each node's)"),
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(help="largest batch to time (default: each node's maxBatchSize)")
    ] = None,
    repeats: Annotated[int, typer.Option(help="forward passes timed per batch size")] = 20,
    payload: Annotated[
        str | None,
        typer.Option(help="sample payloads for hops and branches: folder, .jsonl, synthetic:KIND"),
    ] = None,
    requests: _Requests = 60,
    load: _Load = None,
    rate: _Rate = None,
    skip_graph: Annotated[
        bool, typer.Option(help="time forward passes only (no hops, no branch fractions)")
    ] = False,
    skip_server_start: _SkipServerStart = False,
    offline: Annotated[
        bool, typer.Option(help="random-weight checkpoints of the real architectures")
    ] = False,
    offline_scale: Annotated[str, typer.Option(help="offline size: full or tiny")] = "full",
    endpoint: _Endpoint = None,
    node_endpoint: _NodeEndpoint = None,
    engine: _Engine = "local",
) -> None:
    """Measure each node's service time per batch size, hop costs and branch fractions.

    Here (each node loaded in this process, on its device) or, with --endpoint, where the
    graph is deployed (each node timed through its own endpoint).
    """
    from infergraph.graph.plan import load_graph
    from infergraph.planner.profiler import ProfileSettings

    _check_profile_options(offline_scale, repeats, requests, max_batch, load, rate, skip_graph)
    try:
        graph = load_graph(graph_file)
    except GraphValidationError as exc:
        _fail(str(exc))
    endpoints = _profile_endpoints(graph, endpoint, node_endpoint, engine)
    settings = ProfileSettings(
        endpoints=endpoints,
        hardware_class=hardware_class,
        max_batch_size=max_batch,
        repeats=repeats,
        offline=offline,
        offline_scale=offline_scale,
        payload=payload,
        requests=requests,
        loaded_rps=rate,
        skip_graph=skip_graph,
        server_start=not skip_server_start,
    )
    if load is not None:  # else ProfileSettings' default
        settings = dataclasses.replace(settings, load=load)
    _run_profile(graph, settings, out)


def _check_out_file(out: Path) -> None:
    """Refuse a --out the profile could not be written to, before anything is measured."""
    if out.is_dir():
        _fail(f"--out '{out}' is a folder: give the profile's file, e.g. {out / 'profile.json'}")
    folder = next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        _fail(f"--out '{out}': cannot write there ('{folder}' is not a writable folder)")


def _check_payload(graph: InferenceGraph, settings: ProfileSettings) -> None:
    """Read the graph pass's payloads now: a typo in --payload is named before any
    checkpoint is loaded, not after every node has been timed."""
    from infergraph.planner.profiler import payload_spec

    if settings.skip_graph:
        return
    try:
        from async_load_tester.errors import LoadTesterError
        from async_load_tester.payloads import load_payloads
    except ImportError:
        return  # the graph pass names the missing extra
    spec = payload_spec(graph, settings)
    try:
        load_payloads(spec, graph.spec.inputs[0].name)
    except LoadTesterError as exc:
        _fail(f"--payload '{spec}': {exc}")


def _check_profile_options(
    offline_scale: str,
    repeats: int,
    requests: int,
    max_batch: int | None,
    load: float | None,
    rate: float | None,
    skip_graph: bool,
) -> None:
    """Refuse option values `profile` cannot measure with, before anything is loaded."""
    if offline_scale not in ("full", "tiny"):
        _fail(f"--offline-scale must be full or tiny, not '{offline_scale}'")
    if repeats < 5 or requests < 1 or (max_batch is not None and max_batch < 1):
        _fail("--repeats must be >= 5, --requests >= 1 and --max-batch >= 1")
    if load is not None and rate is not None:
        _fail("give --load or --rate for the loaded half, not both")
    if load is not None and not 0 <= load <= 0.95:  # also refuses nan
        _fail(f"--load must be a number from 0 to 0.95, got {load}")
    if rate is not None and not rate > 0:  # also refuses nan
        _fail(f"--rate must be a request rate > 0 req/s, got {rate}")
    if rate is not None and skip_graph:
        _fail("--rate sets the graph pass's loaded half; it has no meaning with --skip-graph")


def _profile_endpoints(
    graph: InferenceGraph, endpoint: str | None, node_endpoint: list[str] | None, engine: str
) -> Endpoints | None:
    """Where a deployed graph's nodes answer (--endpoint, --node-endpoint, --engine); None to
    profile here."""
    from infergraph.planner.endpoints import EndpointError, parse_endpoints

    endpoints = None
    if node_endpoint and endpoint is None:
        _fail("--node-endpoint needs --endpoint (the graph's own URL)")
    try:
        serving = engine_named(engine, PROFILED, "be profiled node by node")
    except UnknownEngineError as exc:
        _fail(f"--engine '{engine}': choose one of {', '.join(exc.valid)}")
        return
    if serving.deployed and endpoint is None:
        _fail(f"--engine {engine} needs --endpoint (where that engine serves the graph)")
    if endpoint is not None:
        try:
            endpoints = parse_endpoints(endpoint, node_endpoint or [], graph, engine)
        except EndpointError as exc:
            _fail(str(exc))
    return endpoints


def _run_profile(graph: InferenceGraph, settings: ProfileSettings, out: Path) -> None:
    """Profile the graph behind a progress bar sized to every pass it will time, then write it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from infergraph.planner.profiler import batch_sizes, profile_graph

    _check_out_file(out)
    _check_payload(graph, settings)
    loaded_half = settings.loaded_rps is not None or settings.load > 0
    total = sum(
        len(batch_sizes(settings.max_batch_size or n.batching.max_batch_size))
        for n in graph.spec.nodes
    ) + (0 if settings.skip_graph else settings.requests * (2 if loaded_half else 1))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"profiling '{graph.name}'", total=total)
        try:
            result = profile_graph(
                graph,
                settings,
                lambda what, n: bar.update(task, advance=n, description=what),
            )
        except InfergraphError as exc:
            _fail(str(exc))
    try:
        result.write(out)
    except OSError as exc:
        _fail(f"cannot write the profile to '{out}': {exc.strerror}")
    console.print(f"wrote {out}")


# `infergraph plan` options named here for the same reason as profile's.
_Percentile = Annotated[
    float | None, typer.Option(help="SLO percentile (default: the graph's, else 99)")
]
_Trace = Annotated[
    Path | None, typer.Option(help="per-second request counts (async-load-tester trace)")
]
_BatchSizes = Annotated[
    str | None, typer.Option(help="max batch sizes to try, e.g. 1,4,16 (default 1,2,4,...)")
]
_MaxRefusedPct = Annotated[
    float | None,
    typer.Option(
        help="the most requests, in percent, a plan may refuse where a node's "
        "batching.maxQueueRows is full (default: the graph's spec.slo.maxRefusedPercent, "
        "else no limit but the SLO's percentile, of whose misses a refusal is one)"
    ),
]
_PlanOut = Annotated[Path, typer.Option(help="folder for the planned YAML, JSON and plot")]
_DelaysMs = Annotated[
    str | None, typer.Option(help="max batch delays to try in ms (default 0,2,5,10,20,50)")
]
_Autoscale = Annotated[
    str,
    typer.Option(
        help="graph: nodes with an autoscaling block follow it; all: the others get an HPA "
        "on request rate too; off: hold every node at its planned replicas"
    ),
]
_ReplicaStartup = Annotated[
    float | None,
    typer.Option(
        help="seconds from asking for a pod to its taking traffic, for every node "
        "(default: --pod-pending-s plus each node's start as its profile measured it; 60 "
        "where none was)"
    ),
]
_PodPending = Annotated[
    float,
    typer.Option(
        help="seconds a new pod is Pending before its container starts: scheduling, and "
        "the image pull on a node without the image; added to each node's measured start"
    ),
]

_PricedOn = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="price the plan as this engine runs it (its sidecars in each replica, its own "
        f"pods beside): {', '.join(names(RENDERED))}; default: each node's own resources",
    ),
]


def plan(
    graph_file: Annotated[Path, typer.Argument(help="InferenceGraph YAML")],
    profiles: Annotated[
        list[Path], typer.Option("--profiles", help="profile JSON (repeat per hardware)")
    ],
    slo_ms: Annotated[float | None, typer.Option(help="latency SLO (default: the graph's)")] = None,
    percentile: _Percentile = None,
    rate: Annotated[float | None, typer.Option(help="constant Poisson rate, req/s")] = None,
    trace: _Trace = None,
    duration: Annotated[int, typer.Option(help="seconds simulated with --rate")] = 120,
    headroom: Annotated[float, typer.Option(help="extra load planned for, 0.1 = +10%")] = 0.1,
    batch_sizes: _BatchSizes = None,
    delays_ms: _DelaysMs = None,
    max_replicas: Annotated[int, typer.Option(help="most replicas per node")] = 256,
    max_refused_pct: _MaxRefusedPct = None,
    catalog: Annotated[Path | None, typer.Option(help="price catalog override YAML")] = None,
    price: Annotated[
        list[str] | None, typer.Option(help="class=usd_per_hour price override (repeat)")
    ] = None,
    out: _PlanOut = Path("plan-results"),
    seed: Annotated[int, typer.Option(help="random seed of the simulation")] = 0,
    autoscale: _Autoscale = "graph",
    replica_startup_s: _ReplicaStartup = None,
    pod_pending_s: _PodPending = 0.0,
    priced_on: _PricedOn = None,
) -> None:
    """Cheapest hardware, batching and replicas per node whose simulated latency meets the SLO."""
    from infergraph.cost.pricing import load_catalog, parse_price_overrides
    from infergraph.graph.plan import load_graph
    from infergraph.planner.planning import PlanInputs, plan_graph
    from infergraph.planner.report import print_report

    _check_plan_options(rate, trace, headroom, autoscale, replica_startup_s, pod_pending_s)
    try:
        engine = _priced_engine(priced_on)
        graph = load_graph(graph_file)
        settings = _search_settings(
            graph, slo_ms, percentile, batch_sizes, delays_ms, max_replicas, seed
        )
        settings = _with_refusal_option(settings, max_refused_pct)
        inputs = PlanInputs(
            graph=graph,
            profile_paths=profiles,
            workload=_workload(rate, trace, duration),
            catalog=load_catalog(catalog, parse_price_overrides(price or [])),
            settings=settings,
            headroom=headroom,
            autoscale=autoscale,  # type: ignore[arg-type]
            startup_s=replica_startup_s,
            pending_s=pod_pending_s,
            engine=engine,
        )
        _warn_instances(graph)
        with console.status(f"planning '{graph.name}'..."):
            outcome = plan_graph(inputs)
        files = _write_plan(outcome, out)
    except InfergraphError as exc:
        _fail(str(exc))
    print_report(outcome, console)
    console.print("\n".join(f"wrote {path}" for path in files.values()))


def _write_plan(outcome: PlanOutcome, out: Path) -> dict[str, Path]:
    """The planned graph, plan.json and the plot; an --out that is a file or read-only is
    named (the outputs come last, after the whole search)."""
    from infergraph.planner.report import write_outputs

    try:
        return write_outputs(outcome, out)
    except OSError as exc:
        _fail(f"cannot write the plan to '{out}': {exc.strerror}")


def _priced_engine(name: str | None) -> str | None:
    """The engine `--engine` names, refused (before any file is read) if it deploys nothing."""
    return None if name is None else engine_named(name, RENDERED, "deploy a graph").name


def _warn_instances(graph: InferenceGraph) -> None:
    """Nodes the plan will set to one instance: the simulator models one forward pass at a
    time per replica, so that is what the planned graph deploys."""
    several = [f"{n.name} ({n.instances})" for n in graph.spec.nodes if n.instances > 1]
    if several:
        console.print(
            f"[yellow]planned at one model instance per replica: {', '.join(several)}; "
            "the simulator runs one forward pass at a time per replica[/]"
        )


def _check_plan_options(
    rate: float | None,
    trace: Path | None,
    headroom: float,
    autoscale: str,
    replica_startup_s: float | None,
    pod_pending_s: float,
) -> None:
    """Refuse option values `plan` cannot search with, before any file is read."""
    if (rate is None) == (trace is None):
        _fail("give exactly one load: --rate R or --trace FILE")
    if not 0 <= headroom <= 10:
        _fail(f"--headroom must be between 0 and 10, got {headroom}")
    if autoscale not in ("graph", "all", "off"):
        _fail(f"--autoscale must be graph, all or off, got '{autoscale}'")
    if replica_startup_s is not None and not 0 <= replica_startup_s <= 3600:
        _fail(f"--replica-startup-s must be between 0 and 3600, got {replica_startup_s}")
    if not 0 <= pod_pending_s <= 3600:
        _fail(f"--pod-pending-s must be between 0 and 3600, got {pod_pending_s}")
    if replica_startup_s is not None and pod_pending_s:
        _fail(
            "give --replica-startup-s (the whole start-up, Pending included) or "
            "--pod-pending-s (added to each node's measured start), not both"
        )


def _workload(rate: float | None, trace: Path | None, duration: int) -> Workload:
    """The load planned for: the trace's per-second counts, else a constant Poisson rate."""
    from infergraph.planner.workload import Workload

    if trace is None and duration < 1:
        _fail(f"--duration must be at least 1 second, got {duration}")

    return (
        Workload.from_trace(trace) if trace is not None else Workload.constant(rate, duration)  # type: ignore[arg-type]
    )


def _with_refusal_option(settings: SearchSettings, percent: float | None) -> SearchSettings:
    """--max-refused-pct, where given, in place of the graph's spec.slo.maxRefusedPercent."""
    if percent is None:
        return settings
    limit = _max_refused(percent)
    return dataclasses.replace(settings, max_refused=limit, max_refused_from="--max-refused-pct")


def _max_refused(percent: float | None) -> float | None:
    """--max-refused-pct as the share of requests the search allows refused."""
    if percent is None:
        return None
    if not (math.isfinite(percent) and 0 <= percent <= 100):
        _fail(f"--max-refused-pct must be a percentage from 0 to 100, got {percent:g}")
    return percent / 100.0


def _search_settings(
    graph: InferenceGraph,
    slo_ms: float | None,
    percentile: float | None,
    batch_sizes: str | None,
    delays_ms: str | None,
    max_replicas: int,
    seed: int,
) -> SearchSettings:
    """The SLO (the options', else the graph's: its refusal limit too, which the caller
    overrides with --max-refused-pct) and the batching grid the search tries."""
    from infergraph.planner.search import DEFAULT_DELAYS_MS, SearchSettings

    slo = graph.spec.slo
    slo_ms = slo_ms if slo_ms is not None else (slo.latency_ms if slo else None)
    if slo_ms is None:
        _fail("give --slo-ms (the graph declares no spec.slo)")
    if not (math.isfinite(slo_ms) and slo_ms > 0):
        _fail(f"--slo-ms must be a positive number of milliseconds, got {slo_ms}")
    if max_replicas < 1:
        _fail(f"--max-replicas must be at least 1, got {max_replicas}")
    pct = percentile if percentile is not None else (slo.percentile if slo else 99.0)
    if not 0 < pct <= 100:
        _fail(f"--percentile must be in (0, 100], got {pct}")
    return SearchSettings(
        slo_ms=float(slo_ms),
        percentile=pct,
        batch_sizes=_numbers(batch_sizes, "--batch-sizes", int),
        delays_ms=_numbers(delays_ms, "--delays-ms", float) or DEFAULT_DELAYS_MS,
        max_replicas=max_replicas,
        seed=seed,
        max_refused=slo.max_refused_fraction if slo else None,
        max_refused_from="spec.slo.maxRefusedPercent",
    )
