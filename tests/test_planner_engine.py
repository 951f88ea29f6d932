"""`infergraph plan --engine E`: the plan priced as the engine runs it.

Without `--engine` a plan charges each replica its node's `resources`; on a cluster every
engine adds to that (sidecars in a node's pods, pods of its own), and the operator's
`status.pricePerHour` charges what it adds (`infergraph.cost.engine_cost`). A plan made for
an engine must cost what the operator will report for the planned graph, and must not put a
node on a class its pod, sidecars included, does not fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app
from infergraph.cost import engine_cost, graph_cost, load_catalog
from infergraph.cost.pricing import PriceCatalog
from infergraph.engines import RENDERED, engine
from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import parse_graph
from infergraph.planner.planning import PlanInputs, PlanOutcome, plan_graph
from infergraph.planner.search import SearchSettings
from infergraph.planner.workload import Workload
from infergraph.render import render
from infergraph.render.options import RenderOptions
from tests.planner_fixtures import chain_graph, node_entry, write_profile

# A 16-core class beside the catalog's 8-core ones, for a node whose pod outgrows 8 cores.
BIG = {"vcpus": 16, "memory_gib": 32, "gpus": 0, "usd_per_hour": 0.72}


def _catalog(tmp_path: Path) -> PriceCatalog:
    extra = tmp_path / "catalog.yaml"
    extra.write_text(yaml.safe_dump({"classes": {"big16": BIG}}))
    return load_catalog(extra)


def _profiles(tmp_path: Path, classes: tuple[str, ...]) -> list[Path]:
    nodes = {"a": node_entry(2.0, 1.0, 8), "b": node_entry(4.0, 2.0, 8)}
    return [write_profile(tmp_path / f"{c}.json", "chain", c, nodes) for c in classes]


def _plan(
    graph: InferenceGraph, profiles: list[Path], catalog: PriceCatalog, on: str | None
) -> PlanOutcome:
    return plan_graph(
        PlanInputs(
            graph,
            profiles,
            Workload.constant(80.0, 20),
            catalog,
            SearchSettings(slo_ms=200.0, percentile=99, batch_sizes=[1, 2]),
            autoscale="off",
            engine=on,
        )
    )


def _operator_price(planned: InferenceGraph, on: str, catalog: PriceCatalog) -> float:
    """What the operator's status.pricePerHour says for the planned graph on `on`."""
    runs = engine(on, RENDERED, "deploy a graph")
    objs = render(planned, on, RenderOptions(storage_uri="s3://bucket/prefix"))
    return engine_cost(planned, on, runs.pods_of(objs), catalog).usd_per_hour


def _planned(outcome: PlanOutcome) -> InferenceGraph:
    from infergraph.planner.report import planned_manifest

    return parse_graph(planned_manifest(outcome))


@pytest.mark.parametrize("on", ["seldon-v2", "seldon-v1", "kserve"])
def test_a_plan_for_an_engine_costs_what_the_operator_reports(tmp_path: Path, on: str) -> None:
    catalog = _catalog(tmp_path)
    graph = parse_graph(chain_graph(["a", "b"]))
    profiles = _profiles(tmp_path, ("c6i.2xlarge",))
    neutral = _plan(graph, profiles, catalog, None)
    outcome = _plan(graph, profiles, catalog, on)
    planned = _planned(outcome)

    # Held at its planned replicas, the plan costs what the operator charges for it.
    assert outcome.peak_usd_per_hour == pytest.approx(_operator_price(planned, on, catalog))
    # Each node's replica price is its pod's on that engine, sidecars included.
    rows = {c.node: c for c in engine_cost(planned, on, _pods(planned, on), catalog).nodes}
    for name, option in outcome.best.options.items():
        assert option.usd_per_replica_hour == pytest.approx(rows[name].usd_per_replica_hour)
    # The engine's own pods are the plan's, priced apart from the nodes.
    own = [c for c in rows.values() if c.part == "engine"]
    assert [c.node for c in outcome.engine_pods] == [c.node for c in own]
    assert outcome.engine_usd_per_hour == pytest.approx(sum(c.usd_per_hour for c in own))
    # A 2-core node on an 8-core class: what the engine adds costs something on every engine.
    assert outcome.peak_usd_per_hour > neutral.peak_usd_per_hour
    assert neutral.engine_pods == ()
    assert neutral.peak_usd_per_hour == pytest.approx(
        graph_cost(_planned(neutral), catalog).usd_per_hour
    )


