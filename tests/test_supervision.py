"""The local runner supervises its node servers: a killed MLServer is restarted by itself.

Two identity nodes in two `mlserver start` processes (`isolate=True`), one killed with
SIGKILL as the OOM killer would: the graph must report not ready naming the node, requests
must fail fast naming it, and both must recover without anyone's help.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from infergraph.graph.plan import parse_graph
from infergraph.runner.local import run_graph
from tests.servers import running

pytestmark = pytest.mark.slow

GRAPH = {
    "apiVersion": "infergraph.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "chain"},
    "spec": {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, -1]}],
        "nodes": [
            {"name": "first", "family": "identity"},
            {"name": "second", "family": "identity"},
        ],
        "graph": {"sequence": [{"node": "first"}, {"node": "second"}]},
    },
}
REQUEST = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


async def _refused(port: int) -> None:
    """Return once nothing listens on `port` any more (at most 10 s): a SIGKILLed process keeps
    its listening socket until the kernel has ended it, which a loaded machine may take a
    while to get to, and a request meanwhile waits for it instead of failing at once."""
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        assert time.monotonic() < deadline, f"port {port} still listens 10 s after SIGKILL"
        await asyncio.sleep(0.05)


def test_killed_node_is_restarted_and_the_graph_recovers() -> None:
    graph = parse_graph(GRAPH)

    async def scenario() -> None:
        async with (
            run_graph(graph, isolate=True, startup_timeout=180) as rg,
            httpx.AsyncClient(timeout=30) as client,
        ):
            assert (await client.post(rg.infer_url, json=REQUEST)).status_code == 200
            victim = next(s for s in rg.servers if s.nodes == ["second"])
            assert victim.process is not None
            os.killpg(victim.process.pid, signal.SIGKILL)
            await _refused(victim.http_port)  # the kernel has torn the killed server down

            started = time.perf_counter()
            down = await client.post(rg.infer_url, json=REQUEST)
            assert time.perf_counter() - started < 2.0  # fails fast, no hanging
            assert down.status_code == 502 and "node 'second'" in down.json()["error"]
            ready = await client.get(f"{rg.url}/v2/health/ready")
            assert ready.status_code == 503 and "second" in ready.json()["error"]
            node_ready = await client.get(f"{rg.url}/v2/models/second/ready")
            assert node_ready.status_code == 503

            deadline = time.monotonic() + 120
            while (await client.get(f"{rg.url}/v2/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, victim.log_tail()
                await asyncio.sleep(0.5)
            assert victim.restarts == 1
            back = await client.post(rg.infer_url, json=REQUEST)
            assert back.status_code == 200, back.text
            assert back.json()["outputs"][0]["data"] == [1.0, 2.0]

            # A server stopped on purpose stays down.
            victim.stop()
            await asyncio.sleep(1.5)
            assert victim.process is not None and victim.process.poll() is not None
            assert victim.restarts == 1

    asyncio.run(scenario())


def test_a_port_taken_before_the_node_binds_it_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process may bind a port between the runner's pick and MLServer's bind.

    The race is made certain here: the first port the runner picks is already listening, so
    the node server exits with EADDRINUSE; the runner must pick fresh ports and come up.
    """
    from infergraph.runner import local

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([int(taken.getsockname()[1])])
    real_free_port = local.free_port
    monkeypatch.setattr(local, "free_port", lambda: next(picks, None) or real_free_port())
    graph = parse_graph(
        {
            **GRAPH,
            "spec": {
                **GRAPH["spec"],
                "nodes": GRAPH["spec"]["nodes"][:1],
                "graph": {"node": "first"},
            },
        }
    )

    async def scenario() -> None:
        async with (
            run_graph(graph, startup_timeout=180) as rg,
            httpx.AsyncClient(timeout=30) as client,
        ):
            (server,) = rg.servers
            assert server.http_port != taken.getsockname()[1]
            answer = await client.post(rg.infer_url, json=REQUEST)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == [1.0, 2.0]

    try:
        asyncio.run(scenario())
    finally:
        taken.close()


