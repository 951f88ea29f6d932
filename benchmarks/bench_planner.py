"""`make bench-planner`: the planner's simulator against reality, and what its plans save.

1. Reality check, on this machine. A two-node graph (a full-size ResNet-18 with
   random weights, then a tiny ViT, one forward thread each, so the 2-core CPU is
   the bottleneck) is profiled once with `infergraph profile`, then served by the
   local runner at several batch settings and Poisson rates and measured with the
   async load tester. Right before each run the served configuration is profiled
   through its endpoints (`infergraph profile --endpoint`, at the run's load), and the
   simulator predicts p50/p99 for the same configuration and the same arrivals (the
   tester's seeded Poisson draw, replayed) from that profile alone. Each configuration
   runs `--runs` times (3) on the same arrivals: `real_p99_error_pct` is the p99 error of
   the row furthest past its goal, `real_p99_spread_pct` that row's run-to-run spread
   (goal: error within spread). The prediction from the first profile (in-process
   passes, taken once before every run) and the rate-only prediction (fresh draws of the
   same rate) are reported beside it in each row.
2. Cost. The cascade and video graphs are profiled here (tiny checkpoints, this CPU
   standing for one c6i.2xlarge class) and planned on a bursty diurnal trace
   (async-load-tester's generator, one cycle over the trace: a day compressed into an
   hour while the autoscaler's timings stay real) at a cluster-scale rate (mean
   3000, peak 12000 req/s: about a quarter of a billion requests a day). The plan
   carries its tuned autoscalers (`--autoscale all`), replayed over the trace.
   `cost_ratio` is the $/hour of the cheapest batch-1 configuration, held all along
   at the replicas its peak needs, that meets the same SLO, over the planned one's
   time-averaged $/hour; `slo_attainment` is the share of the trace's requests the
   plan answers within the SLO in simulation (autoscaler lag included);
   `planner_seconds` is the longest planning wall time.
3. Search: the planner against exhaustive search on random small cases
   (`benchmarks/search_cases.py`): `optimality_gap_pct_p95`, `optimal_fraction`.
4. Controlled: the simulator against controlled service times
   (`benchmarks/controlled_check.py`): `controlled_p50_error_pct`, `controlled_p99_error_pct`.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, console, print_table, write_results
from infergraph.cost.pricing import load_catalog
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph
from infergraph.planner.planning import PlanInputs, PlanOutcome, plan_graph
from infergraph.planner.profiles import NodeProfile, ProfileSet, load_profile, match_profiles
from infergraph.planner.search import SearchSettings, node_config
from infergraph.planner.simulator import NodeConfig, poisson_arrivals, simulate
from infergraph.planner.topology import Topology, topology_of
from infergraph.planner.workload import Workload
from infergraph.ports import free_port

CHECK_CLASS = "c6i.2xlarge"
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
PAYLOAD = "synthetic:image"
# Room for full-size profiles, which need hundreds of replicas at the trace's peak.
MAX_REPLICAS = 2048
# The in-run prediction's speed factor is searched in this range, to about 1 % of it.
INRUN_RANGE = (0.5, 2.0)
INRUN_STEPS = 8
WARMUP_S = 5.0  # the load tester's warm-up per run: sent, replayed, not measured
SERVICE_SEEDS = 8  # simulated runs per prediction (service-time draws; arrivals per below)


def _cli(*args: str, log: Path) -> None:
    with open(log, "ab") as sink:
        proc = subprocess.run(
            [sys.executable, "-m", "infergraph.cli", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=ENV,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"infergraph {' '.join(args)} failed; log: {log}")


def _checkpoints(root: Path) -> tuple[str, str]:
    """A full-size ResNet-18 and a tiny ViT, random weights, built once by the offline builder."""
    from infergraph.graph.model import Node
    from infergraph.runner.repository import offline_checkpoint

    big = Node(name="big", family="image-classification", model_uri="timm/resnet18.a1_in1k")
    small = Node(
        name="small", family="image-classification", model_uri="google/vit-base-patch16-224"
    )
    return str(offline_checkpoint(big, "full")), str(offline_checkpoint(small, "tiny"))


def check_graph(big: str, small: str, batch: int, delay_ms: float) -> dict[str, Any]:
    def node(name: str, uri: str) -> dict[str, Any]:
        return {
            "name": name,
            "family": "image-classification",
            "modelUri": uri,
            "device": "cpu",
            "batching": {"maxBatchSize": batch, "maxBatchTimeMs": delay_ms},
            "resources": {"cpu": "1", "memory": "2Gi"},
            "hardware": CHECK_CLASS,
        }

    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "planner-check"},
        "spec": {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "nodes": [node("resnet", big), node("vit", small)],
            "graph": {
                "sequence": [
                    {"node": "resnet"},
                    {"node": "vit", "inputs": {"image": "request.image"}},
                ]
            },
        },
    }


class Served:
    """`infergraph serve` in its own process group, stopped on exit."""

    def __init__(self, graph_file: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        sink = open(log, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infergraph.cli",
                "serve",
                str(graph_file),
                "--port",
                str(self.port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=ENV,
        )
        sink.close()

    def __enter__(self) -> str:
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve exited; log: {self.log}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise SystemExit(f"graph not ready; log: {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def measure(
    url: str,
    rate: float | None,
    duration: float | None,
    seed: int,
    model: str = "planner-check",
    payload: str = PAYLOAD,
    schedule: str | None = None,
) -> dict[str, Any]:
    from async_load_tester import LoadConfig, intended_sends, run_load

    config = LoadConfig(
        target=url,
        model=model,
        payload=payload,
        rate=rate,
        schedule=schedule,
        arrival="poisson",
        duration=duration,
        warmup=WARMUP_S,
        seed=seed,
        timeout_s=60,
        progress=False,
    )
    result = run_load(config)
    step = result.steps[-1]
    forward = {
        key.split(".")[0]: stats["mean"]
        for key, stats in step.stages_ms.items()
        if key.endswith(".inference_ms")
    }
    stage_means = {key: stats["mean"] for key, stats in step.stages_ms.items()}
    return {
        # the run's own Poisson draw, warm-up first: the simulator replays exactly these
        "arrivals_s": intended_sends(config),
        "forward_mean_ms": forward,
        "stage_means_ms": stage_means,  # node.total_ms, node.queue_ms, ... graph.total_ms
        "latency_mean_ms": step.latency_ms["mean"] or float("nan"),
        "p50_ms": step.latency_ms["p50"] or float("nan"),
        "p99_ms": step.latency_ms["p99"] or float("nan"),
        "p99_interval_ms": p99_interval_ms(step.histogram),
        "histogram": step.histogram,
        # from the actual send: the tester shares the CPU, and a late send counts from its plan
        "service_p99_ms": step.service_ms["p99"] or float("nan"),
        "max_late_ms": step.max_late_ms,
        "sent": step.sent,
        "errors": step.error_count,
        "late_or_dropped_pct": step.late_or_dropped_pct,
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """K runs of one configuration on the same arrivals, as one measurement of K times the
    requests: percentiles of all their latencies together, each run's p99 kept beside them.

    Runs minutes apart on this VM differ by its speed at the time, which at high load moves
    a p99 far more than the requests' own sampling noise; pooling the runs measures the
    configuration, where one run measures one stretch of the machine's weather.
    """
    from hdrh.histogram import HdrHistogram

    if len(runs) == 1:
        return {**runs[0], "p99_runs_ms": [runs[0]["p99_ms"]]}
    merged = HdrHistogram.decode(runs[0]["histogram"])
    for run in runs[1:]:
        merged.add(HdrHistogram.decode(run["histogram"]))
    forward_means = [run["forward_mean_ms"] for run in runs]
    return {
        "arrivals_s": runs[0]["arrivals_s"],
        "forward_mean_ms": {
            node: float(np.mean([f[node] for f in forward_means])) for node in forward_means[0]
        },
        "p50_ms": merged.get_value_at_percentile(50) / 1000.0,
        "p99_ms": merged.get_value_at_percentile(99) / 1000.0,
        "p99_interval_ms": p99_interval_ms(merged.encode()),
        "p99_runs_ms": [run["p99_ms"] for run in runs],
        "service_p99_ms": float(np.mean([run["service_p99_ms"] for run in runs])),
        "max_late_ms": max(run["max_late_ms"] for run in runs),
        "sent": sum(run["sent"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "late_or_dropped_pct": float(np.mean([run["late_or_dropped_pct"] for run in runs])),
    }


def p99_interval_ms(encoded: str | bytes) -> tuple[float, float]:
    """A 95 % interval for the run's p99 from its own latencies (the load tester's histogram).

    Distribution-free: the order statistics whose ranks bracket 0.99 n with 95 % binomial
    probability. Latencies of one run are correlated (a slow pass delays its queue), so
    the true uncertainty is wider: this is the least noise a p99 of this many requests has.
    """
    from hdrh.histogram import HdrHistogram

    hist = HdrHistogram.decode(encoded)
    n = hist.get_total_count()
    if not n:
        return float("nan"), float("nan")
    half = 1.96 * math.sqrt(n * 0.99 * 0.01)
    low = max(0.0, 0.99 * n - half) / n * 100.0
    high = min(float(n), 0.99 * n + half + 1.0) / n * 100.0
    return hist.get_value_at_percentile(low) / 1000.0, hist.get_value_at_percentile(high) / 1000.0


def beyond_interval_pct(predicted: float, measured: float, interval: tuple[float, float]) -> float:
    """How far a prediction falls outside the measured p99's interval, relative to the p99."""
    low, high = interval
    gap = low - predicted if predicted < low else predicted - high if predicted > high else 0.0
    return 100.0 * gap / measured


