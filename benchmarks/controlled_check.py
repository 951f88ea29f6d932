"""`bench_planner.py --parts controlled`: the simulator against controlled service times.

Issue 28, "prove the estimator on controlled service times". Two controlled nodes
(`benchmarks/controlled.py`: each pass sleeps `(base_ms + per_row_ms * b)` times a log-normal
draw from a seeded sequence, holding no CPU) in a chain, a cascade (the second node for
half the requests, on the first's score) and an ensemble, served through the real path:
`infergraph serve` (the local runner: router, MLServer with our runtime and batcher, HTTP),
a fresh server per row, loaded by the async load tester with Poisson or bursty (diurnal)
arrivals.

Each run is predicted by the simulator replaying the tester's own arrivals, two ways:

* the headline, the model alone: each node's configured law and the very draws its passes
  took (the node's seeded sequence), hops, ingress and branch fractions from the topology's
  profile. The service times are then the truth, so a miss is the model's (queueing,
  batch forming, hops, timers);
* the profile alone (`infergraph profile`, once per topology, as a user runs it): what a
  plan would have said, whose error adds how well a profile of a few hundred passes
  estimates the law.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import bench_planner as bp
from benchmarks.common import REPO, console
from benchmarks.controlled import EXTRA_FAMILIES, ControlledNode
from infergraph.components.registry import EXTRA_FAMILIES_ENV
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph
from infergraph.planner.profiles import ProfileSet, load_profile, match_profiles
from infergraph.planner.search import node_config
from infergraph.planner.simulator import NodeConfig, ServiceModel, simulate
from infergraph.planner.topology import topology_of

GRAPH = REPO / "benchmarks/graphs/controlled-chain.yaml"
PAYLOAD = "synthetic:tensor:1x4"
# (base_ms, per_row_ms) per node: the second is the bottleneck, 48 ms a pass at batch 1
NODES = {"first": (20.0, 4.0), "second": (40.0, 8.0)}
SIGMA = 0.25
SEED = 1  # each node's draw sequence (both nodes the same; each served pass takes the next)
KNOWN_DRAWS = 200_000  # more passes than any row serves
SEEDS = 32  # simulated runs a prediction averages (two predictions of a row then agree)
LOADS = (0.3, 0.6, 0.9)
PROFILE_BATCH = 8
CASCADE_THEN = 0.5  # the cascade's gate, `first.score lt 0.5`, sends half on to `second`
DIURNAL_PEAK = 1.8  # the bursty rows' busiest second, a multiple of their mean rate
CONTROLLED_P50_GOAL_PCT = 5.0
CONTROLLED_P99_GOAL_PCT = 10.0


@dataclass(frozen=True)
class Row:
    """One controlled configuration: topology, batch limit and delay, load, arrivals.

    `load` is the mean rate as a fraction of the bottleneck's capacity (`capacity_rps`);
    `arrivals` "poisson" at that rate, or "diurnal": the bench's bursty trace (one cycle,
    bursts, peak DIURNAL_PEAK times the mean) as per-second counts, Poisson within each.
    """

    topology: str  # chain, cascade or ensemble
    batch: int
    delay_ms: float
    load: float
    arrivals: str = "poisson"

    @property
    def tag(self) -> str:
        return f"{self.topology}-b{self.batch}-{self.load}-{self.arrivals}"


ROWS = (
    *(Row("chain", 1, 0.0, load) for load in LOADS),
    *(Row("chain", 8, 5.0, load) for load in LOADS),
    Row("chain", 32, 10.0, 0.6),
    Row("chain", 32, 10.0, 0.9),
    Row("cascade", 1, 0.0, 0.6),
    Row("cascade", 1, 0.0, 0.9),
    Row("cascade", 8, 5.0, 0.6),
    Row("ensemble", 8, 5.0, 0.6),
    Row("ensemble", 8, 5.0, 0.9),
    Row("chain", 8, 5.0, 0.5, "diurnal"),
)


def use_controlled_family() -> None:
    """Name the controlled family for this process and every child the benchmark starts.

    The router and each MLServer child import `benchmarks.controlled`, so they need the
    hook and the repository on PYTHONPATH; `bench_planner.ENV` is what its children get.
    Idempotent (a path already there is not added twice).
    """
    # The caller's PYTHONPATH is kept after the repository: a worktree's `src` still comes
    # before the installed package in every child.
    have = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [str(REPO), *(p for p in have if p != str(REPO))]
    extra = {EXTRA_FAMILIES_ENV: EXTRA_FAMILIES, "PYTHONPATH": os.pathsep.join(paths)}
    os.environ.update(extra)
    bp.ENV.update(extra)


def _steps(topology: str) -> dict[str, Any]:
    """The graph section: a chain, a cascade gated on the first node's score, or both
    nodes side by side with their outputs averaged."""
    if topology == "chain":
        return {
            "sequence": [{"node": "first"}, {"node": "second", "inputs": {"input": "first.output"}}]
        }
    if topology == "cascade":
        gate = {"tensor": "first.score", "op": "lt", "value": CASCADE_THEN}
        then = {"node": "second", "inputs": {"input": "request.input"}}
        return {"sequence": [{"node": "first"}, {"when": gate, "then": then}]}
    if topology == "ensemble":
        members = [{"node": "first"}, {"node": "second"}]
        return {"ensemble": members, "combine": {"method": "average", "tensor": "output"}}
    raise ValueError(f"unknown topology {topology!r}")


def controlled_graph(topology: str, batch: int, delay_ms: float) -> dict[str, Any]:
    """The controlled graph of this topology at one batch limit and delay."""
    spec = yaml.safe_load(GRAPH.read_text())
    spec["metadata"]["name"] = f"controlled-{topology}"
    for node in spec["spec"]["nodes"]:
        base, per_row = NODES[node["name"]]
        node["options"] = {"base_ms": base, "per_row_ms": per_row, "sigma": SIGMA, "seed": SEED}
        node["batching"] = {"maxBatchSize": batch, "maxBatchTimeMs": delay_ms}
    spec["spec"]["graph"] = _steps(topology)
    return spec


def capacity_rps(topology: str, batch: int) -> float:
    """Requests per second the bottleneck carries in full batches (its mean pass: median
    times exp(sigma^2 / 2)), counting the share of requests each node sees; loads are
    fractions of this, as in the real-model check."""
    mean_factor = float(np.exp(SIGMA**2 / 2))
    share = {"first": 1.0, "second": CASCADE_THEN if topology == "cascade" else 1.0}
    return min(
        batch / ((b + p * batch) * mean_factor / 1000.0) / share[name]
        for name, (b, p) in NODES.items()
    )


def profile_once(work: Path, log: Path, topology: str) -> Path:
    """`infergraph profile` as a user runs it: passes in-process up to batch 8, then the
    graph through the local runner one request at a time and at half load."""
    graph_file = work / f"controlled-{topology}-profile.yaml"
    graph_file.write_text(yaml.safe_dump(controlled_graph(topology, PROFILE_BATCH, 5.0)))
    out = work / f"controlled-{topology}-profile.json"
    if out.exists():  # a --work folder's profile is reused, as the other parts do
        return out
    bp._cli(
        "profile", str(graph_file), "--out", str(out), "--max-batch", str(PROFILE_BATCH),
        "--repeats", "20", "--requests", "300", "--payload", PAYLOAD,
        "--hardware-class", bp.CHECK_CLASS, log=log,
    )  # fmt: skip
    return out


def measure(url: str, row: Row, rate: float, duration: float, work: Path) -> dict[str, Any]:
    """One load-tester run on the row's graph: Poisson at `rate`, or the bursty trace with
    that mean (written to the work folder, one cycle over `duration`)."""
    model, seed = f"controlled-{row.topology}", int(rate * 10)
    if row.arrivals == "poisson":
        return bp.measure(url, rate, duration, seed, model=model, payload=PAYLOAD)
    from async_load_tester.schedule import generate_trace

    trace = work / f"controlled-{row.tag}.trace"
    counts = generate_trace(rate, rate * DIURNAL_PEAK, int(duration), seed=seed, period=duration)
    trace.write_text("\n".join(str(c) for c in counts) + "\n")
    return bp.measure(
        url, None, None, seed, model=model, payload=PAYLOAD, schedule=f"trace:{trace}"
    )


def known_service(name: str, batch: int) -> ServiceModel:
    """The node's configured law: median (base + per_row * b) ms, log-normal spread SIGMA."""
    base, per_row = NODES[name]
    top = max(batch, PROFILE_BATCH)
    return ServiceModel(
        tuple((base + per_row * b) / 1000.0 for b in range(1, top + 1)),
        tuple(SIGMA for _ in range(top)),
    )


