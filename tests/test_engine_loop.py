"""The serving engine keeps a component's CPU work off the event loop every model shares.

All models of an MLServer process answer on one event loop. A step that runs on it (a
detector's `finish` PNG-encoding its crops) stalls every other model's requests for as long
as it runs. Two engines with the real `MicroBatcher` share one loop here, as two models
share MLServer's.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np

from infergraph.arrays import Array
from infergraph.components.base import Component, ComponentSettings, Prepared, TensorSpec
from infergraph.serving.engine import INLINE_FINISH_ROWS, ComponentEngine

# The slow finish runs until the test lets it go, or gives up after this long: finish on
# the event loop keeps the other model's request waiting until it gives up.
SLOW_FINISH_S = 10.0


class Doubler(Component):
    """Doubles its input; `finish` does CPU-bound work until `release` is set, for at most
    `finish_s` seconds (`gave_up`: it ran them all)."""

    family: ClassVar[str] = "test-doubler"
    default_model: ClassVar[str] = "none"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("x", "FP32", (-1,)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("y", "FP32", (-1,)),)
    uses_gpu: ClassVar[bool] = False

    def __init__(self, finish_s: float = 0.0) -> None:
        super().__init__(ComponentSettings(max_batch_size=4))
        self.finish_s = finish_s
        self.finishing = threading.Event()
        self.release = threading.Event()
        self.gave_up = False
        self.finish_spans: list[tuple[float, float]] = []

    def load(self) -> None:
        pass

    def example_inputs(self, batch_size: int) -> dict[str, Array]:
        return {"x": np.ones(batch_size, dtype=np.float32)}

    def prepare(self, inputs: Mapping[str, Array], parameters: Mapping[str, Any]) -> Prepared:
        return Prepared(rows=[float(v) for v in self.require(inputs, "x")])

    def run_batch(self, rows: list[Any], batch_key: Hashable) -> list[Any]:
        return [2 * r for r in rows]

    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, Array]:
        started = time.perf_counter()
        self.finishing.set()
        while not self.release.is_set():  # busy, as PNG encoding is
            if time.perf_counter() - started >= self.finish_s:
                self.gave_up = self.finish_s > 0
                break
            sum(range(1000))
        self.finish_spans.append((started, time.perf_counter()))
        return {"y": np.asarray(results, dtype=np.float32)}


async def _serve_both(slow: ComponentEngine, fast: ComponentEngine, probe: Doubler) -> float:
    """Start a slow-finishing request, then time a fast model's request made meanwhile."""
    slow_call = asyncio.create_task(slow.infer({"x": np.ones(2, dtype=np.float32)}, {}))
    # Wait in a thread for the slow finish to begin: with `finish` on the loop, that wait can
    # only be noticed once the slow finish has ended.
    assert await asyncio.to_thread(probe.finishing.wait, 10)
    try:
        result = await fast.infer({"x": np.asarray([3.0], dtype=np.float32)}, {})
        answered = time.perf_counter()
    finally:
        probe.release.set()
    assert result.outputs["y"].tolist() == [6.0]
    slow_result = await slow_call
    assert slow_result.outputs["y"].tolist() == [2.0, 2.0]
    return answered


def test_a_slow_finish_does_not_hold_up_another_models_request() -> None:
    slow_component = Doubler(finish_s=SLOW_FINISH_S)
    slow, fast = ComponentEngine([slow_component]), ComponentEngine([Doubler()])

    async def run() -> float:
        try:
            return await _serve_both(slow, fast, slow_component)
        finally:
            await slow.close()
            await fast.close()

    answered = asyncio.run(run())
    ((_, ended),) = slow_component.finish_spans
    assert answered < ended, (
        f"the other model answered {answered - ended:.3f} s after the slow finish ended: "
        "finish ran on the event loop"
    )
    # The slow finish holds the GIL in 5 ms turns all the while; however slow a loaded machine
    # makes the other request, it was answered before the finish gave up.
    assert not slow_component.gave_up


class LightDoubler(Doubler):
    """A Doubler whose finish is declared light; it records the thread each finish ran on."""

    light_finish: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.finish_threads: list[threading.Thread] = []

    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, Array]:
        self.finish_threads.append(threading.current_thread())
        return super().finish(results, prepared)


def test_a_light_finish_of_a_small_request_runs_on_the_loop_and_a_large_one_does_not() -> None:
    component = LightDoubler()
    engine = ComponentEngine([component])
    rows = INLINE_FINISH_ROWS + 1

    async def run() -> tuple[list[float], list[float]]:
        try:
            small = await engine.infer({"x": np.asarray([1.0, 2.0], dtype=np.float32)}, {})
            large = await engine.infer({"x": np.ones(rows, dtype=np.float32)}, {})
            return small.outputs["y"].tolist(), large.outputs["y"].tolist()
        finally:
            await engine.close()

    small, large = asyncio.run(run())
    assert small == [2.0, 4.0] and large == [2.0] * rows
    loop_thread = threading.main_thread()  # asyncio.run's loop runs in this thread
    assert component.finish_threads[0] is loop_thread
    assert component.finish_threads[1] is not loop_thread


class PrepareRecorder(Doubler):
    """A Doubler that records the thread each preparation ran on; its preparation lets the
    GIL go for a moment, as a Rust tokenizer does while it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.prepare_threads: list[threading.Thread] = []

    def prepare(self, inputs: Mapping[str, Array], parameters: Mapping[str, Any]) -> Prepared:
        self.prepare_threads.append(threading.current_thread())
        time.sleep(0)  # lets the GIL go: taking it back waits for whoever holds it
        return super().prepare(inputs, parameters)


def test_a_cheap_prepare_returns_to_the_loop_while_another_thread_holds_the_gil() -> None:
    """A forward thread running Python holds the GIL in 5 ms turns: a preparation in a worker
    thread waits that long for it, which is no cost of the preparation. Judged by its wall
    time, a microseconds-cheap prepare was never let back on the loop (the text-embedding
    benchmark's served process prepared 83 % of its requests in a worker thread)."""
    component = PrepareRecorder()
    engine = ComponentEngine([component])
    stop = threading.Event()

    def busy() -> None:  # pure Python: holds the GIL until the interpreter makes it switch
        while not stop.is_set():
            sum(range(10_000))

    async def run() -> None:
        try:
            for _ in range(40):
                result = await engine.infer({"x": np.asarray([1.0], dtype=np.float32)}, {})
                assert result.outputs["y"].tolist() == [2.0]
        finally:
            await engine.close()

    spinner = threading.Thread(target=busy)
    spinner.start()
    gc.collect()
    gc.disable()  # a collection inside a preparation is CPU too, and not what is tested here
    try:
        asyncio.run(run())
    finally:
        gc.enable()
        stop.set()
        spinner.join()
    threads = component.prepare_threads
    assert threads[0] is not threading.main_thread()  # unmeasured yet: a worker thread
    # Back on the loop once measured: the average decays by 0.8 a call, so a first call's
    # one-off cost of up to 0.2 ms / 0.8**30 (160 ms of CPU) has decayed by the 31st.
    later = threads[30:]
    assert all(t is threading.main_thread() for t in later), [t.name for t in later]
