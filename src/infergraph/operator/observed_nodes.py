"""The cluster's Nodes as the operator reads them: what a node of each instance type leaves a
new pod, for the Schedulable condition and the price (`cost.observed`).

Opt-in (`INFERGRAPH_OBSERVE_NODES`, the chart's `observeNodes`): it lists every Node and every
Pod, which needs cluster-wide read access to both. Re-read at most every `refresh_s`, not per
pass; a refused or failed list is logged once and leaves the catalog's own figures in force.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from infergraph.cost.observed import NodeRoom, node_rooms, per_node
from infergraph.errors import InfergraphError
from infergraph.json_types import Manifest
from infergraph.operator.kube import KubeClient, KubeError

log = logging.getLogger(__name__)


class ObservedNodes:
    """Per-node room of the cluster's labelled Nodes, kept for `refresh_s` seconds."""

    def __init__(self, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh_s = refresh_s
        self._clock = clock
        self._read_at: float | None = None
        self._rooms: list[NodeRoom] = []
        self._failing = False
        # One read at a time: passes that ask while it is under way (every graph's resume
        # pass at start) wait for its result rather than take the empty list before it.
        self._reading = asyncio.Lock()

    async def rooms(self, client: KubeClient) -> list[NodeRoom]:
        async with self._reading:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.refresh_s:
                await self._read(client)
                self._read_at = now  # a read cut short (cancelled) leaves the next pass to read
            return self._rooms

    async def _read(self, client: KubeClient) -> None:
        """The Nodes and their per-node pods; a failed list leaves none (the catalog's figures
        stand), logged once until a read succeeds again."""
        try:
            nodes = await client.list("v1", "Node", None)
            pods = await per_node_pods(client)
            self._rooms = node_rooms(nodes, pods)
        except (KubeError, InfergraphError) as exc:
            if not self._failing:
                log.warning("cannot read the cluster's Nodes, pricing by the catalog: %s", exc)
            self._failing, self._rooms = True, []
            return
        self._failing = False


# Pods that have finished hold nothing on their node: the API server leaves them out.
RUNNING_PODS = "status.phase!=Succeeded,status.phase!=Failed"


async def per_node_pods(client: KubeClient) -> list[Manifest]:
    """The cluster's DaemonSet and mirror pods (what every node of a pool runs), read a page
    at a time and the rest dropped page by page: a cluster's thousands of Pods, managedFields
    and all, never sit in the operator's memory at once."""
    return await client.list("v1", "Pod", None, field_selector=RUNNING_PODS, keep=per_node)
