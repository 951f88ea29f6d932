"""Triton's perf_analyzer against a runtime (`mlserver start`) and a graph (`infergraph serve`).

perf_analyzer reads the server and model metadata and the model configuration, then sends
inferences from an `--input-data` JSON file; it fails on any error answer. `make perf-analyzer`
installs the binary (tritonclient 2.51.0's, see the Makefile); without it those tests skip.
The gRPC ModelConfig / ModelStatistics test needs only tritonclient.
Measurement windows are short: this checks that it works, `make bench-*` measures speed.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    REPO,
    MLServerProcess,
    graph_server,
    mlserver,
    triton_grpc,
    write_model,
)
from tests.vision_fixtures import COLOURS, png


def perf_analyzer_binary() -> str | None:
    found = os.environ.get("PERF_ANALYZER") or str(REPO / ".tools/bin/perf_analyzer")
    return found if os.access(found, os.X_OK) else shutil.which("perf_analyzer")


PERF_ANALYZER = perf_analyzer_binary()
pytestmark = pytest.mark.slow
needs_perf_analyzer = pytest.mark.skipif(
    PERF_ANALYZER is None,
    reason="perf_analyzer is not installed: `make perf-analyzer` installs it (Linux x86_64)",
)


def image_data(folder: Path) -> Path:
    """perf_analyzer's --input-data file: one PNG as the BYTES input `image`.

    `b64` holds the tensor's raw bytes; for BYTES that is each element's 4-byte little-endian
    length and then its bytes, so the image travels binary (not as base64 text).
    """
    image = png(COLOURS[2])
    element = struct.pack("<I", len(image)) + image
    data = {"data": [{"image": {"b64": base64.b64encode(element).decode(), "shape": [1]}}]}
    path = folder / "image.json"
    path.write_text(json.dumps(data))
    return path


def perf_analyzer(
    target: str, model: str, protocol: str, workdir: Path, *options: str
) -> dict[str, float]:
    """Run perf_analyzer briefly at concurrency 2; the CSV row, as numbers."""
    report = workdir / f"{model}-{protocol}.csv"
    command = [
        str(PERF_ANALYZER),
        "-m", model, "-u", target, "-i", protocol, "--service-kind", "triton",
        "--concurrency-range", "2", "--measurement-interval", "500",
        "--stability-percentage", "100", "--max-trials", "10",
        "-f", str(report), *options,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    assert "error" not in done.stdout.lower(), done.stdout[-3000:]
    with report.open() as f:
        (row,) = list(csv.DictReader(f))
    return {k: float(v) for k, v in row.items()}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    from infergraph.checkpoints.image_embedding import build_image_embedder

    root = tmp_path_factory.mktemp("perf-analyzer")
    siglip = build_image_embedder(root / "siglip", "tiny")
    models = root / "models"
    write_model(models, "embed", "image-embedding", str(siglip), max_batch_size=8,
                max_batch_time=0.002)  # fmt: skip
    write_model(models, "echo", "identity")
    with mlserver(models, startup_timeout=300) as server:
        yield server


def stats(server: MLServerProcess, model: str) -> dict[str, dict[str, int]]:
    answer = httpx.get(f"{server.url}/v2/models/{model}/stats", timeout=10).json()
    return answer["model_stats"][0]["inference_stats"]


@needs_perf_analyzer
def test_runtime_image_input_over_http(runtime: MLServerProcess, tmp_path: Path) -> None:
    before = stats(runtime, "embed")
    row = perf_analyzer(
        f"127.0.0.1:{runtime.http_port}", "embed", "http", tmp_path,
        "--input-data", str(image_data(tmp_path)),
    )  # fmt: skip
    assert row["Concurrency"] == 2
    assert row["Inferences/Second"] > 0 and row["p99 latency"] > 0
    after = stats(runtime, "embed")
    assert after["fail"]["count"] == before["fail"]["count"]
    assert after["success"]["count"] > before["success"]["count"]
    assert after["compute_infer"]["ns"] > before["compute_infer"]["ns"]


@needs_perf_analyzer
def test_runtime_numeric_input_with_shape_over_http(
    runtime: MLServerProcess, tmp_path: Path
) -> None:
    """max_batch_size 0: `--shape` gives the whole shape of a variable-shape input."""
    row = perf_analyzer(
        f"127.0.0.1:{runtime.http_port}", "echo", "http", tmp_path, "--shape", "input:1,4"
    )
    assert row["Inferences/Second"] > 0
    assert stats(runtime, "echo")["fail"]["count"] == 0


@pytest.fixture(scope="module")
def served_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`infergraph serve k8s/graphs/embed-image.yaml` (tiny offline SigLIP) as a user runs it."""
    work = tmp_path_factory.mktemp("serve")
    env = {"INFERGRAPH_CACHE": str(work / "cache")}
    with graph_server(REPO / "k8s/graphs/embed-image.yaml", work, 300, env) as url:
        yield url


@needs_perf_analyzer
def test_served_graph_over_http(served_graph: str, tmp_path: Path) -> None:
    target = served_graph.removeprefix("http://")
    row = perf_analyzer(
        target, "embed-image", "http", tmp_path, "--input-data", str(image_data(tmp_path))
    )
    assert row["Inferences/Second"] > 0 and row["p50 latency"] > 0


# -- gRPC: Triton's ModelConfig and ModelStatistics on MLServer's port ----------------------------
def test_tritonclient_grpc_model_config_and_statistics(runtime: MLServerProcess) -> None:
    """Pins the gRPC hook (serving/triton_grpc.py): UNIMPLEMENTED here means MLServer changed."""
    http_config = httpx.get(f"{runtime.url}/v2/models/embed/config", timeout=10).json()
    runtime.infer("echo", {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2],
                                       "data": [1.0, 2.0]}]})  # fmt: skip
    got = triton_grpc(runtime, "embed")
    config = got["config"]
    assert config["name"] == "embed" and config["backend"] == "image-embedding"
    assert config["input"] == [
        {"name": t["name"], "data_type": t["data_type"], "dims": [str(d) for d in t["dims"]],
         "optional": True} for t in http_config["input"]
    ]  # fmt: skip
    assert [o["name"] for o in config["output"]] == [o["name"] for o in http_config["output"]]
    assert config["parameters"] == http_config["parameters"]
    (stats,) = got["stats"]
    http_stats = httpx.get(f"{runtime.url}/v2/models/embed/stats", timeout=10).json()
    assert stats["name"] == "embed"
    assert (
        int(stats["inference_stats"]["success"].get("count", 0))
        == (http_stats["model_stats"][0]["inference_stats"]["success"]["count"])
    )
    assert set(got["every"]) == {"embed", "echo"}
    status, message = got["missing"]
    assert "NOT_FOUND" in status and "nope" in message


@needs_perf_analyzer
def test_runtime_image_input_over_grpc(runtime: MLServerProcess, tmp_path: Path) -> None:
    before = stats(runtime, "embed")
    row = perf_analyzer(
        f"127.0.0.1:{runtime.grpc_port}", "embed", "grpc", tmp_path,
        "--input-data", str(image_data(tmp_path)),
    )  # fmt: skip
    assert row["Inferences/Second"] > 0 and row["p99 latency"] > 0
    after = stats(runtime, "embed")
    assert after["fail"]["count"] == before["fail"]["count"]
    assert after["success"]["count"] > before["success"]["count"]
