"""`bench_planner.py --parts controlled`: the simulator against controlled service times.

Issue 28, "prove the estimator on controlled service times". A chain of two controlled
nodes (`benchmarks/controlled.py`: each pass sleeps `(base_ms + per_row_ms * b)` times a
log-normal draw, holding no CPU) is served through the real path: `infergraph serve` (the
local runner: router, MLServer with our runtime and batcher, HTTP), loaded by the async load
tester with Poisson arrivals. It is profiled the normal way, once (`infergraph profile`: the
passes in-process, then a graph pass through the local runner), and the simulator predicts
each run from that profile, replaying the tester's own arrivals. Since the passes' times are
known, a miss here is the model's (queueing, batching, hops), not the machine's speed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import bench_planner as bp
from benchmarks.common import REPO, console
from benchmarks.controlled import EXTRA_FAMILIES
from infergraph.components.registry import EXTRA_FAMILIES_ENV

GRAPH = REPO / "benchmarks/graphs/controlled-chain.yaml"
MODEL = "controlled-chain"
PAYLOAD = "synthetic:tensor:1x4"
# (base_ms, per_row_ms) per node: the second is the bottleneck, 48 ms a pass at batch 1
NODES = {"first": (20.0, 4.0), "second": (40.0, 8.0)}
SIGMA = 0.25
SETTINGS = ((1, 0.0), (8, 5.0))  # batch limit, delay in ms
LOADS = (0.3, 0.6, 0.9)
PROFILE_BATCH = 8
CONTROLLED_P50_GOAL_PCT = 5.0
CONTROLLED_P99_GOAL_PCT = 10.0


def use_controlled_family() -> None:
    """Name the controlled family for this process and every child the benchmark starts.

    The router and each MLServer child import `benchmarks.controlled`, so they need the
    hook and the repository on PYTHONPATH; `bench_planner.ENV` is what its children get.
    """
    extra = {EXTRA_FAMILIES_ENV: EXTRA_FAMILIES, "PYTHONPATH": str(REPO)}
    os.environ.update(extra)
    bp.ENV.update(extra)


def controlled_graph(batch: int, delay_ms: float) -> dict[str, Any]:
    """The controlled chain at one batch limit and delay, with the benchmark's timings."""
    spec = yaml.safe_load(GRAPH.read_text())
    for node in spec["spec"]["nodes"]:
        base, per_row = NODES[node["name"]]
        node["options"] = {"base_ms": base, "per_row_ms": per_row, "sigma": SIGMA, "seed": 1}
        node["batching"] = {"maxBatchSize": batch, "maxBatchTimeMs": delay_ms}
    return spec


def capacity_rps(batch: int) -> float:
    """Requests per second the bottleneck carries in full batches (its mean pass: median
    times exp(sigma^2 / 2)); loads are fractions of this, as in the real-model check."""
    mean_factor = float(np.exp(SIGMA**2 / 2))
    return min(batch / ((b + p * batch) * mean_factor / 1000.0) for b, p in NODES.values())


def profile_once(work: Path, log: Path) -> Path:
    """`infergraph profile` as a user runs it: passes in-process up to batch 8, then the
    graph through the local runner one request at a time and at half load."""
    graph_file = work / "controlled-profile.yaml"
    graph_file.write_text(yaml.safe_dump(controlled_graph(PROFILE_BATCH, 5.0)))
    out = work / "controlled-profile.json"
    if out.exists():  # a --work folder's profile is reused, as the other parts do
        return out
    bp._cli(
        "profile", str(graph_file), "--out", str(out), "--max-batch", str(PROFILE_BATCH),
        "--repeats", "20", "--requests", "300", "--payload", PAYLOAD,
        "--hardware-class", bp.CHECK_CLASS, log=log,
    )  # fmt: skip
    return out


def measure(url: str, rate: float, duration: float, seed: int) -> dict[str, Any]:
    """One load-tester run on the controlled graph (its model name and tensor payload)."""
    return bp.measure(url, rate, duration, seed, model=MODEL, payload=PAYLOAD)


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


