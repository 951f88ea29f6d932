"""Synthetic profiles and graphs for the planner tests: service times we can reason about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def batch_rows(base_ms: float, per_row_ms: float, limit: int, spread: float = 1.0) -> list[dict]:
    """Linear service time base + per_row * b for b = 1, 2, 4, ... limit; p99 = spread * p50."""
    rows, b = [], 1
    while b <= limit:
        p50 = base_ms + per_row_ms * b
        rows.append(
            {"batch_size": b, "p50_ms": p50, "p99_ms": p50 * spread, "mean_ms": p50, "samples": 50}
        )
        b *= 2
    return rows


def node_entry(
    base_ms: float,
    per_row_ms: float,
    limit: int = 16,
    hop_ms: float = 1.0,
    hardware: str | None = None,
    rows: dict[str, int] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "family": "image-classification",
        "device": "cpu",
        "batches": batch_rows(base_ms, per_row_ms, limit),
        "hop_ms": hop_ms,
        "rows": rows or {"1": 1},
    }
    if hardware:
        entry["hardware_class"] = hardware
    return entry


def write_profile(
    path: Path,
    graph: str,
    hardware_class: str,
    nodes: dict[str, dict[str, Any]],
    branches: dict[str, float] | None = None,
    ingress_ms: float = 0.5,
    samples: int = 100,  # requests of the graph pass (0: profiled with --skip-graph)
) -> Path:
    path.write_text(
        json.dumps(
            {
                "format": "infergraph-profile/v1",
                "graph": graph,
                "hardware_class": hardware_class,
                "nodes": nodes,
                "branches": branches or {},
                "branch_samples": samples,
                "ingress_ms": ingress_ms,
                "created": "2026-11-29T00:00:00+00:00",
            }
        )
    )
    return path


def chain_graph(names: list[str], hardware: str = "c6i.2xlarge", cpu: str = "2") -> dict[str, Any]:
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "chain"},
        "spec": {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "nodes": [
                {
                    "name": n,
                    "family": "image-classification",
                    "resources": {"cpu": cpu, "memory": "2Gi"},
                    "hardware": hardware,
                }
                for n in names
            ],
            "graph": {
                "sequence": [
                    {"node": names[0]},
                    *({"node": n, "inputs": {"image": "request.image"}} for n in names[1:]),
                ]
            },
        },
    }
