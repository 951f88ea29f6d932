"""How long a new pod of a node takes to answer ready: a fresh `mlserver start`, timed.

The in-process load (`profiler.timed_load`) is checkpoint to ready in a process that has
already imported MLServer, torch and the model's framework. A new pod has not: its server
process starts, imports all of that (6-8 s on the 2-core VM from compiled bytecode, 18-21 s
without, `docs/benchmarks.md` "make bench-coldstart"; CUDA's set-up too on a GPU node), then
loads. So the node is started here as its pod starts it, alone in its own server from its
`model-settings.json`, and timed from the process's start to its answering ready.
What the pod spends before its container starts (scheduling, the image pull) is not in it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from infergraph.errors import InfergraphError
from infergraph.graph.model import Node
from infergraph.ports import free_port
from infergraph.runner.local import NodeServer, wait_ready
from infergraph.runner.repository import write_model_folder

POLL_S = 0.05  # between readiness probes: small beside a start of seconds


class ServerStartError(InfergraphError):
    """No `mlserver` to start here (an exit or a timeout is the runner's `RunnerError`)."""


def server_start_seconds(node: Node, model_uri: str | None, timeout_s: float = 600.0) -> float:
    """Seconds from `mlserver start` of `node` alone (loading `model_uri`) to the server
    answering `/v2/health/ready` (its one model loaded), asked as the local runner asks
    (`runner.local.wait_ready`); the server is stopped before returning."""
    with tempfile.TemporaryDirectory(prefix=f"infergraph-start-{node.name}-") as tmp:
        folder = Path(tmp)
        write_model_folder(node, folder, model_uri)  # as the local runner writes it
        server = NodeServer([node.name], folder, free_port(), free_port())
        started = time.perf_counter()
        try:
            server.start()
        except OSError as exc:  # no `mlserver` to run here
            raise ServerStartError(
                f"node '{node.name}': cannot start `mlserver` to time its server's start "
                f"({exc}); install MLServer here or profile with --skip-server-start"
            ) from None
        try:
            asyncio.run(wait_ready([server], timeout_s, poll_s=POLL_S))
            return time.perf_counter() - started
        finally:
            server.stop()
