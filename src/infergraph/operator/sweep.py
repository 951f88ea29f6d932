"""Delete the children that live outside their graph's namespace once their graph is gone.

A Seldon v2 ServerConfig must live in Seldon's controller namespace, so it cannot carry an
ownerReference to its graph (a namespaced dependent with an owner in another namespace is
treated as orphaned and deleted by the garbage collector). The graph is named by labels
instead (`children.OWNER_UID_LABEL`, `OWNER_NAMESPACE_LABEL`, the graph label), and this sweep,
run every drift interval, deletes the ones whose graph no longer exists (or is a new graph
with the same name: another uid). No finalizer is needed, so a graph deleted while the operator
is down is swept at its next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import kopf

from infergraph.graph.crd import GROUP, VERSION
from infergraph.json_types import Manifest, at
from infergraph.operator.children import (
    MANAGED_BY,
    OWNER_NAMESPACE_LABEL,
    OWNER_UID_LABEL,
    SERVER_CONFIG_API,
)
from infergraph.operator.kube import KubeClient, KubeError
from infergraph.operator.objects import labels_of, name_of
from infergraph.render.common import GRAPH_LABEL

logger = logging.getLogger(__name__)


def _owner(obj: Manifest) -> tuple[str, str, str] | None:
    """(graph namespace, graph name, graph uid) of a relocated child of ours, else None."""
    labels = labels_of(obj)
    if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY:
        return None
    graph_ns, graph, uid = (
        labels.get(OWNER_NAMESPACE_LABEL),
        labels.get(GRAPH_LABEL),
        labels.get(OWNER_UID_LABEL),
    )
    if not (graph_ns and graph and uid):
        return None
    return graph_ns, graph, uid


async def sweep(client: KubeClient, namespace: str) -> list[str]:
    """One sweep of `namespace`: the names of the ServerConfigs deleted."""
    removed = []
    for obj in await client.list(SERVER_CONFIG_API, "ServerConfig", namespace):
        owner = _owner(obj)
        if owner is None:
            continue
        graph_ns, graph, uid = owner
        live = await client.get(f"{GROUP}/{VERSION}", "InferenceGraph", graph_ns, graph)
        if live is None or at(live, "metadata").get("uid") != uid:
            name = name_of(obj)
            await client.delete(SERVER_CONFIG_API, "ServerConfig", namespace, name)
            removed.append(name)
    return removed


async def sweep_forever(
    client: Callable[[], Awaitable[KubeClient]], namespace: str, interval_s: float
) -> None:
    """Sweep every `interval_s` until cancelled; a failed sweep is logged and tried again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await sweep(await client(), namespace)
        except (KubeError, kopf.TemporaryError) as exc:  # not logged in yet, API refused
            logger.warning("sweep of %s failed: %s", namespace, exc)
            continue
        if removed:
            logger.info("deleted ServerConfigs of deleted graphs in %s: %s", namespace, removed)
