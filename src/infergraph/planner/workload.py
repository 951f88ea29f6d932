"""The load a plan must carry: a constant rate or a per-second trace, as arrival times.

Traces use the load tester's format (`async-load-tester trace`, `--schedule
trace:FILE`): one request count per second per line, blank lines and `#` comments
skipped, so the same file drives the simulation and the real run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infergraph.errors import InfergraphError
from infergraph.planner.simulator import poisson_arrivals, trace_arrivals


class TraceError(InfergraphError):
    """The trace cannot be read or holds no usable counts."""


def read_trace(path: str | Path) -> list[float]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TraceError(f"trace '{path}': cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise TraceError(f"trace '{path}': not a text file of per-second counts") from None
    counts: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise TraceError(
                f"trace '{path}' line {number}: '{text[:40]}' is not a request count"
            ) from None
        if not math.isfinite(value) or value < 0:
            what = "is negative" if value < 0 else "is not finite"
            raise TraceError(
                f"trace '{path}' line {number}: '{text[:40]}' {what}; a count is the number "
                "of requests in that second, >= 0"
            )
        counts.append(value)
    if not counts or sum(counts) == 0:
        raise TraceError(f"trace '{path}': holds no requests (one count per second per line)")
    return counts


@dataclass(frozen=True)
class Workload:
    """Per-second offered load; `label` says where it came from for the assumptions."""

    counts: tuple[float, ...]
    label: str
    poisson_rate: float | None = None  # constant-rate workloads are regenerated, not replayed

    @property
    def mean_rps(self) -> float:
        return sum(self.counts) / len(self.counts)

    @property
    def peak_rps(self) -> float:
        return max(self.counts)

    @property
    def trough_rps(self) -> float:
        return min(self.counts)

    def peak_mean_rps(self, window_s: int) -> float:
        """The highest rate averaged over `window_s` seconds: the peak an autoscaler's
        rate query (`rate(...[1m])`) sees, lower than the peak second of a bursty trace."""
        width = max(1, min(window_s, len(self.counts)))
        sums = np.convolve(np.asarray(self.counts), np.ones(width), mode="valid")
        return float(sums.max() / width)

    @classmethod
    def constant(cls, rate: float, duration_s: int) -> Workload:
        if not rate > 0 or not math.isfinite(rate):
            raise TraceError(f"--rate must be a positive number of requests/s, got {rate}")
        return cls((rate,) * max(1, duration_s), f"Poisson at {rate:g} req/s", rate)

    @classmethod
    def from_trace(cls, path: str | Path) -> Workload:
        counts = read_trace(path)
        return cls(tuple(counts), f"trace {path} ({len(counts)} s)")

    def arrivals(self, seed: int, scale: float = 1.0) -> np.ndarray:
        """The whole workload as arrival times, scaled by `scale`."""
        rng = np.random.default_rng(seed)
        if self.poisson_rate is not None:
            return poisson_arrivals(self.poisson_rate * scale, len(self.counts), rng)
        return trace_arrivals(self.counts, rng, scale)

    def busiest(self, max_requests: int, min_s: int = 10) -> Workload:
        """The busiest window holding about `max_requests` at its rate (at least `min_s`)."""
        n = len(self.counts)
        width = int(min(n, max(min_s, max_requests // max(self.peak_rps, 1e-9))))
        if width >= n:
            return self
        sums = np.convolve(np.asarray(self.counts), np.ones(width), mode="valid")
        start = int(np.argmax(sums))
        window = self.counts[start : start + width]
        return Workload(window, f"{self.label}, busiest {width} s", self.poisson_rate)
