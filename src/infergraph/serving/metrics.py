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
# The runtime's outcomes: answered; refused as the client's mistake (4xx); failed here (5xx);
# given up by the client before its answer (a gRPC deadline or cancellation), no fault of the
# server's and not an error; refused at once because the batch queue was full
# (`batching.maxQueueRows`, HTTP 503 / gRPC UNAVAILABLE), overload rather than a fault.
# The Seldon v1 unit counts the first three (seldon_metrics).
OUTCOMES = ("ok", "bad_input", "error", "cancelled", "rejected")
CUDA_UNUSABLE = Gauge(
    "infergraph_cuda_unusable",
    "1 when the model's `device: auto` found a GPU in its pod that torch cannot use, by reason "
    "(driver_too_old, no_driver, cpu_only_torch, cuda_unusable); the model then fails to load",
    ["model", "reason"],
)
