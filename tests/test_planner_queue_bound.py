"""A node's `batching.maxQueueRows` in the planner: the simulator refuses what the real
batcher refuses, refused requests count against the SLO, and a plan keeps the bound valid.

The batcher's rule (serving/batcher.py, `MicroBatcher._admit` and `_release`): a request is
refused when the rows waiting plus its own would pass the limit; rows wait from `submit`
until their pass starts (`_run_group` releases them), so a forming batch's rows still count.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app
from infergraph.cost.pricing import load_catalog
from infergraph.errors import QueueFullError
from infergraph.graph.model import Autoscaling
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.planner.profiler import with_batch_limits
from infergraph.planner.profiles import load_profile, match_profiles
from infergraph.planner.search import (
    Evaluated,
    InfeasibleSloError,
    Option,
    Planner,
    SearchResult,
    SearchSettings,
    _percent,
    _slowest,
    pareto_options,
)
from infergraph.planner.simulator import (
    NodeConfig,
    NodeRun,
    ServiceModel,
    SimResult,
    percentile_s,
    poisson_arrivals,
    run_batcher,
    simulate,
)
from infergraph.planner.topology import Stage, Topology, topology_of
from infergraph.planner.tuner import tune
from infergraph.serving.batcher import MicroBatcher
from tests.planner_fixtures import chain_graph, node_entry, write_profile

NO_NOISE = np.zeros(1)


def _bounded(arrivals, batch, delay_s, service_s, limit, rows=None):
    rows = rows or [1] * len(arrivals)
    service = ServiceModel.constant([service_s] * batch)
    done, _, batches, _ = run_batcher(
        arrivals, rows, batch, delay_s, service, NO_NOISE, max_queue_rows=limit
    )
    return [round(d * 1000, 6) if math.isfinite(d) else None for d in done], batches


def test_a_full_queue_refuses_arrivals_until_a_pass_starts():
    # The first request runs at once (0-10 ms); two queue behind it (the limit); the next two
    # find 2 rows waiting and are refused. At 10 ms the queued pair starts and leaves the queue.
    done, batches = _bounded([0.0, 0.001, 0.002, 0.003, 0.004, 0.012], 2, 0.0, 0.010, 2)
    assert done == [10.0, 20.0, 20.0, None, None, 30.0]
    assert batches == 3


def test_a_forming_batch_counts_against_the_queue_until_its_pass_starts():
    # Batch of 4 with a 10 ms delay: the first request is taken at 0 but its row is released
    # only when the pass starts (10 ms), so with a limit of 2 the third arrival is refused.
    done, _ = _bounded([0.0, 0.001, 0.002, 0.011], 4, 0.010, 0.005, 2)
    # The last comes to an idle queue, is taken when the pass ends (15 ms) and waits its delay.
    assert done == [15.0, 15.0, None, 30.0]


def test_a_request_larger_than_the_queue_is_always_refused():
    done, _ = _bounded([0.0, 0.001], 4, 0.0, 0.005, 4, rows=[5, 1])
    assert done == [None, 6.0]


def test_an_unbounded_queue_is_the_batcher_without_a_limit():
    args = ([0.0, 0.001, 0.002, 0.003], [1, 1, 1, 1], 2, 0.0, ServiceModel.constant([0.01] * 2))
    free, *_ = run_batcher(*args, NO_NOISE)
    bounded, *_ = run_batcher(*args, NO_NOISE, max_queue_rows=100)
    assert free.tolist() == bounded.tolist()


def _real_refusals(arrivals: list[float], batch: int, service_s: float, limit: int):
    """Feed the real batcher (max_queue_rows) at these times: who was refused, when each came."""
    refused: list[int] = []
    came = [0.0] * len(arrivals)
    lock = threading.Lock()

    def run_batch(rows: list[int], key: object) -> list[int]:
        time.sleep(service_s)
        return rows

    async def main() -> None:
        mb = MicroBatcher([run_batch], batch, 0.0, max_queue_rows=limit)
        start = time.perf_counter()

        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            came[i] = time.perf_counter() - start
            try:
                await mb.submit([i], None)
            except QueueFullError:
                with lock:
                    refused.append(i)

        await asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals)))
        await mb.close()

    asyncio.run(main())
    return sorted(refused), came


def test_the_model_refuses_the_requests_the_real_batcher_refuses():
    # Passes of 0.45 s, at most 2 rows each, at most 2 rows waiting. Every arrival comes at
    # least 75 ms from the pass start before it and the one after it (the real batcher starts
    # passes late, never early), so only a stall longer than that could flip a decision.
    service_s = 0.45
    arrivals = [0.0, 0.075, 0.15, 0.225, 0.3, 0.6, 0.675, 0.75, 0.81, 1.425, 1.5]
    refused, came = _real_refusals(arrivals, 2, service_s, 2)
    done, *_ = run_batcher(
        came, [1] * len(came), 2, 0.0, ServiceModel.constant([service_s] * 2), NO_NOISE,
        max_queue_rows=2,
    )  # fmt: skip
    assert refused == [i for i, d in enumerate(done) if not math.isfinite(d)]
    assert refused == [3, 4, 7, 8]  # refusals behind two different passes


def test_refused_requests_go_no_further_and_count_against_the_slo():
    topo = Topology((Stage("a", "a"), Stage("b", "b", frozenset({"a"}))))  # a chain a -> b
    arrivals = np.arange(0.0, 0.1, 0.001)  # 1,000 req/s against a node serving 100 at most
    slow = NodeConfig(1, 0.0, 1, ServiceModel.constant([0.01]), max_queue_rows=2)
    fast = NodeConfig(1, 0.0, 1, ServiceModel.constant([0.0001]))
    result = simulate(topo, {"a": slow, "b": fast}, arrivals, {})
    refused = ~np.isfinite(result.latency_s)
    assert 0.5 < refused.mean() < 1.0
    assert result.nodes["b"].latency_s.size == int((~refused).sum())  # only answered ones
    assert result.nodes["a"].refused == int(refused.sum())
    assert result.refused_fraction == pytest.approx(refused.mean())
    assert result.percentile_ms(99) == math.inf  # over 1 % refused: no p99 is met
    assert result.attainment(1e9) == pytest.approx(1.0 - refused.mean())
    assert math.isfinite(result.percentile_ms(1.0))  # the answered ones have latencies


def _bounded_chain_plan(tmp_path: Path, *args: str, slo: dict | None = None):
    """`infergraph plan` of a -> b at 200 req/s against 400 ms (the graph's `slo` if given,
    else --slo-ms)."""
    doc = chain_graph(["a", "b"])
    for node in doc["spec"]["nodes"]:
        node["batching"] = {"maxBatchSize": 2, "maxQueueRows": 4}
    if slo is not None:
        doc["spec"]["slo"] = slo
    graph = tmp_path / "chain.yaml"
    graph.write_text(yaml.safe_dump(doc))
    # Batching pays: a pass of 8 costs 2.4x one of 1.
    nodes = {"a": node_entry(20.0, 4.0, 16), "b": node_entry(20.0, 4.0, 16)}
    profile = write_profile(tmp_path / "chain.json", "chain", "c6i.2xlarge", nodes)
    out = tmp_path / "plan"
    base = ["plan", str(graph), "--profiles", str(profile), "--out", str(out)]
    slo_ms = [] if slo is not None else ["--slo-ms", "400"]
    return CliRunner().invoke(app, [*base, *slo_ms, "--rate", "200", *args]), out


def test_a_plan_keeps_the_queue_bound_and_writes_a_graph_that_loads(tmp_path: Path):
    """The search tried batches past the node's maxQueueRows and wrote them as its
    maxBatchSize: a graph the validator refuses (no batch could fill)."""
    result, out = _bounded_chain_plan(tmp_path)
    assert result.exit_code == 0, result.output
    planned = load_graph(out / "chain.planned.yaml")  # full validation, as serve does
    for name in ("a", "b"):
        batching = planned.node(name).batching
        assert batching.max_queue_rows == 4
        assert batching.max_batch_size <= 4


def test_asked_batch_sizes_past_the_queue_bound_are_said(tmp_path: Path):
    result, out = _bounded_chain_plan(tmp_path, "--batch-sizes", "1,4,8")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "--batch-sizes 8 not tried" in text and "maxQueueRows 4" in text
    assert load_graph(out / "chain.planned.yaml").node("a").batching.max_batch_size <= 4


def test_profiling_serves_the_graph_without_its_queue_bound():
    """The profiler's loaded half sends bursts up to each node's profiled limit: a queue
    bound below it would refuse them, and the graph it serves would not validate."""
    doc = chain_graph(["a", "b"])
    doc["spec"]["nodes"][0]["batching"] = {"maxBatchSize": 2, "maxQueueRows": 2}
    served = with_batch_limits(parse_graph(doc), {"a": 16, "b": 1})
    assert served.node("a").batching.max_batch_size == 16
    assert served.node("a").batching.max_queue_rows is None
    parse_graph(served.to_manifest())  # a graph the validator takes


def test_the_report_says_which_nodes_refuse_and_how_many_requests(tmp_path: Path):
    result, out = _bounded_chain_plan(tmp_path)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "batching.maxQueueRows is refused" in text and "a (4 rows), b (4 rows)" in text
    report = json.loads((out / "plan.json").read_text())
    assert 0.0 <= report["plan"]["refused_fraction"] <= 0.01  # within the p99's budget


def test_a_queue_bound_no_replica_count_can_serve_is_named(tmp_path: Path):
    """One replica, 200 req/s against passes of at least 24 ms, at most 4 rows waiting:
    most requests are refused whatever the batch, so no p99 exists; the error says why
    (it printed an infinite best latency as 'inf ms' and a node's own p99 as 'inf')."""
    result, out = _bounded_chain_plan(tmp_path, "--max-replicas", "1")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "no configuration meets p99" in text and "best achievable is no answer" in text
    assert "batching.maxQueueRows 4" in text and "refuses more than 1%" in text
    assert not (out / "chain.planned.yaml").exists()


def test_asked_batch_sizes_all_past_the_queue_bound_are_refused_before_writing(tmp_path: Path):
    result, out = _bounded_chain_plan(tmp_path, "--batch-sizes", "8,16")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "--batch-sizes" in text and "node 'a'" in text and "maxQueueRows" in text
    assert not (out / "chain.planned.yaml").exists()


# -- what a refusing node does to the search, repair, report and tuner (review of c7cd77c) --------
def test_a_percentile_on_the_last_answer_before_the_refused_is_that_answer():
    """numpy's linear percentile lands exactly on an order statistic when p/100 x (n - 1) is
    whole: with one refused request in 101, p99 is the 100th answer, not inf x 0 = NaN."""
    latencies = np.append(np.arange(1.0, 101.0), math.inf)
    assert percentile_s(latencies, 99.0) == 100.0
    assert percentile_s(np.array([1.0, 2.0, math.inf]), 50.0) == 2.0
    assert percentile_s(np.array([1.0, 2.0, math.inf]), 75.0) == math.inf


def _bounded_planner(tmp_path: Path, max_replicas: int = 64, **settings) -> Planner:
    """a -> b at 200 req/s; a's passes take 24 ms or more, and at most 2 rows wait."""
    doc = chain_graph(["a", "b"])
    for node in doc["spec"]["nodes"]:
        node["batching"] = {"maxBatchSize": 1, "maxQueueRows": 2}
    graph = parse_graph(doc)
    nodes = {"a": node_entry(20.0, 4.0, 16), "b": node_entry(2.0, 1.0, 16)}
    profile = write_profile(tmp_path / "p.json", "chain", "c6i.2xlarge", nodes)
    topo = topology_of(graph)
    profiles = match_profiles([load_profile(profile)], "chain", ["a", "b"], topo.gates)
    arrivals = poisson_arrivals(200.0, 20.0, np.random.default_rng(0))
    catalog = load_catalog()
    search = SearchSettings(slo_ms=2000, percentile=99, max_replicas=max_replicas, **settings)
    return Planner(topo, {n.name: n for n in graph.spec.nodes}, profiles, catalog, arrivals, search)


def test_repair_adds_replicas_while_refusals_shrink_though_the_percentile_stays_infinite(
    tmp_path: Path,
):
    """With most requests refused the p99 is infinite whatever the replicas: repair took
    each try as a stall (inf against inf), simulated the same one three times and said more
    replicas no longer help, where six replicas of `a` refuse nothing."""
    planner = _bounded_planner(tmp_path, batch_sizes=[1])
    first = {n: min(planner.node_space(n).options, key=lambda o: o.replicas) for n in "ab"}
    start = planner.evaluate({**first, "a": replace(first["a"], replicas=1)})
    assert start.latency_ms == math.inf and start.refused_fraction > 0.5
    tried: list[Evaluated] = []
    repaired = planner.repair(start, tried)
    assert repaired.feasible and repaired.refused_fraction <= 0.01
    replicas = [t.options["a"].replicas for t in tried]
    assert replicas == sorted(set(replicas)), replicas  # each try a new replica count


def test_the_unreachable_message_quotes_the_least_refusing_configuration(tmp_path: Path):
    """Among options that all refuse too many, the one kept as the fastest was the first
    tried (inf < inf is false): batch 1, which refuses most (about 58 % of `a`'s requests
    on two replicas, where batch 2 refuses about 30 %), and the message quoted that."""
    planner = _bounded_planner(tmp_path, max_replicas=2)
    space = planner.node_space("a")
    assert space.fastest is not None and space.fastest.latency_ms == math.inf
    assert space.fastest.max_batch_size == 2 and 0.0 < space.fastest.refused_fraction < 0.45
    with pytest.raises(InfeasibleSloError, match="refuses more than 1%") as caught:
        planner.search()
    message = str(caught.value)
    assert "at most 2 replicas" in message
    share = float(message.split("the graph refuses ")[1].split("%")[0])
    assert share < 45.0, message


def test_the_front_holds_no_combination_that_answers_too_few():
    fast = Evaluated({}, 1.0, math.inf, {}, {}, False, refused_fraction=0.4)
    slow = Evaluated({}, 2.0, 50.0, {}, {}, True)
    result = SearchResult(fast, [fast, slow], {}, 2, False, 0.1)
    assert result.pareto == [slow]


def test_the_inflight_target_reads_the_answered_requests_latency(tmp_path: Path):
    """A node refusing past its percentile's share has an infinite own percentile; the
    in-flight target (rate x latency) then became inf, and plan.json `Infinity`. Refused
    requests hold no slot in flight: the answered ones' latency is the one to use."""
    latencies = np.array([0.010] * 95 + [math.inf] * 5)
    run = NodeRun(latencies, busy_s=1.0, batches=10, rows=100, refused=5)
    result = SimResult(latencies, {"c": run}, horizon_s=1.0)
    assert result.node_percentile_ms("c", 99) == math.inf
    assert result.node_answered_percentile_ms("c", 99) == pytest.approx(10.0)
    planner = _bounded_planner(tmp_path, batch_sizes=[1])
    first = {n: min(planner.node_space(n).options, key=lambda o: o.replicas) for n in "ab"}
    starved = planner.evaluate({**first, "a": replace(first["a"], replicas=1)})
    assert starved.node_latency_ms["a"] == math.inf
    assert 24.0 <= starved.node_answered_ms["a"] < 1000.0


def test_a_queue_metric_target_stays_below_the_queue_bound():
    """pending_rows per replica can never pass maxQueueRows: a `queue` target equal to it
    (a batch as large as the bound) would never ask for another pod."""
    advice = tune("c", Autoscaling(metric="queue"), 2, 8, 100.0, 10.0, 0.5, 0.01, 8)
    assert advice.target < 8
    unbounded = tune("c", Autoscaling(metric="queue"), 2, 8, 100.0, 10.0, 0.5, 0.01)
    assert unbounded.target == 8


def test_the_batch_grid_reaches_a_bound_that_is_no_power_of_two(tmp_path: Path):
    doc = chain_graph(["a", "b"])
    doc["spec"]["nodes"][0]["batching"] = {"maxBatchSize": 2, "maxQueueRows": 6}
    graph = parse_graph(doc)
    nodes = {"a": node_entry(20.0, 4.0, 16), "b": node_entry(2.0, 1.0, 16)}
    profiles = match_profiles(
        [load_profile(write_profile(tmp_path / "p.json", "chain", "c6i.2xlarge", nodes))],
        "chain", ["a", "b"], topology_of(graph).gates,
    )  # fmt: skip
    planner = Planner(
        topology_of(graph), {n.name: n for n in graph.spec.nodes}, profiles, load_catalog(),
        poisson_arrivals(50.0, 5.0, np.random.default_rng(0)), SearchSettings(slo_ms=500),
    )  # fmt: skip
    assert planner._batches(profiles.by_node["a"]["c6i.2xlarge"]) == [1, 2, 4, 6]
    assert planner._batches(profiles.by_node["b"]["c6i.2xlarge"]) == [1, 2, 4, 8, 16]


def test_a_plan_for_an_engine_that_does_not_enforce_the_bound_simulates_no_refusal(
    tmp_path: Path,
):
    """Seldon v1 units speaking the Seldon protocol answer each request on its own worker,
    with no queue to bound (render/seldon_v1.py says so in its notes): a plan for them that
    counted refusals would be sized for answers that never fail that way. The bound still
    caps the batch (the graph's validator) and stays in the planned graph."""
    result, out = _bounded_chain_plan(tmp_path, "--engine", "seldon-v1")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "not enforced on seldon-v1" in text
    report = json.loads((out / "plan.json").read_text())
    assert report["plan"]["refused_fraction"] == 0.0
    planned = load_graph(out / "chain.planned.yaml")
    assert planned.node("a").batching.max_queue_rows == 4
    assert planned.node("a").batching.max_batch_size <= 4


# -- --max-refused-pct: a plan that answers (nearly) every request -------------------------------
def test_a_plan_refuses_no_more_than_max_refused_pct(tmp_path: Path):
    """Without a limit a plan may meet its p99 while its queue bounds refuse a share of the
    requests (a refusal is one of the SLO's misses); a user who wants them answered says
    how many may be refused, and the plan grows until it refuses no more."""
    for folder in ("loose", "strict"):
        (tmp_path / folder).mkdir()
    loose, loose_out = _bounded_chain_plan(tmp_path / "loose")
    assert loose.exit_code == 0, loose.output
    loose_plan = json.loads((loose_out / "plan.json").read_text())
    assert loose_plan["plan"]["refused_fraction"] > 0.0  # the limit has something to do
    strict, out = _bounded_chain_plan(tmp_path / "strict", "--max-refused-pct", "0")
    assert strict.exit_code == 0, strict.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["plan"]["refused_fraction"] == 0.0 and plan["plan"]["feasible"]
    assert plan["slo"]["max_refused_fraction"] == 0.0
    assert loose_plan["slo"]["max_refused_fraction"] is None

    def replicas(report: dict) -> int:
        return sum(node["replicas"] for node in report["plan"]["nodes"].values())

    assert replicas(plan) > replicas(loose_plan)
    text = " ".join(strict.output.split())
    assert "at most 0% refused (--max-refused-pct)" in text
    load_graph(out / "chain.planned.yaml")


def test_the_search_counts_a_plan_refusing_past_the_limit_as_missing(tmp_path: Path):
    """Feasible, the front and repair all read the limit. Five replicas of `a` at batch 2
    refuse 0.1 % of the requests: within the p99's budget, past a limit of none."""
    unlimited = _bounded_planner(tmp_path, batch_sizes=[1, 2])
    limited = _bounded_planner(tmp_path, batch_sizes=[1, 2], max_refused=0.0)
    first = {n: min(unlimited.node_space(n).options, key=lambda o: o.replicas) for n in "ab"}
    refusing = {**first, "a": replace(first["a"], replicas=5, max_batch_size=2)}
    allowed = unlimited.evaluate(refusing)
    assert allowed.feasible and 0.0 < allowed.refused_fraction < 0.01
    assert not limited.evaluate(refusing).feasible
    repaired = limited.repair(limited.evaluate(refusing), [])
    assert repaired.feasible and repaired.refused_fraction == 0.0
    result = limited.search()
    assert result.best.feasible and result.best.refused_fraction == 0.0
    assert all(ev.refused_fraction == 0.0 for ev in result.pareto)


def test_a_refusal_limit_no_replica_count_meets_is_named(tmp_path: Path):
    """Five replicas of `a` at most: fast enough for the p99, but refusing some requests."""
    planner = _bounded_planner(tmp_path, max_replicas=5, batch_sizes=[1, 2], max_refused=0.0005)
    allows = re.escape("more than --max-refused-pct 0.05 allows")
    with pytest.raises(InfeasibleSloError, match=allows) as e:
        planner.search()
    assert "limited by node 'a'" in str(e.value) and "maxQueueRows 2" in str(e.value)
    # The least share a configuration fast enough refused, of all requests: never the 0 % of
    # a configuration too slow to count.
    least = float(str(e.value).split("refuses at least ")[1].split("%")[0])
    assert 0.05 < least < 1.0, str(e.value)


@pytest.mark.parametrize("value", ["-1", "101", "nan"])
def test_a_bad_max_refused_pct_is_refused_by_name(tmp_path: Path, value: str):
    result, out = _bounded_chain_plan(tmp_path, "--max-refused-pct", value)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert f"--max-refused-pct must be a percentage from 0 to 100, got {value}" in text
    assert not out.exists()


def test_the_graphs_slo_carries_the_refusal_limit_into_the_plan_and_the_planned_graph(
    tmp_path: Path,
):
    """`spec.slo.maxRefusedPercent` is the graph's own refusal limit: `plan` holds the search
    to it as to --max-refused-pct, and the planned graph keeps it, so planning that graph
    again keeps it too (it used to write back only latencyMs and percentile)."""
    slo = {"latencyMs": 400, "percentile": 99, "maxRefusedPercent": 0}
    result, out = _bounded_chain_plan(tmp_path, slo=slo)
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["slo"]["max_refused_fraction"] == 0.0
    assert plan["plan"]["refused_fraction"] == 0.0 and plan["plan"]["feasible"]
    assert "at most 0% refused (spec.slo.maxRefusedPercent)" in " ".join(result.output.split())
    planned = yaml.safe_load((out / "chain.planned.yaml").read_text())
    assert planned["spec"]["slo"] == slo
    assert load_graph(out / "chain.planned.yaml").spec.slo.max_refused_percent == 0


@pytest.mark.parametrize(("given", "fraction"), [("100", 1.0), ("29", 0.29), ("7", 0.07)])
def test_the_option_overrides_the_graphs_refusal_limit(tmp_path: Path, given: str, fraction: float):
    """The planned graph says the limit as given: 29 / 100 * 100 is 28.999999999999996."""
    slo = {"latencyMs": 400, "percentile": 99, "maxRefusedPercent": 0}
    result, out = _bounded_chain_plan(tmp_path, "--max-refused-pct", given, slo=slo)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "plan.json").read_text())["slo"]["max_refused_fraction"] == fraction
    assert "(--max-refused-pct)" in " ".join(result.output.split())
    planned = yaml.safe_load((out / "chain.planned.yaml").read_text())
    assert planned["spec"]["slo"]["maxRefusedPercent"] == float(given)


