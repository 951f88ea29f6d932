"""The batcher's turnaround: what separates one forward pass's end from the next one's start.

When requests wait, the forward thread hands the last pass's answers to their event loop and
collects the next batch before it starts the next pass. The profiler's own passes
(`time_batches`) never see that time, yet at a high load it is part of every pass: on the
controlled check (issue 28) 0.1 ms a pass between passes and 0.14 ms of pass overrun made
the first node's queue 8 % longer than the model fed the same arrival times, and a node near
capacity queues by far more than its passes grow. The simulator adds it between passes
(`NodeConfig.turnaround_s`).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections.abc import Hashable

from infergraph.serving.batcher import MicroBatcher, RunBatch


def pass_turnaround_ms(
    run_batch: RunBatch, rows: list[object], key: Hashable, passes: int = 20
) -> float:
    """Median ms from one pass's end to the next one's start, `passes` requests of `rows`
    queued at once through the real `MicroBatcher` at a batch limit of `len(rows)`.

    Every request is enqueued before the first pass ends, so request k starts when request
    k - 1's pass (its `inference_ms`) and one turnaround are over: the turnaround is the
    difference of consecutive queue times less that pass. The median keeps a pass the
    machine delayed from counting; never below 0 (enqueue times differ by microseconds).
    """

    async def queued_at_once() -> list[tuple[float, float]]:
        batcher = MicroBatcher([run_batch], max(1, len(rows)), 0.0)
        try:
            outcomes = await asyncio.gather(
                *(batcher.submit(list(rows), key) for _ in range(passes))
            )
        finally:
            await batcher.close()
        return [(stats.queue_ms, stats.inference_ms) for _, stats in outcomes]

    timed = asyncio.run(queued_at_once())
    gaps = [later[0] - earlier[0] - earlier[1] for earlier, later in itertools.pairwise(timed)]
    return max(0.0, statistics.median(gaps)) if gaps else 0.0
