"""Prometheus series each runtime pod exports; the rendered HPA / KEDA scalers query them.

Kept apart from the MLServer adapter because MLServer re-imports (reloads) a model's
implementation module, and a collector may only be registered once per process. With
`parallel_workers: 0`, MLServer's metrics endpoint serves prometheus_client's default
registry, so these appear beside MLServer's own series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

INFLIGHT = Gauge("infergraph_inflight_requests", "Requests being served by the model", ["model"])
QUEUE = Gauge("infergraph_batch_queue_size", "Rows waiting for a forward pass", ["model"])
REQUESTS = Counter("infergraph_requests", "Requests served, by outcome", ["model", "outcome"])