@pytest.mark.parametrize("value", [-1, 101, "many"])
def test_a_bad_refusal_limit_in_the_graph_is_named_by_its_path(tmp_path: Path, value: object):
    slo = {"latencyMs": 400, "maxRefusedPercent": value}
    result, out = _bounded_chain_plan(tmp_path, slo=slo)
    assert result.exit_code == 1, result.output
    assert "spec.slo.maxRefusedPercent" in " ".join(result.output.split())
    assert not out.exists()


# -- review of 285e474: what the refusal limit ranks by ------------------------------------------
def test_repair_grows_the_node_refusing_most_of_all_requests_not_most_of_its_own():
    """A gated node seeing a tenth of the requests refuses 3 % of its own (0.3 % of all); the
    node every request passes refuses 0.5 % of all. Growing the gated one barely helps."""
    ev = Evaluated(
        {},
        1.0,
        50.0,
        {"gated": 40.0, "always": 30.0},
        {},
        False,
        refused_fraction=0.008,
        node_refused_fraction={"gated": 0.03, "always": 0.005},
        refused_excess=0.008,
        node_refused_of_all={"gated": 0.003, "always": 0.005},
    )
    assert _slowest(ev) == "always"


def _option(usd: float, latency_ms: float, refused: float, batch: int) -> Option:
    return Option("a", "c6i.2xlarge", batch, 0.0, 1, usd, usd, latency_ms, None, 2, refused)  # type: ignore[arg-type]


def test_with_a_refusal_limit_each_cost_keeps_the_option_refusing_least():
    """At $2/h the option refusing nothing is slower than the $1/h one, so the front of cost
    and latency alone drops it; the graph's refusals add up, and it may be the one that fits."""
    cheap = _option(1.0, 10.0, 0.01, 1)
    quick = _option(2.0, 5.0, 0.004, 2)
    calm = _option(2.0, 12.0, 0.0, 4)
    assert calm not in pareto_options([cheap, quick, calm])
    assert pareto_options([cheap, quick, calm], refusals=True) == [cheap, quick, calm]


def test_shares_read_as_percentages_without_an_exponent():
    assert (_percent(0.996), _percent(0.0019), _percent(0.5)) == ("99.6%", "0.19%", "50%")
