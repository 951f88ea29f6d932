"""`infergraph` command line: validate, serve, render and describe inference graphs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infergraph.errors import GraphValidationError, InfergraphError
from infergraph.json_types import Manifest, as_objects

if TYPE_CHECKING:
    from infergraph.checkpoints.builder import Scale
    from infergraph.cost import PriceCatalog
    from infergraph.graph.model import InferenceGraph

app = typer.Typer(
    help="Inference graphs on MLServer and Seldon: validate, serve locally, render, measure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> NoReturn:
    # The message is text (paths, a server's log tail with `[mlserver]`), not markup.
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="InferenceGraph YAML files")],
    engines: Annotated[
        list[str] | None,
        typer.Option(
            "--engine",
            help="also check the pods this engine runs for each graph (repeat): "
            "seldon-v2, seldon-v1, kserve",
        ),
    ] = None,
    catalog: Annotated[
        Path | None, typer.Option(help="price catalog override YAML: more hardware classes")
    ] = None,
) -> None:
    """Check graph files (schema, references, cycles, datatypes, GPU use, pods that fit their
    hardware class) before anything runs."""
    from infergraph.cost import load_catalog
    from infergraph.graph.plan import load_graph

    try:
        deploying = [_deploying_engine(name) for name in engines or []]
        classes = load_catalog(catalog)
    except InfergraphError as exc:
        _fail(str(exc))
    table = Table("graph", "nodes", "GPUs", "status")
    failed = False
    for path in files:
        try:
            graph = load_graph(path)
        except GraphValidationError as exc:
            failed = True
            table.add_row(escape(str(path)), "-", "-", "[red]invalid[/]")
            err.print(f"[red]{escape(str(exc))}[/]")
            continue
        problems = _fit_problems(graph, classes, deploying)
        for problem in problems:
            err.print(f"[red]{escape(f'{graph.name}: {problem}')}[/]")
        failed = failed or bool(problems)
        gpus = sum(n.resources.gpu * max(n.replicas, 1) for n in graph.spec.nodes)
        status = "[red]does not fit[/]" if problems else "[green]valid[/]"
        table.add_row(escape(graph.name), str(len(graph.spec.nodes)), str(gpus), status)
    console.print(table)
    if failed:
        raise typer.Exit(1)


def _deploying_engine(name: str) -> str:
    from infergraph.engines import RENDERED, engine

    return engine(name, RENDERED, "deploy a graph").name


def _fit_problems(graph: InferenceGraph, catalog: PriceCatalog, engines: list[str]) -> list[str]:
    """Why a pod of `graph` could never be scheduled: its nodes' own resources first, then
    each engine's pods for it (or why that engine cannot render it at all)."""
    from infergraph.cost import unschedulable
    from infergraph.render import engine_pods

    problems = unschedulable(graph, catalog)
    if problems:  # the engines' pods hold the node's resources: they would say it again
        return problems
    for name in engines:
        try:
            pods = engine_pods(graph, name)
        except InfergraphError as exc:
            problems.append(f"on {name}: {exc}")
            continue
        problems += [f"on {name}: {p}" for p in unschedulable(graph, catalog, name, pods)]
    return problems


@app.command(name="node-catalog")
def node_catalog(
    nodes: Annotated[Path, typer.Argument(help="`kubectl get nodes -o json` output")],
    out: Annotated[Path, typer.Option(help="catalog override YAML to write")],
    pods: Annotated[
        Path | None, typer.Option(help="`kubectl get pods -A -o json` output: per-node pods")
    ] = None,
    catalog: Annotated[Path | None, typer.Option(help="price catalog override YAML")] = None,
) -> None:
    """Write what your cluster's Nodes leave a new pod, per instance type (their
    status.allocatable less their DaemonSet and mirror pods' requests), as a price-catalog
    override for --catalog and the operator's INFERGRAPH_PRICE_CATALOG."""
    from infergraph.cost import load_catalog
    from infergraph.cost.observed import node_rooms, overrides

    try:
        rooms = node_rooms(_list_items(nodes), _list_items(pods) if pods else [])
        classes, unknown = overrides(rooms, load_catalog(catalog))
    except (InfergraphError, OSError, json.JSONDecodeError) as exc:
        _fail(str(exc))
    except UnicodeDecodeError as exc:  # PowerShell 5 redirects `kubectl ... -o json` as UTF-16
        _fail(f"{nodes if pods is None else f'{nodes} or {pods}'}: not UTF-8 text ({exc.reason})")
    if not classes:
        _fail(f"no Node in {nodes} has an instance type the price catalog knows: {unknown}")
    header = f"# What the Nodes in {nodes} leave a new pod"
    header += f" after the per-node pods in {pods}\n" if pods else " (per-node pods not given)\n"
    out.write_text(header + yaml.safe_dump({"classes": classes}, sort_keys=True))
    table = Table("class", "nodes", "allocatable vCPU", "allocatable GiB")
    for name, room in sorted(classes.items()):
        seen = sum(1 for r in rooms if r.instance_type in (name, name.removesuffix("-per-gpu")))
        table.add_row(
            name, str(seen), f"{room['allocatable_vcpus']:g}", f"{room['allocatable_memory_gib']:g}"
        )
    console.print(table)
    if unknown:
        err.print(f"instance types without a price-catalog class, left out: {', '.join(unknown)}")
    console.print(f"wrote {out}")


