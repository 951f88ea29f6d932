"""The runtime's REST routes answered ahead of MLServer's middleware keep what it did.

`infergraph.serving.rest_fast_path` skips MLServer's FastAPI route machinery and middleware
for the runtime's own routes; these tests pin, on a real `mlserver start`, that clients see
the same answers as through the middleware: MLServer's REST metrics with the route's path
template, gzip when asked for and large enough, and MLServer's 404 once a model is unloaded.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import httpx
import pytest

from tests.servers import mlserver, write_model

pytestmark = pytest.mark.slow


def body(n: int) -> dict[str, object]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, n], "data": [0.5] * n}]}


def series(metrics: str, name: str, **labels: str) -> float:
    """The value of one series of the Prometheus text exposition, 0 when absent."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def test_metrics_gzip_and_unload_match_mlserver(tmp_path: Path) -> None:
    write_model(tmp_path, "m", "identity")
    with mlserver(tmp_path) as server:
        url = f"{server.url}/v2/models/m/infer"
        plain = httpx.post(url, json=body(200), headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        # httpx decodes gzip itself: read the raw bytes to see what travelled.
        with httpx.stream("POST", url, json=body(200), headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == "gzip"
            assert r.headers["vary"] == "Accept-Encoding"
        # The same answer (its timing parameters aside).
        assert json.loads(gzip.decompress(raw))["outputs"] == plain.json()["outputs"]
        small = httpx.post(url, json=body(2), headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under GZipMiddleware's 500 bytes
        bad = httpx.post(url, json={"inputs": [{"name": "input", "datatype": "FP32"}]})
        assert bad.status_code == 400

        metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
        route = {"method": "POST", "path": "/v2/models/m/infer", "app_name": "mlserver"}
        assert series(metrics, "rest_server_requests_total", status_code="200", **route) == 3
        assert series(metrics, "rest_server_requests_total", status_code="400", **route) == 1
        assert (
            series(
                metrics, "rest_server_request_duration_seconds_count", status_code="200", **route
            )
            == 3
        )
        assert series(metrics, "rest_server_requests_in_progress", method="POST") == 0

        unloaded = httpx.post(f"{server.url}/v2/repository/models/m/unload", timeout=60)
        assert unloaded.status_code == 200
        gone = httpx.post(url, json=body(2))
        assert gone.status_code == 404, gone.text
        assert httpx.post(f"{server.url}/v2/repository/models/m/load", timeout=60).is_success
        again = httpx.post(url, json=body(2))
        assert again.status_code == 200, again.text
        assert again.json()["outputs"][0]["data"] == [0.5, 0.5]