def _known_configs(
    graph: InferenceGraph, profiles: ProfileSet, in_turn: bool
) -> dict[str, NodeConfig]:
    """Each node's configuration with its configured law and the served node's very draws."""
    draws = ControlledNode.known_draws(SEED, KNOWN_DRAWS)
    configs = {
        n.name: replace(
            node_config(
                profiles.by_node[n.name][bp.CHECK_CLASS],
                n.batching.max_batch_size,
                n.batching.max_batch_time_ms,
                1,
            ),
            service=known_service(n.name, n.batching.max_batch_size),
            draws=draws,
        )
        for n in graph.spec.nodes
    }
    if in_turn:
        return configs
    return {n: replace(c, response_s=0.0, hop_s=c.hop_s + c.response_s) for n, c in configs.items()}


def predict_known(
    graph_file: Path, profile: Path, arrivals_s: np.ndarray, in_turn: bool = True
) -> dict[str, Any]:
    """The queueing model alone: the simulator on the run's arrivals, each node's passes
    from its configured law and the very draws the served node took (`known_draws`), and
    only what is not known (hops, ingress, branch fractions) from the profile.

    Averaged over the hop draws (the service draws are fixed). What differs from the
    measurement is then the model of the batcher, the hops and the timers, which is what
    the issue's controlled check is for; how well a profile estimates the law is reported
    beside it (`predict` from the profile alone). `in_turn` False: the answers of a batch
    leave together, each after one fixed hop, the profile's own hop plus one answer's time
    (the model before the response path, for comparison; its hop is then a little longer
    than that model's, whose median mixed the loaded half's batch sizes, mostly 1 and 2).
    """
    graph = load_graph(graph_file)
    topo = topology_of(graph)
    names = [n.name for n in graph.spec.nodes]
    profiles = match_profiles([load_profile(profile)], graph.name, names, topo.gates)
    configs = _known_configs(graph, profiles, in_turn)
    counted = arrivals_s >= bp.WARMUP_S
    p50, p99, mean = [], [], []
    forward: dict[str, list[float]] = {n: [] for n in names}
    total: dict[str, list[float]] = {n: [] for n in names}
    response: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(SEEDS):
        result = simulate(
            topo, configs, arrivals_s, profiles.branches, profiles.ingress_ms / 1000.0, seed
        )
        latency_ms = result.latency_s[counted] * 1000.0
        p50.append(float(np.percentile(latency_ms, 50)))
        p99.append(float(np.percentile(latency_ms, 99)))
        mean.append(float(np.mean(latency_ms)))
        for n, run in result.nodes.items():
            forward[n].append(run.forward_per_request_s * 1000.0)
            total[n].append(float(np.mean(run.latency_s)) * 1000.0)
            response[n].append(run.response_per_request_s * 1000.0)
    return {
        "p50_ms": float(np.mean(p50)),
        "p99_ms": float(np.mean(p99)),
        "mean_ms": float(np.mean(mean)),
        "forward_mean_ms": {n: float(np.mean(v)) for n, v in forward.items()},
        "node_mean_ms": {n: float(np.mean(v)) for n, v in total.items()},
        "hop_mean_ms": {  # the log-normal hop's mean and the answers' turn, as simulated
            n: c.hop_s * 1000.0 * float(np.exp(c.hop_sigma**2 / 2)) + float(np.mean(response[n]))
            for n, c in configs.items()
        },
        "ingress_ms": profiles.ingress_ms,
    }