def test_a_restarted_node_whose_port_was_taken_comes_back_on_new_ports() -> None:
    """A node server dies and another process binds its port before the restart (a port
    freed by a crash is anyone's): the node must come back elsewhere and the router follow."""
    graph = parse_graph(GRAPH)

    async def scenario() -> None:
        async with (
            run_graph(graph, isolate=True, startup_timeout=180) as rg,
            httpx.AsyncClient(timeout=30) as client,
        ):
            victim = next(s for s in rg.servers if s.nodes == ["second"])
            assert victim.process is not None
            old_port = victim.http_port
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            thief = socket.socket()
            thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            thief.bind(("127.0.0.1", old_port))
            thief.listen()
            try:
                deadline = time.monotonic() + 90
                while (await client.get(f"{rg.url}/v2/health/ready")).status_code != 200:
                    assert time.monotonic() < deadline, victim.log_tail()
                    await asyncio.sleep(0.5)
                assert victim.http_port != old_port
                back = await client.post(rg.infer_url, json=REQUEST)
                assert back.status_code == 200, back.text
                assert back.json()["outputs"][0]["data"] == [1.0, 2.0]
            finally:
                thief.close()

    asyncio.run(scenario())


def test_a_restart_that_fails_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    """A restart can itself fail: its folder gone (here moved away, as a cleaned-up workdir
    would be), EMFILE from a port probe, `Popen` refused. The supervisor died of that
    silently and no node was restarted again; it must log the failure and try again, with
    backoff, so the node comes back once the fault is gone."""
    graph = parse_graph(GRAPH)
    pids: list[int] = []

    async def scenario() -> None:
        async with (
            run_graph(graph, isolate=True, startup_timeout=180) as rg,
            httpx.AsyncClient(timeout=30) as client,
        ):
            pids.extend(s.process.pid for s in rg.servers if s.process is not None)
            victim = next(s for s in rg.servers if s.nodes == ["second"])
            assert victim.process is not None
            folder, away = victim.folder, victim.folder.with_name("moved-away")
            os.killpg(victim.process.pid, signal.SIGKILL)
            folder.rename(away)
            try:
                deadline = time.monotonic() + 30
                while not any("restart" in r.getMessage() and r.exc_info for r in caplog.records):
                    assert time.monotonic() < deadline, "no failed restart was logged"
                    await asyncio.sleep(0.2)
            finally:
                away.rename(folder)
            deadline = time.monotonic() + 120
            while (await client.get(f"{rg.url}/v2/health/ready")).status_code != 200:
                assert time.monotonic() < deadline, victim.log_tail()
                await asyncio.sleep(0.5)
            assert victim.restarts >= 2
            back = await client.post(rg.infer_url, json=REQUEST)
            assert back.status_code == 200, back.text

    try:
        with caplog.at_level(logging.WARNING, logger="infergraph.runner.local"):
            asyncio.run(scenario())
    finally:
        for pid in pids:  # the first server, were its stop skipped
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


def test_a_dead_supervisor_does_not_keep_the_servers_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The supervisor's task ending with an exception was re-raised inside `run_graph`'s
    `finally`, which then skipped the router's cleanup, every server's stop and the temp
    dir's removal: the node servers (their own sessions) outlived the runner. The supervisor
    here is one that fails at once, as one with an unforeseen bug would."""
    from infergraph.runner import local

    async def failing_supervisor(*_: object, **__: object) -> None:
        raise RuntimeError("supervisor bug")

    monkeypatch.setattr(local, "supervise", failing_supervisor)
    graph = parse_graph(GRAPH)
    pids: list[int] = []
    folders: list[Path] = []

    async def scenario() -> None:
        async with run_graph(graph, isolate=True, startup_timeout=180) as rg:
            pids.extend(s.process.pid for s in rg.servers if s.process is not None)
            folders.extend(s.folder for s in rg.servers)
            await asyncio.sleep(0.5)

    try:
        with caplog.at_level(logging.ERROR, logger="infergraph.runner.local"):
            asyncio.run(scenario())
        assert len(pids) == 2
        assert not [pid for pid in pids if running(pid)], "a node server outlived run_graph"
        assert not [f for f in folders if f.parent.exists()], "the temp dir was left behind"
        assert any("supervisor bug" in r.getMessage() or r.exc_info for r in caplog.records)
    finally:
        for pid in pids:
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
