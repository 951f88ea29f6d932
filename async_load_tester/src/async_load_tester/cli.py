"""`async-load-tester`: run loads, generate traces, list prices."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from async_load_tester.config import LoadConfig
from async_load_tester.engine import ProgressFn, StepPlan
from async_load_tester.errors import LoadTesterError
from async_load_tester.protocols.encode import check_protocol, parse_headers
from async_load_tester.schedule import generate_trace

if TYPE_CHECKING:
    from async_load_tester.results import RunResult
    from async_load_tester.runner import StepHook

# Help texts hold literal brackets ("host:port[/prefix]"): no rich markup parsing.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, rich_markup_mode=None)
console = Console(stderr=True)
# Tables go to stderr too (stdout stays clean for --json); wide when not a terminal.
report = console if console.is_terminal else Console(stderr=True, width=200)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(2)


# `run` options whose declaration runs over a line, named here so the command's signature stays
# one option a line; names, defaults and help are the CLI's.
_Target = Annotated[
    str,
    typer.Option(
        help="http(s)://host:port[/prefix], or grpc(s)://host[:port] with --protocol v2-grpc "
        "(gRPC's port is 8081 if none is given)"
    ),
]
_Protocol = Annotated[str, typer.Option(help="v2-rest | v2-rest-binary | v2-grpc | seldon-rest")]
_Payload = Annotated[
    str,
    typer.Option(
        help="synthetic:image[:WxH][:png|jpeg], synthetic:text[:WORDS], "
        "synthetic:audio[:SECONDS][:fp32|wav], synthetic:tensor:SHAPE[:DATATYPE], a folder of "
        "image or audio files, or a .jsonl of texts; a folder or .jsonl gives its first 1000 "
        "items (a warning says when it holds more)"
    ),
]
_InputName = Annotated[str | None, typer.Option(help="input tensor name (default by kind)")]
_Schedule = Annotated[
    str | None, typer.Option(help="open loop: constant:R | step:R@S,.. | ramp:A-B | trace:FILE")
]
_Arrival = Annotated[str, typer.Option(help="open-loop arrivals: constant | poisson")]
_Concurrency = Annotated[int | None, typer.Option(help="closed loop: concurrent requests")]
_ConcurrencyRange = Annotated[
    str | None, typer.Option(help="closed loop sweep, START:END[:STEP|:xFACTOR], e.g. 1:64:x2")
]
_Sweep = Annotated[bool, typer.Option(help="find the cheapest concurrency that meets --slo-ms")]
_Requests = Annotated[
    int | None,
    typer.Option(
        help="measured requests per step; replaces --duration (a --schedule step or trace "
        "still ends the step at its own end)"
    ),
]
_Duration = Annotated[
    float, typer.Option(help="measured seconds per step (ignored with --requests)")
]
_Header = Annotated[list[str] | None, typer.Option(help="extra header 'Name: value' (repeatable)")]
_PathTemplate = Annotated[
    str | None,
    typer.Option(help="request path, e.g. /seldon/{namespace}/{model}/v2/models/{model}/infer"),
]
_ModelVersion = Annotated[
    str | None,
    typer.Option(
        help="model version: REST sends to /v2/models/{model}/versions/{version}/infer "
        "(or a --path-template with {version}), gRPC in the request"
    ),
]
_MaxInFlight = Annotated[int, typer.Option(help="open loop: cap on outstanding requests")]
_Connections = Annotated[int, typer.Option(help="open loop: connections opened up front")]
_CheckEvery = Annotated[
    int, typer.Option(help="parse every Nth response body (0: never; status is always checked)")
]
_SloMs = Annotated[float | None, typer.Option(help="latency target for SLO attainment")]
_SloPercentile = Annotated[float | None, typer.Option(help="SLO percentile (default 95)")]
_MaxRefusedPct = Annotated[
    float | None,
    typer.Option(
        help="the most requests, in percent, an overloaded server may refuse (HTTP 503, gRPC "
        "UNAVAILABLE) in a step that meets the SLO (default: --graph's "
        "spec.slo.maxRefusedPercent, else no limit but the percentile)"
    ),
]
_Engine = Annotated[
    str | None,
    typer.Option(
        help="price --graph as this engine runs it (seldon-v2, seldon-v1, kserve): its "
        "sidecars and its own pods too"
    ),
]
_Catalog = Annotated[
    Path | None, typer.Option(help="price catalog file overriding the shipped one")
]
_Price = Annotated[list[str] | None, typer.Option(help="price override CLASS=USD_PER_HOUR")]
_DefaultHardware = Annotated[str | None, typer.Option(help="class for nodes without `hardware`")]
_Replicas = Annotated[str, typer.Option(help="autoscaled nodes' replicas: spec | min | max")]
_Insecure = Annotated[
    bool,
    typer.Option(
        help="skip TLS verification (https only: for grpcs set GRPC_DEFAULT_SSL_ROOTS_FILE_PATH "
        "to a PEM file holding the server's certificate)"
    ),
]
_Out = Annotated[Path | None, typer.Option(help="folder for results.json/.csv and plots")]
_JsonStdout = Annotated[bool, typer.Option("--json", help="print results JSON on stdout")]


class _RunOptions(TypedDict):
    """`run`'s options by parameter name, as click hands them over in `ctx.params`."""

    target: str
    model: str
    protocol: str
    payload: str
    input_name: str | None
    rate: float | None
    schedule: str | None
    arrival: str
    concurrency: int | None
    concurrency_range: str | None
    sweep: bool
    sweep_max_concurrency: int
    duration: float
    requests: int | None
    warmup: float
    seed: int
    header: list[str] | None
    path_template: str | None
    namespace: str
    model_version: str | None
    timeout: float
    max_in_flight: int
    connections: int
    grpc_channels: int
    late_ms: float
    check_every: int
    slo_ms: float | None
    slo_percentile: float | None
    max_refused_pct: float | None
    graph: Path | None
    engine: str | None
    catalog: Path | None
    price: list[str] | None
    default_hardware: str | None
    replicas: str
    insecure: bool
    out: Path | None
    plots: bool
    progress: bool
    json_stdout: bool


