"""The operator's own Prometheus metrics, served on `/metrics` of the metrics port.

Kept in a registry of its own (not the process-wide default) so tests and a second operator in
one process never share counters.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "infergraph_operator_reconciles",
            "Reconcile passes over an InferenceGraph, by trigger and result.",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "infergraph_operator_reconcile_errors",
            "Reconcile passes that failed, by stage (validate, render, apply, prune).",
            ["stage"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "infergraph_operator_reconcile_duration_seconds",
            "Wall time of one reconcile pass, by trigger.",
            ["trigger"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


async def serve(metrics: OperatorMetrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the `/metrics` HTTP server in the running loop; the caller cleans it up."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
