"""How a machine's speed drifts: the slow part of the spread of its forward passes.

A pass's time is its size's median times a factor that varies. On a shared VM (and
less so on a GPU whose clocks move) part of that variation is fast noise, pass to pass,
and part is a slow drift of the whole machine's speed that lasts seconds. The two
matter very differently to a queue: fast noise averages out over a busy period, a slow
spell makes every pass in it slow and lets the queue grow far longer.

On this project's 2-core check machine, 1,500 served ResNet-18 passes at 70 % load had
an autocorrelation of log-times of 0.49 at lag 1 but still 0.26 at lag 10 and 0.19 at
lag 20: no single lag-1 chain fits that. In a 240 s load at 50 % a slower part showed
too: 0.09 at lag 100 passes and 0.08 at lag 200 (20 s), about an eighth of the variance.
The model fitted here is a sum of independent normal parts of the log-time: a share `w`
that is an Ornstein-Uhlenbeck process with correlation time `tau` seconds (the drift),
optionally a share `w2` that is another with a longer `tau2` (the slow drift), and the
rest fresh each pass. Its autocorrelation at lag k passes is w * r**k + w2 * r2**k with
r = exp(-gap / tau); the fit is least squares of that curve against the measured one.
The simulator draws passes from the same model (`simulator._batch_loop`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Fewer passes than this leave the autocorrelation beyond a few lags as noise.
MIN_PASSES_FOR_DRIFT = 80
MAX_LAG = 300  # passes; the fit uses lags 1..min(MAX_LAG, passes // 3)
MIN_SHARE = 0.01  # a fitted part smaller than this is no drift
# A second, slower part is kept only when it cuts the fit's squared error by this fraction:
# far lags of a few hundred passes are noisy, and noise alone would always buy some share.
SLOW_GAIN = 0.10
_FAST = np.linspace(0.3, 0.99, 70)  # per-pass correlation of the (faster) drift, searched
_SLOW = 1.0 - np.geomspace(5e-4, 5e-2, 50)  # and of the slow one: 20 to 2,000 passes


@dataclass(frozen=True)
class SpeedDrift:
    """Shares of the log-time variance that drift, and their correlation times (0: none).

    `share` / `seconds` is the drift over a few passes to seconds; `slow_share` /
    `slow_seconds` one lasting tens of seconds, on top (0, 0 when the data show none).
    """

    share: float = 0.0
    seconds: float = 0.0
    slow_share: float = 0.0
    slow_seconds: float = 0.0


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


def _best_single(measured: np.ndarray, curves: np.ndarray) -> tuple[float, int, float]:
    """(squared error, curve index, share >= 0) of the best one-part fit."""
    norms = np.einsum("gl,gl->g", curves, curves)
    shares = np.clip(curves @ measured / norms, 0.0, 1.0)
    errors = np.sum((measured[None, :] - shares[:, None] * curves) ** 2, axis=1)
    g = int(np.argmin(errors))
    return float(errors[g]), g, float(shares[g])


def _best_pair(
    measured: np.ndarray, fast: np.ndarray, slow: np.ndarray
) -> tuple[float, int, int, float, float]:
    """(squared error, fast index, slow index, shares) of the best two-part fit with both
    shares positive (the 2 x 2 normal equations, solved for every pair of curves at once)."""
    a11 = np.einsum("fl,fl->f", fast, fast)[:, None]
    a22 = np.einsum("sl,sl->s", slow, slow)[None, :]
    a12 = fast @ slow.T
    b1 = (fast @ measured)[:, None]
    b2 = (slow @ measured)[None, :]
    det = a11 * a22 - a12 * a12
    with np.errstate(divide="ignore", invalid="ignore"):
        w1 = (a22 * b1 - a12 * b2) / det
        w2 = (a11 * b2 - a12 * b1) / det
    error = measured @ measured - 2 * (w1 * b1 + w2 * b2) + w1 * w1 * a11 + w2 * w2 * a22
    error = error + 2 * w1 * w2 * a12
    error = np.where((w1 > 0) & (w2 > 0) & (w1 + w2 <= 1) & (det > 1e-12), error, np.inf)
    f, s = np.unravel_index(int(np.argmin(error)), error.shape)
    return float(error[f, s]), int(f), int(s), float(w1[f, s]), float(w2[f, s])


def fit_speed_drift(passes: list[tuple[int, float]], seconds_per_pass: float) -> SpeedDrift:
    """The drift model that best fits the autocorrelation of `passes` ((size, ms) in run
    order, `seconds_per_pass` apart on average): one part, or two when a slower second
    part fits clearly better. No drift (0, 0) when there are too few passes or the fitted
    share is under `MIN_SHARE`."""
    if len(passes) < MIN_PASSES_FOR_DRIFT or seconds_per_pass <= 0:
        return SpeedDrift()
    lags = min(MAX_LAG, len(passes) // 3)
    measured = autocorrelation(log_deviations(passes), lags)
    k = np.arange(1, lags + 1)
    every = np.concatenate([_FAST, _SLOW])
    one_error, g, share = _best_single(measured, every[:, None] ** k[None, :])
    pair = _best_pair(measured, _FAST[:, None] ** k[None, :], _SLOW[:, None] ** k[None, :])
    two_error, f, s, fast_share, slow_share = pair

    def seconds(decay: float) -> float:
        return -seconds_per_pass / math.log(decay)

    if two_error <= (1.0 - SLOW_GAIN) * one_error and min(fast_share, slow_share) >= MIN_SHARE:
        return SpeedDrift(fast_share, seconds(_FAST[f]), slow_share, seconds(_SLOW[s]))
    return SpeedDrift(share, seconds(every[g])) if share >= MIN_SHARE else SpeedDrift()