@app.command()
def run(
    ctx: typer.Context,
    target: _Target,
    model: Annotated[str, typer.Option(help="model (or graph) name")],
    protocol: _Protocol = "v2-rest",
    payload: _Payload = "synthetic:tensor:1x16",
    input_name: _InputName = None,
    rate: Annotated[float | None, typer.Option(help="open loop: requests per second")] = None,
    schedule: _Schedule = None,
    arrival: _Arrival = "constant",
    concurrency: _Concurrency = None,
    concurrency_range: _ConcurrencyRange = None,
    sweep: _Sweep = False,
    sweep_max_concurrency: Annotated[int, typer.Option(help="upper bound for --sweep")] = 256,
    duration: _Duration = 30.0,
    requests: _Requests = None,
    warmup: Annotated[float, typer.Option(help="seconds excluded from results")] = 5.0,
    seed: Annotated[int, typer.Option(help="seed for payloads and Poisson arrivals")] = 0,
    header: _Header = None,
    path_template: _PathTemplate = None,
    namespace: Annotated[str, typer.Option(help="{namespace} in --path-template")] = "default",
    model_version: _ModelVersion = None,
    timeout: Annotated[float, typer.Option(help="per-request timeout, seconds")] = 30.0,
    max_in_flight: _MaxInFlight = 1024,
    connections: _Connections = 8,
    grpc_channels: Annotated[int, typer.Option(help="gRPC channels (connections)")] = 1,
    late_ms: Annotated[float, typer.Option(help="a send this late (ms) counts as late")] = 1.0,
    check_every: _CheckEvery = 1,
    slo_ms: _SloMs = None,
    slo_percentile: _SloPercentile = None,
    max_refused_pct: _MaxRefusedPct = None,
    graph: Annotated[Path | None, typer.Option(help="InferenceGraph file for cost")] = None,
    engine: _Engine = None,
    catalog: _Catalog = None,
    price: _Price = None,
    default_hardware: _DefaultHardware = None,
    replicas: _Replicas = "spec",
    insecure: _Insecure = False,
    out: _Out = None,
    plots: Annotated[bool, typer.Option(help="write PNG plots with --out")] = True,
    progress: Annotated[bool, typer.Option(help="live progress bar")] = True,
    json_stdout: _JsonStdout = False,
) -> None:
    """Send load to a target and report latency, throughput, errors and cost."""
    config = _load_config(cast("_RunOptions", ctx.params))
    result = _run_with_progress(config, _progress_bar(progress))
    _print_result(result)
    if out is not None:
        paths = result.write(out, plots=plots)
        console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    if json_stdout:
        sys.stdout.write(result.to_json() + "\n")


