"""Per-stage timings that travel with every response (queue, preprocess, inference, ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageTimings:
    """Milliseconds spent per stage for one request; keys are stage names."""

    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + ms

    def as_parameters(self, prefix: str = "") -> dict[str, float]:
        """Flatten to response parameters such as `queue_ms`, `inference_ms`."""
        return {f"{prefix}{k}_ms": round(v, 3) for k, v in self.stages.items()}
