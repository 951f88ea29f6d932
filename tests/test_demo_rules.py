"""The demo's decisions on measured steps whose answer is known: SLO, saturation, knee, price.

tests/test_demo.py runs the whole demo against real servers; these pin the rules it applies
to what it measured, on step results written out by hand, so an edge is checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from async_load_tester import StepResult
from infergraph.cost.pricing import graph_cost, load_catalog
from infergraph.demo.sizing import as_run, demo_sized, for_planning
from infergraph.demo.sweep import (
    Slo,
    Sweep,
    cheapest_meeting_slo,
    choose_slo,
    is_carried,
    knee,
    limiting_node,
    nice_ceil,
    two_figures,
)
from infergraph.graph.plan import load_graph

CASCADE = Path(__file__).resolve().parent.parent / "k8s" / "graphs" / "cascade.yaml"


def step(
    p95: float,
    served: float = 1.0,
    *,
    sent: int = 100,
    ok: int | None = None,
    errors: int = 0,
    slo_ms: float | None = 500.0,
    meets: bool | None = True,
    usd: float | None = 1.0,
    stages: dict[str, tuple[float, int]] | None = None,
) -> StepResult:
    """A step as the load tester reports one; `stages` maps node -> (mean total ms, count)."""
    answered = sent - errors if ok is None else ok
    return StepResult(
        label="x",
        mode="open",
        concurrency=None,
        offered_rps=served,
        sent=sent,
        ok=answered,
        errors={"http_500": errors} if errors else {},
        error_samples={},
        late=0,
        dropped=0,
        max_late_ms=0.0,
        in_flight_abandoned=0,
        elapsed_s=10.0,
        throughput_rps=served,
        latency_ms={"p50": p95 / 2, "p95": p95, "p99": p95 * 1.2},
        service_ms={},
        slo_ms=slo_ms,
        slo_percentile=95.0 if slo_ms else None,
        slo_attainment=None,
        meets_slo=meets,
        stages_ms={
            f"{n}.total_ms": {"mean": mean, "count": count, "p50": mean, "p95": mean, "p99": mean}
            for n, (mean, count) in (stages or {}).items()
        },
        usd_per_million=usd,
    )


def sweep_of(*rates: tuple[float, StepResult]) -> Sweep:
    slo = Slo(500.0, 95.0, "test")
    return Sweep(unloaded=step(100.0), capacity=step(100.0), slo=slo, rates=list(rates))


def test_the_graphs_own_slo_is_kept_when_met_unloaded_with_room() -> None:
    graph = load_graph(CASCADE)  # p95 <= 250 ms
    kept = choose_slo(graph, step(140.0, slo_ms=None))
    assert (kept.latency_ms, kept.percentile) == (250.0, 95.0)
    assert "graph's own" in kept.reason
    chosen = choose_slo(graph, step(175.0, slo_ms=None))  # over 0.6 x 250: no room
    assert chosen.latency_ms == 500.0  # twice 175, rounded up to 1/2/2.5/5 x 10^n
    assert "175 ms" in chosen.reason and "GPU" in chosen.reason


@pytest.mark.parametrize(
    ("ms", "nice"), [(350.0, 500.0), (200.0, 200.0), (201.0, 250.0), (1826.0, 2000.0), (0.0, 1.0)]
)
def test_nice_ceil(ms: float, nice: float) -> None:
    assert nice_ceil(ms) == nice


@pytest.mark.parametrize(("rate", "shown"), [(8.21, 8.2), (36.96, 37.0), (0.4567, 0.46)])
def test_rates_are_two_significant_figures(rate: float, shown: float) -> None:
    assert two_figures(rate) == shown


def test_saturation_is_judged_on_what_was_sent_and_on_latency() -> None:
    assert is_carried(step(300.0, sent=100, ok=96))
    assert not is_carried(step(300.0, sent=100, ok=90))  # requests left unanswered
    assert not is_carried(step(300.0, sent=100, errors=2))  # over 1 % errors
    assert not is_carried(step(1600.0))  # over 3 x the 500 ms SLO: a growing queue
    assert is_carried(step(1600.0, slo_ms=None))  # a probe has no SLO to judge by
    assert not is_carried(step(100.0, sent=0, ok=0))


def test_knee_is_the_last_carried_rate_before_p95_doubles() -> None:
    result = sweep_of(
        (1.0, step(100.0)), (2.0, step(150.0)), (3.0, step(200.0)), (4.0, step(450.0)),
        (5.0, step(300.0, sent=100, ok=50)),
    )  # fmt: skip
    assert knee(result) == result.rates[2]
    assert knee(sweep_of((5.0, step(300.0, sent=100, ok=50)))) is None


def test_cheapest_meeting_the_slo_and_the_node_that_limits_it() -> None:
    result = sweep_of(
        (1.0, step(100.0, usd=9.0)), (2.0, step(200.0, usd=4.0)),
        (3.0, step(700.0, usd=3.0, meets=False)),
    )  # fmt: skip
    assert cheapest_meeting_slo(result) == result.rates[1]
    none_met = sweep_of((1.0, step(700.0, meets=False)))
    assert cheapest_meeting_slo(none_met) is None
    # `fast` ran for every request (80 ms), `accurate` for a quarter of them (200 ms each):
    # per request, fast costs 80 ms and accurate 50.
    limiter = step(700.0, sent=100, stages={"fast": (80.0, 100), "accurate": (200.0, 25)})
    assert limiting_node(limiter, ["fast", "accurate"]) == ("fast", 80.0)


def test_the_demo_prices_one_instance_and_plans_whole_ones() -> None:
    catalog = load_catalog()
    sized, swaps = demo_sized(load_graph(CASCADE), "demo")
    assert [s.node for s in swaps] == ["fast", "accurate"]
    ran = as_run(sized, "c7i.large", catalog)
    assert graph_cost(ran, catalog).usd_per_hour == pytest.approx(0.08925)
    assert all(n.resources.gpu == 0 and n.hardware == "c7i.large" for n in ran.spec.nodes)
    planned = for_planning(ran, "c7i.large", catalog)
    per_replica = graph_cost(planned, catalog).nodes
    assert [n.usd_per_replica_hour for n in per_replica] == [pytest.approx(0.08925)] * 2
    # A whole c7i.large is what EKS leaves pods of it (tests/test_allocatable.py), not 2 / 4Gi.
    assert {(n.resources.cpu, n.resources.memory) for n in planned.spec.nodes} == {
        ("1930m", "3114Mi")
    }
    assert {(n.resources.cpu, n.resources.memory) for n in ran.spec.nodes} == {("965m", "1557Mi")}
    full, none = demo_sized(load_graph(CASCADE), "full")
    assert none == [] and full.node("fast").model_uri == "timm/resnet18.a1_in1k"
