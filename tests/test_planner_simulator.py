"""The simulator against answers worked out by hand, queueing theory, and the real batcher."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from infergraph.planner.simulator import (
    NodeConfig,
    ServiceModel,
    poisson_arrivals,
    respond_in_turn,
    run_batcher,
    simulate,
    trace_arrivals,
)
from infergraph.planner.topology import Stage, Topology
from infergraph.serving.batcher import MicroBatcher

NO_NOISE = np.zeros(1)


def batcher(arrivals, batch, delay_s, service_s, rows=None):
    rows = rows or [1] * len(arrivals)
    service = ServiceModel.constant(service_s)
    done, busy, batches, _ = run_batcher(arrivals, rows, batch, delay_s, service, NO_NOISE)
    return [round(d * 1000, 6) for d in done], round(busy * 1000, 6), batches


def test_batch_fills_before_its_deadline():
    # Four rows by t=3 ms fill a batch of 4: it runs at once, 5 ms.
    done, _, batches = batcher([0.0, 0.001, 0.002, 0.003], 4, 0.010, [0.005] * 4)
    assert done == [8.0] * 4 and batches == 1


def test_lone_request_waits_for_the_deadline():
    done, _, _ = batcher([0.0, 0.020], 4, 0.010, [0.005] * 4)
    assert done == [15.0, 35.0]


def test_zero_delay_takes_only_what_is_queued():
    # A request alone goes at once; the three that queue behind it go in batches of 2, then 1.
    done, busy, batches = batcher([0.0, 0.001, 0.002, 0.003], 2, 0.0, [0.010, 0.010])
    assert done == [10.0, 20.0, 20.0, 30.0]
    assert batches == 3 and busy == 30.0


def test_deadline_starts_when_the_batcher_takes_the_first_request():
    # The second request arrives at 30 ms while the first batch runs (until 60 ms). The
    # batcher takes it at 60 ms, so its deadline is 70 ms, not 40: the request at 65 ms joins.
    done, _, batches = batcher([0.0, 0.030, 0.065], 4, 0.010, [0.050] * 4)
    assert done == [60.0, 120.0, 120.0] and batches == 2


def test_a_request_over_the_limit_joins_and_runs_in_chunks():
    # 3 rows, then 3 more at 1 ms: 6 rows, over the limit of 4, run as passes of 4 and 2.
    done, busy, batches = batcher([0.0, 0.001], 4, 0.010, [0.002, 0.003, 0.004, 0.005], [3, 3])
    assert done == [1.0 + 5.0 + 3.0] * 2  # dispatched at 1 ms (rows >= 4), S(4) + S(2)
    assert batches == 2 and busy == 8.0


def test_md1_mean_sojourn_matches_pollaczek_khinchine():
    # M/D/1 at rho = 0.5, service 10 ms: mean time in system = S + rho S / (2 (1 - rho)) = 15 ms.
    rng = np.random.default_rng(1)
    arrivals = poisson_arrivals(50.0, 4000.0, rng)
    topo = Topology((Stage("m", "m"),))
    config = NodeConfig(1, 0.0, 1, ServiceModel.constant([0.010]))
    result = simulate(topo, {"m": config}, arrivals, {})
    assert result.latency_s.mean() * 1000 == pytest.approx(15.0, rel=0.02)
    assert result.utilisation("m", 1) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("rho", [0.3, 0.8])
def test_response_path_queues_as_an_md1_server(rho: float):
    # Answers ready at Poisson times through a path taking c each, one at a time: an M/D/1
    # queue, whose mean wait before service is rho c / (2 (1 - rho)) (Pollaczek-Khinchine);
    # the answer's own c is in its hop.
    c = 0.002
    ready = poisson_arrivals(rho / c, 2000.0, np.random.default_rng(2))
    left = respond_in_turn(ready, c)
    expected = rho * c / (2 * (1 - rho))
    assert np.mean(left - ready) == pytest.approx(expected, rel=0.03)
    assert np.all(np.diff(left) >= c - 1e-12)  # one answer at a time


def test_a_batch_answers_leave_one_after_another_in_arrival_order():
    # Four requests fill a batch at 3 ms, a 5 ms pass ends at 8 ms; at 1 ms per answer they
    # leave at 8, 9, 10 and 11 ms, the first to arrive first (each one's own turn is in its
    # hop, 0 here). A lone request at 100 ms finds the path free: 100 + 10 ms (its
    # deadline) + 5.
    topo = Topology((Stage("m", "m"),))
    config = NodeConfig(4, 0.010, 1, ServiceModel.constant([0.005] * 4), response_s=0.001)
    arrivals = np.array([0.003, 0.0, 0.002, 0.001, 0.100])
    result = simulate(topo, {"m": config}, arrivals, {})
    done = np.round((result.latency_s + arrivals) * 1000, 6).tolist()
    assert done == [11.0, 8.0, 10.0, 9.0, 115.0]
    assert result.nodes["m"].response_per_request_s * 1000 == pytest.approx(6 / 5)


def test_deterministic_arrivals_fill_batches_exactly():
    # One request per ms, batches of 8, 5 ms per batch: request i of a batch waits 7 - i ms.
    arrivals = np.arange(8000) / 1000.0
    topo = Topology((Stage("m", "m"),))
    config = NodeConfig(8, 0.1, 1, ServiceModel.constant([0.005] * 8))
    result = simulate(topo, {"m": config}, arrivals, {})
    assert result.latency_s.mean() * 1000 == pytest.approx(3.5 + 5.0, abs=1e-6)
    assert result.nodes["m"].batches == 1000


def test_cascade_gate_and_ensemble_join():
    # Light load (nothing queues): latency = ingress + hop + service along the path taken.
    cascade = Topology(
        (
            Stage("fast", "fast"),
            Stage("gate-0", None, frozenset({"fast"}), is_gate=True),
            Stage("slow", "slow", frozenset({"gate-0"}), (("gate-0", "then"),)),
        )
    )
    configs = {
        "fast": NodeConfig(1, 0.0, 1, ServiceModel.constant([0.004]), hop_s=0.001),
        "slow": NodeConfig(1, 0.0, 1, ServiceModel.constant([0.020]), hop_s=0.001),
    }
    arrivals = np.arange(20000) * 0.1
    result = simulate(cascade, configs, arrivals, {"gate-0": 0.25}, ingress_s=0.002, seed=3)
    went_on = result.nodes["slow"].latency_s.size / arrivals.size
    assert went_on == pytest.approx(0.25, abs=0.01)
    ms = np.round(result.latency_s * 1000, 6)
    assert set(np.unique(ms)) == {7.0, 28.0}
    ensemble = Topology(
        (
            Stage("a", "fast"),
            Stage("b", "slow"),
            Stage("combine-0", None, frozenset({"a", "b"})),
        )
    )
    result = simulate(ensemble, configs, arrivals, {}, ingress_s=0.0)
    assert np.allclose(result.latency_s * 1000, 21.0)  # the slower member, not the sum


def test_zero_rows_skip_a_node():
    topo = Topology((Stage("det", "det"), Stage("cls", "cls", frozenset({"det"}))))
    configs = {
        "det": NodeConfig(1, 0.0, 1, ServiceModel.constant([0.010])),
        "cls": NodeConfig(8, 0.0, 1, ServiceModel.constant([0.002] * 8), rows=((0, 0.5), (3, 0.5))),
    }
    result = simulate(topo, configs, np.arange(2000) * 0.1, {}, seed=5)
    visits = result.nodes["cls"].latency_s.size
    assert 900 < visits < 1100
    assert result.nodes["cls"].rows == 3 * visits


def test_trace_arrivals_follow_the_counts():
    rng = np.random.default_rng(0)
    counts = [100, 0, 300]
    arrivals = trace_arrivals(counts * 50, rng)
    per_second = np.bincount(arrivals.astype(int), minlength=150)
    assert per_second[1::3].sum() == 0
    assert per_second[2::3].mean() == pytest.approx(300, rel=0.05)


# -- the model against the real MicroBatcher ---------------------------------------------------


def _real_batches(
    arrivals: list[float], batch: int, delay_s: float, service_s: float
) -> tuple[list[list[int]], list[float]]:
    """Feed the real batcher at these times; which requests shared a pass, and when each came."""
    seen: list[list[int]] = []
    came = [0.0] * len(arrivals)
    lock = threading.Lock()

    def run_batch(rows: list[int], key: object) -> list[int]:
        with lock:
            seen.append(list(rows))
        time.sleep(service_s)
        return rows

    async def main() -> None:
        mb = MicroBatcher([run_batch], batch, delay_s)
        start = time.perf_counter()

        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            came[i] = time.perf_counter() - start
            await mb.submit([i], None)

        await asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals)))
        await mb.close()

    asyncio.run(main())
    return seen, came


def _model_batches(arrivals: list[float], batch: int, delay_s: float, service_s: float) -> list:
    done, _, _, _ = run_batcher(
        arrivals,
        [1] * len(arrivals),
        batch,
        delay_s,
        ServiceModel.constant([service_s] * batch),
        NO_NOISE,
    )
    groups: dict[float, list[int]] = {}
    for i, d in enumerate(done):
        groups.setdefault(round(d, 9), []).append(i)
    return [groups[k] for k in sorted(groups)]


@pytest.mark.parametrize(
    ("batch", "delay_s"),
    [(4, 0.120), (3, 0.0), (8, 0.200)],
)
def test_model_forms_the_same_batches_as_the_real_batcher(batch: int, delay_s: float):
    # Chosen so that, in all three settings, every arrival after a batch's deadline comes at
    # least 75 ms after it (the real batcher runs late, never early: a forward thread woken
    # late, a pass that overslept): a busy shared machine's stalls must land on a decision and
    # outlast that to flip it. The times are 1.5x those that gave 50 ms (+4 s of test).
    # The model is fed the times the requests really came, so only the batcher's own timing
    # (its deadline wait, the forward thread) could differ.
    base = [0.0, 0.175, 0.42, 0.505, 0.565, 0.59, 0.595, 0.845, 0.88, 0.95, 1.05, 1.15]
    scale = 1.5
    arrivals = [scale * 2 * t for t in base]
    delay_s *= scale
    service_s = scale * 0.240
    real, came = _real_batches(arrivals, batch, delay_s, service_s)
    assert real == _model_batches(came, batch, delay_s, service_s)
    assert len(real) < len(arrivals)  # some batching happened


def test_known_draws_give_each_pass_its_own_in_order_on_every_replica():
    draws = np.array([0.5, -1.0, 2.0, 0.0])
    service = ServiceModel((0.010, 0.012), (0.2, 0.2))
    config = NodeConfig(1, 0.0, 2, service, draws=draws)
    arrivals = np.arange(6) * 1.0  # never queued: each latency is its pass alone
    result = simulate(Topology((Stage("n", "n"),)), {"n": config}, arrivals, {})
    # round-robin: replica 0 serves requests 0, 2, 4, replica 1 serves 1, 3, 5
    expected = 0.010 * np.exp(0.2 * draws[[0, 0, 1, 1, 2, 2]])
    np.testing.assert_allclose(result.latency_s, expected)


def test_a_pass_turnaround_delays_the_next_pass_not_its_answer():
    # Three requests at 0 ms, batch 1, 10 ms passes and 0.5 ms of turnaround: the forward
    # thread hands each answer over (which leaves with its pass) and collects the next
    # request before the next pass starts. A request at 100 ms finds the thread waiting.
    topo = Topology((Stage("m", "m"),))
    config = NodeConfig(1, 0.0, 1, ServiceModel.constant([0.010]), turnaround_s=0.0005)
    arrivals = np.array([0.0, 0.0, 0.0, 0.100])
    result = simulate(topo, {"m": config}, arrivals, {})
    done = np.round((result.latency_s + arrivals) * 1000, 6).tolist()
    assert done == [10.0, 20.5, 31.0, 110.0]


def test_turnaround_takes_capacity_as_service_time_does():
    # M/D/1 with 9.5 ms passes and 0.5 ms turnaround behaves as 10 ms service for the wait
    # (Pollaczek-Khinchine at rho = 0.5: mean wait 5 ms), but a request's own pass is 9.5 ms.
    arrivals = poisson_arrivals(50.0, 4000.0, np.random.default_rng(1))
    topo = Topology((Stage("m", "m"),))
    config = NodeConfig(1, 0.0, 1, ServiceModel.constant([0.0095]), turnaround_s=0.0005)
    result = simulate(topo, {"m": config}, arrivals, {})
    assert result.latency_s.mean() * 1000 == pytest.approx(5.0 + 9.5, rel=0.02)


def test_the_compiled_schedule_walk_gives_what_searching_the_schedule_gives():
    """`_assign` walks a time-sorted arrival list along the autoscaler's steps in one pass;
    on random schedules (repeated steps, steps with no ready pod, times past the last) it
    gives the reach times and round-robin replicas that `next_ready` and `ready_at` give."""
    from infergraph.planner.autoscaler import ReplicaSchedule
    from infergraph.planner.simulator import _walk_schedule

    rng = np.random.default_rng(1)
    for _ in range(300):
        steps = np.sort(rng.choice(np.arange(0, 100, 1.0), size=rng.integers(1, 20), replace=False))
        steps = np.sort(np.concatenate([steps, steps[: rng.integers(0, 3)]]))
        ready = rng.integers(0, 4, steps.size)
        schedule = ReplicaSchedule(steps, ready, 0.0, int(ready.max()))
        t = np.sort(np.concatenate([rng.uniform(-5, 110, rng.integers(2, 200)), steps]))
        reach = schedule.next_ready(t)
        reach = np.where(np.isfinite(reach), reach, t)
        replica = np.arange(t.size) % np.maximum(schedule.ready_at(reach), 1)
        walked, walked_reach = _walk_schedule(steps, ready.astype(np.int64), t)
        assert (walked_reach == reach).all() and (walked == replica).all()


def test_a_node_runs_each_replica_as_its_own_batcher_and_response_path():
    """simulate_node serves every replica in one compiled call: the same completions, to the
    bit, as each replica's requests through `run_batcher` and `respond_in_turn` in turn with
    its own draws from the one generator."""
    from infergraph.planner.simulator import simulate_node

    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0, 20, 4000))
    rows = rng.choice([1, 2, 3], size=arrivals.size)
    service = ServiceModel((0.004, 0.006, 0.007, 0.009), (0.1, 0.15, 0.2, 0.2))
    config = NodeConfig(service=service, max_batch_size=4, max_batch_time_s=0.002, replicas=3,
                        hop_s=0.001, response_s=0.0004, turnaround_s=0.0001)  # fmt: skip
    done, run = simulate_node(arrivals, rows, config, np.random.default_rng(7))
    expected = np.empty_like(arrivals)
    reference = np.random.default_rng(7)
    reached = arrivals + config.hop_s
    busy = 0.0
    for rep in range(3):
        idx = np.arange(rep, arrivals.size, 3)
        draws = reference.standard_normal(max(64, idx.size))
        ends, rep_busy, _, _ = run_batcher(
            reached[idx], rows[idx], 4, 0.002, service, draws, False, 0.0001
        )
        expected[idx] = respond_in_turn(ends, 0.0004)
        busy += rep_busy
    assert np.array_equal(done, expected)
    assert run.busy_s == pytest.approx(busy, rel=1e-12)
