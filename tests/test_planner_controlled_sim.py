"""The simulator against the controlled node served by the real `MicroBatcher` (issue 28).

The controlled node's passes take a known time, so the only thing left to model is the
batcher's queueing and batch forming under load. The full check, through MLServer, the
router, HTTP and the load tester, is `bench_planner.py --parts controlled`; this is its
fast core, with no server: the same batcher code on Poisson arrivals at load 0.6.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from benchmarks.controlled import ControlledNode
from infergraph.components.base import ComponentSettings
from infergraph.planner.simulator import NodeConfig, ServiceModel, poisson_arrivals, simulate
from infergraph.planner.topology import Stage, Topology
from infergraph.serving.batcher import MicroBatcher

BASE_MS, PER_ROW_MS = 20.0, 5.0
BATCH, DELAY_S = 4, 0.010
HANDOFF_S = 0.005


def _served_latencies(node: ControlledNode, arrivals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each request submitted to the real batcher at its time; when it came, how long it took."""
    came = np.zeros(arrivals.size)
    took = np.zeros(arrivals.size)

    async def main() -> None:
        batcher = MicroBatcher(node.run_batch, BATCH, DELAY_S)
        start = time.perf_counter()

        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            came[i] = time.perf_counter() - start
            await batcher.submit([i], None)
            took[i] = time.perf_counter() - start - came[i]

        await asyncio.gather(*(one(i, float(at)) for i, at in enumerate(arrivals)))
        await batcher.close()

    asyncio.run(main())
    return came, took


def test_simulated_percentiles_match_the_controlled_node_under_load():
    node = ControlledNode(
        ComponentSettings(
            options={"base_ms": BASE_MS, "per_row_ms": PER_ROW_MS, "sigma": 0.0},
            warmup=False,
            max_batch_size=BATCH,
        )
    )
    node.start()
    capacity = BATCH / ((BASE_MS + PER_ROW_MS * BATCH) / 1000.0)  # 100 req/s in full batches
    arrivals = poisson_arrivals(0.6 * capacity, 12.0, np.random.default_rng(3))
    came, took = _served_latencies(node, arrivals)
    service = ServiceModel.constant([(BASE_MS + PER_ROW_MS * b) / 1000.0 for b in range(1, 5)])
    config = NodeConfig(BATCH, DELAY_S, 1, service)
    # the simulator is fed the times the requests really came, as the benchmark replays the
    # load tester's; only the batcher's own timing (a sleep runs late, never early) can differ
    result = simulate(Topology((Stage("n", "n"),)), {"n": config}, np.sort(came), {})
    simulated = np.sort(result.latency_s)
    measured = np.sort(took)
    # Beside the relative tolerance, up to 5 ms for the event loop's handoff to the forward
    # thread and back, which the real path profiles as part of the hop: 1.7 ms at the median
    # on the quiet-ish 2-core VM, 3.8 ms with a benchmark beside it.
    for q, tolerance in ((50, 0.05), (99, 0.10)):
        assert np.percentile(simulated, q) == pytest.approx(
            np.percentile(measured, q), rel=tolerance, abs=HANDOFF_S
        )