def _list_items(path: Path) -> list[Manifest]:
    """The items of a `kubectl get ... -o json` List."""
    document = json.loads(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise InfergraphError(f"{path}: not a Kubernetes List (kubectl get ... -o json)")
    return as_objects(document["items"], f"{path}: items")


@app.command()
def families() -> None:
    """List the model families with their tensors and default checkpoints."""
    from infergraph.components.registry import component_class, family_names

    table = Table("family", "inputs", "outputs", "GPU", "default checkpoint")
    for name in family_names():
        try:
            cls = component_class(name)
        except ImportError as exc:
            table.add_row(name, "-", "-", "-", f"[red]unavailable: {exc}[/]")
            continue
        fmt = lambda specs: ", ".join(f"{s.name}:{s.datatype}{list(s.shape)}" for s in specs)  # noqa: E731
        table.add_row(
            name,
            fmt(cls.inputs),
            fmt(cls.outputs),
            "yes" if cls.uses_gpu else "no",
            cls.default_model or "-",
        )
    console.print(table)


@app.command()
def crd(
    out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None,
    helm_release: Annotated[
        str, typer.Option(help="Helm release that may adopt it later ('' for none)")
    ] = "infergraph",
    helm_namespace: Annotated[str, typer.Option(help="that release's namespace")] = "infergraph",
) -> None:
    """Print the InferenceGraph CustomResourceDefinition generated from the graph model.

    It carries Helm's ownership metadata for `helm_release` so that a CRD applied by hand can
    be adopted by `helm install <helm_release> charts/infergraph -n <helm_namespace>` (Helm
    refuses to take over an object without it: "invalid ownership metadata")."""
    from infergraph.graph.crd import crd_manifest, helm_owned

    manifest = crd_manifest()
    if helm_release:
        manifest = helm_owned(manifest, helm_release, helm_namespace)
    text = yaml.safe_dump(manifest, sort_keys=False)
    if out is None:  # as written, not through rich: it wraps at the console's width
        typer.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {exc.filename}: {exc.strerror}")
    console.print(f"wrote {out}")


def _offline_scale(value: str, offline: bool = True) -> Scale:
    if value not in ("full", "tiny"):
        _fail(f"--offline-scale must be full or tiny, not '{value}'")
    if value == "tiny" and not offline:
        _fail("--offline-scale tiny needs --offline (without it the hub's checkpoints are used)")
    return "tiny" if value == "tiny" else "full"


@app.command()
def serve(
    graph_file: Annotated[Path, typer.Argument(help="InferenceGraph YAML")],
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="router port; 0 for any free one")
    ] = 8080,
    offline: Annotated[
        bool, typer.Option(help="build random-weight checkpoints locally instead of the hub")
    ] = False,
    offline_scale: Annotated[
        str, typer.Option(help="offline checkpoint size: full (real architecture) or tiny")
    ] = "full",
    isolate: Annotated[bool, typer.Option(help="one MLServer process per node")] = False,
) -> None:
    """Run a graph on this machine: MLServer hosts the nodes, a local router runs the topology."""
    from infergraph.graph.plan import load_plan
    from infergraph.runner.local import run_graph
    from infergraph.serving.heap import settled_heap

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scale = _offline_scale(offline_scale, offline)
    try:
        plan = load_plan(graph_file)  # compiled once: the router runs this plan
    except GraphValidationError as exc:
        _fail(str(exc))
    graph = plan.graph
    if offline:
        console.print(
            "[bold yellow]OFFLINE MODE: every node runs its real architecture with RANDOM "
            "weights. Outputs are meaningless; latency and cost are real.[/]"
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # The graph runs until a signal; the spinner covers only its start, which a signal
        # also ends (run_graph stops what it started).
        async with contextlib.AsyncExitStack() as running_graph:
            with console.status(f"starting {len(graph.spec.nodes)} node(s) of '{graph.name}'..."):
                started = run_graph(
                    plan, port=port, offline=offline, offline_scale=scale, isolate=isolate
                )
                running = await _until_stopped(running_graph.enter_async_context(started), stop)
            if running is None:
                for sig in (signal.SIGINT, signal.SIGTERM):  # a second one ends it at once
                    loop.remove_signal_handler(sig)
                console.print("stopped before the graph was ready")
                return
            console.print(f"[green]graph '{graph.name}' ready[/] at {running.infer_url}")
            for server in running.servers:
                console.print(f"  nodes {', '.join(server.nodes)}: {server.base} (MLServer)")
            with settled_heap():  # the router's process: no full-GC stalls on its hops
                await stop.wait()
        console.print("stopped")

    try:
        asyncio.run(main())
    except InfergraphError as exc:
        _fail(str(exc))


async def _until_stopped[T](work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`work`'s result, or None (`work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


@app.command()
def demo(
    graph_file: Annotated[Path, typer.Option("--graph", help="graph to demo")] = Path(
        "k8s/graphs/cascade.yaml"
    ),
    scale: Annotated[
        str,
        typer.Option(
            help="demo: smaller real architectures where the graph names large ones; full: the "
            "file's checkpoints at full size; tiny: test-sized checkpoints"
        ),
    ] = "demo",
    hardware: Annotated[
        str | None,
        typer.Option(
            help="price-catalog class the served graph is priced as (default: c7i.large); on a "
            "machine with more CPUs the server is pinned to as many as it has vCPUs"
        ),
    ] = None,
    plan_rate: Annotated[
        float | None,
        typer.Option(help="req/s to plan for (default: the round rate nearest 10x the knee's)"),
    ] = None,
    step_seconds: Annotated[
        float, typer.Option(help="longest measured seconds per swept rate")
    ] = 20.0,
    out: Annotated[Path, typer.Option(help="results folder (replaced)")] = Path("demo-results"),
) -> None:
    """Serve a graph offline, find its knee, price it, plan it and render it (about 3 min)."""
    try:
        from infergraph.demo import DemoSettings, run_demo
        from infergraph.demo.sizing import DEFAULT_HARDWARE
        from infergraph.demo.sweep import SweepSettings
    except ImportError as exc:
        _fail(f"the demo needs the load tester and MLServer (uv sync, or make demo): {exc}")

    if scale not in ("demo", "full", "tiny"):
        _fail(f"--scale must be demo, full or tiny, not '{scale}'")
    if plan_rate is not None and not plan_rate > 0:  # also refuses nan
        _fail(f"--plan-rate must be a request rate > 0, got {plan_rate}")
    if not 1 <= step_seconds <= 600:  # also refuses nan
        _fail(f"--step-seconds must be between 1 and 600, got {step_seconds}")
    sweep = SweepSettings(max_step_s=step_seconds, min_step_s=min(8.0, step_seconds))
    settings = DemoSettings(
        graph_file=graph_file,
        out=out,
        scale=scale,  # type: ignore[arg-type]
        hardware=hardware or DEFAULT_HARDWARE,
        plan_rate=plan_rate,
        sweep=sweep,
    )
    try:
        run_demo(settings)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except InfergraphError as exc:
        _fail(str(exc))


@app.command()
def operator(
    engine: Annotated[
        str | None,
        typer.Option(help="engine for graphs that name none (env INFERGRAPH_DEFAULT_ENGINE)"),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            help="watch only this namespace (repeatable) (env INFERGRAPH_WATCH_NAMESPACES)"
        ),
    ] = None,
) -> None:
    """Run the InferenceGraph operator (kopf): render applied graphs, apply them, report status."""
    try:
        from infergraph.operator.handlers import main
    except ImportError as exc:
        _fail(
            f"the operator needs the 'operator' extra (pip install 'infergraph[operator]'): {exc}"
        )
        return

    try:
        main(default_engine=engine, namespaces=tuple(namespace or ()))
    except InfergraphError as exc:
        _fail(str(exc))


@app.command(name="kserve-router-config")
def kserve_router_config() -> None:
    """Read KServe's inferenceservice-config `router` value on stdin; print the merge patch
    that adds the trace headers to its `headers.propagate` (KServe's router forwards no
    header otherwise; docs/rendering.md, Trace and request-id headers)."""
    import sys

    from infergraph.render.kserve import router_config_with_trace_headers

    try:
        router = router_config_with_trace_headers(sys.stdin.read())
    except InfergraphError as exc:
        _fail(str(exc), code=2)
    typer.echo(json.dumps({"data": {"router": router}}))


def _mount_optional() -> None:
    """Sub-commands that live with their feature."""
    from infergraph.planner.commands import plan, profile

    app.command(name="profile")(profile)
    app.command(name="plan")(plan)
    try:
        from infergraph.render.cli import app as render_app
    except ImportError:
        return
    app.add_typer(render_app, name="render")


_mount_optional()

if __name__ == "__main__":
    app()
