"""What the demo reports from a real sweep: the Pareto front, the planned rate, summary.json.

The steps are those of a real `infergraph demo` run at demo scale on the 2-core VM
(`tests/demo_sweep_real.json`, its sweep.json less each step's latency CDF): the graph kept
up to 12 req/s offered, and the 16 req/s step saturated (p95 1,827 ms against a 250 ms SLO).
The demo's own functions run on those steps, so no server is started.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from async_load_tester import StepResult
from infergraph.cost.pricing import load_catalog
from infergraph.demo import plan_steps, plots, steps
from infergraph.demo.findings import Findings, RatePoint
from infergraph.demo.sizing import as_run, demo_sized
from infergraph.demo.steps import DemoSettings
from infergraph.demo.sweep import Slo, Sweep, is_carried, knee
from infergraph.graph.plan import load_graph

HERE = Path(__file__).resolve().parent
CASCADE = HERE.parent / "k8s" / "graphs" / "cascade.yaml"


def _step(data: dict[str, object]) -> StepResult:
    return StepResult(**data)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def real_sweep() -> Sweep:
    data = json.loads((HERE / "demo_sweep_real.json").read_text())
    rates = [(float(s["offered_rps"]), _step(s)) for s in data["steps"]]
    return Sweep(
        unloaded=_step(data["probes"]["unloaded"]),
        capacity=_step(data["probes"]["capacity"]),
        slo=Slo(**data["slo"]),
        rates=rates,
    )


def _console() -> Console:
    return Console(width=100, file=io.StringIO())


def test_the_real_sweep_has_a_saturated_step(real_sweep: Sweep) -> None:
    """The premise of the front's test: the cheapest step was one the graph did not carry."""
    saturated = [r for r, s in real_sweep.rates if not is_carried(s)]
    assert saturated == [16.0]


def test_the_pareto_front_holds_only_carried_rates(real_sweep: Sweep, tmp_path: Path) -> None:
    """A saturated step's latency undercounts a growing queue: its $/million cannot be had."""
    front = plots.front_points(real_sweep.rates, real_sweep.slo)
    assert front and all(is_carried(s) for _, s in front)
    assert [r for r, _ in front] == [12.0, 4.9, 2.5]
    served = load_graph(CASCADE)
    found = Findings(graph="cascade", hardware="c7i.large", scale="demo")
    steps.price(real_sweep, served, found, tmp_path, _console())
    carried = {r for r, s in real_sweep.rates if is_carried(s)}
    assert {p.offered_rps for p in found.pareto_front} <= carried
    written = json.loads((tmp_path / "sweep.json").read_text())["pareto_front"]
    assert [p["offered_rps"] for p in written] == [12.0, 4.9, 2.5]
    assert (tmp_path / "cost_latency.png").read_bytes()[:4] == b"\x89PNG"


def _found_with_knee(sweep: Sweep) -> Findings:
    found = Findings(graph="cascade", hardware="c7i.large", scale="demo")
    found.knee = RatePoint.of(knee(sweep), sweep.slo.percentile)
    return found


@pytest.mark.parametrize("served", [2.6, 5.2, 5.8, 10.875, 11.0, 34.0, 71.0])
def test_the_planned_rate_is_about_ten_times_the_knee(served: float) -> None:
    """Rounded to the nearest round rate, never up by nearly 2x (10.875 once became 200)."""
    found = Findings(graph="cascade", hardware="c7i.large")
    found.knee = RatePoint(served, served, 100.0, 1.0)
    rate = plan_steps.stated_rate(DemoSettings(), found)
    assert 10 / 1.5 <= rate / served <= 10 * 1.5, rate


def test_the_screen_states_the_multiple_actually_planned(real_sweep: Sweep) -> None:
    found = _found_with_knee(real_sweep)
    assert found.knee is not None and found.knee.served_rps == pytest.approx(10.875)
    rate = plan_steps.stated_rate(DemoSettings(), found)
    why = plan_steps.rate_reason(DemoSettings(), found, rate)
    assert f"{rate / 10.875:.1f}x" in why and "10.88 req/s" in why
    asked = DemoSettings(plan_rate=40.0)
    assert plan_steps.rate_reason(asked, found, 40.0) == "as asked (--plan-rate)"


def test_summary_records_the_rate_planned_for(real_sweep: Sweep, tmp_path: Path) -> None:
    """plan_rate_rps is set before planning, so a plan that fails still says what was asked."""
    catalog = load_catalog()
    sized, _ = demo_sized(load_graph(CASCADE), "demo")
    served = as_run(sized, "c7i.large", catalog)
    found = _found_with_knee(real_sweep)
    settings = DemoSettings(out=tmp_path)
    profile = tmp_path / "profile.json"  # never read: planning is not run here
    inputs = plan_steps._plan_inputs(
        settings, served, profile, real_sweep.slo, catalog, found, _console()
    )
    assert found.plan_rate_rps == inputs.workload.mean_rps
    assert found.plan_rate_rps == plan_steps.stated_rate(settings, found)
    found.write(tmp_path / "summary.json", "now")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["plan_rate_rps"] == found.plan_rate_rps
