"""The controlled-service-time node (benchmarks/controlled.py) and the family hook it uses."""

from __future__ import annotations

import concurrent.futures
import math
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.controlled import EXTRA_FAMILIES, ControlledNode
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import (
    EXTRA_FAMILIES_ENV,
    component_class,
    family_names,
)
from infergraph.errors import SettingsError
from tests.servers import REPO, mlserver, write_model


def _node(**options: float) -> ControlledNode:
    node = ControlledNode(ComponentSettings(options=options, warmup=False, max_batch_size=8))
    node.start()
    return node


def test_the_environment_names_extra_families(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(SettingsError, match="unknown component family 'controlled'"):
        component_class("controlled")
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    assert component_class("controlled") is ControlledNode
    assert "controlled" in family_names()
    # an extra family never replaces a shipped one
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, "identity=benchmarks.controlled:ControlledNode")
    assert component_class("identity") is not ControlledNode
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, "controlled")
    with pytest.raises(SettingsError, match=f"{EXTRA_FAMILIES_ENV}.*'controlled' is not"):
        component_class("controlled")


def test_passes_take_the_configured_time_with_its_spread():
    fixed = _node(base_ms=4.0, per_row_ms=2.0)
    assert fixed.service_s(1) == pytest.approx(0.006)
    assert fixed.service_s(8) == pytest.approx(0.020)
    spread = _node(base_ms=10.0, per_row_ms=1.0, sigma=0.3, seed=7)
    draws = np.array([spread.service_s(4) for _ in range(4000)])
    assert float(np.median(draws)) == pytest.approx(0.014, rel=0.03)
    assert float(np.std(np.log(draws))) == pytest.approx(0.3, rel=0.05)
    with pytest.raises(SettingsError, match=r"options\.sigma"):
        _node(sigma=-1.0)
    with pytest.raises(SettingsError, match=r"options\.base_ms"):
        _node(base_ms=float("nan"))


def test_a_pass_waits_at_least_its_time_and_returns_the_rows():
    node = _node(base_ms=20.0, per_row_ms=5.0)
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    started = time.perf_counter()
    result = node.predict({"input": data})
    elapsed = time.perf_counter() - started
    np.testing.assert_array_equal(result.outputs["output"], data)
    assert elapsed >= 0.035  # one pass of 3 rows: 20 + 3 x 5 ms
    assert math.isclose(result.parameters["batch_size"], 3)


@pytest.mark.slow
def test_mlserver_batches_the_controlled_node_and_reports_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The real serving path: our runtime and batcher in MLServer, over HTTP."""
    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the MLServer child imports benchmarks/
    write_model(
        tmp_path, "slow", "controlled", max_batch_size=8, max_batch_time=0.05,
        base_ms=20.0, per_row_ms=5.0,
    )  # fmt: skip
    payload = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    with mlserver(tmp_path) as server, concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: server.infer("slow", payload), range(8)))
    assert all(r.status_code == 200 for r in replies), replies[0].text
    params = [r.json()["parameters"] for r in replies]
    assert all(r.json()["outputs"][0]["data"] == [1.0, 2.0] for r in replies)
    assert max(p["batch_size"] for p in params) > 1  # concurrent requests shared a pass
    for p in params:
        assert p["inference_ms"] >= 20.0 + 5.0 * p["batch_size"] - 0.5


@pytest.mark.slow
def test_the_local_runner_serves_a_chain_of_controlled_nodes(monkeypatch: pytest.MonkeyPatch):
    """Router, HTTP hops and one MLServer child: each node's pass takes its configured time."""
    import asyncio

    import httpx

    from infergraph.graph.plan import load_graph
    from infergraph.runner.local import run_graph

    monkeypatch.setenv(EXTRA_FAMILIES_ENV, EXTRA_FAMILIES)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    graph = load_graph(REPO / "benchmarks/graphs/controlled-chain.yaml")
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}]
    }

    async def scenario() -> httpx.Response:
        async with (
            run_graph(graph, startup_timeout=300) as running,
            httpx.AsyncClient(timeout=60) as client,
        ):
            return await client.post(running.infer_url, json=body)

    reply = asyncio.run(scenario())
    assert reply.status_code == 200, reply.text
    params = reply.json()["parameters"]
    assert params["graph.path"] == "first,second"
    assert reply.json()["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
    # first: 10 + 2 x 2 rows = 14 ms; second: 20 + 4 x 2 = 28 ms (a sleep is never shorter)
    assert params["first.inference_ms"] >= 14.0 - 0.5
    assert params["second.inference_ms"] >= 28.0 - 0.5
    assert params["first.batch_size"] == params["second.batch_size"] == 2


def test_served_passes_take_the_known_draws_in_order_after_warm_up():
    node = ControlledNode(
        ComponentSettings(
            options={"base_ms": 10.0, "per_row_ms": 1.0, "sigma": 0.3, "seed": 5},
            warmup=True,
            max_batch_size=8,
        )
    )
    node.start()  # the warm-up pass draws once; the served passes start the sequence over
    sizes = (1, 4, 8, 2)
    served = [node.service_s(b) for b in sizes]
    draws = ControlledNode.known_draws(5, len(sizes))
    expected = [(10.0 + b) / 1000.0 * math.exp(0.3 * z) for b, z in zip(sizes, draws, strict=True)]
    assert served == pytest.approx(expected, rel=1e-12)
