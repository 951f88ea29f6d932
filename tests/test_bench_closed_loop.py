"""The benchmarks' closed loop (benchmarks/closed_loop.py) against a server that fails on
purpose (tests/loadtest_servers.py, its own process): every answer and every error counted,
the throughput the answers' over the window."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import uvloop

from benchmarks.closed_loop import through_server
from tests.loadtest_servers import LoadTestServer, loadtest_server

pytestmark = pytest.mark.slow
BODY = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'


@pytest.fixture(scope="module")
def server() -> Iterator[LoadTestServer]:
    with loadtest_server() as s:
        yield s


def test_answers_and_errors_are_counted(server: LoadTestServer) -> None:
    server.behave("flaky", fail_every=4, malformed_every=5, reset_every=7, delay_ms=2)
    run = uvloop.run(through_server(f"{server.url}/v2/models/flaky/infer", [BODY], 8, 1.5))
    counts = server.counts("flaky")
    wrong = counts.failed + counts.malformed + counts.reset
    assert counts.requests > 100 and wrong > 0
    # The requests under way when the window closed are answered after it, and counted.
    assert run.answered + run.errors == counts.requests
    assert run.errors == wrong
    assert run.rps == pytest.approx(run.answered / 1.5, rel=0.1)
    assert run.p50_ms is not None and 2.0 <= run.p50_ms <= run.p99_ms  # type: ignore[operator]


def test_a_refused_connection_is_an_error_not_a_hang() -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v2/models/m/infer"
    run = uvloop.run(through_server(url, [BODY], 2, 0.5))
    assert run.answered == 0 and run.errors > 0 and run.rps == 0.0