@dataclass
class _Replay:
    """One configuration's simulation on a run's arrivals (or on fresh draws of its rate)."""

    graph: InferenceGraph
    topo: Topology
    profiles: ProfileSet
    nodes: dict[str, NodeProfile]
    arrivals_s: np.ndarray
    seeds: int

    @classmethod
    def of(cls, graph_file: Path, profile: Path, arrivals_s: np.ndarray, seeds: int) -> _Replay:
        graph = load_graph(graph_file)
        topo = topology_of(graph)
        names = [n.name for n in graph.spec.nodes]
        profiles = match_profiles([load_profile(profile)], graph.name, names, topo.gates)
        nodes = {n: profiles.by_node[n][CHECK_CLASS] for n in names}
        return cls(graph, topo, profiles, nodes, arrivals_s, seeds)

    def _configs(self, factors: dict[str, float]) -> dict[str, NodeConfig]:
        """Each node's configuration, its service times scaled by its factor."""
        return {
            n.name: node_config(
                replace(
                    self.nodes[n.name],
                    serving_factor=self.nodes[n.name].serving_factor * factors[n.name],
                    serving_overhead_ms=self.nodes[n.name].serving_overhead_ms * factors[n.name],
                ),
                n.batching.max_batch_size,
                n.batching.max_batch_time_ms,
                1,
            )
            for n in self.graph.spec.nodes
        }

    def run(
        self, factors: dict[str, float], replay: bool = True
    ) -> tuple[float, float, dict[str, float]]:
        """Mean p50 and p99 over the seeds, and each node's mean forward time per request."""
        configs = self._configs(factors)
        measured = self.arrivals_s >= WARMUP_S
        duration = float(self.arrivals_s[-1] - WARMUP_S)
        rate = float(measured.sum()) / duration
        p50, p99, forward = [], [], {n: [] for n in self.nodes}
        for seed in range(self.seeds):
            if replay:
                arrivals, counted = self.arrivals_s, measured
            else:  # a fresh draw of the same rate per seed
                arrivals = poisson_arrivals(rate, duration, np.random.default_rng(100 + seed))
                counted = np.ones(arrivals.size, dtype=bool)
            ingress_s = self.profiles.ingress_ms / 1000.0
            result = simulate(self.topo, configs, arrivals, self.profiles.branches, ingress_s, seed)
            latency_ms = result.latency_s[counted] * 1000.0
            p50.append(float(np.percentile(latency_ms, 50)))
            p99.append(float(np.percentile(latency_ms, 99)))
            for n, node_run in result.nodes.items():
                # what a request reports as inference_ms: its batch's whole forward time
                forward[n].append(node_run.forward_per_request_s * 1000.0)
        means = {n: float(np.mean(v)) for n, v in forward.items()}
        return float(np.mean(p50)), float(np.mean(p99)), means


