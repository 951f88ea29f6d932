"""Cold start from measurement (issues 28 and 30): the profile measures each node's load,
checkpoint to ready, and its server's start, process start to ready, and the plan's autoscaler
replay starts new pods in the server's start (else the load), not a default."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.controlled import EXTRA_FAMILIES
from infergraph.components.registry import EXTRA_FAMILIES_ENV
from infergraph.cost.pricing import load_catalog
from infergraph.graph.plan import parse_graph
from infergraph.planner.planning import (
    DEFAULT_STARTUP_S,
    PlanInputs,
    PlanOutcome,
    plan_graph,
    scaler_models,
)
from infergraph.planner.profiler import (
    ProfileSettings,
    ProfilingError,
    evict_from_page_cache,
    profile_graph,
)
from infergraph.planner.profiles import load_profile
from infergraph.planner.search import SearchSettings
from infergraph.planner.workload import Workload

LOAD_MS = 300.0  # the controlled node's load: a known checkpoint-to-ready time
REPO = Path(__file__).resolve().parent.parent


def _graph() -> dict[str, Any]:
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "cold"},
        "spec": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "nodes": [
                {
                    "name": "a",
                    "family": "controlled",
                    "device": "cpu",
                    "hardware": "c6i.2xlarge",
                    "batching": {"maxBatchSize": 2, "maxBatchTimeMs": 2},
                    "options": {"base_ms": 2, "per_row_ms": 1, "load_ms": LOAD_MS},
                }
            ],
            "graph": {"sequence": [{"node": "a"}]},
        },
    }


def _day(tmp_path: Path) -> Path:
    day = [round(60 + 50 * math.sin(2 * math.pi * t / 900 - math.pi / 2)) for t in range(900)]
    trace = tmp_path / "day.txt"
    trace.write_text("\n".join(str(c) for c in day))
    return trace


def _plan(
    tmp_path: Path, profile: Path, startup_s: float | None = None, pending_s: float = 0.0
) -> PlanOutcome:
    return plan_graph(
        PlanInputs(
            parse_graph(_graph()),
            [profile],
            Workload.from_trace(_day(tmp_path)),
            load_catalog(),
            SearchSettings(slo_ms=200.0, percentile=99, batch_sizes=[1, 2]),
            autoscale="all",
            startup_s=startup_s,
            pending_s=pending_s,
        )
    )


def test_the_measured_load_time_is_the_replays_pod_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile that timed no server start (`server_start=False`): the load is the start-up."""
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    settings = ProfileSettings(
        repeats=3, skip_graph=True, max_seconds_per_size=1.0, server_start=False
    )
    profile = profile_graph(parse_graph(_graph()), settings, lambda what, n: None)
    node = profile.nodes["a"]
    assert node.server_start_s == 0.0
    # Checkpoint to ready, measured: the node's configured load and a little more.
    for seconds in (node.load_s, node.first_load_s):
        assert LOAD_MS / 1000 <= seconds < LOAD_MS / 1000 + 1.0
    assert node.cold_load_s == 0.0  # no local checkpoint to evict: no cold figure claimed
    path = tmp_path / "profile.json"
    profile.write(path)
    assert load_profile(path).nodes["a"].first_load_s == node.first_load_s

    outcome = _plan(tmp_path, path)
    assert outcome.startup_s("a") == (node.first_load_s, "measured load")
    assert scaler_models(outcome)["a"].startup_s == node.first_load_s
    assert outcome.cold_start_budget_share is not None and outcome.cold_start_budget_share >= 0

    forced = _plan(tmp_path, path, startup_s=DEFAULT_STARTUP_S)
    assert scaler_models(forced)["a"].startup_s == DEFAULT_STARTUP_S
    assert forced.startup_s("a")[1] == "--replica-startup-s"
    # Pods that take a minute to start cost more of the miss budget than a 0.3 s load.
    assert forced.cold_start_budget_share is not None
    assert forced.cold_start_budget_share >= outcome.cold_start_budget_share


def test_a_new_pods_start_up_is_its_servers_start_to_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new pod takes traffic once its server answers ready: the process started, MLServer,
    the runtime and the framework imported, then the load. The in-process load leaves out
    everything before the load (the profiler had imported it already), so the profile times
    a fresh `mlserver start` of the node alone, and the replay starts pods in that time."""
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the MLServer child imports benchmarks/
    settings = ProfileSettings(repeats=3, skip_graph=True, max_seconds_per_size=1.0)
    profile = profile_graph(parse_graph(_graph()), settings, lambda what, n: None)
    node = profile.nodes["a"]
    # The server does all the in-process load did, after starting a process and MLServer.
    assert node.server_start_s > node.first_load_s >= LOAD_MS / 1000
    assert node.startup_s == node.server_start_s
    path = tmp_path / "profile.json"
    profile.write(path)
    assert load_profile(path).nodes["a"].server_start_s == node.server_start_s

    outcome = _plan(tmp_path, path)
    assert outcome.startup_s("a") == (node.server_start_s, "measured server start")
    assert scaler_models(outcome)["a"].startup_s == node.server_start_s
    # Scheduling and the image pull come before the container starts: `--pod-pending-s`.
    pulled = _plan(tmp_path, path, pending_s=20.0)
    assert pulled.startup_s("a") == (
        20.0 + node.server_start_s,
        "measured server start after 20 s pending",
    )
    assert scaler_models(pulled)["a"].startup_s == 20.0 + node.server_start_s


def test_a_machine_without_mlserver_is_told_to_skip_the_server_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Profiling where MLServer is not installed (a bare GPU machine): a clear error that
    names the node and the way out, not a traceback."""
    import infergraph.runner.local as local

    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    monkeypatch.setattr(local.sys, "executable", str(tmp_path / "python"))  # no mlserver beside
    monkeypatch.setenv("PATH", str(tmp_path))
    settings = ProfileSettings(repeats=3, skip_graph=True, max_seconds_per_size=1.0)
    with pytest.raises(ProfilingError, match=r"node 'a'.*--skip-server-start"):
        profile_graph(parse_graph(_graph()), settings, lambda what, n: None)


def test_a_local_checkpoint_is_evicted_before_the_cold_load(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "weights.bin").write_bytes(b"\0" * 4096)
    assert evict_from_page_cache(str(checkpoint))
    assert evict_from_page_cache(f"file://{checkpoint}")
    assert not evict_from_page_cache("timm/resnet18.a1_in1k")  # a hub id: nothing local
