"""Per-row micro-batching across concurrent requests.

MLServer's own adaptive batcher merges whole requests and splits responses by
position: one bad request fails the whole batch, response parameters are shared
and request parameters collide (MLServer issues #514, #1306, #1541). This batcher
takes rows that each request has already validated, groups them by batch key,
runs one forward pass per group, and hands every request exactly its own rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchStats:
    """How one request's rows were served: the wait before its forward pass and its size."""

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 0


@dataclass
class _Pending:
    rows: list[Any]
    key: Hashable
    enqueued: float
    future: asyncio.Future[tuple[list[Any], BatchStats]]
    results: list[Any] = field(default_factory=list)


RunBatch = Callable[[list[Any], Hashable], list[Any]]


class MicroBatcher:
    """Collects rows for up to `max_batch_time` seconds or `max_batch_size` rows.

    Forward passes run one at a time on a dedicated thread (one model, one
    device queue), so the event loop keeps accepting and preparing requests.
    """

    def __init__(self, run_batch: RunBatch, max_batch_size: int, max_batch_time: float) -> None:
        self._run_batch = run_batch
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_batch_time)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._task: asyncio.Task[None] | None = None
        self._pending_rows = 0

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a forward pass: the queue an autoscaler should watch."""
        return self._pending_rows

    async def submit(self, rows: list[Any], key: Hashable) -> tuple[list[Any], BatchStats]:
        if not rows:
            return [], BatchStats()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[tuple[list[Any], BatchStats]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending_rows += len(rows)
        await self._queue.put(_Pending(rows, key, time.perf_counter(), future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _collect(self) -> list[_Pending]:
        first = await self._queue.get()
        batch = [first]
        rows = len(first.rows)
        deadline = time.perf_counter() + self._max_wait
        while rows < self._max_rows:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(nxt)
            rows += len(nxt.rows)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            groups: dict[Hashable, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.key, []).append(pending)
            for key, members in groups.items():
                await self._run_group(loop, key, members)

    async def _run_group(
        self, loop: asyncio.AbstractEventLoop, key: Hashable, members: list[_Pending]
    ) -> None:
        rows = [row for m in members for row in m.rows]
        self._pending_rows -= len(rows)
        # Rows from one oversized request are split into forward passes of at most max rows.
        chunks = [rows[i : i + self._max_rows] for i in range(0, len(rows), self._max_rows)]
        started = time.perf_counter()
        try:
            outputs: list[Any] = []
            for chunk in chunks:
                part = await loop.run_in_executor(self._executor, self._run_batch, chunk, key)
                if len(part) != len(chunk):
                    raise RuntimeError(
                        f"component returned {len(part)} results for a batch of {len(chunk)}"
                    )
                outputs.extend(part)
        except Exception as exc:  # the model failed: every member learns why
            for m in members:
                if not m.future.done():
                    m.future.set_exception(exc)
            return
        inference_ms = (time.perf_counter() - started) * 1000.0
        offset = 0
        for m in members:
            mine = outputs[offset : offset + len(m.rows)]
            offset += len(m.rows)
            stats = BatchStats(
                queue_ms=(started - m.enqueued) * 1000.0,
                inference_ms=inference_ms,
                batch_size=len(rows),
            )
            if not m.future.done():
                m.future.set_result((mine, stats))