def predict(
    graph_file: Path,
    profile: Path,
    arrivals_s: np.ndarray,
    forward_mean_ms: dict[str, float] | None = None,
    seeds: int = SERVICE_SEEDS,
) -> dict[str, Any]:
    """The simulator's p50/p99 for this configuration on the run's own arrivals, from the
    profile alone (averaged over `seeds` simulated runs).

    The simulator replays the arrivals the load tester sent (its seeded Poisson draw,
    warm-up included; percentiles over the measured ones), averaged over service-time
    draws: the issue's comparison "for the same configuration and trace". At batch 1 near
    saturation a p99 is set by a few busy periods, so two Poisson draws of the same rate
    give p99s 20 % apart; the rate-only prediction (the expectation over fresh draws, what
    `infergraph plan --rate` computes) is reported beside it.

    With `forward_mean_ms` (what each node's forward passes took on average during the real
    run, as its responses reported), every node's service times are also rescaled until the
    simulated means match: that prediction isolates the queueing and batching model from how
    far the machine drifted from the profile.
    """
    replay = _Replay.of(graph_file, profile, arrivals_s, seeds)
    run = replay.run
    nodes = replay.nodes
    ones = {n: 1.0 for n in nodes}
    p50, p99, forward = run(ones)
    _, rate_only_p99, _ = run(ones, replay=False)
    out: dict[str, Any] = {
        "p50_ms": p50,
        "p99_ms": p99,
        "rate_only_p99_ms": rate_only_p99,
        "forward_mean_ms": forward,
    }
    if forward_mean_ms:
        out["inrun_p50_ms"], out["inrun_p99_ms"], out["inrun_factors"] = _inrun(
            run, forward, forward_mean_ms
        )
    return out


def _inrun(
    run: Callable[[dict[str, float]], tuple[float, float, dict[str, float]]],
    forward: dict[str, float],
    measured: dict[str, float],
) -> tuple[float, float, dict[str, float]]:
    """The prediction with the passes rescaled until the bottleneck's mean matches the run's.

    What a request reports is its batch's whole pass, so that mean also depends on the batch
    sizes that formed, and those on the passes' speed: near saturation, slower passes make
    bigger batches and a much longer mean. One common search over the speed factor (which
    raises every node's mean) settles it by bisection on the bottleneck's mean; the other
    nodes keep the plain ratio (they queue little, so theirs is their speed).
    """
    bottleneck = max(forward, key=lambda n: forward[n])
    target = measured.get(bottleneck, forward[bottleneck])
    factors = {n: measured.get(n, forward[n]) / forward[n] for n in forward}
    low, high = INRUN_RANGE
    for _ in range(INRUN_STEPS):
        factors[bottleneck] = math.sqrt(low * high)
        _, _, means = run(factors)
        if means[bottleneck] < target:
            low = factors[bottleneck]
        else:
            high = factors[bottleneck]
    factors[bottleneck] = math.sqrt(low * high)
    p50, p99, _ = run(factors)
    return p50, p99, factors


