"""Per-step counters and HDR histograms, fed from the hot path as cheaply as possible.

The hot path only appends integers (microseconds) to lists; `drain()` folds them
into HDR histograms in bulk (numpy unique + one record per distinct value) every
50 ms, so recording costs one list append per request, no fold holds the loop for
long, and memory stays flat however long the run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram
from numpy.ctypeslib import as_array  # imported here, not at the first fold in a run

# 1 us .. 1 h at 3 significant digits: 0.1% value resolution.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def record_bulk(hist: HdrHistogram, values: list[int]) -> None:
    """Record `values` (clipped to the histogram's range) as hdrh's `record_value` would, one
    at a time, but with the bucket indices of the whole batch computed at once: the fold runs
    on the tester's loop, and hdrh's pure-Python recording held it for ~1 us a value."""
    if not values:
        return
    arr = np.clip(np.asarray(values, dtype=np.int64), LOWEST_US, HIGHEST_US)
    added = np.bincount(_counts_indices(hist, arr))
    counts = as_array(hist.counts)  # a view: hdrh encodes from this memory
    counts[: len(added)] += added.astype(counts.dtype)
    hist.total_count += len(arr)
    hist.min_value = min(hist.min_value, int(arr.min()))
    hist.max_value = max(hist.max_value, int(arr.max()))


def _counts_indices(hist: HdrHistogram, values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """hdrh's `_counts_index_for` over an array of values in range (hdrh/histogram.py)."""
    # 64 - clz(v | mask) is the bit length; frexp's exponent is exactly that below 2**53.
    bit_length = np.frexp((values | hist.sub_bucket_mask).astype(np.float64))[1]
    bucket = bit_length - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + hist.unit_magnitude)
    base = (bucket + 1) << hist.sub_bucket_half_count_magnitude
    return np.asarray(base + sub_bucket - hist.sub_bucket_half_count, dtype=np.int64)


@dataclass
class Recorder:
    """What one measured step saw. Latency counts from each request's intended send time."""

    slo_us: int | None = None
    latency_us: list[int] = field(default_factory=list)  # successes, from intended send time
    service_us: list[int] = field(default_factory=list)  # successes, from actual send time
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    stages: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: int = 0
    ok: int = 0
    late: int = 0
    dropped: int = 0
    within_slo: int = 0
    first_intended: float | None = None
    last_done: float = 0.0
    # Successes answered inside the measurement window, warm-up requests' included: what
    # throughput counts (perf_analyzer's way), while `ok` counts the measured requests' answers.
    window_ok: int = 0
    max_late_s: float = 0.0
    error_samples: dict[str, str] = field(default_factory=dict)
    hist: HdrHistogram = field(default_factory=new_histogram)
    service_hist: HdrHistogram = field(default_factory=new_histogram)
    recent_us: list[int] = field(default_factory=list)

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if detail and kind not in self.error_samples:
            self.error_samples[kind] = detail[:300]

    def drain(self) -> list[int]:
        """Fold pending values into the histograms; returns them (for live stats)."""
        lat, svc = self.latency_us, self.service_us
        self.latency_us, self.service_us = [], []
        if self.slo_us is not None and lat:
            self.within_slo += int(np.count_nonzero(np.asarray(lat) <= self.slo_us))
        record_bulk(self.hist, lat)
        record_bulk(self.service_hist, svc)
        return lat

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def histogram_summary(hist: HdrHistogram) -> dict[str, float | None]:
    """Percentiles in milliseconds (None when nothing was recorded)."""
    if hist.get_total_count() == 0:
        return {"min": None, "mean": None, **{f"p{p:g}": None for p in PERCENTILES}, "max": None}
    out: dict[str, float | None] = {
        "min": hist.get_min_value() / 1000.0,
        "mean": hist.get_mean_value() / 1000.0,
    }
    for p in PERCENTILES:
        out[f"p{p:g}"] = hist.get_value_at_percentile(p) / 1000.0
    out["max"] = hist.get_max_value() / 1000.0
    return out


def cdf_points(hist: HdrHistogram, points: int = 200) -> list[tuple[float, float]]:
    """(latency ms, cumulative fraction) pairs for plotting, log-spaced in the tail."""
    if hist.get_total_count() == 0:
        return []
    qs = np.unique(
        np.concatenate([np.linspace(0, 90, points // 2), 100 - np.logspace(1, -3, points // 2)])
    )
    return [(hist.get_value_at_percentile(float(q)) / 1000.0, float(q) / 100.0) for q in qs]


def encode_histogram(hist: HdrHistogram) -> str:
    """Compressed HDR histogram (standard base64 encoding) so results can be merged later."""
    encoded = hist.encode()
    return encoded.decode() if isinstance(encoded, bytes) else str(encoded)


def stage_summary(stages: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, values in sorted(stages.items()):
        arr = np.asarray(values, dtype=float)
        out[name] = {
            "count": int(arr.size),
            "mean": float(arr.mean()),
            "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95)),
            "p99": float(np.percentile(arr, 99)),
        }
    return out
