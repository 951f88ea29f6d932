"""The MLServer adapter over weightless components, through a real `mlserver start`."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.servers import mlserver, v2_input, write_model

pytestmark = pytest.mark.slow  # every test here starts a real MLServer


def test_identity_and_combiner_round_trip_and_bad_input(tmp_path: Path) -> None:
    write_model(tmp_path, "echo", "identity", max_batch_size=8, max_batch_time=0.01)
    write_model(tmp_path, "vote", "combiner", method="vote", labels=["a", "b", "c"])
    with mlserver(tmp_path) as server:
        resp = server.infer("echo", {"inputs": [v2_input("input", "FP32", [1.5, 2.5], [1, 2])]})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["outputs"][0]["data"] == [1.5, 2.5]
        assert {"preprocess_ms", "inference_ms", "batch_size"} <= set(body["parameters"])

        # Concurrent requests: each caller gets exactly its own data back.
        def call(i: int) -> list[float]:
            r = server.infer("echo", {"inputs": [v2_input("input", "FP32", [i, i], [1, 2])]})
            assert r.status_code == 200, r.text
            return r.json()["outputs"][0]["data"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(32)))
        assert results == [[float(i), float(i)] for i in range(32)]

        scores = [
            v2_input("scores_0", "FP32", [0.9, 0.05, 0.05], [1, 3]),
            v2_input("scores_1", "FP32", [0.1, 0.8, 0.1], [1, 3]),
            v2_input("scores_2", "FP32", [0.7, 0.2, 0.1], [1, 3]),
        ]
        resp = server.infer("vote", {"inputs": scores})
        assert resp.status_code == 200, resp.text
        out = {o["name"]: o for o in resp.json()["outputs"]}
        assert out["labels"]["data"] == ["a"]
        assert np.allclose(out["scores"]["data"], [2 / 3, 1 / 3, 0.0])

        bad = server.infer("echo", {"inputs": [v2_input("input", "FP32", [1.0], [1, 2])]})
        assert bad.status_code == 400
        assert "input 'input'" in bad.text and "needs 2 elements" in bad.text
        ready = server.infer("echo", {"inputs": [v2_input("input", "FP32", [3.0], [1, 1])]})
        assert ready.status_code == 200

        # The per-pod series the rendered autoscalers query.
        metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
        assert 'infergraph_requests_total{model="echo",outcome="ok"} 34.0' in metrics
        assert 'infergraph_requests_total{model="echo",outcome="bad_input"} 1.0' in metrics
        assert 'infergraph_inflight_requests{model="echo"} 0.0' in metrics
        assert 'infergraph_batch_queue_size{model="echo"} 0.0' in metrics


def chain_kfserving(response: dict) -> dict:
    """The Seldon v1 executor between two `protocol: v2` units: the response's `outputs`
    become `inputs`, everything else (its `parameters` too) is sent on as it is
    (seldon-core v1.18.2 executor/api/rest/kfserving.go:10-35)."""
    chained = {k: v for k, v in response.items() if k != "outputs"}
    chained["inputs"] = response["outputs"]
    return chained


def test_request_parameters_reach_every_unit_of_a_seldon_v1_v2_chain(tmp_path: Path) -> None:
    """Seldon v1 hands the next unit the previous unit's response parameters: a unit rendered
    with `relay_request_parameters` answers with the request's beside its own, so a knob sent
    with the request reaches the last unit; a unit without it drops the knob (today's loss)."""
    relay = {"relay_request_parameters": True}
    write_model(tmp_path, "first", "identity", **relay)
    write_model(tmp_path, "last", "identity", **relay)
    write_model(tmp_path, "plain", "identity")
    request = {
        "inputs": [v2_input("input", "FP32", [0.5], [1, 1])],
        "parameters": {"top_k": 2, "threshold": "0.7", "binary_data_output": False},
    }
    with mlserver(tmp_path) as server:
        first = server.infer("first", request)
        assert first.status_code == 200, first.text
        last = server.infer("last", chain_kfserving(first.json()))
        assert last.status_code == 200, last.text
        received = last.json()["parameters"]
        assert (received["top_k"], received["threshold"]) == (2, "0.7")
        assert "binary_data_output" not in received  # a call's protocol switch stays with it
        assert "inference_ms" in received  # the unit's own figures still come back
        plain = server.infer("plain", request)
        assert plain.status_code == 200, plain.text
        assert "top_k" not in plain.json()["parameters"]
