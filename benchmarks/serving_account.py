"""Where a served request's CPU goes: the server's threads from /proc, split by py-spy.

The server process's CPU over a window of load comes from `/proc/<pid>/task/*/stat`, per
thread. py-spy (`record --threads --nonblocking --format raw`, attached to the running
`mlserver start`) samples the Python stacks of the same threads; each Python thread's CPU is
split over the stages below by the share of its active samples whose innermost recognised
frame belongs to that stage. Threads py-spy never sees (torch's intra-op workers) count as
the forward pass. The load generator's own CPU is this process's over the same window.

Sampling needs ptrace on the server (`CAP_SYS_PTRACE`, or yama's ptrace_scope 0 for a
child); where it is refused the account says so and keeps the /proc totals only.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# Stage -> patterns of a frame "function (file:line)"; the innermost frame that matches any
# stage decides a sample. Order matters only within one frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "prepare",
        (
            "tokeniz",
            "encode_texts",
            "decode_texts",
            "image_process",
            "feature_extr",
            "PIL/",
            "/components/text.py",
            "prepare (",
        ),
    ),
    (
        "forward",
        ("torch/", "transformers/models", "sentence_transformers/", "run_batch (", "torchscript"),
    ),
    (
        "encode",
        (
            "encode_outputs",
            "encode_json",
            "http_body",
            "write_response",
            "starlette/responses.py",
            "encode_to_json",
            "gzip",  # the response's compression, by MLServer's middleware or rest_fast_path
            "_compress (",
        ),
    ),
    (
        "validate",
        (
            "infergraph/serving/protocol.py",
            "decode_json",
            "_check_numbers",
            "_flatten",
            "element_count",
            "pydantic",
            "_as_dict",
        ),
    ),
    ("decode", ("_decode (", "binary.py", "json/decoder", "json/__init__")),
    ("metrics", ("prometheus_client", "model_config.py", "_measured (")),
    (
        "queue_handoff",
        (
            "batcher.py",
            "engine.py",
            "concurrent/futures",
            "asyncio/",
            "threading.py",
            "queue.py",
            "run_in_executor",
        ),
    ),
    (
        "http",
        (
            "uvicorn/",
            "starlette/",
            "fastapi/",
            "h11",
            "httptools",
            "mlserver/rest",
            "mlserver/handlers",
            "anyio/",
            "mlserver_runtime.py",
            "mlserver_hooks.py",
        ),
    ),
)
# Native-thread CPU (no Python stack): torch's intra-op pool, tokenizers' Rust pool.
NATIVE = "forward"
LOOP_ONLY = "loop_native"  # a sample with no recognised frame: uvloop's own C (sockets, timers)
COLUMNS = (
    "http",
    "decode",
    "validate",
    "prepare",
    "queue_handoff",
    "forward",
    "encode",
    "metrics",
    LOOP_ONLY,
)
_HEADER = re.compile(r"^thread \((\d+)\)")
CLOCK = os.sysconf("SC_CLK_TCK")


# Frames every sample of the event loop's thread has below it: they decide nothing.
ROOTS = ("asyncio/runners.py", "click/", "mlserver/cli/", "bin/mlserver")


def classify(frames: list[str]) -> str:
    """The stage of one sample: its innermost frame that a stage claims."""
    for frame in reversed(frames):
        if any(root in frame for root in ROOTS):
            continue
        for stage, patterns in STAGES:
            if any(p in frame for p in patterns):
                return stage
    return LOOP_ONLY


def parse_raw(text: str) -> dict[int, Counter[str]]:
    """py-spy's raw (collapsed) output with --threads -> samples per stage, per thread id."""
    threads: dict[int, Counter[str]] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        match = _HEADER.match(stack)
        if not match or not count.isdigit():
            continue
        frames = stack.split(";")[1:]
        threads.setdefault(int(match.group(1)), Counter())[classify(frames)] += int(count)
    return threads


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each live thread of `pid`."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended between listing and reading
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds of the whole process, ended threads included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def cores_while[T](pid: int, run: Callable[[], T]) -> tuple[T, float]:
    """`run()`'s result, and the cores `pid` used while it ran: CPU seconds over the wall
    seconds it really took (a closed loop's window ends when its last request answers,
    which under load is well past the seconds it was asked to send for)."""
    cpu, wall = process_cpu(pid), time.perf_counter()
    result = run()
    return result, (process_cpu(pid) - cpu) / (time.perf_counter() - wall)


@dataclass
class Account:
    """Per-request CPU (microseconds) of one window of load, by stage."""

    requests: int
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    stages_us: dict[str, float] = field(default_factory=dict)
    sampled: bool = False
    note: str = ""

    def row(self) -> dict[str, float | int | str | bool]:
        per = 1e6 / max(self.requests, 1)
        server_us = self.server_cpu_s * per
        forward = self.stages_us.get("forward", 0.0)
        return {
            "requests": self.requests,
            "rps": self.requests / self.seconds,
            "server_cores": self.server_cpu_s / self.seconds,
            "server_us": server_us,
            **{f"{k}_us": self.stages_us.get(k, 0.0) for k in COLUMNS},
            "unattributed_us": server_us - sum(self.stages_us.values()),
            "client_us": self.client_cpu_s * per,
            "outside_forward_share": 1 - forward / server_us if server_us else float("nan"),
            "sampled": self.sampled,
            "note": self.note,
        }


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


async def account(
    pid: int, drive: Callable[[float], Awaitable[int]], seconds: float, sample: bool = True
) -> Account:
    """Run `drive(seconds)` (returns requests answered) while measuring and sampling `pid`."""
    exe = py_spy() if sample else None
    raw = Path(tempfile.mkstemp(prefix="py-spy-", suffix=".txt")[1])
    before, total_before = thread_cpu(pid), process_cpu(pid)
    client_before, started = time.process_time(), time.perf_counter()
    spy = None
    if exe:
        cmd = [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--threads",
            "--nonblocking",
            "--full-filenames",
            "--format",
            "raw",
            "-o",
            str(raw),
        ]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    requests = await drive(seconds)
    elapsed = time.perf_counter() - started
    client = time.process_time() - client_before
    after, total = thread_cpu(pid), process_cpu(pid) - total_before
    result = Account(requests, elapsed, total, client)
    if spy is not None:
        _, err = await asyncio.to_thread(spy.communicate)
        if spy.returncode != 0:
            result.note = f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-200:]}"
    samples = parse_raw(raw.read_text()) if raw.exists() else {}
    raw.unlink(missing_ok=True)
    result.sampled = bool(samples)
    per = 1e6 / max(requests, 1)
    for tid, cpu in after.items():
        spent = (cpu - before.get(tid, 0.0)) * per
        counts = samples.get(tid)
        if not counts:
            stage = NATIVE if samples else "unsampled"
            result.stages_us[stage] = result.stages_us.get(stage, 0.0) + spent
            continue
        n = sum(counts.values())
        for stage, k in counts.items():
            result.stages_us[stage] = result.stages_us.get(stage, 0.0) + spent * k / n
    return result
