"""Render an InferenceGraph into Seldon Core (v2 Pipelines, v1 SeldonDeployments) or KServe
manifests (InferenceServices and an InferenceGraph).

`render(graph, engine)` returns plain dicts; `to_yaml` makes the multi-document YAML that is
committed under k8s/rendered/<engine>/<graph>.yaml so `kubectl apply -f` works without the
kit installed. `render_tree` lays out everything for one engine, model-settings included.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from infergraph import engines as engine_table
from infergraph.cost.pods import PodShape
from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, load_plan, plan_of
from infergraph.json_types import Manifest, object_or_empty
from infergraph.render import autoscaling, common
from infergraph.render.options import RenderOptions

# The engines that render manifests, in the table's order (infergraph.engines).
ENGINES = engine_table.names(engine_table.RENDERED)
HEADER = (
    "# Rendered by `infergraph render {source} --engine {engine}`; do not edit by hand.\n"
    "# Regenerate the committed tree with `make render` (it passes the placeholder bucket).\n"
)


# The storage prefix of the committed example manifests: not a bucket anyone can own (S3
# names are lower-case), so nothing is fetched from it until a user renders with their own.
EXAMPLE_STORAGE = "s3://REPLACE-WITH-YOUR-BUCKET/infergraph"
# What a rendering made only to read its pods' requests names as storage: Seldon v2 needs a
# prefix, and no container's requests depend on it.
PRICING_STORAGE = "s3://pricing-only/infergraph"


def render(
    graph: InferenceGraph | GraphPlan, engine: str, options: RenderOptions | None = None
) -> list[Manifest]:
    """All Kubernetes objects for `graph` on `engine`; RenderError says what cannot map and why.

    A graph built in code is compiled here, once; a compiled plan is rendered as it is.
    """
    objs = _rendering(engine).render(plan_of(graph), options)
    _refuse_same_names(engine, objs)
    return objs


def engine_pods(graph: InferenceGraph | GraphPlan, engine: str) -> list[PodShape]:
    """The pods `engine` runs for `graph`, with what each requests: its rendering read by
    the engine's pod reader, what `infergraph.cost.engine_cost` prices. The operator reads
    the objects it has rendered; the planner and the load tester, which deploy nothing,
    render here."""
    runs = engine_table.engine(engine, engine_table.RENDERED, "deploy a graph")
    return runs.pods_of(render(graph, runs.name, RenderOptions(storage_uri=PRICING_STORAGE)))


def _refuse_same_names(engine: str, objs: list[Manifest]) -> None:
    """Two objects of one kind and name would be one object once applied, the later one
    winning: a node named like something the engine names for itself (Seldon v2's
    `<graph>-plumbing` Server) would lose its model server or the helpers theirs."""
    seen: set[tuple[str, str, str]] = set()
    for obj in objs:
        meta = object_or_empty(obj, "metadata")
        key = (str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))
        if key in seen:
            raise RenderError(
                engine,
                f"two objects are {key[0]} '{key[2]}': a node's name collides with one the "
                "engine's objects use; rename the node",
            )
        seen.add(key)


def _rendering(name: str) -> engine_table.Engine:
    """The engine `name`, one that renders; RenderError names those that do."""
    try:
        return engine_table.engine(name, engine_table.RENDERED, "render manifests")
    except engine_table.UnknownEngineError as exc:
        raise RenderError(name, str(exc)) from None


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literals, no anchors (manifests are read by people)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objs: list[Manifest]) -> str:
    """Multi-document YAML, keys in the order the renderer wrote them."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100) for obj in objs
    )


def render_files(
    graph_path: Path, engine: str, options: RenderOptions | None = None
) -> dict[str, str]:
    """Relative path -> content for one graph: `<graph>.yaml`, plus v2 model-settings files."""
    plan = load_plan(graph_path)  # compiled once, for the objects and the settings files
    graph = plan.graph
    objs = render(plan, engine, options)
    files = {
        f"{graph.name}.yaml": HEADER.format(source=graph_path.name, engine=engine) + to_yaml(objs)
    }
    for model, settings in _rendering(engine).model_settings(plan, options).items():
        files[f"{graph.name}/model-settings/{model}/model-settings.json"] = common.dumps(settings)
    return files


def render_tree(
    graphs_dir: Path, engines: tuple[str, ...] = ENGINES, options: RenderOptions | None = None
) -> dict[str, str]:
    """Every graph file under `graphs_dir` for every engine: `<engine>/<relative path>` -> text.

    Each engine folder also gets the cluster-wide Prometheus wiring its scalers need.
    """
    out: dict[str, str] = {}
    paths = sorted(graphs_dir.glob("*.yaml")) + sorted(graphs_dir.glob("*.yml"))
    if not paths:  # else the tree's own files alone would prune every rendered graph
        what = "holds" if graphs_dir.is_dir() else "is not a folder, so it holds"
        problem = f"'{graphs_dir}' {what} no graph files (*.yaml, *.yml)"
        raise RenderError(", ".join(engines), problem)
    for path in paths:
        for engine in engines:
            for rel, text in render_files(path, engine, options).items():
                out[f"{engine}/{rel}"] = text
    for name in engines:
        if _rendering(name).metrics_adapter:
            out[f"{name}/prometheus-adapter-values.yaml"] = ADAPTER_HEADER + yaml.dump(
                autoscaling.prometheus_adapter_rules(), Dumper=_Dumper, sort_keys=False, width=100
            )
    return out


ADAPTER_HEADER = (
    "# Values for the prometheus-adapter Helm chart: the custom metrics the Seldon v2 HPAs\n"
    "# read (`helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter\n"
    "# -f prometheus-adapter-values.yaml`). Generated by `make render`; do not edit by hand.\n"
)


def write_tree(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write rendered files and delete stale ones under the engine folders we own."""
    written = []
    for rel, text in files.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
        written.append(target)
    engines = {rel.split("/", 1)[0] for rel in files}
    for engine in engines:
        for stale in (out_dir / engine).rglob("*"):
            if stale.is_file() and str(stale.relative_to(out_dir)) not in files:
                stale.unlink()
    return written


def drift(files: dict[str, str], out_dir: Path) -> list[str]:
    """Paths whose committed content differs from what the renderer produces now."""
    problems = []
    for rel, text in sorted(files.items()):
        target = out_dir / rel
        if not target.exists():
            problems.append(f"{rel}: missing")
        elif target.read_text() != text:
            problems.append(f"{rel}: differs from the renderer's output")
    engines = {rel.split("/", 1)[0] for rel in files}
    for engine in sorted(engines):
        base = out_dir / engine
        if base.exists():
            for path in sorted(base.rglob("*")):
                rel = str(path.relative_to(out_dir))
                if path.is_file() and rel not in files:
                    problems.append(f"{rel}: no graph renders it any more")
    return problems


__all__ = [
    "ENGINES",
    "EXAMPLE_STORAGE",
    "RenderError",
    "RenderOptions",
    "drift",
    "render",
    "render_files",
    "render_tree",
    "to_yaml",
    "write_tree",
]
