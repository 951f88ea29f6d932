"""How long a new pod of a node takes to answer ready: a fresh `mlserver start`, timed.

The in-process load (`profiler.timed_load`) is checkpoint to ready in a process that has
already imported MLServer, torch and the model's framework. A new pod has not: its server
process starts, imports all of that (6-8 s on the 2-core VM from compiled bytecode, 18-21 s
without, `docs/benchmarks.md` "make bench-coldstart"; CUDA's set-up too on a GPU node), then
loads. So the node is started here as its pod starts it, alone in its own server from its
`model-settings.json`, and timed from the process's start to its model answering ready.
What the pod spends before its container starts (scheduling, the image pull) is not in it.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from infergraph.errors import InfergraphError
from infergraph.graph.model import Node
from infergraph.graph.model_settings import model_settings
from infergraph.runner.local import NodeServer, free_port

POLL_S = 0.05  # between readiness probes: small beside a start of seconds


class ServerStartError(InfergraphError):
    """The node's server exited or never answered ready."""


def server_start_seconds(node: Node, model_uri: str | None, timeout_s: float = 600.0) -> float:
    """Seconds from `mlserver start` of `node` alone (loading `model_uri`) to its model
    answering `/v2/models/<node>/ready`; the server is stopped before returning."""
    with tempfile.TemporaryDirectory(prefix=f"infergraph-start-{node.name}-") as tmp:
        folder = Path(tmp)
        model = folder / node.name
        model.mkdir()
        settings = model_settings(node.name, node.family, node, model_uri or node.model_uri)
        (model / "model-settings.json").write_text(json.dumps(settings, indent=2))
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
            _wait_ready(server, node.name, started + timeout_s)
            return time.perf_counter() - started
        finally:
            server.stop()


def _wait_ready(server: NodeServer, model: str, deadline: float) -> None:
    url = f"{server.base}/v2/models/{model}/ready"
    while time.perf_counter() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise ServerStartError(
                f"node '{model}': its server exited with status {server.process.returncode} "
                f"before it was ready:\n{server.log_tail()}"
            )
        if _answers(url):
            return
        time.sleep(POLL_S)
    raise ServerStartError(
        f"node '{model}': its server was not ready in time:\n{server.log_tail()}"
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