def profile_served(
    graph_file: Path,
    url: str,
    rate: float,
    work: Path,
    tag: str,
    log: Path,
    payload: str = PAYLOAD,
    requests: int = 600,
) -> Path:
    """`infergraph profile --endpoint` of the configuration being checked, just before its run.

    What a user with a deployment does: its nodes timed where they are served, at the batch
    sizes it runs, and a sample sent through it at its own batching and at the load it is
    to carry (`--rate`, the run's own: a served pass slows with the decoding and the other
    node that share its machine; `--load` counts the bottleneck's one-at-a-time passes,
    where the run's rate counts its full batches, so at batch 8 and load 0.5 it asked
    about 15 % less than the run). Taken
    right before each run, so the prediction does not carry the machine's drift since the
    first profile (on this shared VM, 5-9 % in pass speed over half an hour, which moves a
    p99 at load 0.8 by 25-45 %); that first profile's prediction is kept beside it.
    """
    out = work / f"served-{tag}-profile.json"
    _cli(
        "profile",
        str(graph_file),
        "--endpoint",
        url,
        "--out",
        str(out),
        "--repeats",
        "20",
        "--requests",
        # a loaded half of 30-120 s: a 20 s window caught a slow spell's 10 %
        str(requests),
        "--rate",
        str(rate),
        "--payload",
        payload,
        "--hardware-class",
        CHECK_CLASS,
        log=log,
    )
    return out


@dataclass(frozen=True)
class Check:
    """What every checked configuration shares: where to work, how long and how often to run,
    and the first (in-process) profile whose prediction is kept beside the served one's."""

    work: Path
    log: Path
    duration: float
    runs: int
    first_profile: Path


@dataclass(frozen=True)
class Setting:
    """One checked configuration: the graph at one batch setting, served at `url`, one rate."""

    graph_file: Path
    url: str
    batch: int
    delay_ms: float
    load: float
    rate: float


def error_pct(predicted: float, measured: float) -> float:
    return 100.0 * abs(predicted - measured) / measured


def check_configuration(check: Check, setting: Setting, tag: str) -> dict[str, Any]:
    """Profile the served configuration, load-test it, and predict the same run."""
    served_profile = profile_served(
        setting.graph_file, setting.url, setting.rate, check.work, tag, check.log
    )
    # every run replays the same seeded arrivals: they differ by the machine alone
    measured = pooled(
        [
            measure(setting.url, setting.rate, check.duration, seed=int(setting.rate * 10))
            for _ in range(check.runs)
        ]
    )
    arrivals = measured["arrivals_s"]
    predicted = predict(setting.graph_file, served_profile, arrivals, measured["forward_mean_ms"])
    first = predict(setting.graph_file, check.first_profile, arrivals)
    p99, runs = measured["p99_ms"], measured["p99_runs_ms"]
    return {
        "part": "reality-check",
        "batch": setting.batch,
        "delay_ms": setting.delay_ms,
        "rate": setting.rate,
        # Rows re-run with --only sit beside older ones: each says how it was measured.
        "duration_s": check.duration,
        "runs": check.runs,
        "measured_p50_ms": measured["p50_ms"],
        "predicted_p50_ms": predicted["p50_ms"],
        "measured_p99_ms": p99,
        "predicted_p99_ms": predicted["p99_ms"],
        "p50_error_pct": error_pct(predicted["p50_ms"], measured["p50_ms"]),
        "p99_error_pct": error_pct(predicted["p99_ms"], p99),
        "measured_p99_interval_ms": measured["p99_interval_ms"],
        "measured_p99_runs_ms": runs,
        "p99_run_spread_pct": 100 * (max(runs) - min(runs)) / p99,
        "p99_error_per_run_pct": [error_pct(predicted["p99_ms"], run) for run in runs],
        "measured_service_p99_ms": measured["service_p99_ms"],
        "max_late_ms": measured["max_late_ms"],
        "p99_error_beyond_interval_pct": beyond_interval_pct(
            predicted["p99_ms"], p99, measured["p99_interval_ms"]
        ),
        "rate_only_predicted_p99_ms": predicted["rate_only_p99_ms"],
        "rate_only_p99_error_pct": error_pct(predicted["rate_only_p99_ms"], p99),
        "arrivals_replayed": int(np.sum(arrivals >= WARMUP_S)),
        "sent": measured["sent"],
        "first_profile_predicted_p50_ms": first["p50_ms"],
        "first_profile_predicted_p99_ms": first["p99_ms"],
        "first_profile_p99_error_pct": error_pct(first["p99_ms"], p99),
        "served_profile": _shown(served_profile),
        "inrun_predicted_p99_ms": predicted["inrun_p99_ms"],
        "inrun_p99_error_pct": error_pct(predicted["inrun_p99_ms"], p99),
        "forward_drift": predicted["inrun_factors"],
        "load": setting.load,
        "loadavg_1m": os.getloadavg()[0],
        "errors": measured["errors"],
        "late_or_dropped_pct": measured["late_or_dropped_pct"],
    }


