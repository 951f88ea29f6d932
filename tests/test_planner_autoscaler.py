"""The autoscaler replay (the HPA algorithm as rendered) and what it does to a plan."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from infergraph.cost.pricing import load_catalog
from infergraph.graph.plan import parse_graph
from infergraph.planner.autoscaler import ScalerModel, replay
from infergraph.planner.planning import PlanInputs, plan_graph, planned_manifest
from infergraph.planner.search import SearchSettings
from infergraph.planner.simulator import NodeConfig, ServiceModel, simulate_node, trace_arrivals
from infergraph.planner.workload import Workload
from infergraph.render import ENGINES, RenderOptions, render
from tests.planner_fixtures import chain_graph, node_entry, write_profile


def _arrivals(counts: list[float], seed: int = 0) -> np.ndarray:
    return trace_arrivals(counts, np.random.default_rng(seed))


def test_steady_rate_holds_the_replicas_the_target_asks_for():
    model = ScalerModel(per_replica_rps=50.0, min_replicas=1, max_replicas=20)
    schedule = replay(model, _arrivals([200.0] * 900), 0.0, 900.0)
    assert schedule.peak == 4  # 200 req/s over 50 per replica (within the 10 % tolerance)
    assert schedule.replica_seconds == pytest.approx(4 * 900.0)
    assert set(schedule.ready_at(np.array([1.0, 450.0, 899.0])).tolist()) == {4}


def test_scale_up_is_rate_limited_and_new_pods_wait_for_startup():
    model = ScalerModel(per_replica_rps=50.0, min_replicas=1, max_replicas=20, startup_s=40.0)
    counts = [100.0] * 300 + [500.0] * 600
    schedule = replay(model, _arrivals(counts), 0.0, 900.0)
    assert schedule.ready_at(np.array([299.0]))[0] == 2
    # The rate query sees the step at once (within one 15 s sync), but the rendered policy
    # adds at most 2 pods per 30 s and each takes 40 s to be ready.
    assert schedule.ready_at(np.array([300.0 + 15 + 39]))[0] == 2
    assert schedule.ready_at(np.array([300.0 + 15 + 41]))[0] == 4
    assert schedule.ready_at(np.array([420.0]))[0] < 10
    assert schedule.ready_at(np.array([899.0]))[0] == 10


def test_scale_down_waits_for_the_cooldown_and_halves_at_most_per_minute():
    model = ScalerModel(per_replica_rps=50.0, min_replicas=1, max_replicas=20, stabilisation_s=120)
    counts = [800.0] * 300 + [50.0] * 600
    schedule = replay(model, _arrivals(counts), 0.0, 900.0)
    assert schedule.ready_at(np.array([299.0]))[0] == 15  # 800 / 50, 10 % tolerance
    assert schedule.ready_at(np.array([300.0 + 100]))[0] == 15  # still inside the cooldown
    times = np.arange(300.0, 900.0, 5.0)
    now, minute_ago = schedule.ready_at(times), schedule.ready_at(times - 60.0)
    assert (now >= np.ceil(minute_ago * 0.5)).all()  # never down by more than half per 60 s
    assert schedule.ready_at(np.array([899.0]))[0] <= 2  # 50 req/s: one or two with the noise


def test_scale_to_zero_and_the_first_request_waits_for_a_pod():
    model = ScalerModel(per_replica_rps=10.0, min_replicas=0, max_replicas=4, startup_s=30.0)
    counts = [0.0] * 600 + [5.0] * 300
    arrivals = _arrivals(counts)
    schedule = replay(model, arrivals, 0.0, 900.0)
    assert schedule.ready_at(np.array([500.0]))[0] == 0
    assert schedule.ready_at(np.array([899.0]))[0] == 1
    service = ServiceModel.constant([0.01])
    config = NodeConfig(1, 0.0, 1, service, schedule=schedule)
    _, run = simulate_node(
        arrivals, np.ones(arrivals.size, dtype=np.int64), config, np.random.default_rng(0)
    )
    assert run.latency_s.max() >= 30.0 - 15.0  # asked at the next sync, then 30 s to start
    assert np.median(run.latency_s) == pytest.approx(0.01, abs=0.005)
    assert run.replica_seconds < 310.0  # billed only from the ask


def _diurnal_plan(tmp_path: Path, autoscale: str):
    graph = parse_graph(chain_graph(["a", "b"]))
    profile = write_profile(
        tmp_path / "p.json",
        "chain",
        "c6i.2xlarge",
        {"a": node_entry(10.0, 5.0, 16), "b": node_entry(40.0, 20.0, 16)},
    )
    day = [round(150 + 120 * math.sin(2 * math.pi * t / 3600 - math.pi / 2)) for t in range(3600)]
    trace = tmp_path / "day.txt"
    trace.write_text("\n".join(str(c) for c in day))
    settings = SearchSettings(slo_ms=400.0, percentile=99, batch_sizes=[1, 4])
    return plan_graph(
        PlanInputs(
            graph,
            [profile],
            Workload.from_trace(trace),
            load_catalog(),
            settings,
            autoscale=autoscale,  # type: ignore[arg-type]
        )
    )


def test_autoscaled_plan_costs_its_time_averaged_pods_and_still_meets_the_slo(tmp_path: Path):
    held = _diurnal_plan(tmp_path, "off")
    scaled = _diurnal_plan(tmp_path, "all")
    assert held.final.usd_per_hour == pytest.approx(held.peak_usd_per_hour)
    assert scaled.peak_usd_per_hour == pytest.approx(held.peak_usd_per_hour)
    # A day from 30 to 270 req/s: the autoscaled plan holds far fewer pods on average.
    assert scaled.final.usd_per_hour < 0.8 * held.final.usd_per_hour
    assert scaled.final.feasible and scaled.attainment >= 0.99
    assert scaled.margin is not None
    for node in ("a", "b"):
        assert scaled.final.mean_replicas[node] < scaled.final.options[node].replicas
    manifest = planned_manifest(scaled)
    planned = parse_graph(yaml.safe_load(yaml.safe_dump(manifest)), "planned")
    auto = planned.node("b").autoscaling
    assert auto is not None and auto.engine == "hpa" and auto.metric == "rps"
    assert auto.max_replicas >= planned.node("b").replicas >= auto.min_replicas
    for engine in ENGINES:
        render(planned, engine, RenderOptions(storage_uri="s3://bucket/models"))
    held_graph = parse_graph(planned_manifest(held), "held")
    assert held_graph.node("b").autoscaling is None
