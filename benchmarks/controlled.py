"""A node whose forward pass takes a configured time: the truth the planner's simulator is
checked against (issue 28, "prove the estimator on controlled service times").

Each pass over b rows sleeps `(base_ms + per_row_ms * b) * exp(sigma * z)`, z standard
normal from a seeded generator: a log-normal spread around a linear median, the model
the profile and the simulator assume. It sleeps rather than computes, so on a 2-core
machine the pass holds no CPU and the queueing, batching, branching and hops of the
real serving path (MLServer with our runtime and batcher, the local router, HTTP, the
load tester) are the only things measured.

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
EXTRA_FAMILIES = f"{FAMILY}=benchmarks.controlled:ControlledNode"


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
        time.sleep(self.service_s(len(rows)))  # waits without holding the CPU (or the GIL)
        return rows

    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, np.ndarray]:
        with self._lock:
            score = self._scores.random(len(results)).astype(np.float32)
        return {"output": np.stack(results).astype(np.float32), "score": score}