def reality_check(
    work: Path, duration: float, quick: bool, runs: int = 1, only: set[str] | None = None
) -> list[dict[str, Any]]:
    log = work / "bench.log"
    big, small = _checkpoints(work)
    profile_graph_file = work / "check-profile.yaml"
    profile_graph_file.write_text(yaml.safe_dump(check_graph(big, small, 1, 0.0)))
    profile = work / "check-profile.json"
    with console.status("profiling the check graph (forward passes, hops)..."):
        _cli(
            "profile",
            str(profile_graph_file),
            "--out",
            str(profile),
            "--max-batch",
            "8",
            "--repeats",
            "20",
            "--requests",
            "200",  # enough for the hop's and the served pass's p99
            "--payload",
            PAYLOAD,
            "--hardware-class",
            CHECK_CLASS,
            log=log,
        )
    prof = load_profile(profile)
    resnet, vit = prof.nodes["resnet"], prof.nodes["vit"]
    console.print(
        f"profile: resnet b1 {resnet.median_ms(1):.1f} ms (x{resnet.serving_factor:.2f} "
        f"+ {resnet.serving_overhead_ms:.1f} ms in the server, spread {resnet.sigma(1):.2f}), "
        f"vit b1 {vit.median_ms(1):.1f} ms (spread {vit.sigma(1):.2f}), "
        f"hops {resnet.hop_ms:.1f} (p99 {resnet.hop_p99_ms:.1f}) + "
        f"{vit.hop_ms:.1f} (p99 {vit.hop_p99_ms:.1f}) ms"
    )
    # Loads are fractions of each setting's own capacity (the bottleneck's full batches), kept
    # under saturation, where a percentile is a property of the system rather than of the run.
    settings = [(1, 0.0, (0.3, 0.5, 0.7)), (4, 10.0, (0.4, 0.7)), (8, 20.0, (0.5, 0.8))]
    if quick:
        settings = [(1, 0.0, (0.5,)), (4, 10.0, (0.6,))]
    check = Check(work, log, duration, runs, profile)
    rows: list[dict[str, Any]] = []
    for batch, delay, loads in settings:
        if only is not None and not any(f"b{batch}-{load}" in only for load in loads):
            continue  # no server for a setting none of whose configurations is asked for
        graph_file = work / f"check-b{batch}.yaml"
        graph_file.write_text(yaml.safe_dump(check_graph(big, small, batch, delay)))
        with Served(graph_file, log) as url:
            for load in loads:
                tag = f"b{batch}-{load}"
                if only is not None and tag not in only:
                    continue
                capacity = batch / (resnet.median_ms(batch) / 1000.0)
                setting = Setting(graph_file, url, batch, delay, load, round(load * capacity, 2))
                rows.append(check_configuration(check, setting, tag))
                console.print(rows[-1])
    return rows


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def gpu_profiles_for(folder: Path | None, graph: str) -> list[Path]:
    """The profiles of `graph` taken on a GPU machine, from `folder` (none: CPU classes only)."""
    if folder is None:
        return []
    found = []
    for path in sorted(folder.glob(f"{graph}-*.json")):
        prof = load_profile(path)
        if prof.graph == graph and any(n.device.startswith("cuda") for n in prof.nodes.values()):
            found.append(path)
    return found


def _gpu_profile_sources(folder: Path | None) -> dict[str, Any] | None:
    """Where each GPU profile was taken: the machine and classes it records, and when."""
    if folder is None:
        return None
    out = {}
    for name in ("cascade", "video"):
        for path in gpu_profiles_for(folder, name):
            prof = load_profile(path)
            out[_shown(path)] = {
                "hardware": prof.hardware,
                "classes": sorted({n.hardware_class for n in prof.nodes.values()}),
                "created": prof.created,
                "graph_pass": prof.settings.get("requests", 0) > 0,
            }
    return out


def _cost_profile(work: Path, graph_file: Path, scale: str, max_batch: int, log: Path) -> Path:
    """The graph's profile for the cost part, taken once per work folder."""
    name = graph_file.stem
    profile = work / f"{name}-{scale}-profile.json"
    if profile.exists():
        console.print(f"reusing {profile} (remove it to profile again)")
        return profile
    with console.status(f"profiling '{name}' ({scale} checkpoints)..."):
        _cli(
            "profile", str(graph_file), "--out", str(profile), "--offline",
            "--offline-scale", scale, "--max-batch", str(max_batch), "--repeats", "15",
            "--requests", "30", "--hardware-class", CHECK_CLASS, log=log,
        )  # fmt: skip
    return profile


def _cost_row(
    name: str,
    label: str,
    scale: str,
    gpu: list[Path],
    outcome: PlanOutcome,
    wall: float,
    slo_ms: float,
) -> dict[str, Any]:
    """One planned (or baseline) configuration of a graph, as the cost part reports it."""
    return {
        "part": "cost",
        "graph": name,
        "config": label,
        "scale": scale,
        "classes": sorted(
            {c for n in outcome.profiles.by_node for c in outcome.profiles.classes(n)}
        ),
        "scenario": "cpu+gpu" if gpu else "cpu",
        "gpu_profiles": [_shown(p) for p in gpu],
        "usd_per_hour": outcome.usd_per_hour,
        "peak_usd_per_hour": outcome.peak_usd_per_hour,
        "autoscale": outcome.inputs.autoscale,
        "usd_per_million": outcome.usd_per_million(),
        "p99_ms": outcome.final.latency_ms,
        "slo_ms": slo_ms,
        "slo_attainment": outcome.attainment,
        "planner_seconds": wall,
        "simulations": outcome.search.simulations,
        "nodes": {
            n: f"{o.hardware} b{o.max_batch_size} {o.max_batch_time_ms:g}ms"
            f" x{o.replicas} (mean {outcome.final.mean_replicas[n]:.2f})"
            for n, o in outcome.final.options.items()
        },
        "branches": outcome.profiles.branches,
    }


