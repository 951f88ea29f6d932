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
from infergraph.json_types import JSONShapeError, Manifest, at
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


def _readable_owner(obj: Manifest, namespace: str) -> tuple[str, str, str] | None:
    """`_owner`, or None (logged) for an object whose metadata is not the shape the API
    serves: one object written by hand must not keep the sweep from the rest."""
    try:
        return _owner(obj)
    except JSONShapeError as exc:
        meta = obj.get("metadata")
        name = meta.get("name", "?") if isinstance(meta, dict) else "?"
        logger.warning("sweep of %s skips ServerConfig %s: %s", namespace, name, exc)
        return None


async def sweep(client: KubeClient, namespace: str) -> list[str]:
    """One sweep of `namespace`: the names of the ServerConfigs deleted."""
    removed = []
    for obj in await client.list(SERVER_CONFIG_API, "ServerConfig", namespace):
        owner = _readable_owner(obj, namespace)
        if owner is None:
            continue
        graph_ns, graph, uid = owner
        try:
            live = await client.get(f"{GROUP}/{VERSION}", "InferenceGraph", graph_ns, graph)
        except KubeError as exc:
            if exc.status != 403:
                raise
            # Another release's graph (namespaced installs sharing Seldon's namespace): not
            # ours to judge, and no reason to stop sweeping our own.
            logger.debug("sweep of %s skips %s: %s", namespace, name_of(obj), exc)
            continue
        if live is None or at(live, "metadata").get("uid") != uid:
            name = name_of(obj)
            await client.delete(SERVER_CONFIG_API, "ServerConfig", namespace, name)
            removed.append(name)
    return removed


async def sweep_forever(
    client: Callable[[], Awaitable[KubeClient]], namespace: str, interval_s: float
) -> None:
    """Sweep every `interval_s` until cancelled; a failed sweep is logged and tried again.

    Nothing a sweep meets ends the loop: this task runs beside kopf's handlers for the
    operator's whole life, and once it ended no relocated child would be deleted again."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            removed = await sweep(await client(), namespace)
        except (KubeError, kopf.TemporaryError, JSONShapeError) as exc:  # API refused, odd answer
            logger.warning("sweep of %s failed: %s", namespace, exc)
            continue
        except Exception:  # a defect of ours: logged with its traceback, and swept again
            logger.exception("sweep of %s failed", namespace)
            continue
        if removed:
            logger.info("deleted ServerConfigs of deleted graphs in %s: %s", namespace, removed)
