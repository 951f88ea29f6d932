"""A model served as several instances: concurrent passes, one batch forming at a time.

The batcher is driven by the real asyncio loop and threads here; the instances are plain
functions so each property can be seen directly (which thread ran, what was in each pass).
The served path with real checkpoints is in tests/test_text_embedding.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable

import pytest
import torch

from infergraph.device import forward_thread_setup
from infergraph.errors import SettingsError
from infergraph.graph.model import Node
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.serving.batcher import BatcherClosedError, MicroBatcher


class Recorder:
    """Instances that double their rows and record each pass: thread name and rows."""

    def __init__(self, barrier: threading.Barrier | None = None) -> None:
        self.barrier = barrier
        self.passes: list[tuple[str, list[int]]] = []
        self.lock = threading.Lock()

    def run_batch(self, rows: list[int], key: Hashable) -> list[int]:
        del key
        if self.barrier is not None:
            self.barrier.wait(timeout=10)  # breaks unless another pass is in flight at once
        with self.lock:
            self.passes.append((threading.current_thread().name, list(rows)))
        return [2 * r for r in rows]


def test_two_instances_run_two_passes_at_once() -> None:
    recorder = Recorder(threading.Barrier(2))
    batcher = MicroBatcher([recorder.run_batch, recorder.run_batch], 1, 0.0)

    async def main() -> list[list[int]]:
        answers = await asyncio.gather(batcher.submit([1], None), batcher.submit([2], None))
        await batcher.close()
        return [rows for rows, _ in answers]

    assert asyncio.run(main()) == [[2], [4]]
    assert {name for name, _ in recorder.passes} == {"forward-0", "forward-1"}
    assert batcher.instances == 2


def test_every_caller_gets_its_own_rows_across_instances() -> None:
    recorder = Recorder()
    batcher = MicroBatcher([recorder.run_batch] * 3, 4, 0.001)

    async def main() -> list[list[int]]:
        calls = [batcher.submit([i, 1000 + i], None) for i in range(200)]
        answers = await asyncio.gather(*calls)
        await batcher.close()
        return [rows for rows, _ in answers]

    got = asyncio.run(main())
    assert got == [[2 * i, 2 * (1000 + i)] for i in range(200)]
    assert sum(len(rows) for _, rows in recorder.passes) == 400
    assert all(len(rows) <= 4 for _, rows in recorder.passes)


def test_an_idle_second_instance_does_not_split_a_filling_batch() -> None:
    """Both instances idle: the four requests form one pass, which starts once its four rows
    are in (two collectors at once would each take some and run two half batches when the
    window ends). The window is longer than any stall of a loaded machine."""
    recorder = Recorder()
    set_up = threading.Barrier(3)
    batcher = MicroBatcher(
        [recorder.run_batch, recorder.run_batch],
        4,
        10.0,
        thread_setup=lambda: set_up.wait(timeout=10),
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit([0], None))
        await asyncio.to_thread(set_up.wait, 10)  # both forward threads are started
        await asyncio.sleep(0.05)  # ... and waiting for rows
        rest = [batcher.submit([i], None) for i in (1, 2, 3)]
        await asyncio.gather(first, *rest)
        await batcher.close()

    asyncio.run(main())
    assert [rows for _, rows in recorder.passes] == [[0, 1, 2, 3]]


def _forward_threads_not_in(before: set[threading.Thread]) -> list[str]:
    """The forward threads started since `before` (another test's batcher may still have
    some) that are still alive, once they have all ended or 10 s have passed."""

    def alive() -> list[str]:
        now = threading.enumerate()
        return [t.name for t in now if t.name.startswith("forward") and t not in before]

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return alive()


def test_close_stops_every_forward_thread_and_refuses_new_rows() -> None:
    before = set(threading.enumerate())
    recorder = Recorder()
    batcher = MicroBatcher([recorder.run_batch] * 2, 2, 0.0)

    async def main() -> None:
        await batcher.submit([1], None)
        await batcher.close()
        with pytest.raises(BatcherClosedError):
            await batcher.submit([2], None)

    asyncio.run(main())
    assert _forward_threads_not_in(before) == []


def test_each_forward_thread_runs_its_setup_first() -> None:
    before = set(threading.enumerate())
    seen: list[str] = []
    recorder = Recorder()
    batcher = MicroBatcher(
        [recorder.run_batch] * 2,
        1,
        0.0,
        thread_setup=lambda: seen.append(threading.current_thread().name),
    )

    async def main() -> None:
        await batcher.submit([1], None)
        await batcher.close()

    asyncio.run(main())
    # close() does not wait for the threads: an idle one may not have run its setup yet.
    assert _forward_threads_not_in(before) == []
    assert sorted(seen) == ["forward-0", "forward-1"]


def _threads_after(setup: object) -> int:
    """torch's thread count in a fresh thread that ran `setup` first."""
    seen: list[int] = []

    def in_a_forward_thread() -> None:
        assert callable(setup)
        setup()
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=in_a_forward_thread)
    thread.start()
    thread.join()
    return seen[0]


def test_cpu_instances_split_torch_threads_and_one_keeps_the_default() -> None:
    assert forward_thread_setup(torch.device("cuda", 0), 2) is None
    default = torch.get_num_threads()
    try:
        assert _threads_after(forward_thread_setup(torch.device("cpu"), 2)) == max(1, default // 2)
        # A model of one instance loaded after it still gets the whole pool: set_num_threads
        # in the other model's forward thread changed what new threads start with.
        assert _threads_after(forward_thread_setup(torch.device("cpu"), 1)) == default
    finally:
        torch.set_num_threads(default)


def test_instances_must_be_one_or_more_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"parameters\.extra\.instances.*1 or more"):
        RuntimeSettings.from_extra({"family": "identity", "instances": 0})
    with pytest.raises(SettingsError, match=r"parameters\.extra\.instances.*whole number"):
        RuntimeSettings.from_extra({"family": "identity", "instances": 1.5})
    settings = RuntimeSettings.from_extra({"family": "identity", "instances": 2})
    assert settings.component_settings(None, 8, 0.0).instances == 2
    with pytest.raises(ValueError, match="instances"):
        Node(name="n", family="identity", instances=0)