def cost_check(
    work: Path, mean: float, peak: float, seconds: int, scale: str, gpu_folder: Path | None
) -> list[dict[str, Any]]:
    """Plan each graph on the trace; with GPU profiles, every node may also take a GPU class."""
    from async_load_tester.schedule import generate_trace

    log = work / "bench.log"
    trace = work / "diurnal.txt"
    counts = generate_trace(mean, peak, seconds, seed=1, period=seconds)
    trace.write_text("\n".join(str(c) for c in counts) + "\n")
    workload = Workload.from_trace(trace)
    catalog = load_catalog()
    rows = []
    for name, max_batch in (("cascade", 16), ("video", 8)):
        gpu = gpu_profiles_for(gpu_folder, name)
        if gpu_folder is not None and not gpu:
            continue  # a GPU scenario for the graphs that have a GPU profile only
        graph_file = REPO / "k8s" / "graphs" / f"{name}.yaml"
        profile = _cost_profile(work, graph_file, scale, max_batch, log)
        graph = load_graph(graph_file)
        slo = graph.spec.slo
        assert slo is not None
        outcomes = {}
        # The plan with its tuned autoscalers (`infergraph plan --autoscale all`) against the
        # batch-1 configuration held at its peak replicas all day.
        for label, batches, autoscale in (
            ("planned", None, "all"),
            ("batch-1 baseline", [1], "off"),
        ):
            settings = SearchSettings(
                slo_ms=slo.latency_ms,
                percentile=99.0,
                batch_sizes=batches,
                max_replicas=MAX_REPLICAS,
            )
            started = time.perf_counter()
            outcome = plan_graph(
                PlanInputs(
                    graph,
                    [profile, *gpu],
                    workload,
                    catalog,
                    settings,
                    headroom=0.1,
                    autoscale=autoscale,
                )
            )
            outcomes[label] = (outcome, time.perf_counter() - started)
        for label, (outcome, wall) in outcomes.items():
            rows.append(_cost_row(name, label, scale, gpu, outcome, wall, slo.latency_ms))
    return rows


def _reused_rows(path: Path, running: set[str]) -> dict[str, Any]:
    """Rows of the parts not run now, from an earlier complete run (named in the settings)."""
    import json

    earlier = json.loads(path.read_text())
    out: dict[str, Any] = {
        "created": earlier.get("created"),
        "summary": earlier.get("summary") or {},
        "settings": earlier.get("settings") or {},
    }
    for part, flag in (
        ("cost", "cost"),
        ("reality-check", "check"),
        ("search", "search"),
        ("controlled", "controlled"),
    ):
        if flag not in running:
            out[part] = [r for r in earlier["rows"] if r.get("part") == part]
    return out


def search_part(cases: int, seed: int) -> list[dict[str, Any]]:
    """The planner's choice against the exhaustive optimum on random small cases."""
    from benchmarks.search_cases import search_rows

    rows = search_rows(cases, seed)
    print_table(
        "planner search against exhaustive search (same space, same simulator)",
        rows,
        [
            "seed",
            "label",
            "optimum_usd_per_hour",
            "planner_usd_per_hour",
            "gap_pct",
            "exhaustive_simulations",
            "planner_simulations",
        ],
    )
    return rows


def search_settings(cases: int, seed: int) -> dict[str, Any]:
    from benchmarks import search_cases as sc

    return {
        "cases": cases,
        "first_seed": seed,
        "shapes": list(sc.SHAPES),
        "hardware_classes": list(sc.CPU_CLASSES + sc.GPU_CLASSES),
        "batch_sizes": list(sc.BATCH_SIZES),
        "delays_ms": list(sc.DELAYS_MS),
        "max_replicas": sc.MAX_REPLICAS,
        "duration_s": sc.DURATION_S,
    }


SUMMARY_KEYS = (
    "controlled_p50_error_pct",
    "controlled_p99_error_pct",
    "real_p99_error_pct",
    "real_p99_spread_pct",
    "optimality_gap_pct_p95",
    "optimal_fraction",
    "cost_ratio",
    "slo_attainment",
    "planner_seconds",
)  # issue 28's keys, and only those: each is computed from the rows, none carried over


def summarise(
    check_rows: list[dict[str, Any]],
    cost_rows: list[dict[str, Any]],
    search_rows: list[dict[str, Any]],
    controlled: list[dict[str, Any]],
) -> dict[str, Any]:
    """The summary from the rows, this run's or reused ones alike (a key no row gives is None)."""
    from benchmarks.controlled_check import controlled_summary
    from benchmarks.search_cases import search_summary

    planned = [r for r in cost_rows if r["config"] == "planned"]
    ratios = cost_ratios(cost_rows).get("cpu", {})
    summary = {
        "cost_ratio": min(ratios.values(), default=None),
        "slo_attainment": min((r["slo_attainment"] for r in planned), default=None),
        "planner_seconds": max((r["planner_seconds"] for r in cost_rows), default=None),
        **real_summary(check_rows),
        **(search_summary(search_rows) if search_rows else {}),
        **controlled_summary(controlled),
    }
    return {key: summary.get(key) for key in SUMMARY_KEYS}


