"""Open-loop arrival schedules: when each request is meant to be sent.

Every schedule is a piecewise-linear rate r(t) (requests/s). Arrivals are where
the cumulative rate Lambda(t) crosses targets: the integers for evenly spaced
(`constant`) arrivals, cumulative Exp(1) draws for `poisson` ones. The same
inversion therefore serves constant rates, steps, ramps and replayed traces, and
Poisson arrivals under a changing rate are a proper non-homogeneous process.

Specs (the `--schedule` option; `--rate R` means `constant:R`):

    constant:200             200 req/s for the whole duration
    step:50@10,100@10,200@20 50 req/s for 10 s, then 100 for 10 s, then 200 for 20 s
    ramp:10-400              linear from 10 to 400 req/s over the duration
    trace:FILE               per-second request counts, one integer per line
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from async_load_tester.errors import ConfigError

Arrival = Literal["constant", "poisson"]
_MAX_PIECE_S = 1.0


@dataclass(frozen=True)
class Segment:
    """Rate moving linearly from r0 to r1 over [t0, t1) seconds."""

    t0: float
    t1: float
    r0: float
    r1: float

    @property
    def expected(self) -> float:
        return (self.r0 + self.r1) / 2 * (self.t1 - self.t0)


@dataclass(frozen=True)
class Schedule:
    """A rate profile; `duration` is its natural length (None: as long as the run)."""

    spec: str
    segments: tuple[Segment, ...]

    @property
    def duration(self) -> float:
        return self.segments[-1].t1

    @property
    def start_rate(self) -> float:
        return self.segments[0].r0

    @property
    def peak_rate(self) -> float:
        return max(max(s.r0, s.r1) for s in self.segments)

    @property
    def expected_requests(self) -> float:
        return sum(s.expected for s in self.segments)


def parse_schedule(spec: str, duration: float | None) -> Schedule:
    """Parse a schedule spec; `duration` stretches constant and ramp profiles."""
    kind, _, arg = spec.partition(":")
    try:
        if kind == "constant":
            rate = _rate(arg, spec)
            return Schedule(spec, (Segment(0.0, _need(duration, spec), rate, rate),))
        if kind == "ramp":
            lo, _, hi = arg.partition("-")
            r0, r1 = _rate(lo, spec, allow_zero=True), _rate(hi, spec, allow_zero=True)
            if r0 == r1 == 0:
                raise ConfigError("--schedule", f"'{spec}': a ramp needs a non-zero end")
            return Schedule(spec, (Segment(0.0, _need(duration, spec), r0, r1),))
        if kind == "step":
            segments, t = [], 0.0
            for part in arg.split(","):
                rate_text, at, secs = part.partition("@")
                if not at:
                    raise ValueError(f"step '{part}' is not RATE@SECONDS")
                rate, secs_f = _rate(rate_text, spec, allow_zero=True), float(secs)
                if not math.isfinite(secs_f) or secs_f <= 0:
                    raise ValueError(f"step '{part}' has no duration")
                segments.append(Segment(t, t + secs_f, rate, rate))
                t += secs_f
            if all(s.r0 == 0 for s in segments):
                raise ConfigError("--schedule", f"'{spec}': every step has rate 0")
            return Schedule(spec, tuple(segments))
        if kind == "trace":
            return trace_schedule(Path(arg), spec)
    except ValueError as exc:
        raise ConfigError("--schedule", f"'{spec}': {exc}") from None
    raise ConfigError(
        "--schedule", f"'{spec}': unknown kind '{kind}' (constant, step, ramp, trace)"
    )


def _need(duration: float | None, spec: str) -> float:
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise ConfigError("--duration", f"'{spec}' needs a positive --duration")
    return duration


def _rate(text: str, spec: str, allow_zero: bool = False) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError("--schedule", f"'{spec}': rate '{text}' is not a number") from None
    if not math.isfinite(rate) or rate < 0 or (rate == 0 and not allow_zero):
        raise ConfigError("--rate", f"rate must be a positive number of requests/s, got {text}")
    return rate


def trace_schedule(path: Path, spec: str | None = None) -> Schedule:
    """A per-second count file (blank lines and #comments skipped) as a schedule."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError("--schedule", f"cannot read trace '{path}': {exc.strerror}") from None
    counts: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ConfigError("--schedule", f"{path}:{number}: '{text}' is not a count") from None
        if value < 0 or not math.isfinite(value):
            raise ConfigError("--schedule", f"{path}:{number}: count must be >= 0")
        counts.append(value)
    if not counts or sum(counts) == 0:
        raise ConfigError("--schedule", f"trace '{path}' holds no requests")
    segments = tuple(Segment(float(i), float(i + 1), c, c) for i, c in enumerate(counts))
    return Schedule(spec or f"trace:{path}", segments)


def with_warmup(schedule: Schedule, warmup: float) -> tuple[Segment, ...]:
    """The profile preceded by `warmup` seconds at its starting rate (or its mean, if 0)."""
    segments = list(schedule.segments)
    if warmup > 0:
        rate = schedule.start_rate or schedule.expected_requests / schedule.duration
        segments = [Segment(0.0, warmup, rate, rate)] + [
            Segment(s.t0 + warmup, s.t1 + warmup, s.r0, s.r1) for s in segments
        ]
    return tuple(segments)


def _pieces(segments: Sequence[Segment]) -> Iterator[Segment]:
    """Split segments into <= 1 s pieces so arrivals are generated in small chunks."""
    for s in segments:
        n = max(1, math.ceil((s.t1 - s.t0) / _MAX_PIECE_S))
        for i in range(n):
            a = s.t0 + (s.t1 - s.t0) * i / n
            b = s.t0 + (s.t1 - s.t0) * (i + 1) / n
            k = (s.r1 - s.r0) / (s.t1 - s.t0)
            yield Segment(a, b, s.r0 + k * (a - s.t0), s.r0 + k * (b - s.t0))


def arrival_chunks(
    segments: Sequence[Segment], arrival: Arrival, seed: int
) -> Iterator[list[float]]:
    """Intended send offsets (seconds from the start), in order, about one second per chunk."""
    rng = np.random.default_rng(seed)
    cum = 0.0  # Lambda at the current piece's start
    target = 0.0 if arrival == "constant" else float(rng.exponential())
    for piece in _pieces(segments):
        mass = piece.expected
        end = cum + mass
        if mass <= 0:
            continue
        if arrival == "constant":
            targets = np.arange(target, end, 1.0)
            if targets.size:
                target = float(targets[-1]) + 1.0
        else:
            found = []
            while target < end:
                steps = rng.exponential(size=int(mass * 1.5) + 16)
                seq = target + np.concatenate(([0.0], np.cumsum(steps)))
                inside = seq[seq < end]
                found.append(inside)
                if inside.size < seq.size:
                    target = float(seq[inside.size])
                else:
                    target = float(seq[-1] + rng.exponential())
            targets = np.concatenate(found) if found else np.empty(0)
        if targets.size == 0:
            cum = end
            continue
        delta = targets - cum
        k = (piece.r1 - piece.r0) / (piece.t1 - piece.t0)
        if abs(k) < 1e-12:
            tau = delta / piece.r0
        else:
            tau = (-piece.r0 + np.sqrt(np.maximum(piece.r0**2 + 2 * k * delta, 0.0))) / k
        yield (piece.t0 + np.clip(tau, 0.0, piece.t1 - piece.t0)).tolist()
        cum = end


def generate_trace(
    mean: float, peak: float, duration: int, seed: int, period: float = 600.0
) -> list[int]:
    """Bursty diurnal per-second counts with the given mean and peak.

    A sinusoidal "day" (one cycle per `period` seconds), multiplicative noise
    and a few short bursts, then mapped onto counts so the mean and the peak come
    out as asked (counts are rounded, so both hold to within a request).
    """
    _check_trace_arguments(mean, peak, duration, period)
    rng = np.random.default_rng(seed)
    t = np.arange(duration, dtype=float)
    shape = 1.0 + 0.6 * np.sin(2 * np.pi * t / period - np.pi / 2)
    shape *= rng.lognormal(0.0, 0.15, size=duration)
    for _ in range(max(1, duration // 120)):
        start = int(rng.integers(0, duration))
        width = int(rng.integers(3, 15))
        shape[start : start + width] *= rng.uniform(1.8, 3.0)
    if peak == mean or shape.max() == shape.mean():
        return [round(mean)] * duration
    return [int(x) for x in np.round(_mean_and_peak(shape, mean, peak))]


def _check_trace_arguments(mean: float, peak: float, duration: int, period: float) -> None:
    """Refuse what no trace can be: a busiest second holds `peak` requests, so the whole
    trace (mean x duration of them) must hold at least that many; a cycle needs a length."""
    if not 0 < mean <= peak:
        raise ConfigError("--mean/--peak", f"need 0 < mean <= peak, got mean {mean}, peak {peak}")
    if duration <= 0:
        raise ConfigError("--duration", "must be a positive number of seconds")
    if not period > 0:
        raise ConfigError("--period", f"must be > 0 seconds (one diurnal cycle), got {period}")
    if peak > mean * duration:
        raise ConfigError(
            "--peak",
            f"{peak:g} requests in the busiest second is more than a {duration} s trace at "
            f"{mean:g}/s holds ({mean * duration:g}); lower --peak or raise --mean or --duration",
        )


def _mean_and_peak(
    shape: npt.NDArray[np.float64], mean: float, peak: float
) -> npt.NDArray[np.float64]:
    """Per-second rates from `shape` with exactly this mean and peak.

    The affine map sending shape's mean to `mean` and its max to `peak` does it while no
    second goes negative. Past that (a peak far above the mean) the seconds below zero are
    floored, which lifts the mean: rescaling it back pulled the peak down (200 asked, 120
    written), so instead the slope is steepened, keeping the max at `peak`, until the
    floored mean is `mean` again (it falls as the slope grows, so bisection finds it).
    """
    a = (peak - mean) / (shape.max() - shape.mean())
    affine = a * (shape - shape.mean()) + mean
    if affine.min() >= 0:
        return np.asarray(affine * (mean / affine.mean()), dtype=np.float64)
    gap = shape.max() - shape

    def floored_mean(slope: float) -> float:
        return float(np.maximum(peak - slope * gap, 0.0).mean())

    lo, hi = a, 2 * a
    for _ in range(200):
        if floored_mean(hi) <= mean:
            break
        lo, hi = hi, 2 * hi
    else:
        raise ConfigError("--peak", f"no trace of mean {mean:g}/s has a peak of {peak:g}/s")
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if floored_mean(mid) > mean else (lo, mid)
    return np.asarray(np.maximum(peak - hi * gap, 0.0), dtype=np.float64)
