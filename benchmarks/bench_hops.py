"""`make bench-hops`: latency the local router adds per hop.

Chains of N no-op (identity) nodes, N = 1, 2, 4, 8, each node a real model on
MLServer, driven at a steady open-loop rate. The per-hop cost is the slope of
latency against N (least squares over the four chains), for p50 and for p99,
so the fixed cost of the client and the graph entry is not counted as hops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import console, percentiles, print_table, write_results
from infergraph.graph.plan import parse_graph
from infergraph.runner.local import run_graph

BODY = orjson.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.0] * 4}]}
)


def chain(n: int) -> dict[str, Any]:
    names = [f"hop-{i}" for i in range(n)]
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": f"chain-{n}"},
        "spec": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, -1]}],
            "nodes": [{"name": name, "family": "identity"} for name in names],
            "graph": {"sequence": [{"node": name} for name in names]},
        },
    }


async def open_loop(url: str, rate: float, seconds: float) -> tuple[list[float], int, int]:
    """Constant-rate sends; latency from each request's intended send time."""
    latencies: list[float] = []
    errors = late = 0
    interval = 1.0 / rate
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(intended: float) -> None:
            nonlocal errors
            async with session.post(
                url, data=BODY, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    return
            latencies.append((time.perf_counter() - intended) * 1000.0)

        start = time.perf_counter()
        tasks = []
        for i in range(total):
            intended = start + i * interval
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > 0.001:
                late += 1
            tasks.append(asyncio.create_task(one(intended)))
        await asyncio.gather(*tasks)
    return latencies, errors, late


async def measure(n: int, rate: float, seconds: float) -> dict[str, Any]:
    graph = parse_graph(chain(n))
    async with run_graph(graph) as running:
        await open_loop(running.infer_url, rate, 2.0)  # warm-up
        latencies, errors, late = await open_loop(running.infer_url, rate, seconds)
    return {
        "hops": n,
        "rate_rps": rate,
        "requests": len(latencies),
        "errors": errors,
        "late_sends": late,
        **percentiles(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--hops", type=int, nargs="*", default=[1, 2, 4, 8])
    args = parser.parse_args()
    load_before = Path("/proc/loadavg").read_text().strip()
    rows = [asyncio.run(measure(n, args.rate, args.seconds)) for n in args.hops]
    hops = np.array([r["hops"] for r in rows], dtype=float)
    p50_slope = float(np.polyfit(hops, [r["p50_ms"] for r in rows], 1)[0])
    p99_slope = float(np.polyfit(hops, [r["p99_ms"] for r in rows], 1)[0])
    summary = {
        "p50_ms_per_hop": p50_slope,
        "p99_ms_per_hop": p99_slope,
        "goal_p50_ms_per_hop": 0.5,
        "goal_p99_ms_per_hop": 1.0,
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "transport": "router -> MLServer V2 REST (keep-alive), identity nodes",
    }
    print_table(
        "local router: latency by chain length",
        rows,
        ["hops", "rate_rps", "requests", "errors", "late_sends", "p50_ms", "p99_ms"],
    )
    console.print(f"per hop: p50 {p50_slope:.3f} ms, p99 {p99_slope:.3f} ms")
    path = write_results("hops", rows, summary, vars(args))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
