"""Async serving of one component: prepare per request, batch across requests, finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from infergraph.arrays import Array
from infergraph.components.base import Component, ComponentResult, Prepared
from infergraph.device import forward_thread_setup
from infergraph.serving.batcher import MicroBatcher, PendingWatch
from infergraph.timing import StageTimings

# Preparation on the event loop when it averages under this and the request is this small.
INLINE_PREPARE_S = 0.0002
INLINE_PREPARE_BYTES = 16 * 1024
# A light finish (`Component.light_finish`) runs on the event loop for up to this many rows.
INLINE_FINISH_ROWS = 64


def _payload_bytes(inputs: Mapping[str, Array]) -> int:
    """The request's size: array bytes, or the summed lengths of a BYTES tensor's items."""
    total = 0
    for array in inputs.values():
        if array.dtype == object:
            total += sum(len(x) if isinstance(x, (bytes, str)) else 64 for x in array.flat)
        else:
            total += array.nbytes
        if total > INLINE_PREPARE_BYTES:
            break
    return total


class ComponentEngine:
    """What an async server adapter calls: one `infer` per request, batching underneath.

    `instances` are the model's loaded copies (`ComponentSettings.instances`), each with its
    own forward thread; the first also prepares requests and finishes their answers, which
    read no weights and are the same for every copy.
    """

    def __init__(
        self,
        instances: Sequence[Component],
        on_pending: PendingWatch | None = None,
        max_queue_rows: int | None = None,
    ) -> None:
        if not instances:
            raise ValueError("an engine needs at least one loaded component")
        self.component = instances[0]
        settings = self.component.settings
        # Seconds a preparation takes, a moving average (None until one has run).
        self._prepare_s: float | None = None
        self._batcher = MicroBatcher(
            [c.run_batch for c in instances],
            settings.max_batch_size,
            settings.max_batch_time,
            thread_setup=forward_thread_setup(self.component.device, len(instances)),
            on_pending=on_pending,
            max_queue_rows=max_queue_rows,
        )

    async def infer(
        self, inputs: Mapping[str, Array], parameters: Mapping[str, object]
    ) -> ComponentResult:
        empty = self.component.zero_row_outputs(inputs)
        if empty is not None:  # nothing to batch: a frame with no detection
            return ComponentResult(outputs=empty, parameters={"batch_size": 0, "skipped": 1})
        if self.component.inline:
            return self.component.predict(inputs, parameters)
        timings = StageTimings()
        with timings.stage("preprocess"):
            prepared = await self._prepare(inputs, parameters)
        results, stats = await self._batcher.submit(prepared.rows, prepared.batch_key)
        timings.add("queue", stats.queue_ms)
        timings.add("inference", stats.inference_ms)
        with timings.stage("postprocess"):
            outputs = await self._finish(results, prepared)
        params = {**prepared.notes, **timings.as_parameters(), "batch_size": stats.batch_size}
        return ComponentResult(outputs=outputs, parameters=params)

    async def _prepare(
        self, inputs: Mapping[str, Array], parameters: Mapping[str, object]
    ) -> Prepared:
        """Decoding images or tokenising text is CPU work, kept off the event loop, unless
        this component's preparation has proved cheaper than the hop to a worker thread
        (and the request is small): a short text tokenises in tens of microseconds, while
        the hop there and back cost the loop about ten times that (bench-runtimes' account).
        """
        cheap = self._prepare_s is not None and self._prepare_s < INLINE_PREPARE_S
        if cheap and _payload_bytes(inputs) <= INLINE_PREPARE_BYTES:
            return self._timed_prepare(inputs, parameters)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._timed_prepare, inputs, parameters)

    async def _finish(self, results: list[Any], prepared: Prepared) -> dict[str, Array]:
        """Assembling outputs can be CPU work too (a detector PNG-encodes its crops): on the
        loop it would stall every model of the process (tests/test_engine_loop.py), so it
        runs in a worker thread, unless the component declares it light (`light_finish`)
        and the request is small: stacking a few vectors costs microseconds, the hop there
        and back about a hundred of the loop's (bench-runtimes' account, queue_handoff).
        """
        if self.component.light_finish and len(results) <= INLINE_FINISH_ROWS:
            return self.component.finish(results, prepared)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.component.finish, results, prepared)

    def _timed_prepare(
        self, inputs: Mapping[str, Array], parameters: Mapping[str, object]
    ) -> Prepared:
        """Preparation timed by the CPU its thread spends on it (it decodes and tokenises in
        memory). Wall time counted the waits for the GIL held by the forward thread and the
        loop: a text's 33 microseconds measured 1 to 5 ms in a worker thread, so it never
        came back to the loop (83 % of the benchmark's requests took the hop)."""
        started = time.thread_time()
        try:
            return self.component.prepare(inputs, parameters)
        finally:
            spent = time.thread_time() - started
            last = self._prepare_s
            self._prepare_s = spent if last is None else 0.8 * last + 0.2 * spent

    @property
    def instances(self) -> int:
        """Model copies serving this engine's batches, one forward pass each at a time."""
        return self._batcher.instances

    @property
    def max_queue_rows(self) -> int | None:
        """The most rows that may wait for a pass (`batching.maxQueueRows`); None: no bound."""
        return self._batcher.max_queue_rows

    async def close(self) -> None:
        await self._batcher.close()
