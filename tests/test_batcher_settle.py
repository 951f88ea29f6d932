"""How a forward pass's answers reach their requests: each its own, one loop wake-up per pass.

The batcher runs on real asyncio loops and its real forward threads. `CountingLoop` is a
real selector event loop that counts the callbacks handed to it from a forward thread (each
is a write to the loop's self-pipe and a wake-up of the loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

import pytest

from infergraph.serving.batcher import MicroBatcher


class CountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts `call_soon_threadsafe` calls made by forward threads."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def call_soon_threadsafe[*Ts](
        self,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if threading.current_thread().name.startswith("forward"):
            self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


def run_counting[T](main: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, int]:
    """`main()` on a fresh CountingLoop: its result and the forward threads' wake-ups."""
    with asyncio.Runner(loop_factory=CountingLoop) as runner:
        result = runner.run(main())
        loop = runner.get_loop()
        assert isinstance(loop, CountingLoop)
        return result, loop.wakeups


def doubler(rows: list[int], key: Hashable) -> list[int]:
    if key == "bad":
        raise ValueError("this group's rows are refused")
    return [2 * r for r in rows]


def test_a_full_batch_resolves_every_caller_with_one_wakeup() -> None:
    # A long window: the pass starts when its 8 rows are in, so all 8 requests share it.
    batcher = MicroBatcher([doubler], 8, 10.0)

    async def main() -> list[tuple[list[int], int]]:
        answers = await asyncio.gather(*(batcher.submit([i], None) for i in range(8)))
        await batcher.close()
        return [(rows, stats.batch_size) for rows, stats in answers]

    answers, wakeups = run_counting(main)
    assert answers == [([2 * i], 8) for i in range(8)]
    assert wakeups == 1


def test_a_failing_group_fails_only_its_own_callers() -> None:
    batcher = MicroBatcher([doubler], 4, 10.0)

    async def main() -> list[object]:
        calls = [batcher.submit([i], "bad" if i == 1 else "good") for i in range(4)]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        await batcher.close()
        return [a if isinstance(a, BaseException) else a[0] for a in answers]

    answers, wakeups = run_counting(main)
    assert answers[0] == [0] and answers[2] == [4] and answers[3] == [6]
    assert isinstance(answers[1], ValueError)
    assert wakeups == 2  # one forward pass per batch key, each answered at once


def test_a_cancelled_caller_leaves_the_others_answered() -> None:
    in_pass, release = threading.Event(), threading.Event()

    def held(rows: list[int], key: Hashable) -> list[int]:
        in_pass.set()
        assert release.wait(10)
        return doubler(rows, key)

    batcher = MicroBatcher([held], 3, 10.0)

    async def main() -> list[list[int]]:
        tasks = [asyncio.ensure_future(batcher.submit([i], None)) for i in range(3)]
        assert await asyncio.to_thread(in_pass.wait, 10)
        tasks[1].cancel()  # its client went away while its rows were in the pass
        release.set()
        answers = await asyncio.gather(tasks[0], tasks[2])
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]
        await batcher.close()
        return [rows for rows, _ in answers]

    answers, wakeups = run_counting(main)
    assert answers == [[0], [4]]
    assert wakeups == 1


def test_each_loop_of_a_shared_batch_is_woken_once_and_a_closed_one_is_harmless() -> None:
    """Two loops (two threads) share one pass; one has closed before its answers come."""
    submitted, in_pass, release = threading.Barrier(3), threading.Event(), threading.Event()
    passes: list[list[int]] = []

    def held(rows: list[int], key: Hashable) -> list[int]:
        passes.append(sorted(rows))
        in_pass.set()
        assert release.wait(10)
        return doubler(rows, key)

    batcher = MicroBatcher([held], 6, 10.0)
    seen: dict[str, tuple[object, int]] = {}

    def client(name: str, first: int, close_early: bool) -> None:
        async def main() -> list[list[int]] | None:
            tasks = [asyncio.ensure_future(batcher.submit([first + i], None)) for i in range(3)]
            # Both loops' rows are in the running pass (the batch is full at 6 rows): a loop
            # that cancelled before it was formed would have left its rows out of it.
            assert await asyncio.to_thread(in_pass.wait, 10)
            await asyncio.to_thread(submitted.wait, 10)
            if close_early:
                for task in tasks:
                    task.cancel()
                return None
            return [rows for rows, _ in await asyncio.gather(*tasks)]

        seen[name] = run_counting(main)

    threads = [
        threading.Thread(target=client, args=("a", 0, False)),
        threading.Thread(target=client, args=("b", 10, True)),
    ]
    for thread in threads:
        thread.start()
    submitted.wait(10)
    threads[1].join(10)  # loop b has closed; the pass is still running
    release.set()
    threads[0].join(10)
    asyncio.run(batcher.close())
    assert seen["a"] == ([[0], [2], [4]], 1)
    assert seen["b"] == (None, 0)
    assert passes == [[0, 1, 2, 10, 11, 12]]


