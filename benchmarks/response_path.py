"""How far apart a batch's answers reach the client: from the node itself, and through the
local router (issue 28, the planner's `response_ms`).

The profile fits `response_ms`, the time per answer on a node's response path, from the hops
the router saw when bursts of requests formed full batches; the simulator then serves every
replica's answers one at a time, that far apart. On one machine the router and the client
share the cores with the node, so the spacing the router sees holds the router's own work per
answer as well as the node's. This measures both sides of that: bursts of `--burst` requests
at once to a controlled node (its pass a fixed sleep, benchmarks/controlled.py), sent straight
to its MLServer and through the local router, alternating, the median spacing between
consecutive answers per burst.

    uv run python benchmarks/response_path.py --burst 32 --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _graph(burst: int) -> dict[str, object]:
    node = {
        "name": "node",
        "family": "controlled",
        "device": "cpu",
        "batching": {"maxBatchSize": burst, "maxBatchTimeMs": 5},
        "options": {"base_ms": 5, "per_row_ms": 0.1},
    }
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "response-path"},
        "spec": {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "nodes": [node],
            "graph": {"sequence": [{"node": "node"}]},
        },
    }


async def _spacing_ms(session: aiohttp.ClientSession, url: str, burst: int) -> float:
    """Median gap between consecutive answers of one burst, as the client saw them."""
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]}

    async def one() -> float:
        async with session.post(url, json=body) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}")
        return time.perf_counter()

    done = sorted(await asyncio.gather(*(one() for _ in range(burst))))
    return float(np.median(np.diff(done))) * 1000.0


async def main(burst: int, rounds: int) -> None:
    from benchmarks.controlled import EXTRA_FAMILIES
    from infergraph.components.registry import EXTRA_FAMILIES_ENV
    from infergraph.graph.plan import parse_graph
    from infergraph.runner.local import run_graph

    os.environ[EXTRA_FAMILIES_ENV] = EXTRA_FAMILIES
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    async with run_graph(parse_graph(_graph(burst))) as running:
        urls = {
            "node": f"{running.servers[0].base}/v2/models/node/infer",
            "router": running.infer_url,
        }
        seen: dict[str, list[float]] = {name: [] for name in urls}
        async with aiohttp.ClientSession() as session:
            for url in urls.values():  # warm connections and lazy paths
                await _spacing_ms(session, url, burst)
            for _ in range(rounds):
                for name, url in urls.items():
                    seen[name].append(await _spacing_ms(session, url, burst))
    print(f"bursts of {burst}, {rounds} rounds each, median gap between answers (ms):")
    for name, gaps in seen.items():
        spread = f"{min(gaps):.3f}-{max(gaps):.3f}"
        print(f"  {name:>6}: {statistics.median(gaps):.3f}  (rounds {spread})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    asyncio.run(main(args.burst, args.rounds))
