"""The speed-drift model: fitted from passes in run order, and drawn by the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infergraph.planner.drift import SpeedDrift, autocorrelation, fit_speed_drift
from infergraph.planner.profiler import summarise_pass
from infergraph.planner.simulator import (
    NodeConfig,
    ServiceModel,
    poisson_arrivals,
    run_batcher,
    simulate,
)
from infergraph.planner.topology import Stage, Topology

GAP_S = 1 / 15  # seconds between passes: a node about 70 % busy with 45 ms passes


def ornstein_uhlenbeck(n: int, tau_s: float, rng: np.random.Generator) -> np.ndarray:
    keep = math.exp(-GAP_S / tau_s)
    out = np.empty(n)
    out[0] = rng.standard_normal()
    for i in range(1, n):
        out[i] = keep * out[i - 1] + math.sqrt(1 - keep * keep) * rng.standard_normal()
    return out


def drifting_passes(
    n: int, share: float, tau_s: float, seed: int, slow: tuple[float, float] = (0.0, 1.0)
) -> list[tuple[int, float]]:
    """(size, ms) with log-times that are `share` Ornstein-Uhlenbeck drift (and `slow`:
    another share and correlation time) plus fresh noise, written here independently of
    the simulator's loop."""
    rng = np.random.default_rng(seed)
    slow_share, slow_tau_s = slow
    dev = math.sqrt(share) * ornstein_uhlenbeck(n, tau_s, rng)
    dev += math.sqrt(slow_share) * ornstein_uhlenbeck(n, slow_tau_s, rng)
    dev += math.sqrt(1 - share - slow_share) * rng.standard_normal(n)
    sizes = [1, 2] * (n // 2)
    return [(b, 20.0 * b * math.exp(0.15 * d)) for b, d in zip(sizes, dev, strict=True)]


def test_the_fit_recovers_a_known_drift_across_batch_sizes():
    fitted = fit_speed_drift(drifting_passes(4000, 0.4, 3.0, seed=1), GAP_S)
    assert fitted.share == pytest.approx(0.4, abs=0.1)
    assert 2.0 < fitted.seconds < 4.5
    assert fitted.slow_share == 0.0  # one drift is not taken for two


def test_the_fit_finds_a_slow_drift_beside_a_fast_one():
    # As on the check machine: about 40 % of the variance gone within a second, and an
    # eighth lasting 20 s (300 passes here), which a one-part fit folds into the fast one.
    passes = drifting_passes(6000, 0.4, 0.3, seed=4, slow=(0.15, 20.0))
    fitted = fit_speed_drift(passes, GAP_S)
    assert fitted.share == pytest.approx(0.4, abs=0.1)
    assert fitted.seconds < 1.0
    assert fitted.slow_share == pytest.approx(0.15, abs=0.07)
    assert 8.0 < fitted.slow_seconds < 50.0


def test_fresh_noise_fits_no_drift_and_few_passes_none_at_all():
    steady = drifting_passes(4000, 0.0, 3.0, seed=2)
    assert fit_speed_drift(steady, GAP_S).share < 0.05
    assert fit_speed_drift(drifting_passes(60, 0.5, 3.0, seed=3), GAP_S) == SpeedDrift()
    assert fit_speed_drift(drifting_passes(400, 0.5, 3.0, seed=3), 0.0) == SpeedDrift()


@pytest.mark.parametrize("slow", [(0.0, 0.0), (0.2, 10.0)])
def test_the_simulated_passes_drift_as_the_model_says(slow: tuple[float, float]):
    # Requests 100 ms apart never queue, so each one's time in the node is its own pass:
    # their log-times must show share * exp(-lag * gap / tau) (summed over both drifts) at
    # every lag, and a plain N(0, sigma) marginal.
    arrivals = np.arange(60_000) * 0.1
    service = ServiceModel((0.010,), (0.2,), 0.0, 0.5, 1.0, *slow)
    rng = np.random.default_rng(7)
    done, _, _, _ = run_batcher(
        arrivals,
        [1] * arrivals.size,
        1,
        0.0,
        service,
        rng.standard_normal(arrivals.size),
        True,
        rng.standard_normal(arrivals.size),
        rng.standard_normal(arrivals.size),
    )
    dev = np.log((done - arrivals) / 0.010) / 0.2
    assert dev.std() == pytest.approx(1.0, abs=0.03)
    measured = autocorrelation(dev, 100)
    for lag in (1, 5, 10, 20, 100):
        expected = 0.5 * math.exp(-lag * 0.1)
        if slow[0]:
            expected += slow[0] * math.exp(-lag * 0.1 / slow[1])
        assert measured[lag - 1] == pytest.approx(expected, abs=0.03)


def test_slow_spells_lengthen_the_queue_tail_more_than_a_lag_one_chain():
    # M/G/1 at 70 % busy, log-normal passes (median 10 ms, spread 0.3). The same marginal,
    # so the same utilisation, in three orders: random, a lag-1 chain (0.5), and a drift
    # with the same lag-1 correlation but lasting seconds. Only the drift keeps whole busy
    # periods slow.
    arrivals = poisson_arrivals(65.0, 2000.0, np.random.default_rng(2))
    topo = Topology((Stage("m", "m"),))

    def run(service: ServiceModel) -> tuple[float, float]:
        result = simulate(topo, {"m": NodeConfig(1, 0.0, 1, service)}, arrivals, {}, seed=5)
        return result.percentile_ms(99), result.utilisation("m", 1)

    iid_p99, iid_busy = run(ServiceModel((0.010,), (0.3,)))
    chain_p99, _ = run(ServiceModel((0.010,), (0.3,), 0.5))
    drift_p99, drift_busy = run(ServiceModel((0.010,), (0.3,), 0.0, 0.5, 3.0))
    assert drift_busy == pytest.approx(iid_busy, rel=0.03)
    assert drift_p99 > 1.3 * chain_p99 > 1.3 * iid_p99
    # A slow part on top (of the fresh share: the marginal stays) keeps spells going longer.
    two_p99, two_busy = run(ServiceModel((0.010,), (0.3,), 0.0, 0.5, 3.0, 0.2, 30.0))
    assert two_busy == pytest.approx(iid_busy, rel=0.03)
    assert two_p99 > 1.1 * drift_p99


def test_a_batch_is_one_pass_in_the_served_order():
    # Two requests shared a pass of 2 (both report it); the third ran alone.
    replies = [
        (30.0, {"m.total_ms": 25.0, "m.inference_ms": 20.0, "m.batch_size": 2}),
        (31.0, {"m.total_ms": 26.0, "m.inference_ms": 20.0, "m.batch_size": 2}),
        (12.0, {"m.total_ms": 11.0, "m.inference_ms": 9.0, "m.batch_size": 1}),
        (13.0, {"m.total_ms": 11.0, "m.inference_ms": 9.0, "m.batch_size": 1}),
    ]
    summary = summarise_pass(Topology((Stage("m", "m"),)), replies, ["m"])
    assert summary.served_order == {"m": [(2, 20.0), (1, 9.0), (1, 9.0)]}
