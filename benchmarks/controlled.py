"""A node whose forward pass takes a configured time: the truth the planner's simulator is
checked against (issue 28, "prove the estimator on controlled service times").

Each pass over b rows waits `(base_ms + per_row_ms * b) * exp(sigma * z)`, z standard
normal from a seeded generator: a log-normal spread around a linear median, the model
the profile and the simulator assume. It sleeps rather than computes (spinning only its
last 0.4 ms, so that it ends on time), so on a 2-core machine the pass holds almost no CPU
and the queueing, batching, branching and hops of the real serving path (MLServer with our
runtime and batcher, the local router, HTTP, the load tester) are the only things measured.

It is not a shipped family. A process serves it when the environment names it:

    INFERGRAPH_EXTRA_FAMILIES=controlled=benchmarks.controlled:ControlledNode

with the repository root on PYTHONPATH (the router and every MLServer child inherit
both). Options (`options:` of the graph node): base_ms, per_row_ms, sigma, seed, and
load_ms: how long loading takes (a known checkpoint-to-ready time for the profiler).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec
from infergraph.errors import InputError, SettingsError

FAMILY = "controlled"
# How long before the end of a pass its wait stops sleeping and spins: a sleep overran its
# time by 0.12 ms at the median and 0.5-0.9 ms at the p99 here (kernel timer slack, the
# wake-up, the GIL), which made every served pass that much longer than its known law.
SPIN_S = 0.0004
EXTRA_FAMILIES = f"{FAMILY}=benchmarks.controlled:ControlledNode"


def wait_exactly(seconds: float) -> None:
    """Wait `seconds` without holding the CPU for all but the last `SPIN_S` of it: sleep to
    just before the end, then spin to it (a sleep alone ends late by its wake-up), so the
    pass takes the time its law drew. The spin holds a core and the GIL for about 0.3 ms
    a pass (about 1 % of the fastest, 24 ms, pass), as a model's own Python would."""
    end = time.perf_counter() + seconds
    if seconds > SPIN_S:
        time.sleep(seconds - SPIN_S)
    while time.perf_counter() < end:
        pass


class ControlledNode(Component):
    """Returns its `input` rows unchanged after waiting the configured service time, and a
    `score` per row, uniform on [0, 1) from its own seeded generator: a gate on
    `score lt f` sends a fraction f of single-row requests on, independently of the input
    (a cascade whose branch fraction is known)."""

    family: ClassVar[str] = FAMILY
    default_model: ClassVar[str] = ""
    uses_gpu: ClassVar[bool] = False
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("input", "FP32", (-1, -1)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("output", "FP32", (-1, -1)),
        TensorSpec("score", "FP32", (-1,)),
    )

    def load(self) -> None:
        """Read the timing options; a bad one fails the load, naming it."""
        self.base_ms = self._number("base_ms", 5.0)
        self.per_row_ms = self._number("per_row_ms", 1.0)
        self.sigma = self._number("sigma", 0.0)
        self.seed = int(self.option("seed", 0))
        time.sleep(self._number("load_ms", 0.0) / 1000.0)  # what a checkpoint's load would take
        self._rng = np.random.default_rng(self.seed)
        self._scores = np.random.default_rng(self.seed + 1)  # apart from the service draws
        self._lock = threading.Lock()  # the batcher runs passes on its own thread

    def warmup(self) -> None:
        """The usual warm-up pass, then the draws start over: the k-th served pass takes the
        k-th draw of `known_draws(seed, ...)`, so a check can give the simulator the same."""
        super().warmup()
        with self._lock:
            self._rng = np.random.default_rng(self.seed)

    def _number(self, name: str, default: float) -> float:
        value = self.option(name, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise SettingsError(f"options.{name}", f"must be a number >= 0, got {value!r}")
        return number

    @staticmethod
    def known_draws(seed: int, passes: int) -> np.ndarray:
        """The standard-normal draws a node seeded `seed` gives its first `passes` passes
        after warm-up (with sigma > 0: each pass draws one)."""
        return np.random.default_rng(seed).standard_normal(passes)

    def model_source(self) -> str:
        return "(no weights: controlled service time)"

    def setup_device(self) -> None:
        self.device = "cpu"

    def service_s(self, rows: int) -> float:
        """One draw of a pass's time over `rows` rows, in seconds."""
        with self._lock:
            z = float(self._rng.standard_normal()) if self.sigma > 0 else 0.0
        return (self.base_ms + self.per_row_ms * rows) / 1000.0 * math.exp(self.sigma * z)

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"input": np.zeros((batch_size, 4), dtype=np.float32)}

    def prepare(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> Prepared:
        data = np.asarray(self.require(inputs, "input"), dtype=np.float32)
        if data.ndim != 2:
            raise InputError("input", f"expected a [rows, features] tensor, got shape {data.shape}")
        return Prepared(rows=list(data))

    def run_batch(self, rows: list[Any], batch_key: Hashable) -> list[Any]:
        wait_exactly(self.service_s(len(rows)))
        return rows

    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, np.ndarray]:
        with self._lock:
            score = self._scores.random(len(results)).astype(np.float32)
        return {"output": np.stack(results).astype(np.float32), "score": score}
