"""Ports for the servers the tests and the runner start, and the race between picking one and
binding it.

A port is picked by asking the kernel whether it can be bound, then released for the server
to bind. Until the server does, anyone may take it: another xdist worker's server, or the
kernel itself as the local port of an outgoing connection. CI of d721713 went red on the
second kind (`tests/seldon/test_graphs.py[preprocess]`: MLServer exited with EADDRINUSE on
its HTTP port). The test starters therefore start a server again on fresh ports when it lost
one, as the embedded runner does (tests/test_supervision.py), and `free_port` picks outside
the kernel's ephemeral range, where outgoing connections never land.
"""

from __future__ import annotations

import socket
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
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = int(busy.getsockname()[1])
        candidates = iter([taken, taken, taken + 1 if taken < 65535 else taken - 1])
        monkeypatch.setattr(ports, "_candidate", lambda low, high: next(candidates))
        assert ports.free_port() != taken


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