def controlled_row(
    graph_file: Path,
    url: str,
    profile: Path,
    setting: tuple[int, float, float],
    duration: float,
    served_at_rate: bool = False,
) -> dict[str, Any]:
    """Load-test one configuration and predict the same run from the one profile (and, with
    `served_at_rate`, from a profile of the served configuration at the row's rate)."""
    batch, delay_ms, load = setting
    rate = round(load * capacity_rps(batch), 2)
    served = None
    if served_at_rate:
        work, tag = profile.parent, f"controlled-b{batch}-{load}"
        log = work / "controlled.log"
        served = bp.profile_served(graph_file, url, rate, work, tag, log, PAYLOAD, 300)
    measured = measure(url, rate, duration, seed=int(rate * 10))
    arrivals = measured["arrivals_s"]
    predicted = bp.predict(graph_file, profile, arrivals, measured["forward_mean_ms"])
    return {
        **_served_prediction(served, graph_file, arrivals, measured),
        "part": "controlled",
        "topology": "chain",
        "batch": batch,
        "delay_ms": delay_ms,
        "load": load,
        "rate": rate,
        "measured_p50_ms": measured["p50_ms"],
        "predicted_p50_ms": predicted["p50_ms"],
        "measured_p99_ms": measured["p99_ms"],
        "predicted_p99_ms": predicted["p99_ms"],
        "p50_error_pct": bp.error_pct(predicted["p50_ms"], measured["p50_ms"]),
        "p99_error_pct": bp.error_pct(predicted["p99_ms"], measured["p99_ms"]),
        "measured_p99_interval_ms": measured["p99_interval_ms"],
        "p99_error_beyond_interval_pct": bp.beyond_interval_pct(
            predicted["p99_ms"], measured["p99_ms"], measured["p99_interval_ms"]
        ),
        "rate_only_predicted_p99_ms": predicted["rate_only_p99_ms"],
        "measured_forward_mean_ms": measured["forward_mean_ms"],
        "predicted_forward_mean_ms": predicted["forward_mean_ms"],
        "inrun_predicted_p50_ms": predicted["inrun_p50_ms"],
        "inrun_predicted_p99_ms": predicted["inrun_p99_ms"],
        "inrun_p99_error_pct": bp.error_pct(predicted["inrun_p99_ms"], measured["p99_ms"]),
        "forward_drift": predicted["inrun_factors"],
        "measured_service_p99_ms": measured["service_p99_ms"],
        "max_late_ms": measured["max_late_ms"],
        "arrivals_replayed": int(np.sum(arrivals >= bp.WARMUP_S)),
        "sent": measured["sent"],
        "errors": measured["errors"],
        "late_or_dropped_pct": measured["late_or_dropped_pct"],
        "loadavg_1m": os.getloadavg()[0],
    }


def controlled_rows(
    work: Path, duration: float, served_at_rate: bool = False
) -> list[dict[str, Any]]:
    """Profile the controlled chain once, then serve, load and predict each setting."""
    use_controlled_family()
    log = work / "controlled.log"
    with console.status("profiling the controlled chain..."):
        profile = profile_once(work, log)
    rows: list[dict[str, Any]] = []
    for batch, delay_ms in SETTINGS:
        graph_file = work / f"controlled-b{batch}.yaml"
        graph_file.write_text(yaml.safe_dump(controlled_graph(batch, delay_ms)))
        with bp.Served(graph_file, log) as url:
            for load in LOADS:
                setting = (batch, delay_ms, load)
                rows.append(
                    controlled_row(graph_file, url, profile, setting, duration, served_at_rate)
                )
                console.print({k: v for k, v in rows[-1].items() if "error" in k or k == "load"})
    return rows


def controlled_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst row's errors (goals: p50 <= 5 %, p99 <= 10 %); empty without rows."""
    if not rows:
        return {}
    return {
        "controlled_p50_error_pct": max(r["p50_error_pct"] for r in rows),
        "controlled_p99_error_pct": max(r["p99_error_pct"] for r in rows),
        "controlled_p99_error_pct_inrun_service": max(r["inrun_p99_error_pct"] for r in rows),
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
        "graph": "benchmarks/graphs/controlled-chain.yaml",
        "nodes_base_per_row_ms": {k: list(v) for k, v in NODES.items()},
        "sigma": SIGMA,
        "settings_batch_delay_ms": [list(s) for s in SETTINGS],
        "loads": list(LOADS),
        "duration_s": duration,
        "payload": PAYLOAD,
        "arrivals": "poisson",
        "profile": f"infergraph profile, in-process passes to batch {PROFILE_BATCH}, "
        "300 requests a half through the local runner",
    }
