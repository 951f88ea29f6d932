"""Per-row micro-batching across concurrent requests.

MLServer's own adaptive batcher merges whole requests and splits responses by
position: one bad request fails the whole batch, response parameters are shared
and request parameters collide (MLServer issues #514, #1306, #1541). This batcher
takes rows that each request has already validated, groups them by batch key,
runs one forward pass per group, and hands every request exactly its own rows.

A model may run as several instances (Triton's `instance_group.count`): each is its own copy
with its own forward thread, and all take batches from the one queue. Batches are still
formed one at a time, by whichever instance is free, so a second idle instance never splits
a filling batch in two; while one instance runs its pass the next batch fills for another.
On a CPU a forward pass spends much of its time waiting at its intra-op threads' barriers;
two single-threaded instances keep both cores busy instead (`docs/benchmarks.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from infergraph.errors import PayloadTooLargeError, QueueFullError


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
    # Its rows have left `pending_rows`: taken for a pass, cancelled, or failed at close.
    released: bool = False


Answer = tuple[asyncio.Future[Outcome], Outcome | BaseException]


def settle_all(answers: Sequence[tuple[_Pending, Outcome | BaseException]]) -> None:
    """Hand each request its answer, waking each event loop once (from the forward thread).

    One `call_soon_threadsafe` per request cost the forward thread a self-pipe write each and
    the loop a handle each: a batch of 32 woke its loop 32 times. Answers are grouped by
    loop and settled by one callback there, each on its own future, so one request's error
    still reaches only that request.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for pending, outcome in answers:
        by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_settle_each, settled)


def _settle_each(answers: list[Answer]) -> None:
    for future, outcome in answers:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


RunBatch = Callable[[list[Any], Hashable], list[Any]]
# Runs first in each forward thread, e.g. to give it its share of the CPU's threads.
ThreadSetup = Callable[[], None]
# Told the rows still waiting whenever that changes (the runtime's queue gauge).
PendingWatch = Callable[[int], None]


class BatcherClosedError(RuntimeError):
    """A request reached a batcher that is shutting down (its model is being unloaded)."""


