"""`infergraph render`: one graph to stdout, or every graph under k8s/graphs to k8s/rendered.

The lead mounts `app` (or calls `render_command`) in the main CLI; `make render` runs
`infergraph render --all --out k8s/rendered --storage-uri <bucket prefix>`, CI runs the same
with `--check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infergraph import container_images
from infergraph.engines import RENDERED, listing
from infergraph.engines import engine as engine_named
from infergraph.errors import GraphValidationError, RenderError
from infergraph.render import ENGINES, drift, render, render_tree, to_yaml, write_tree
from infergraph.render.options import SELDON_NAMESPACE, RenderOptions

# The render function is the app's callback (not a sub-command) so that mounting this app as
# `render` in the main CLI gives `infergraph render <graph> --engine ...`.
app = typer.Typer(
    help="Render InferenceGraphs into Seldon Core or KServe manifests.",
    context_settings={"allow_interspersed_args": True},
)

DEFAULT_GRAPHS = Path("k8s/graphs")
DEFAULT_OUT = Path("k8s/rendered")


# Where a deployment differs from the graph file (`RenderOptions`), named here so the command
# reads as its steps.
_StorageUri = Annotated[
    str | None,
    typer.Option(
        "--storage-uri",
        help="your bucket prefix for model-settings.json folders (<prefix>/<graph>/<node>); "
        "seldon-v2 needs it unless --settings-url or the graph's annotation says where",
    ),
]
_Registry = Annotated[str, typer.Option("--registry", help="image registry and organisation")]
_SettingsUrl = Annotated[
    str | None,
    typer.Option(
        "--settings-url",
        help="the operator's model-settings server (its chart's INFERGRAPH_SETTINGS_URL): "
        "render Seldon v2 Models as the operator applies them; without it their "
        "model-settings.json folders are under --storage-uri, for you to upload",
    ),
]
_PullSecrets = Annotated[
    list[str] | None,
    typer.Option(
        "--image-pull-secret",
        help="a Secret every graph pod pulls its images with (repeat for more)",
    ),
]


_SeldonNamespace = Annotated[
    str,
    typer.Option(
        "--seldon-namespace",
        help="Seldon Core v2's controller namespace, the only one it reads ServerConfigs from "
        "(empty: each graph's own, for a namespaced install)",
    ),
]


@app.callback(invoke_without_command=True)
def render_command(
    graph: Annotated[
        Path | None, typer.Argument(help="InferenceGraph YAML; omit with --all")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option("--engine", "-e", help=f"{listing(RENDERED)} (all with --all)"),
    ] = None,
    all_graphs: Annotated[
        bool, typer.Option("--all", help="render every graph under --graphs for every engine")
    ] = False,
    graphs: Annotated[Path, typer.Option(help="folder of graph files for --all")] = DEFAULT_GRAPHS,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write files here instead of stdout")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="fail if files under --out differ (no writing)")
    ] = False,
    storage_uri: _StorageUri = None,
    registry: _Registry = container_images.DEFAULT_REGISTRY,
    settings_url: _SettingsUrl = None,
    pull_secrets: _PullSecrets = None,
    seldon_namespace: _SeldonNamespace = SELDON_NAMESPACE,
) -> None:
    """Render one graph (stdout or --out) or, with --all, the whole k8s/graphs folder."""
    engines = (engine,) if engine else ENGINES
    options = RenderOptions(
        storage_uri=storage_uri,
        image_registry=registry,
        settings_url=settings_url,
        image_pull_secrets=tuple(pull_secrets or ()),
        seldon_namespace=seldon_namespace or None,
    )
    for name in engines:
        if name not in ENGINES:
            raise typer.BadParameter(f"unknown engine '{name}'; choose {', '.join(ENGINES)}")
    try:
        if all_graphs or check:
            if graph is not None:
                raise typer.BadParameter("give a graph file or --all, not both")
            _render_all(graphs, engines, options, out or DEFAULT_OUT, check)
            return
        if graph is None:
            raise typer.BadParameter("give a graph file, or --all")
        if engine is None:
            raise typer.BadParameter("--engine is required for a single graph")
        _render_one(graph, engine, options, out)
    except (RenderError, GraphValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:  # --out is a file, or read-only
        typer.echo(f"error: cannot write {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


def _render_all(
    graphs: Path, engines: tuple[str, ...], options: RenderOptions, target: Path, check: bool
) -> None:
    """Every graph for every engine: written under `target`, or with `check` compared with
    what is there (exit 1 naming each difference, so CI can say what to re-run)."""
    files = render_tree(graphs, engines, options)
    if check:
        problems = drift(files, target)
        if problems:
            typer.echo("rendered manifests are out of date:", err=True)
            for problem in problems:
                typer.echo(f"  - {problem}", err=True)
            typer.echo("run `make render` (this command without --check)", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(files)} rendered files up to date under {target}")
        return
    written = write_tree(files, target)
    typer.echo(f"wrote {len(written)} files under {target}")


def _render_one(graph: Path, engine: str, options: RenderOptions, out: Path | None) -> None:
    """One graph for one engine: its files under `out`, or its manifests as YAML on stdout
    (with KServe's notes on stderr, where they do not mix with the YAML)."""
    from infergraph.graph.plan import load_plan

    if out is not None:
        from infergraph.render import render_files

        files = {
            f"{engine}/{rel}": text for rel, text in render_files(graph, engine, options).items()
        }
        written = _write(files, out)
        typer.echo(f"wrote {len(written)} files under {out}")
        return
    objs = render(load_plan(graph), engine, options)
    for note in engine_named(engine).notes(objs):
        typer.echo(f"note: {note}", err=True)
    typer.echo(to_yaml(objs), nl=False)


def _write(files: dict[str, str], out: Path) -> list[Path]:
    """Write one graph's files without pruning the other graphs' files."""
    written = []
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


def main() -> None:  # pragma: no cover - convenience entry point
    app()