def _served_prediction(
    served: Path | None, graph_file: Path, arrivals: np.ndarray, measured: dict[str, Any]
) -> dict[str, Any]:
    """A diagnosis beside the headline: the same run predicted from a profile of the served
    configuration taken at the row's own rate just before it, which holds the hops and the
    server's slowdown at that rate (the one profile measured them at about 10 req/s)."""
    if served is None:
        return {}
    again = bp.predict(graph_file, served, arrivals)
    return {
        "served_profile": bp._shown(served),
        "served_predicted_p50_ms": again["p50_ms"],
        "served_predicted_p99_ms": again["p99_ms"],
        "served_p50_error_pct": bp.error_pct(again["p50_ms"], measured["p50_ms"]),
        "served_p99_error_pct": bp.error_pct(again["p99_ms"], measured["p99_ms"]),
    }


def _where_time_went(known: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Per node, mean ms in queue, forward pass and hop (the rest of its visit), measured
    (the router's and batcher's timings) beside simulated; and the time outside the nodes.
    Where prediction and measurement part shows here."""
    stages = measured["stage_means_ms"]
    out: dict[str, Any] = {}
    for n, node_ms in known["node_mean_ms"].items():
        if f"{n}.total_ms" not in stages:
            continue
        inference = stages.get(f"{n}.inference_ms", 0.0)
        queue = stages.get(f"{n}.queue_ms", 0.0)
        hop = known["hop_mean_ms"][n]
        out[n] = {
            "measured_queue": queue,
            "known_queue": node_ms - known["forward_mean_ms"][n] - hop,
            "measured_forward": inference,
            "known_forward": known["forward_mean_ms"][n],
            "measured_hop": stages[f"{n}.total_ms"] - queue - inference,
            "known_hop": hop,
        }
    outside = measured["latency_mean_ms"] - stages.get("graph.total_ms", 0.0)
    out["outside_nodes"] = {  # client to router and back, measured; the profile's ingress
        "measured_client_side": outside,
        "known_ingress": known["ingress_ms"],
    }
    return out


def _known_columns(known: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """The headline: the model on the known law and draws against the measurement."""
    return {
        "measured_mean_ms": measured["latency_mean_ms"],
        "predicted_mean_ms": known["mean_ms"],
        "mean_ms_by_part": _where_time_went(known, measured),
        "predicted_p50_ms": known["p50_ms"],
        "predicted_p99_ms": known["p99_ms"],
        "p50_error_pct": bp.error_pct(known["p50_ms"], measured["p50_ms"]),
        "p99_error_pct": bp.error_pct(known["p99_ms"], measured["p99_ms"]),
        "known_forward_mean_ms": known["forward_mean_ms"],
    }


def _profile_columns(predicted: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Beside it: what a user gets from the profile alone."""
    return {
        "profile_predicted_p50_ms": predicted["p50_ms"],
        "profile_predicted_p99_ms": predicted["p99_ms"],
        "profile_p50_error_pct": bp.error_pct(predicted["p50_ms"], measured["p50_ms"]),
        "profile_p99_error_pct": bp.error_pct(predicted["p99_ms"], measured["p99_ms"]),
    }


def controlled_row(
    graph_file: Path,
    url: str,
    profile: Path,
    row: Row,
    duration: float,
    served_at_rate: bool = False,
) -> dict[str, Any]:
    """Load-test one configuration and predict the same run: the model on the known law and
    draws (the headline), and from the topology's one profile (and, with `served_at_rate`,
    from a profile of the served configuration at its rate)."""
    rate = round(row.load * capacity_rps(row.topology, row.batch), 2)
    work = profile.parent
    served = None
    if served_at_rate:
        log = work / "controlled.log"
        served = bp.profile_served(graph_file, url, rate, work, row.tag, log, PAYLOAD, 300)
    measured = measure(url, row, rate, duration, work)
    arrivals = measured["arrivals_s"]
    known = predict_known(graph_file, profile, arrivals)
    together = predict_known(graph_file, profile, arrivals, in_turn=False)
    predicted = bp.predict(graph_file, profile, arrivals, seeds=SEEDS)
    return {
        "together_predicted_p50_ms": together["p50_ms"],
        "together_predicted_p99_ms": together["p99_ms"],
        "together_p50_error_pct": bp.error_pct(together["p50_ms"], measured["p50_ms"]),
        "together_p99_error_pct": bp.error_pct(together["p99_ms"], measured["p99_ms"]),
        **_served_prediction(served, graph_file, arrivals, measured),
        **_known_columns(known, measured),
        **_profile_columns(predicted, measured),
        "part": "controlled",
        "topology": row.topology,
        "arrivals": row.arrivals,
        "batch": row.batch,
        "delay_ms": row.delay_ms,
        "load": row.load,
        "rate": rate,
        "profile_branch_then": load_profile(profile).branches,
        "measured_p50_ms": measured["p50_ms"],
        "measured_p99_ms": measured["p99_ms"],
        "measured_p99_interval_ms": measured["p99_interval_ms"],
        "p99_error_beyond_interval_pct": bp.beyond_interval_pct(
            known["p99_ms"], measured["p99_ms"], measured["p99_interval_ms"]
        ),
        "rate_only_predicted_p99_ms": predicted["rate_only_p99_ms"],
        "measured_forward_mean_ms": measured["forward_mean_ms"],
        "predicted_forward_mean_ms": predicted["forward_mean_ms"],
        "measured_service_p99_ms": measured["service_p99_ms"],
        "max_late_ms": measured["max_late_ms"],
        "arrivals_replayed": int(np.sum(arrivals >= bp.WARMUP_S)),
        "sent": measured["sent"],
        "errors": measured["errors"],
        "late_or_dropped_pct": measured["late_or_dropped_pct"],
        "loadavg_1m": os.getloadavg()[0],
    }


def controlled_rows(
    work: Path, duration: float, served_at_rate: bool = False, rows: tuple[Row, ...] = ROWS
) -> list[dict[str, Any]]:
    """Profile each topology once, then serve, load and predict each row, a fresh server
    per row (its nodes' passes then take the known draws from the first)."""
    use_controlled_family()
    log = work / "controlled.log"
    profiles: dict[str, Path] = {}
    for topology in dict.fromkeys(row.topology for row in rows):  # all first, then the rows
        with console.status(f"profiling the controlled {topology}..."):
            profiles[topology] = profile_once(work, log, topology)
    out: list[dict[str, Any]] = []
    for row in rows:
        graph_file = work / f"controlled-{row.topology}-b{row.batch}.yaml"
        graph_file.write_text(
            yaml.safe_dump(controlled_graph(row.topology, row.batch, row.delay_ms))
        )
        with bp.Served(graph_file, log) as url:
            out.append(
                controlled_row(
                    graph_file, url, profiles[row.topology], row, duration, served_at_rate
                )
            )
        shown = ("topology", "batch", "load", "arrivals")
        console.print({k: v for k, v in out[-1].items() if "error" in k or k in shown})
    return out


def controlled_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst row's errors (goals: p50 <= 5 %, p99 <= 10 %); empty without rows.

    The headline keys are the queueing model's (the known law and draws); the `_profile`
    ones what the profile alone predicts."""
    if not rows:
        return {}
    return {
        "controlled_p50_error_pct": max(r["p50_error_pct"] for r in rows),
        "controlled_p99_error_pct": max(r["p99_error_pct"] for r in rows),
        "controlled_p50_error_pct_profile": max(r["profile_p50_error_pct"] for r in rows),
        "controlled_p99_error_pct_profile": max(r["profile_p99_error_pct"] for r in rows),
        "controlled_rows_meeting_goals": sum(
            r["p50_error_pct"] <= CONTROLLED_P50_GOAL_PCT
            and r["p99_error_pct"] <= CONTROLLED_P99_GOAL_PCT
            for r in rows
        ),
        "controlled_rows": len(rows),
        **(
            {
                "controlled_p99_error_pct_served_profile": max(
                    r["served_p99_error_pct"] for r in rows
                ),
                "controlled_p50_error_pct_served_profile": max(
                    r["served_p50_error_pct"] for r in rows
                ),
            }
            if all("served_p99_error_pct" in r for r in rows)
            else {}
        ),
    }


def controlled_settings(duration: float, served_at_rate: bool = False) -> dict[str, Any]:
    return {
        "served_profile_per_row": served_at_rate,
        "graph": "benchmarks/graphs/controlled-chain.yaml, its graph section per topology",
        "nodes_base_per_row_ms": {k: list(v) for k, v in NODES.items()},
        "sigma": SIGMA,
        "rows": [row.tag for row in ROWS],
        "cascade_then": CASCADE_THEN,
        "diurnal_peak_over_mean": DIURNAL_PEAK,
        "duration_s": duration,
        "payload": PAYLOAD,
        "arrivals": "poisson, or the bursty diurnal trace where a row says so",
        "prediction": "headline: the simulator on the run's arrivals with each node's "
        "configured law and the draws its passes took (hops, ingress from the profile); "
        "beside it the profile alone",
        "server": "a fresh `infergraph serve` per row",
        "profile": f"infergraph profile, in-process passes to batch {PROFILE_BATCH}, "
        "300 requests a half through the local runner",
    }