class MicroBatcher:
    """Collects rows for up to `max_batch_time` seconds or `max_batch_size` rows.

    One forward thread per model instance owns that instance (one model copy, one device
    queue): it collects a batch, runs it, hands each request its rows and goes straight
    back to collecting. The event loop only enqueues rows and receives answers, so the
    next pass never waits for the loop to get round to starting it (under load that wait
    was about 5 % of every pass), and the loop keeps accepting and preparing requests
    meanwhile.

    `max_queue_rows` bounds the rows waiting (`pending_rows`): a request that would take them
    past it is refused at once with QueueFullError, before anything of it is queued, so that
    under overload callers learn it now instead of waiting ever longer for answers that come
    too late (Triton's `max_queue_size`). None leaves the queue unbounded.
    """

    def __init__(
        self,
        run_batches: Sequence[RunBatch],
        max_batch_size: int,
        max_batch_time: float,
        thread_setup: ThreadSetup | None = None,
        on_pending: PendingWatch | None = None,
        max_queue_rows: int | None = None,
    ) -> None:
        if not run_batches:
            raise ValueError("a batcher needs at least one model instance to run its batches")
        if max_queue_rows is not None and max_queue_rows < 1:
            raise ValueError(f"max_queue_rows must be 1 or more, got {max_queue_rows}")
        self._max_queue_rows = max_queue_rows
        self._run_batches = list(run_batches)
        self._thread_setup = thread_setup
        self._on_pending = on_pending
        self._max_rows = max(1, max_batch_size)
        self._max_wait = max(0.0, max_batch_time)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        # Held while a batch is formed: one batch fills at a time, whichever instance is free.
        self._forming = threading.Lock()
        self._pending_rows = 0
        self._closed = False

    @property
    def instances(self) -> int:
        """Forward passes that can run at once: one per model instance."""
        return len(self._run_batches)

    @property
    def max_queue_rows(self) -> int | None:
        """The most rows that may wait (`batching.maxQueueRows`); None: no bound."""
        return self._max_queue_rows

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
            self._admit(len(rows))
            if not self._threads:
                self._start_threads()
            self._pending_rows += len(rows)
            pending = _Pending(rows, key, time.perf_counter(), loop, future)
            # Under the lock, so nothing is queued behind close()'s stop markers.
            self._queue.put(pending)
            waiting = self._pending_rows
        if self._on_pending is not None:
            self._on_pending(waiting)
        try:
            return await future
        except asyncio.CancelledError:
            # The client went away (a gRPC deadline, a disconnect): its rows wait no more.
            # They stay queued until a forward thread takes them and drops them (`_run_group`).
            self._release([pending])
            raise

    def _admit(self, rows: int) -> None:
        """Refuse (under the lock) a request whose rows would pass `max_queue_rows`: one that
        never could, as too large (a retry cannot help), one that finds the queue full, as
        overload."""
        limit = self._max_queue_rows
        if limit is None or self._pending_rows + rows <= limit:
            return
        if rows > limit:
            raise PayloadTooLargeError(
                "request",
                f"{rows} rows can never be queued: more than the queue's limit of {limit} rows "
                "(batching.maxQueueRows); split it into smaller requests",
            )
        raise QueueFullError(self._pending_rows, rows, limit)

    def _release(self, members: Sequence[_Pending]) -> None:
        """Take `members`' rows out of `pending_rows` once each, and tell the watcher: the
        queue gauge follows rows taken for a pass, not only requests entering and leaving
        (after cancelled callers it showed their rows for as long as no request came)."""
        with self._lock:
            for m in members:
                if not m.released:
                    m.released = True
                    self._pending_rows -= len(m.rows)
            left = self._pending_rows
        if self._on_pending is not None:
            self._on_pending(left)

    def _start_threads(self) -> None:
        for i, run_batch in enumerate(self._run_batches):
            name = "forward" if len(self._run_batches) == 1 else f"forward-{i}"
            thread = threading.Thread(target=self._serve, args=(run_batch,), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    async def close(self) -> None:
        """Stop after the passes in flight; requests still queued fail with BatcherClosedError."""
        with self._lock:
            self._closed = True
            running = len(self._threads)
        for _ in range(running):  # one stop marker per forward thread
            self._queue.put(None)
        if not running:
            self._fail_queued()

    def _serve(self, run_batch: RunBatch) -> None:
        if self._thread_setup is not None:
            self._thread_setup()
        while True:
            with self._forming:
                batch, stop = self._collect()
            groups: dict[Hashable, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.key, []).append(pending)
            for key, members in groups.items():
                self._run_group(run_batch, key, members)
            if stop:
                self._fail_queued()
                return

    def _collect(self) -> tuple[list[_Pending], bool]:
        """One batch, and whether close() was called while collecting it. A caller already
        cancelled takes no room in it: its rows leave the count as it is taken."""
        first = self._queue.get()
        while first is not None and first.future.cancelled():
            self._release([first])
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
            if nxt.future.cancelled():
                self._release([nxt])
                continue
            batch.append(nxt)
            rows += len(nxt.rows)
        return batch, False

    def _run_group(self, run_batch: RunBatch, key: Hashable, members: list[_Pending]) -> None:
        self._release(members)
        # A caller cancelled while its batch formed costs no forward pass either.
        members = [m for m in members if not m.future.cancelled()]
        if not members:
            return
        rows = [row for m in members for row in m.rows]
        # Rows from one oversized request are split into forward passes of at most max rows.
        chunks = [rows[i : i + self._max_rows] for i in range(0, len(rows), self._max_rows)]
        started = time.perf_counter()
        try:
            outputs: list[Any] = []
            for chunk in chunks:
                part = run_batch(chunk, key)
                if len(part) != len(chunk):
                    raise RuntimeError(
                        f"component returned {len(part)} results for a batch of {len(chunk)}"
                    )
                outputs.extend(part)
        except Exception as exc:  # the model failed: every member learns why
            settle_all([(m, exc) for m in members])
            return
        inference_ms = (time.perf_counter() - started) * 1000.0
        answers: list[tuple[_Pending, Outcome | BaseException]] = []
        offset = 0
        for m in members:
            mine = outputs[offset : offset + len(m.rows)]
            offset += len(m.rows)
            stats = BatchStats(
                queue_ms=(started - m.enqueued) * 1000.0,
                inference_ms=inference_ms,
                batch_size=len(rows),
            )
            answers.append((m, (mine, stats)))
        settle_all(answers)

    def _fail_queued(self) -> None:
        """Fail what is still queued; other threads' stop markers go back for them to find."""
        markers = 0
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                markers += 1
                continue
            self._release([pending])
            settle_all([(pending, BatcherClosedError("the model is shutting down"))])
        for _ in range(markers):
            self._queue.put(None)