def _run_with_progress(config: LoadConfig, bar: Progress | None) -> RunResult:
    """Run the load with the bar live; a failure mid-run exits 2 with the bar already stopped."""
    from async_load_tester.runner import run_load
    from infergraph.errors import InfergraphError

    try:
        if bar is not None:
            bar.start()
        try:
            return run_load(config, _progress_hook(bar))
        finally:
            if bar is not None:
                bar.stop()
    except (LoadTesterError, InfergraphError) as exc:
        raise _fail(exc) from None


def _load_config(options: _RunOptions) -> LoadConfig:
    """The validated LoadConfig for `run`'s options; bad input exits 2 naming the option.

    Everything is checked here, before a connection is opened, so a typo never sends load.
    """
    from infergraph.cost import CostError, parse_price_overrides

    try:
        check_protocol(options["protocol"])
        if options["arrival"] not in ("constant", "poisson"):
            raise LoadTesterError(f"--arrival: '{options['arrival']}' is not constant or poisson")
        if options["replicas"] not in ("spec", "min", "max"):
            raise LoadTesterError(f"--replicas: '{options['replicas']}' is not spec, min or max")
        return LoadConfig(
            target=options["target"],
            model=options["model"],
            protocol=options["protocol"],  # type: ignore[arg-type]
            payload=options["payload"],
            input_name=options["input_name"],
            model_version=options["model_version"],
            namespace=options["namespace"],
            path_template=options["path_template"],
            headers=parse_headers(options["header"] or []),
            rate=options["rate"],
            schedule=options["schedule"],
            arrival=options["arrival"],  # type: ignore[arg-type]
            concurrency=options["concurrency"],
            concurrency_range=options["concurrency_range"],
            sweep=options["sweep"],
            sweep_max_concurrency=options["sweep_max_concurrency"],
            duration=options["duration"],
            requests=options["requests"],
            warmup=options["warmup"],
            seed=options["seed"],
            timeout_s=options["timeout"],
            max_in_flight=options["max_in_flight"],
            connections=options["connections"],
            grpc_channels=options["grpc_channels"],
            late_ms=options["late_ms"],
            check_every=options["check_every"],
            slo_ms=options["slo_ms"],
            slo_percentile=options["slo_percentile"],
            max_refused_pct=options["max_refused_pct"],
            graph=options["graph"],
            engine=options["engine"],
            catalog=options["catalog"],
            prices=parse_price_overrides(options["price"] or []),
            default_hardware=options["default_hardware"],
            replica_mode=options["replicas"],  # type: ignore[arg-type]
            insecure=options["insecure"],
            progress=options["progress"],
        ).validated()
    except (LoadTesterError, CostError) as exc:
        raise _fail(exc) from None


def _progress_bar(progress: bool) -> Progress | None:
    """A live bar on a terminal; elsewhere (CI logs) a plain line, refreshed sparingly."""
    if progress and console.is_terminal:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
        )
    if progress:
        return Progress(
            TextColumn("{task.description} {task.fields[stats]}"),
            console=console,
            auto_refresh=False,
        )
    return None


def _progress_hook(bar: Progress | None) -> StepHook:
    """The runner's per-step hook: one bar task a step, fed the engine's running stats."""

    def hook(label: str, plan: StepPlan) -> ProgressFn | None:
        if bar is None:
            return None
        # A --requests step ends at its count, not at its plan's (slack) duration.
        total = plan.warmup + plan.duration if plan.duration and plan.requests is None else None
        task = bar.add_task(label, total=total, stats="")
        refreshes = [0]

        def update(stats: dict[str, Any]) -> None:
            p50 = stats["recent_p50_ms"]
            p50_text = "-" if p50 is None else f"{p50:.2f} ms"
            text = (
                f"ok {stats['ok']} err {stats['errors']} late {stats['late']} "
                f"drop {stats['dropped']} in-flight {stats['in_flight']} p50 {p50_text}"
                + (" (warm-up)" if stats["warming"] else "")
            )
            elapsed = stats["elapsed"] + (plan.warmup if not stats["warming"] else 0)
            bar.update(task, completed=elapsed if total else None, stats=text)
            refreshes[0] += 1
            if console.is_terminal or refreshes[0] % 10 == 0:
                bar.refresh()

        return update

    return hook