def cost_ratios(cost_rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per scenario and graph: the batch-1 baseline's $/hour over the planned one's."""
    ratios: dict[str, dict[str, float]] = {}
    for row in cost_rows:
        if row["config"] != "planned":
            continue
        scenario = row.get("scenario", "cpu")
        baseline = next(
            r
            for r in cost_rows
            if r["config"] == "batch-1 baseline"
            and r["graph"] == row["graph"]
            and r.get("scenario", "cpu") == scenario
        )
        ratios.setdefault(scenario, {})[row["graph"]] = (
            baseline["usd_per_hour"] / row["usd_per_hour"]
        )
    return ratios


def real_summary(check_rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The real-model check's row furthest past its goal (error within the run-to-run spread):
    its p99 error and its spread, side by side. A row of one run has no spread (None)."""
    if not check_rows:
        return {"real_p99_error_pct": None, "real_p99_spread_pct": None}

    def spread(row: dict[str, Any]) -> float | None:
        runs = row.get("measured_p99_runs_ms") or []
        return row.get("p99_run_spread_pct") if len(runs) > 1 else None

    worst = max(check_rows, key=lambda r: abs(r["p99_error_pct"]) - (spread(r) or 0.0))
    return {"real_p99_error_pct": abs(worst["p99_error_pct"]), "real_p99_spread_pct": spread(worst)}


def result_settings(
    args: argparse.Namespace, gpu_folder: Path | None, parts: set[str], reused: dict[str, Any]
) -> dict[str, Any]:
    """What each part ran with; reused parts keep the settings of the run that made them."""
    settings = {
        "reality_check": {
            "duration_s": args.duration,
            "runs_per_configuration": args.runs,
            "payload": PAYLOAD,
            "omp_num_threads": 1,
            "hardware_class": CHECK_CLASS,
        },
        "trace": {
            "mean": args.mean,
            "peak": args.peak,
            "seconds": args.trace_seconds,
            "period_s": args.trace_seconds,
            "seed": 1,
        },
        "cost_profiles": f"{args.cost_scale} offline checkpoints (random weights) on this "
        f"CPU, standing for {CHECK_CLASS}",
        "gpu_profiles": _gpu_profile_sources(gpu_folder),
        "max_replicas": MAX_REPLICAS,
        "reused": {
            "from": args.reuse,
            "parts": sorted(k for k in reused if k not in ("created", "summary", "settings")),
            "created": reused.get("created"),
        }
        if reused
        else None,
    }
    if "search" in parts:
        settings["search"] = search_settings(args.search_cases, args.search_seed)
    if "controlled" in parts:
        from benchmarks.controlled_check import controlled_settings

        settings["controlled"] = controlled_settings(
            args.controlled_duration, args.controlled_served_profiles
        )
    if reused:
        # settings of the reused parts are the earlier run's, not this run's defaults
        kept = {k: v for k, v in reused["settings"].items() if k != "reused"}
        if "check" in parts:
            kept.pop("reality_check", None)
        if "controlled" in parts:
            kept.pop("controlled", None)
        if "cost" in parts:
            for key in ("trace", "cost_profiles", "gpu_profiles", "max_replicas"):
                kept.pop(key, None)
        reused_from = {**settings["reused"], "earlier": reused["settings"].get("reused")}
        settings = {**settings, **kept, "reused": reused_from}
    return settings


def controlled_part(
    work: Path, duration: float, served_at_rate: bool, only: str | None = None
) -> list[dict[str, Any]]:
    """The simulator against controlled service times (`benchmarks/controlled_check.py`);
    `only`: comma-separated prefixes of the row tags to run (topology-bBATCH-LOAD-ARRIVALS)."""
    from benchmarks.controlled_check import ROWS, controlled_rows

    chosen = tuple(
        r for r in ROWS if only is None or any(r.tag.startswith(p) for p in only.split(","))
    )
    rows = controlled_rows(work, duration, served_at_rate, chosen)
    print_table(
        "simulator against controlled service times (local runner, this CPU)",
        rows,
        [
            "topology",
            "arrivals",
            "batch",
            "delay_ms",
            "load",
            "rate",
            "measured_p50_ms",
            "predicted_p50_ms",
            "measured_p99_ms",
            "predicted_p99_ms",
            "p50_error_pct",
            "p99_error_pct",
            "profile_p50_error_pct",
            "profile_p99_error_pct",
            "loadavg_1m",
        ],
    )
    return rows


def _arguments() -> argparse.Namespace:
    """The command line: which parts run, on what, and what stands in for the rest."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=240.0, help="measured seconds per rate")
    parser.add_argument("--mean", type=float, default=3000.0, help="trace mean req/s")
    parser.add_argument("--peak", type=float, default=12000.0, help="trace peak req/s")
    parser.add_argument(
        "--trace-seconds",
        type=int,
        default=3600,
        help="trace length; it holds one diurnal cycle (a day compressed, autoscaler timings not)",
    )
    parser.add_argument("--quick", action="store_true", help="two reality-check runs only")
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="load-test runs per checked configuration, back to back on the same arrivals; "
        "their latencies are pooled and each run's p99 is kept (its spread is the machine's, "
        "the yardstick the prediction's error is reported beside)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help="check only these configurations, tagged b<batch>-<load> (b8-0.8,b4-0.7); "
        "with --reuse the others' rows are kept (planner.json), else planner-partial",
    )
    parser.add_argument(
        "--parts",
        default="cost,check,search,controlled",
        help="comma-separated: cost, check, search (the planner against exhaustive search), "
        "controlled (the simulator against controlled service times)",
    )
    _later_arguments(parser)
    return parser.parse_args()


def _later_arguments(parser: argparse.ArgumentParser) -> None:
    """The controlled and search parts' settings, the work folder, the inputs reused."""
    parser.add_argument(
        "--controlled-served-profiles",
        action="store_true",
        help="controlled part: also profile each row's served configuration at its rate "
        "and predict from that (a diagnosis beside the one-profile headline)",
    )
    # 120 s: a batched row at load 0.3 serves about 900 requests in 40 s, whose p99 is its
    # 9th-largest latency, so one batch of 8 the machine held up moves it; two quiet 40 s
    # runs on the same arrivals and draws measured 217 and 249 ms there (2026-12-06).
    parser.add_argument(
        "--controlled-duration", type=float, default=120.0, help="measured seconds per row"
    )
    parser.add_argument(
        "--controlled-rows",
        default=None,
        help="controlled part: only rows whose tag starts with one of these (comma-separated; "
        "e.g. chain-b1,cascade)",
    )
    parser.add_argument("--search-cases", type=int, default=60, help="random cases, search part")
    parser.add_argument("--search-seed", type=int, default=0, help="first case's seed")
    parser.add_argument("--work", default=None, help="work folder (profiles in it are reused)")
    parser.add_argument(
        "--cost-scale",
        default="tiny",
        choices=("full", "tiny"),
        help="checkpoints profiled for the cost part: tiny ones, or full-size architectures "
        "(random weights, real compute; on this 2-core CPU a full ViT-base alone misses the "
        "cascade's 250 ms p99, so use full where a GPU is profiled)",
    )
    parser.add_argument(
        "--gpu-profiles",
        default="bench-results/profiles",
        help="folder of profiles taken on a GPU machine (`infergraph profile` there, named "
        "<graph>-*.json): the cost part plans once more at full size with GPU classes allowed; "
        "'none' to skip",
    )
    parser.add_argument(
        "--reuse",
        default=None,
        help="a previous planner.json whose rows, summary keys and settings stand in for the "
        "parts not run now",
    )


def _run_parts(
    args: argparse.Namespace, work: Path
) -> tuple[dict[str, list[dict[str, Any]]], set[str], dict[str, Any], Path | None]:
    """Each part's rows, run now or taken from --reuse; and what the summary needs to know."""
    parts = set(args.parts.split(","))
    only = set(args.only.split(",")) if args.only else None
    # With --only, the reused check rows stay but for the configurations checked again.
    running = parts - {"check"} if only else parts
    reused = _reused_rows(Path(args.reuse), running) if args.reuse else {}
    gpu_folder = None if args.gpu_profiles == "none" else REPO / args.gpu_profiles
    if "cost" in parts:
        trace = (args.mean, args.peak, args.trace_seconds)
        cost_rows = cost_check(work, *trace, args.cost_scale, None)
        if gpu_folder is not None:
            # GPU profiles hold full-size models: the CPU side of that plan is full-size too.
            cost_rows += cost_check(work, *trace, "full", gpu_folder)
    else:
        cost_rows = reused.get("cost", [])
    check_rows = reused.get("reality-check", [])
    if "check" in parts:
        kept = [r for r in check_rows if only and f"b{r['batch']}-{r['load']}" not in only]
        check_rows = kept + reality_check(work, args.duration, args.quick, args.runs, only)
    search_rows = (
        search_part(args.search_cases, args.search_seed)
        if "search" in parts
        else reused.get("search", [])
    )
    controlled = (
        controlled_part(
            work, args.controlled_duration, args.controlled_served_profiles, args.controlled_rows
        )
        if "controlled" in parts
        else reused.get("controlled", [])
    )
    rows = {"check": check_rows, "cost": cost_rows, "search": search_rows, "controlled": controlled}
    return rows, parts, reused, gpu_folder


def _print_tables(check_rows: list[dict[str, Any]], cost_rows: list[dict[str, Any]]) -> None:
    print_table(
        "simulator against the load tester (local runner, this CPU)",
        check_rows,
        [
            "batch",
            "delay_ms",
            "rate",
            "measured_p50_ms",
            "predicted_p50_ms",
            "measured_p99_ms",
            "predicted_p99_ms",
            "p99_error_pct",
            "p99_error_beyond_interval_pct",
            "first_profile_predicted_p99_ms",
            "rate_only_predicted_p99_ms",
            "inrun_predicted_p99_ms",
            "inrun_p99_error_pct",
            "loadavg_1m",
        ],
    )
    print_table(
        "planned against the peak-provisioned batch-1 baseline (simulated, diurnal trace)",
        cost_rows,
        [
            "scenario",
            "graph",
            "config",
            "usd_per_hour",
            "peak_usd_per_hour",
            "p99_ms",
            "slo_ms",
            "slo_attainment",
            "planner_seconds",
        ],
    )


def main() -> None:
    args = _arguments()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-planner-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"work folder and logs: {work}")
    rows, parts, reused, gpu_folder = _run_parts(args, work)
    check_rows, cost_rows = rows["check"], rows["cost"]
    search_rows, controlled = rows["search"], rows["controlled"]
    only = set(args.only.split(",")) if args.only else None
    _print_tables(check_rows, cost_rows)
    summary = summarise(check_rows, cost_rows, search_rows, controlled)
    complete = (parts >= {"cost", "check", "search", "controlled"} or bool(reused)) and not (
        args.quick or (only and not reused)
    )
    settings = result_settings(args, gpu_folder, parts, reused)
    path = write_results(
        "planner" if complete else "planner-partial",
        check_rows + cost_rows + search_rows + controlled,
        summary,
        settings,
    )
    console.print(summary)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
