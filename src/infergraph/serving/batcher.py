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
import queue
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class BatchStats:
    """How one request's rows were served: the wait before its forward pass and its size."""

    queue_ms: float = 0.0
    inference_ms: float = 0.0
    batch_size: int = 0


Outcome = tuple[list[Any], BatchStats]


@dataclass
class _Pending:
    rows: list[Any]
    key: Hashable
    enqueued: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]

    def settle(self, outcome: Outcome | BaseException) -> None:
        """Hand the answer to the request's event loop (called from the forward thread)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            self.loop.call_soon_threadsafe(_settle, self.future, outcome)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


RunBatch = Callable[[list[Any], Hashable], list[Any]]


class BatcherClosedError(RuntimeError):
    """A request reached a batcher that is shutting down (its model is being unloaded)."""


class MicroBatcher:
    """Collects rows for up to `max_batch_time` seconds or `max_batch_size` rows.

    One forward thread owns the model (one model, one device queue): it collects
    a batch, runs it, hands each request its rows and goes straight back to
    collecting. The event loop only enqueues rows and receives answers, so the
    next pass never waits for the loop to get round to starting it (under load
    that wait was about 5 % of every pass), and the loop keeps accepting and
    preparing requests meanwhile.
    """

    def __init__(self, run_batch: RunBatch, max_batch_size: int, max_batch_time: float) -> None:
        self._run_batch = run_batch
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_batch_time)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending_rows = 0
        self._closed = False

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a forward pass: the queue an autoscaler should watch."""
        return self._pending_rows

    async def submit(self, rows: list[Any], key: Hashable) -> Outcome:
        if not rows:
            return [], BatchStats()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the model is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="forward", daemon=True)
                self._thread.start()
            self._pending_rows += len(rows)
            # Under the lock, so nothing is queued behind close()'s stop marker.
            self._queue.put(_Pending(rows, key, time.perf_counter(), loop, future))
        return await future

    async def close(self) -> None:
        """Stop after the pass in flight; requests still queued fail with BatcherClosedError."""
        with self._lock:
            self._closed = True
            running = self._thread is not None
        if running:
            self._queue.put(None)
        else:
            self._fail_queued()

    def _serve(self) -> None:
        while True:
            batch, stop = self._collect()
            groups: dict[Hashable, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.key, []).append(pending)
            for key, members in groups.items():
                self._run_group(key, members)
            if stop:
                self._fail_queued()
                return

    def _collect(self) -> tuple[list[_Pending], bool]:
        """One batch, and whether close() was called while collecting it."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        rows = len(first.rows)
        deadline = time.perf_counter() + self._max_wait
        while rows < self._max_rows:
            remaining = deadline - time.perf_counter()
            try:
                if remaining > 0:
                    nxt = self._queue.get(timeout=remaining)
                else:
                    nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            rows += len(nxt.rows)
        return batch, False

    def _run_group(self, key: Hashable, members: list[_Pending]) -> None:
        rows = [row for m in members for row in m.rows]
        with self._lock:
            self._pending_rows -= len(rows)
        # Rows from one oversized request are split into forward passes of at most max rows.
        chunks = [rows[i : i + self._max_rows] for i in range(0, len(rows), self._max_rows)]
        started = time.perf_counter()
        try:
            outputs: list[Any] = []
            for chunk in chunks:
                part = self._run_batch(chunk, key)
                if len(part) != len(chunk):
                    raise RuntimeError(
                        f"component returned {len(part)} results for a batch of {len(chunk)}"
                    )
                outputs.extend(part)
        except Exception as exc:  # the model failed: every member learns why
            for m in members:
                m.settle(exc)
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
            m.settle((mine, stats))

    def _fail_queued(self) -> None:
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                return
            if pending is not None:
                with self._lock:
                    self._pending_rows -= len(pending.rows)
                pending.settle(BatcherClosedError("the model is shutting down"))