def _print_result(result: RunResult) -> None:
    """Tables, graph cost, Pareto front, error samples and warnings, all on stderr."""
    report.print(result.summary_table())
    stages = result.stages_table()
    if stages is not None:
        report.print(stages)
    if result.graph_cost is not None:
        console.print(
            f"graph cost: ${result.graph_cost['usd_per_hour']:.4f}/h "
            + ", ".join(
                f"{n['node']}: {n['replicas']}x {n['hardware']} ({n['share']:.2f}, {n['bound_by']})"
                for n in result.graph_cost["nodes"]
            )
        )
    if result.sweep and result.sweep.get("pareto_front"):
        front = ", ".join(
            f"{p['label']} (${p['usd_per_million']:.4f}/1M, p95 {p['p95_ms']:.2f} ms)"
            for p in result.sweep["pareto_front"]
        )
        console.print(f"Pareto front (cost vs p95): {front}")
        if result.sweep.get("best"):
            console.print(f"[bold green]cheapest meeting the SLO:[/] {result.sweep['best']}")
    for step in result.steps:
        for kind, sample in step.error_samples.items():
            console.print(f"[yellow]{step.label} {kind}[/] e.g. {sample}")
    for warning in result.warnings:
        console.print(f"[bold yellow]warning:[/] {warning}")


@app.command()
def trace(
    mean: Annotated[float, typer.Option(help="mean requests per second")],
    peak: Annotated[float, typer.Option(help="peak requests per second")],
    duration: Annotated[int, typer.Option(help="seconds")] = 600,
    seed: Annotated[int, typer.Option()] = 1,
    period: Annotated[float, typer.Option(help="seconds per diurnal cycle")] = 600.0,
    output: Annotated[Path, typer.Option("-o", "--output", help="per-second count file")] = Path(
        "trace.txt"
    ),
) -> None:
    """Write a bursty, diurnal per-second request-count trace for `--schedule trace:FILE`."""
    for option, value in (("--mean", mean), ("--peak", peak), ("--period", period)):
        if not math.isfinite(value):
            raise _fail(LoadTesterError(f"{option}: must be a finite number, got {value}"))
    try:
        counts = generate_trace(mean, peak, duration, seed, period)
    except LoadTesterError as exc:
        raise _fail(exc) from None
    header = (
        f"# async-load-tester trace: mean {mean:g}/s peak {peak:g}/s, {duration} s, seed {seed}\n"
    )
    output.write_text(header + "\n".join(str(c) for c in counts) + "\n")
    console.print(
        f"wrote {output}: {duration} s, mean {sum(counts) / len(counts):.1f}/s, "
        f"peak {max(counts)}/s, {sum(counts)} requests"
    )


@app.command()
def prices(
    catalog: Annotated[Path | None, typer.Option(help="override catalog file")] = None,
    price: Annotated[list[str] | None, typer.Option(help="CLASS=USD_PER_HOUR")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the price catalog used for $/1M inferences."""
    from infergraph.cost import CostError, load_catalog, parse_price_overrides

    try:
        cat = load_catalog(catalog, parse_price_overrides(price or []))
    except CostError as exc:
        raise _fail(exc) from None
    if as_json:
        dumped = cat.model_dump(mode="json")
        for name, c in cat.classes.items():
            room = c.allocatable
            dumped["classes"][name]["allocatable"] = {
                "vcpus": room.vcpus,
                "memory_gib": room.memory_gib,
            }
        sys.stdout.write(json.dumps(dumped, indent=2) + "\n")
        return
    table = Table(title=f"price catalog ({', '.join(cat.origin)})")
    columns = ("class", "provider", "vCPU", "GiB", "pods may ask", "GPU", "$/h", "source", "as of")
    for col in columns:
        table.add_column(col)
    for name, c in sorted(cat.classes.items(), key=lambda kv: kv[1].usd_per_hour):
        gpu = f"{c.gpus}x {c.gpu_model}" if c.gpus else "-"
        room = c.allocatable
        table.add_row(
            name,
            c.provider,
            f"{c.vcpus:g}",
            f"{c.memory_gib:g}",
            f"{room.vcpus:.3g} vCPU, {room.memory_gib:.3g} GiB",
            gpu,
            f"{c.usd_per_hour:.4f}",
            c.source,
            str(c.as_of or "-"),
        )
    Console().print(table)


if __name__ == "__main__":
    app()
