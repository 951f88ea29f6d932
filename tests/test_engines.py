"""The engine table (infergraph.engines): one object per serving engine, asked by the CLI,
the renderers, the operator and the planner instead of string switches.

No process is started: the renderers are pure functions of a graph, and the CLIs run in
typer's runner.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app as main_app
from infergraph.engines import (
    ENGINES,
    PROFILED,
    RENDERED,
    Engine,
    UnknownEngineError,
    engine,
    names,
)
from infergraph.errors import RenderError
from infergraph.graph.plan import load_graph
from infergraph.operator import status as st
from infergraph.planner.endpoints import EndpointError, parse_endpoints
from infergraph.render import EXAMPLE_STORAGE, render, render_files
from infergraph.render.cli import app as render_app
from infergraph.render.options import RenderOptions

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "k8s" / "graphs"
RENDERED_DIR = ROOT / "k8s" / "rendered"
OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)


def test_names_are_unique_and_every_engine_is_found_by_its_name() -> None:
    assert len(set(names())) == len(ENGINES)
    for each in ENGINES:
        assert engine(each.name) is each


def test_an_unknown_engine_is_refused_naming_every_valid_one() -> None:
    with pytest.raises(UnknownEngineError) as caught:
        engine("ray-serve")
    message = str(caught.value)
    assert "unknown engine 'ray-serve'" in message
    for name in names():
        assert name in message
    assert caught.value.valid == names()


def test_a_known_engine_outside_the_asked_set_says_what_it_cannot_do() -> None:
    with pytest.raises(UnknownEngineError, match="engine 'local' cannot render manifests"):
        engine("local", RENDERED, "render manifests")
    with pytest.raises(RenderError) as caught:
        render(load_graph(GRAPHS / "cascade.yaml"), "local", OPTIONS)
    assert ", ".join(names(RENDERED)) in str(caught.value)


@pytest.mark.parametrize("graph", ["cascade", "ensemble"])
@pytest.mark.parametrize("serving", RENDERED, ids=lambda e: e.name)
def test_every_rendering_engine_renders_a_shipped_graph_as_committed(
    serving: Engine, graph: str
) -> None:
    """What each engine renders, through the table, is the committed k8s/rendered file."""
    files = render_files(GRAPHS / f"{graph}.yaml", serving.name, OPTIONS)
    assert files, serving.name
    for rel, text in files.items():
        assert (RENDERED_DIR / serving.name / rel).read_text() == text, rel
    objs = list(yaml.safe_load_all(files[f"{graph}.yaml"]))
    assert objs and all(o["metadata"]["name"] for o in objs)


@pytest.mark.parametrize("serving", RENDERED, ids=lambda e: e.name)
def test_every_rendering_engine_names_the_url_the_operator_reports(serving: Engine) -> None:
    graph = load_graph(GRAPHS / "cascade.yaml")
    url = st.endpoint(graph, serving.name, "ml", [])
    assert url.startswith("http://") and ".ml" in url


def _plain(output: str) -> str:
    """CLI output without rich's box drawing and line wrapping."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", output))


def test_the_render_cli_offers_the_tables_engines() -> None:
    help_text = _plain(CliRunner().invoke(render_app, ["--help"]).output)
    assert f"{names(RENDERED)[0]}, " in help_text
    for name in names(RENDERED):
        assert name in help_text
    bad = CliRunner().invoke(render_app, [str(GRAPHS / "cascade.yaml"), "--engine", "ray-serve"])
    assert bad.exit_code != 0
    assert "unknown engine 'ray-serve'" in _plain(bad.output)
    assert ", ".join(names(RENDERED)) in _plain(bad.output)


def test_the_profile_cli_offers_the_tables_profiled_engines() -> None:
    """`--engine` of `infergraph profile` lists the engines whose nodes it can reach, each
    with how it names them, and refuses another naming those."""
    text = _plain(CliRunner().invoke(main_app, ["profile", "--help"]).output)
    for each in PROFILED:
        assert f"{each.name} (" in text
    graph = load_graph(GRAPHS / "cascade.yaml")
    with pytest.raises(EndpointError) as caught:
        parse_endpoints("http://h:1", [], graph, "seldon-v1")
    assert str(caught.value) == f"--engine 'seldon-v1': choose one of {', '.join(names(PROFILED))}"


def test_served_names_and_routing_headers_per_engine() -> None:
    """What the profiler sends each engine: the node's served name and the mesh header."""
    graph = load_graph(GRAPHS / "cascade.yaml")
    local = parse_endpoints("http://h:1", [], graph, "local")
    assert local.node_url("fast") == "http://h:1/v2/models/fast/infer"
    assert local.node_headers("fast") == {} and local.graph_headers() == {}
    kserve = parse_endpoints("http://h:1", [], graph, "kserve")
    assert kserve.node_url("fast") == "http://h:1/v2/models/cascade-fast/infer"
    assert kserve.node_headers("fast") == {}
    mesh = parse_endpoints("http://h:1", [], graph, "seldon-v2")
    assert mesh.node_headers("fast") == {"seldon-model": "cascade-fast"}
    assert mesh.graph_headers() == {"seldon-model": "cascade.pipeline"}


def test_the_table_imports_no_renderer() -> None:
    """The planner and operator ask the table without loading every renderer."""
    code = (
        "import sys, infergraph.engines as e; e.engine('kserve'); "
        "print(sorted(m for m in sys.modules if m.startswith('infergraph.render')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
