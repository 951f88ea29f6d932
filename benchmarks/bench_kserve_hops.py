"""`make bench-kserve-hops`: what KServe's router way of passing JSON costs per request.

KServe publishes no router overhead (kserve/kserve#2703). Measured here on the local
equivalent, chains of N identity nodes (N = 1, 2, 4, 8) on real MLServer, at a steady
open-loop rate, three ways:

- `direct`: the client calls one model's V2 `/infer` (no router at all; N = 1 only).
- `local`: the kit's local router (`infergraph.runner`), one V2 call per node.
- `kserve`: the rendered InferenceGraph's root Sequence run as KServe's router runs it
  (`cmd/router/main.go`: read the body, POST the bytes to each step's `serviceUrl`, the next
  step gets the previous response bytes), behind its own HTTP server like the router pod,
  to the rendered InferenceServices' graph-step route, whose body carries the tensors so far
  that a later step or the graph's outputs read.

Per-hop cost is the least-squares slope of latency against N; the fixed cost is the
intercept. The router here is Python (aiohttp), not KServe's Go binary, so the figures bound
what the extra hop and the growing carried body cost, not the Go router's own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_hops import chain, open_loop
from benchmarks.common import console, percentiles, print_table, write_results
from benchmarks.step_cpu import step_cpu_rows
from infergraph.graph.plan import parse_graph
from infergraph.ports import free_port
from infergraph.render import EXAMPLE_STORAGE, RenderOptions
from infergraph.render import kserve as ks
from infergraph.runner.local import NodeServer, run_graph, wait_ready


def kserve_repository(graph: Any, folder: Path) -> dict[str, Any]:
    """Every rendered InferenceService's settings as MLServer folders; returns the IG spec."""
    plan, topology = ks.build(graph)
    options = RenderOptions(storage_uri=EXAMPLE_STORAGE)
    for service in topology.services.values():
        settings, _ = ks.model_settings(plan, service, options)
        target = folder / service.name
        target.mkdir(parents=True, exist_ok=True)
        (target / "model-settings.json").write_text(json.dumps(settings))
    return {"nodes": topology.nodes}


