"""Ports for the servers the tests and the runner start, and the race between picking one and
binding it.

A port is picked by asking the kernel whether it can be bound, then released for the server
to bind. Until the server does, anyone may take it: another xdist worker's server, or the
kernel itself as the local port of an outgoing connection. CI of d721713 went red on one of
them (`tests/seldon/test_graphs.py[preprocess]`: MLServer exited with EADDRINUSE on its HTTP
port, 42641, inside the ephemeral range). The test starters therefore start a server again
on fresh ports when it lost one, as the embedded runner does (tests/test_supervision.py), and
`free_port` picks outside the kernel's ephemeral range, where outgoing connections never land.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infergraph import ports
from tests import servers


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something already listens on, for the pick that loses the race."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_free_port_picks_outside_the_kernels_ephemeral_range() -> None:
    low, high = ports.ephemeral_range()
    picked = {ports.free_port() for _ in range(200)}
    assert all(not low <= port <= high for port in picked), sorted(picked)
    assert all(ports.LOWEST_PICK <= port < low for port in picked), sorted(picked)
    assert len(picked) > 150, "picks are random, so parallel pickers rarely meet"
    for port in list(picked)[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_port_never_returns_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The taken port is offered twice, then the picker's own candidates: a fixed third one
    (the port after the taken one, which CI of b3d6a8a found held by another test) is not
    known to be free either."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        offered = iter([taken, taken])
        own = ports._candidate
        monkeypatch.setattr(
            ports, "_candidate", lambda low, high: next(offered, None) or own(low, high)
        )
        assert ports.free_port() != taken
        assert next(offered, None) is None, "the taken port was not offered twice"


def test_the_signs_of_a_lost_port_are_those_the_servers_print() -> None:
    uvicorn = (
        "ERROR:    [Errno 98] error while attempting to bind on address ('127.0.0.1', 42641): "
        "address already in use"
    )
    grpcio = "Failed to bind to address 127.0.0.1:1; set GRPC_VERBOSITY=debug"
    gunicorn = "[ERROR] Connection in use: ('0.0.0.0', 9000)"
    assert all(map(ports.lost_a_port, (uvicorn, grpcio, gunicorn)))
    assert not ports.lost_a_port("ModuleNotFoundError: No module named 'torch'")


def test_a_test_mlserver_whose_port_was_taken_starts_on_fresh_ports(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made certain: the first HTTP port the starter picks is already listening."""
    picks = iter([taken_port])
    real = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: next(picks, None) or real())
    servers.write_model(tmp_path, "echo", "identity")
    with servers.mlserver(tmp_path) as server:
        assert server.http_port != taken_port, "the first start, on the taken port, was kept"
        answer = server.infer(
            "echo",
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.5]}]},
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200


IDENTITY_GRAPH = """\
apiVersion: infergraph.io/v1alpha1
kind: InferenceGraph
metadata: {name: echo}
spec:
  inputs:
    - {name: input, datatype: FP32, shape: [-1, -1]}
  nodes:
    - {name: echo, family: identity}
  graph: {node: echo}
"""


def test_serve_on_a_port_in_use_says_so_and_starts_nothing(tmp_path: Path, taken_port: int) -> None:
    """`infergraph serve --port 8080` with 8080 taken is the commonest way to meet a taken port.
    The router's port is bound before any node server starts, and the error names it."""
    graph_file = tmp_path / "echo.yaml"
    graph_file.write_text(IDENTITY_GRAPH)
    exe = Path(sys.executable).parent / "infergraph"
    argv = [str(exe), "serve", str(graph_file), "--offline", "--port", str(taken_port)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert f"port {taken_port} is in use" in output, output
    assert "--port" in output.split("in use", 1)[1], "the error says how to choose another"


def test_the_router_port_is_bound_before_any_model_is_written(
    tmp_path: Path, taken_port: int
) -> None:
    """Failing at once, not after the models load: nothing reaches the graph's work folder."""
    from infergraph.graph.plan import load_plan
    from infergraph.runner.local import RunnerError, run_graph

    graph_file = tmp_path / "echo.yaml"
    graph_file.write_text(IDENTITY_GRAPH)
    work = tmp_path / "work"
    work.mkdir()

    async def serve() -> None:
        async with run_graph(load_plan(graph_file), port=taken_port, workdir=work):
            raise AssertionError("served on a taken port")

    with pytest.raises(RunnerError, match=f"port {taken_port} is in use"):
        asyncio.run(serve())
    assert list(work.iterdir()) == []


def test_the_demos_graph_server_starts_again_when_its_port_was_taken(
    tmp_path: Path, taken_port: int
) -> None:
    """`make demo` picks the router's port, then `infergraph serve` binds it a second later."""
    from infergraph.demo.server import GraphServer

    graph_file = tmp_path / "echo.yaml"
    graph_file.write_text(IDENTITY_GRAPH)
    server = GraphServer(graph_file, "tiny", tmp_path / "serve.log")
    server.port = taken_port  # the race, lost for certain
    with server:
        server.wait_ready(120)
        assert server.port != taken_port
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
        answer = httpx.post(f"{server.url}/v2/models/echo/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
    assert f"port {taken_port} is in use" in server.log.read_text()
