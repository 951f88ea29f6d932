"""Render an InferenceGraph into Seldon Core manifests (v2 Pipelines, v1 SeldonDeployments).

`render(graph, engine)` returns plain dicts; `to_yaml` makes the multi-document YAML that is
committed under k8s/rendered/<engine>/<graph>.yaml so `kubectl apply -f` works without the
kit installed. `render_tree` lays out everything for one engine, model-settings included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph, load_graph
from infergraph.render import common, seldon_v1, seldon_v2

ENGINES = ("seldon-v2", "seldon-v1")
HEADER = (
    "# Rendered by `infergraph render {source} --engine {engine}`; do not edit by hand.\n"
    "# Regenerate with `infergraph render --all --out k8s/rendered` (make render).\n"
)


def render(graph: InferenceGraph, engine: str) -> list[dict[str, Any]]:
    """All Kubernetes objects for `graph` on `engine`; RenderError says what cannot map and why."""
    if engine == "seldon-v2":
        return seldon_v2.render(graph)
    if engine == "seldon-v1":
        return seldon_v1.render(graph)
    raise RenderError(engine, f"unknown engine; choose one of {', '.join(ENGINES)}")


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literals, no anchors (manifests are read by people)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objs: list[dict[str, Any]]) -> str:
    """Multi-document YAML, keys in the order the renderer wrote them."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100) for obj in objs
    )


def render_files(graph_path: Path, engine: str) -> dict[str, str]:
    """Relative path -> content for one graph: `<graph>.yaml`, plus v2 model-settings files."""
    graph = load_graph(graph_path)
    objs = render(graph, engine)
    files = {
        f"{graph.name}.yaml": HEADER.format(source=graph_path.name, engine=engine) + to_yaml(objs)
    }
    if engine == "seldon-v2":
        for model, settings in seldon_v2.model_settings(graph).items():
            files[f"{graph.name}/model-settings/{model}/model-settings.json"] = common.dumps(
                settings
            )
    return files


def render_tree(graphs_dir: Path, engines: tuple[str, ...] = ENGINES) -> dict[str, str]:
    """Every graph file under `graphs_dir` for every engine: `<engine>/<relative path>` -> text."""
    out: dict[str, str] = {}
    for path in sorted(graphs_dir.glob("*.yaml")) + sorted(graphs_dir.glob("*.yml")):
        for engine in engines:
            for rel, text in render_files(path, engine).items():
                out[f"{engine}/{rel}"] = text
    return out


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
    "RenderError",
    "drift",
    "render",
    "render_files",
    "render_tree",
    "to_yaml",
    "write_tree",
]
