"""`infergraph profile` on a tiny real checkpoint: forward passes timed, then the served graph."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app
from infergraph.graph.model import parse_graph
from infergraph.planner.profiler import ProfileSettings, profile_graph
from infergraph.planner.profiles import load_profile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

GRAPH = {
    "apiVersion": "infergraph.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "tiny-cascade"},
    "spec": {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
        "nodes": [
            {
                "name": name,
                "family": "image-classification",
                "modelUri": "timm/resnet18.a1_in1k",
                "device": "cpu",
                "batching": {"maxBatchSize": 4, "maxBatchTimeMs": 2},
                "hardware": "c6i.2xlarge",
            }
            for name in ("first", "second")
        ],
        "graph": {
            "sequence": [
                {"node": "first"},
                {
                    "when": {"tensor": "first.confidence", "op": "lt", "value": 0.5},
                    "then": {"node": "second", "inputs": {"image": "request.image"}},
                },
            ]
        },
    },
}


@pytest.mark.slow
def test_profile_times_batches_hops_and_branches(tmp_path: Path):
    graph = parse_graph(GRAPH)
    seen: list[str] = []
    settings = ProfileSettings(
        repeats=5, offline=True, offline_scale="tiny", payload="synthetic:image", requests=8
    )
    profile = profile_graph(graph, settings, lambda what, n: seen.append(what))
    # batch sizes 1, 2, 4 per node, then the sample requests one at a time and loaded
    assert len(seen) == 2 * 3 + 2 * 8
    assert profile.settings["graph_pass_loaded_rps"] > 0
    assert profile.settings["graph_pass_load"] == 0.5
    for name in ("first", "second"):
        node = profile.nodes[name]
        assert [b.batch_size for b in node.batches] == [1, 2, 4]
        assert all(0 < b.p50_ms <= b.p99_ms for b in node.batches)
        assert node.hardware_class == "c6i.2xlarge" and node.device == "cpu"
        assert node.hop_ms > 0 and node.serving_factor > 0
        assert node.hop_p99_ms >= node.hop_ms and node.serving_sigma >= 0
        assert node.rows == {1: 8}  # one image per request, every request reached it
    # Random weights over 1000 classes: top-1 confidence is far below 0.5, so all go on.
    assert profile.branches == {"gate-0": 1.0} and profile.branch_samples == 16
    assert profile.ingress_ms >= 0
    assert profile.hardware["cpus"] and profile.versions["torch"]
    path = tmp_path / "profile.json"
    profile.write(path)
    loaded = load_profile(path)
    assert loaded.nodes["first"] == profile.nodes["first"]
    # The profile plans the same graph.
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text(yaml.safe_dump(GRAPH))
    result = CliRunner().invoke(
        app,
        [
            "plan",
            str(graph_file),
            "--profiles",
            str(path),
            "--slo-ms",
            "2000",
            "--rate",
            "5",
            "--duration",
            "30",
            "--out",
            str(tmp_path / "plan"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plan" / "tiny-cascade.planned.yaml").is_file()


def test_profile_refuses_a_gpu_class_measured_on_a_cpu(tmp_path: Path):
    data = {**GRAPH, "spec": {**GRAPH["spec"], "nodes": [dict(GRAPH["spec"]["nodes"][0])]}}
    data["spec"]["nodes"][0]["hardware"] = "g6.xlarge"
    data["spec"]["graph"] = {"node": "first"}
    graph_file = tmp_path / "gpu.yaml"
    graph_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(
        app,
        [
            "profile",
            str(graph_file),
            "--offline",
            "--offline-scale",
            "tiny",
            "--skip-graph",
            "--repeats",
            "5",
            "--max-batch",
            "1",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 1
    assert "runs on cpu here but its hardware class 'g6.xlarge' has GPU" in result.output
    assert not (tmp_path / "p.json").exists()
