"""Async serving of one component: prepare per request, batch across requests, finish."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from infergraph.arrays import Array
from infergraph.components.base import Component, ComponentResult
from infergraph.serving.batcher import MicroBatcher
from infergraph.timing import StageTimings


class ComponentEngine:
    """What an async server adapter calls: one `infer` per request, batching underneath."""

    def __init__(self, component: Component) -> None:
        self.component = component
        settings = component.settings
        self._batcher = MicroBatcher(
            component.run_batch, settings.max_batch_size, settings.max_batch_time
        )

    async def infer(
        self, inputs: Mapping[str, Array], parameters: Mapping[str, Any]
    ) -> ComponentResult:
        empty = self.component.zero_row_outputs(inputs)
        if empty is not None:  # nothing to batch: a frame with no detection
            return ComponentResult(outputs=empty, parameters={"batch_size": 0, "skipped": 1})
        if self.component.inline:
            return self.component.predict(inputs, parameters)
        loop = asyncio.get_running_loop()
        timings = StageTimings()
        with timings.stage("preprocess"):
            # Decoding images or tokenising text is CPU work: keep it off the event loop.
            prepared = await loop.run_in_executor(None, self.component.prepare, inputs, parameters)
        results, stats = await self._batcher.submit(prepared.rows, prepared.batch_key)
        timings.add("queue", stats.queue_ms)
        timings.add("inference", stats.inference_ms)
        with timings.stage("postprocess"):
            # Assembling outputs can be CPU work too (a detector PNG-encodes its crops): on
            # the loop it would stall every model of the process (tests/test_engine_loop.py).
            outputs = await asyncio.get_running_loop().run_in_executor(
                None, self.component.finish, results, prepared
            )
        params = {**prepared.notes, **timings.as_parameters(), "batch_size": stats.batch_size}
        return ComponentResult(outputs=outputs, parameters=params)

    @property
    def pending_rows(self) -> int:
        return self._batcher.pending_rows

    async def close(self) -> None:
        await self._batcher.close()
