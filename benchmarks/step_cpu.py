"""Server CPU per KServe graph-step request: what one step costs the pod that serves it.

The latency figures of `bench_kserve_hops` move with the machine's load; the CPU a step's
MLServer process spends per request does not, so a change to the step route (how a carried
body is decoded, handed to the component and encoded again) is measured here. A two-node
identity chain is rendered for KServe and its first step's route is called in a loop over
keep-alive HTTP; the process's user + system time (`/proc/<pid>/stat`) is divided by the
requests sent.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.bench_hops import chain
from infergraph.graph.plan import parse_graph
from tests.servers import model_host
from tests.test_engine_kserve import served

WARM_UP = 20


def process_cpu_s(pid: int) -> float:
    """User + system seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(elements: int) -> bytes:
    data = np.random.default_rng(0).random(elements).round(4).tolist()
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, elements], "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _row(client: httpx.Client, url: str, pid: int, elements: int, requests: int) -> dict[str, Any]:
    body = _body(elements)
    headers = {"content-type": "application/json"}
    for _ in range(WARM_UP):
        client.post(url, content=body, headers=headers).raise_for_status()
    before = process_cpu_s(pid)
    for _ in range(requests):
        answer = client.post(url, content=body, headers=headers)
        answer.raise_for_status()
    spent_ms = 1000.0 * (process_cpu_s(pid) - before)
    return {
        "mode": "step-cpu",
        "elements": elements,
        "requests": requests,
        "request_bytes": len(body),
        "response_bytes": len(answer.content),
        "server_cpu_ms_per_request": spent_ms / requests,
    }


def step_cpu_rows(sizes: list[int], requests: int) -> list[dict[str, Any]]:
    """One row per FP32 tensor size: the first step's server CPU per request. Large bodies
    take longer per request, so fewer of them are sent (at least 50)."""
    graph = parse_graph(chain(2))
    with (
        tempfile.TemporaryDirectory() as tmp,
        model_host(Path(tmp)) as host,
        served(graph, host) as (server, spec),
        httpx.Client(timeout=60) as client,
    ):
        assert server.process is not None
        model = spec["nodes"]["root"]["steps"][0]["serviceUrl"].split("/v2/models/")[1]
        url = f"{server.url}/v2/models/{model}"
        counts = {n: max(requests * 4 // (1 + n // 1000), 50) for n in sizes}
        return [_row(client, url, server.process.pid, n, counts[n]) for n in sizes]