def _pods(planned: InferenceGraph, on: str) -> list:
    objs = render(planned, on, RenderOptions(storage_uri="s3://bucket/prefix"))
    return engine(on, RENDERED, "deploy a graph").pods_of(objs)


def test_a_class_the_engines_pod_outgrows_is_not_planned(tmp_path: Path) -> None:
    """7.9 cores fit an 8-core c6i.2xlarge (EKS leaves pods 7.91 of them); with Seldon v2's
    agent and rclone (0.25 cores) the pod does not, so the plan for Seldon v2 takes the
    16-core class."""
    catalog = _catalog(tmp_path)
    graph = parse_graph(chain_graph(["a", "b"], cpu="7900m"))
    both = _profiles(tmp_path, ("c6i.2xlarge", "big16"))
    neutral = _plan(graph, both, catalog, None)
    assert {o.hardware for o in neutral.best.options.values()} == {"c6i.2xlarge"}
    on_v2 = _plan(graph, both, catalog, "seldon-v2")
    assert {o.hardware for o in on_v2.best.options.values()} == {"big16"}
    assert on_v2.peak_usd_per_hour == pytest.approx(
        _operator_price(_planned(on_v2), "seldon-v2", catalog)
    )

    small_only = _profiles(tmp_path, ("c6i.2xlarge",))
    with pytest.raises(
        InfergraphError,
        match=r"node 'a'.*cpu request does not fit on one 'c6i\.2xlarge' instance "
        r"\(1\.03x its allocatable with what seldon-v2 adds\)",
    ):
        _plan(graph, small_only, catalog, "seldon-v2")


def test_plan_command_prices_on_the_engine_and_refuses_one_that_runs_nothing(
    tmp_path: Path,
) -> None:
    graph_file = tmp_path / "chain.yaml"
    graph_file.write_text(yaml.safe_dump(chain_graph(["a", "b"])))
    (profile,) = _profiles(tmp_path, ("c6i.2xlarge",))
    out = tmp_path / "plan"
    base = ["plan", str(graph_file), "--profiles", str(profile), "--slo-ms", "200"]
    base += ["--rate", "40", "--duration", "20", "--batch-sizes", "1,2", "--out", str(out)]

    for bad, said in (("local", "cannot"), ("triton", "unknown engine 'triton'")):
        refused = CliRunner().invoke(app, [*base, "--engine", bad])
        assert refused.exit_code == 1, refused.output
        assert said in refused.output and "seldon-v2, seldon-v1, kserve" in refused.output
        assert not out.exists()

    result = CliRunner().invoke(app, [*base, "--engine", "kserve"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "plan.json").read_text())
    assert report["engine"]["name"] == "kserve"
    # KServe runs the graph's router as a Deployment of its own (knative_reconciler.go).
    assert [p["source"] for p in report["engine"]["pods"]] == ["InferenceGraph/chain"]
    nodes = sum(n["usd_per_hour"] for n in report["plan"]["nodes"].values())
    assert report["usd_per_hour"] == pytest.approx(nodes + report["engine"]["usd_per_hour"])
    # Every $/hour the report gives is the graph's on the engine, the Pareto front's too.
    assert report["plan"]["usd_per_hour"] == pytest.approx(report["usd_per_hour"])
    assert report["search_load"]["usd_per_hour"] == pytest.approx(report["peak_usd_per_hour"])
    chosen = report["search_load"]["nodes"]
    same = [p for p in report["pareto"] if p["nodes"] == chosen]
    assert [p["usd_per_hour"] for p in same] == [report["search_load"]["usd_per_hour"]]
    planned = parse_graph(yaml.safe_load((out / "chain.planned.yaml").read_text()))
    assert report["peak_usd_per_hour"] == pytest.approx(
        _operator_price(planned, "kserve", load_catalog())
    )
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "on kserve (sidecars included)" in said and "its own (InferenceGraph/chain)" in said
    # Which room a pod had on its class, and on whose word (tests/test_allocatable.py).
    room = "c6i.2xlarge 7.91 of 8 vCPU, 13.8 of 16 GiB (EKS's default reservation)"
    assert any(room in line for line in report["assumptions"]), report["assumptions"]