def test_callers_cancelled_before_their_group_runs_cost_no_forward_pass() -> None:
    """grpc.aio cancels a call's handler when its deadline passes: the rows of such callers
    still took forward passes ahead of later callers (a new caller waited 1.2 s behind 12
    abandoned ones for a 0.3 s pass) and were left in `pending_rows`, the queue gauge.
    Now they leave the count when cancelled and the pass runs the live rows only.

    The window is longer than any stall of a loaded machine: the batch closes when the test
    closes the batcher (the batch forming then still runs), never before the cancellations."""
    passes: list[list[int]] = []
    taken: list[int] = []

    def recorded(rows: list[int], key: Hashable) -> list[int]:
        passes.append(list(rows))
        return doubler(rows, key)

    batcher = MicroBatcher([recorded], 8, 10.0, on_pending=taken.append)

    async def main() -> tuple[list[int], int]:
        tasks = [asyncio.ensure_future(batcher.submit([i, i], None)) for i in range(3)]
        await asyncio.sleep(0.05)  # queued, the batch window still open
        assert batcher.pending_rows == 6
        tasks[0].cancel()
        tasks[2].cancel()
        await asyncio.sleep(0)  # the cancellations are delivered
        pending_after_cancel = batcher.pending_rows
        await batcher.close()  # ends the window: the batch formed so far runs
        rows, _ = await tasks[1]
        return rows, pending_after_cancel

    (rows, pending_after_cancel), _ = run_counting(main)
    assert rows == [2, 2]
    assert passes == [[1, 1]]
    assert pending_after_cancel == 2
    assert batcher.pending_rows == 0
    assert taken and taken[-1] == 0  # the gauge's callback saw the queue empty


def test_a_batch_of_cancelled_callers_runs_no_pass_at_all() -> None:
    """The five callers are cancelled after their batch was formed: the forward thread is held
    in the queue gauge's callback, which it calls as it takes the batch's rows for the pass."""
    passes: list[list[int]] = []
    formed, cancelled = threading.Event(), threading.Event()

    def recorded(rows: list[int], key: Hashable) -> list[int]:
        passes.append(list(rows))
        return doubler(rows, key)

    def gauge(waiting: int) -> None:
        if threading.current_thread().name == "forward" and not formed.is_set():
            formed.set()
            assert cancelled.wait(10)

    batcher = MicroBatcher([recorded], 5, 10.0, on_pending=gauge)

    async def main() -> int:
        tasks = [asyncio.ensure_future(batcher.submit([i], None)) for i in range(5)]
        assert await asyncio.to_thread(formed.wait, 10)  # the batch of five is formed
        for task in tasks:
            task.cancel()
        cancelled.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        last = asyncio.ensure_future(batcher.submit([7], None))
        await asyncio.sleep(0)  # queued
        await batcher.close()  # ends its window: the batch formed so far runs
        answer, _ = await last
        return answer[0]

    answer, _ = run_counting(main)
    assert answer == 14
    assert passes == [[7]]
    assert batcher.pending_rows == 0


def test_cancelled_callers_take_no_room_in_the_next_batch() -> None:
    """Cancelled callers were dropped only when their group ran, after the batch had counted
    their rows toward `max_batch_size`: three dead rows and one live one filled a batch of
    four, and the next live caller waited for a pass of its own."""
    passes: list[list[int]] = []
    in_pass, release = threading.Event(), threading.Event()

    def recorded(rows: list[int], key: Hashable) -> list[int]:
        if not passes:
            in_pass.set()
            release.wait(10)  # the forward thread is busy while the queue fills
        passes.append(list(rows))
        return doubler(rows, key)

    batcher = MicroBatcher([recorded], 4, 0.05)

    async def main() -> list[list[int]]:
        busy = asyncio.ensure_future(batcher.submit([0], None))
        assert await asyncio.to_thread(in_pass.wait, 10)  # the thread is in its first pass
        dead = [asyncio.ensure_future(batcher.submit([i], None)) for i in (1, 2, 3)]
        live = [asyncio.ensure_future(batcher.submit([i], None)) for i in (4, 5)]
        await asyncio.sleep(0.05)
        for task in dead:
            task.cancel()
        await asyncio.sleep(0.05)
        release.set()
        answers = [(await task)[0] for task in (busy, *live)]
        await batcher.close()
        return answers

    answers, _ = run_counting(main)
    assert answers == [[0], [8], [10]]
    assert passes == [[0], [4, 5]]
