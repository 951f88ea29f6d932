"""`make demo`: the embedded default end to end, on one machine with no cluster and no hub.

Serves a graph with `infergraph serve --offline` in its own process (real
architectures, random weights), drives it with the async load tester at an open-loop
rate, prints the latency, per-node breakdown and cost report, and stops everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from infergraph.errors import InfergraphError
from infergraph.graph.model import load_graph

console = Console(width=max(Console().width, 150))


class DemoError(InfergraphError):
    """The demo graph did not come up or the load run failed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with console.status("building offline checkpoints and starting MLServer..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(f"graph server exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise DemoError(f"graph not ready after {timeout:.0f}s; log: {log}")


def _print_cost(graph_cost: dict[str, Any] | None, throughput_rps: float) -> None:
    """What the graph costs as deployed in its file, and per million at this throughput."""
    if not graph_cost:
        return
    table = Table(title=f"cost of '{graph_cost['graph']}' as its graph file deploys it")
    for col in ("node", "hardware", "replicas", "share of instance", "bound by", "$/hour"):
        table.add_column(col, justify="right")
    for node in graph_cost["nodes"]:
        table.add_row(
            node["node"],
            node["hardware"],
            str(node["replicas"]),
            f"{node['share']:.2f}",
            node["bound_by"],
            f"{node['usd_per_hour']:.4f}",
        )
    console.print(table)
    hourly = graph_cost["usd_per_hour"]
    if throughput_rps > 0:
        per_million = hourly / (throughput_rps * 3600.0) * 1e6
        console.print(
            f"${hourly:.4f}/hour at {throughput_rps:.2f} req/s measured = "
            f"[bold]${per_million:.2f} per million inferences[/] (at this offered load; "
            "`async-load-tester run --sweep` finds the cheapest load that meets the SLO)"
        )


def run_demo(graph_file: Path, rate: float, duration: float, warmup: float, out: Path) -> None:
    try:
        from async_load_tester import LoadConfig, run_load
    except ImportError as exc:
        raise DemoError("the demo needs the async-load-tester package (uv sync)") from exc

    graph = load_graph(graph_file)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="infergraph-demo-", suffix=".log")[1])
    console.rule(f"[bold]infergraph demo: '{graph.name}' graph")
    console.print(f"{graph.spec.description}\n")
    console.print(
        "[bold yellow]OFFLINE: no model hub here, so every node is its real architecture "
        "with RANDOM weights. Outputs are meaningless; latency, throughput and cost are real.[/]"
    )
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infergraph.cli",
                "serve",
                str(graph_file),
                "--offline",
                "--port",
                str(port),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    try:
        _wait_ready(url, proc, log, timeout=900)
        console.print(f"[green]graph ready[/] at {url}/v2/models/{graph.name}/infer\n")
        slo = graph.spec.slo
        config = LoadConfig(
            target=url,
            model=graph.name,
            protocol="v2-rest",
            payload="synthetic:image",
            input_name=graph.spec.inputs[0].name,
            rate=rate,
            arrival="poisson",
            duration=duration,
            warmup=warmup,
            graph=graph_file,
            slo_ms=slo.latency_ms if slo else None,
            slo_percentile=slo.percentile if slo else None,
            timeout_s=60,
        )
        result = run_load(config)
        console.print(result.summary_table())
        stages = result.stages_table()
        if stages is not None:
            console.print(stages)
        _print_cost(result.graph_cost, result.steps[-1].throughput_rps)
        paths = result.write(out)
        console.print(f"results: {', '.join(str(p) for p in paths.values())}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        console.print("graph server stopped")
