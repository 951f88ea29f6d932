"""How a machine's speed drifts: the slow part of the spread of its forward passes.

A pass's time is its size's median times a factor that varies. On a shared VM (and
less so on a GPU whose clocks move) part of that variation is fast noise, pass to pass,
and part is a slow drift of the whole machine's speed that lasts seconds. The two
matter very differently to a queue: fast noise averages out over a busy period, a slow
spell makes every pass in it slow and lets the queue grow far longer.

On this project's 2-core check machine, 1,500 served ResNet-18 passes at 70 % load had
an autocorrelation of log-times of 0.49 at lag 1 but still 0.26 at lag 10 and 0.19 at
lag 20: no single lag-1 chain fits that. The model fitted here is the sum of two
independent normal parts of the log-time: a share `w` that is an Ornstein-Uhlenbeck
process with correlation time `tau` seconds (the drift), and 1 - w that is fresh each
pass. Its autocorrelation at lag k passes is w * r**k with r = exp(-gap / tau); the
fit is least squares of that curve against the measured one. The simulator draws
passes from the same model (`simulator._batch_loop`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Fewer passes than this leave the autocorrelation beyond a few lags as noise.
MIN_PASSES_FOR_DRIFT = 80
MAX_LAG = 50  # passes; the fit uses lags 1..min(MAX_LAG, passes // 8)
_DECAYS = np.linspace(0.5, 0.999, 300)  # per-pass correlation of the drift, searched


@dataclass(frozen=True)
class SpeedDrift:
    """The slow share of the log-time variance and its correlation time (0, 0: none)."""

    share: float = 0.0
    seconds: float = 0.0


def log_deviations(passes: list[tuple[int, float]]) -> np.ndarray:
    """Each pass's log-time relative to its batch size's median, in run order."""
    by_size: dict[int, list[float]] = {}
    for b, ms in passes:
        by_size.setdefault(b, []).append(ms)
    medians = {b: max(float(np.median(v)), 1e-9) for b, v in by_size.items()}
    return np.log([max(ms, 1e-9) / medians[b] for b, ms in passes])


def autocorrelation(dev: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelation at lags 1..`lags`."""
    centred = dev - dev.mean()
    var = float(np.mean(centred * centred))
    if var <= 0:
        return np.zeros(lags)
    return np.array([np.mean(centred[:-k] * centred[k:]) / var for k in range(1, lags + 1)])


def fit_speed_drift(passes: list[tuple[int, float]], seconds_per_pass: float) -> SpeedDrift:
    """The drift model that best fits the autocorrelation of `passes` ((size, ms) in run
    order, `seconds_per_pass` apart on average). No drift (0, 0) when there are too few
    passes or the fitted share is under 0.01."""
    if len(passes) < MIN_PASSES_FOR_DRIFT or seconds_per_pass <= 0:
        return SpeedDrift()
    lags = min(MAX_LAG, len(passes) // 8)
    measured = autocorrelation(log_deviations(passes), lags)
    k = np.arange(1, lags + 1)
    best_err, best = math.inf, SpeedDrift()
    for decay in _DECAYS:
        curve = decay**k
        share = float(np.clip(measured @ curve / (curve @ curve), 0.0, 1.0))
        err = float(np.sum((measured - share * curve) ** 2))
        if err < best_err:
            best_err = err
            best = SpeedDrift(share, -seconds_per_pass / math.log(decay))
    return best if best.share >= 0.01 else SpeedDrift()