def sequence_router(spec: dict[str, Any], base: str) -> web.Application:
    """KServe's Sequence handling for a root of service steps, as an HTTP server."""
    steps = spec["nodes"]["root"]["steps"]
    assert all("serviceUrl" in s for s in steps), "only plain chains are benchmarked"
    urls = [base + "/" + s["serviceUrl"].removeprefix("http://").partition("/")[2] for s in steps]
    session: dict[str, aiohttp.ClientSession] = {}

    async def start(app: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    async def stop(app: web.Application) -> None:
        await session["s"].close()

    async def handle(request: web.Request) -> web.Response:
        data = await request.read()
        body, status = data, 200
        for i, url in enumerate(urls):
            sent = body if i > 0 else data
            async with session["s"].post(
                url, data=sent, headers={"Content-Type": "application/json"}
            ) as resp:
                body, status = await resp.read(), resp.status
            if status != 200:  # Hard dependency
                break
        return web.Response(body=body, status=status, content_type="application/json")

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_post("/", handle)
    return app


async def measure_kserve(n: int, rate: float, seconds: float, root: Path) -> dict[str, Any]:
    graph = parse_graph(chain(n))
    folder = root / f"kserve-{n}"
    folder.mkdir(parents=True)
    spec = kserve_repository(graph, folder)
    server = NodeServer([f"hop-{i}" for i in range(n)], folder, free_port(), free_port())
    server.start()
    runner = None
    try:
        await wait_ready([server], 300)
        runner = web.AppRunner(sequence_router(spec, server.base), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/"
        await open_loop(url, rate, 2.0)
        latencies, errors, late = await open_loop(url, rate, seconds)
    finally:
        if runner is not None:
            await runner.cleanup()
        server.stop()
    return row("kserve", n, rate, latencies, errors, late)


async def measure_local(n: int, rate: float, seconds: float) -> list[dict[str, Any]]:
    graph = parse_graph(chain(n))
    rows = []
    async with run_graph(graph) as running:
        if n == 1:
            direct = f"{running.servers[0].base}/v2/models/hop-0/infer"
            await open_loop(direct, rate, 2.0)
            rows.append(row("direct", 1, rate, *await open_loop(direct, rate, seconds)))
        await open_loop(running.infer_url, rate, 2.0)
        rows.append(row("local", n, rate, *await open_loop(running.infer_url, rate, seconds)))
    return rows


def row(
    mode: str, n: int, rate: float, latencies: list[float], errors: int, late: int
) -> dict[str, Any]:
    return {
        "mode": mode,
        "hops": n,
        "rate_rps": rate,
        "requests": len(latencies),
        "errors": errors,
        "late_sends": late,
        **percentiles(latencies),
    }


def fit(rows: list[dict[str, Any]], mode: str, key: str) -> tuple[float, float]:
    picked = [r for r in rows if r["mode"] == mode]
    slope, intercept = np.polyfit([r["hops"] for r in picked], [r[key] for r in picked], 1)
    return float(slope), float(intercept)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-kserve-") as tmp:
        for n in args.hops:
            rows.extend(await measure_local(n, args.rate, args.seconds))
            rows.append(await measure_kserve(n, args.rate, args.seconds, Path(tmp)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--hops", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument(
        "--step-sizes",
        type=int,
        nargs="*",
        default=[4, 3 * 224 * 224],
        help="FP32 elements per request for the step's server CPU (none: skip)",
    )
    parser.add_argument("--step-requests", type=int, default=500)
    args = parser.parse_args()
    rows = asyncio.run(run(args)) if args.hops else []
    steps = step_cpu_rows(args.step_sizes, args.step_requests) if args.step_sizes else []
    summary = _summary(rows, args.hops)
    summary["step_server_cpu_ms_per_request"] = {
        str(r["elements"]): round(r["server_cpu_ms_per_request"], 3) for r in steps
    }
    print_table(
        "KServe graph step: its server's CPU per request (first step of an identity chain)",
        steps,
        ["elements", "requests", "request_bytes", "response_bytes", "server_cpu_ms_per_request"],
    )
    if rows:
        _print_hops(rows, summary)
    path = write_results("kserve-hops", rows + steps, summary, vars(args))
    console.print(f"wrote {path}")


def _summary(rows: list[dict[str, Any]], hops: list[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if not rows:
        return summary
    for mode in ("local", "kserve"):
        for key in ("p50_ms", "p99_ms"):
            slope, intercept = fit(rows, mode, key)
            summary[f"{mode}_{key}_per_hop"] = slope
            summary[f"{mode}_{key}_fixed"] = intercept
    by = {(r["mode"], r["hops"]): r for r in rows}
    summary["kserve_minus_local_p50_ms"] = {
        n: by[("kserve", n)]["p50_ms"] - by[("local", n)]["p50_ms"] for n in hops
    }
    if ("direct", 1) in by:
        summary["kserve_router_hop_p50_ms"] = (
            by[("kserve", 1)]["p50_ms"] - by[("direct", 1)]["p50_ms"]
        )
    summary["transport"] = "HTTP/JSON keep-alive on loopback, identity nodes, one MLServer"
    return summary


def _print_hops(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print_table(
        "KServe-style router vs local router: latency by chain length",
        rows,
        ["mode", "hops", "rate_rps", "requests", "errors", "late_sends", "p50_ms", "p99_ms"],
    )
    console.print(
        f"per hop p50: local {summary['local_p50_ms_per_hop']:.3f} ms, "
        f"kserve {summary['kserve_p50_ms_per_hop']:.3f} ms; "
        f"router hop (kserve N=1 minus direct) p50 "
        f"{summary.get('kserve_router_hop_p50_ms', float('nan')):.3f} ms"
    )


if __name__ == "__main__":
    main()
