"""Autoscaling targets and bounds that hold a planned configuration's latency as load moves.

The plan says how many replicas carry the peak within the SLO; the simulation of
that plan says how much each replica then does (requests/s, utilisation, in-flight
requests). Those per-replica figures at the peak are the targets: an autoscaler
that keeps every replica at or under them keeps each replica's load at or under
what the simulation accepted, whatever the total rate. The peak is the one the
autoscaler's metric sees (the rate over its query window), so short bursts inside
that window stay within the planned replicas rather than under-sizing the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infergraph.graph.model import Autoscaling


@dataclass(frozen=True)
class ScalingAdvice:
    node: str
    engine: str
    metric: str
    target: float
    min_replicas: int
    max_replicas: int
    per_replica_rps: float
    why: str


def tune(
    node: str,
    spec: Autoscaling | None,
    replicas: int,
    max_batch_size: int,
    peak_node_rps: float,
    trough_node_rps: float,
    utilisation: float,
    latency_s: float,
    max_queue_rows: int | None = None,
) -> ScalingAdvice:
    """Targets for one node; `spec` is the graph's autoscaling block (engine, metric, bounds).

    A `queue` target sits below the node's queue bound (`batching.maxQueueRows`): a
    replica's waiting rows never pass it, so a target at the bound would never ask for a
    pod; half the bound asks before requests start being refused.
    """
    engine = spec.engine if spec else "hpa"
    metric = spec.metric if spec else "rps"
    per_replica = peak_node_rps / max(replicas, 1)
    if metric == "rps":
        target = max(per_replica, 0.01)
        why = "requests/s one replica carried at the planned peak"
    elif metric in ("cpu", "gpu"):
        target = float(min(95, max(10, round(utilisation * 100))))
        why = f"{metric} utilisation % of a replica at the planned peak"
    elif metric == "inflight":
        target = max(1.0, round(per_replica * latency_s, 1))
        why = "requests in flight per replica at the peak (rate x latency, Little's law)"
    else:  # queue
        target = float(max_batch_size)
        why = "rows waiting per replica: more than one full batch means it is falling behind"
        if max_queue_rows is not None and target > max_queue_rows / 2:
            target = max(1.0, float(max_queue_rows // 2))
            why = "rows waiting per replica: half its queue bound, before it refuses requests"
    if spec is not None and spec.min_replicas == 0:
        min_replicas = 0  # the graph chose scale to zero (and its cold starts): keep it
    elif per_replica > 0:
        min_replicas = min(replicas, max(1, math.ceil(trough_node_rps / per_replica - 1e-9)))
    else:
        min_replicas = 1
    max_replicas = 2 * max(replicas, 1)  # room for rates above the planned peak
    return ScalingAdvice(
        node, engine, metric, round(target, 3), min_replicas, max_replicas, per_replica, why
    )
