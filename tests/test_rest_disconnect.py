"""A REST client that goes away before its answer costs the server nothing more.

A client timeout, the local router's node timeout or a load balancer's closes the HTTP
connection while the request waits. gRPC callers gone that way were already skipped by the
batcher (tests/test_runtime_client_faults.py); a REST request was not: `rest_fast_path`
kept awaiting its prediction, and its rows ran through a forward pass nobody read. Under
overload that is congestion collapse. These tests close the connection over a real socket,
against a real uvicorn (in this process) and a real `mlserver start`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.controlled import ControlledNode
from infergraph.serving.rest_fast_path import install
from tests.servers import MLServerProcess, families_env, metric, mlserver, settle, write_model


class RecordedPasses(ControlledNode):
    """The controlled node, writing each forward pass's rows (their first value) as a JSON
    line to its `pass_log` option's file: what a pass ran, seen from outside the server."""

    family = "recorded"

    def run_batch(self, rows: list[Any], batch_key: Hashable) -> list[Any]:
        with open(self.option("pass_log", os.devnull), "a") as log:
            log.write(json.dumps([float(row[0]) for row in rows]) + "\n")
        return super().run_batch(rows, batch_key)


# -- the fast path on a real uvicorn, in this process ---------------------------------------
async def tasks_settle(baseline: set[asyncio.Task[Any]]) -> None:
    """Wait until no task beyond `baseline` is left: a request's tasks all ended."""
    for _ in range(1000):
        if asyncio.all_tasks() <= baseline:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left behind: {asyncio.all_tasks() - baseline}")


async def client_leaves_a_waiting_request(http: str) -> None:
    began, cancelled = asyncio.Event(), asyncio.Event()

    async def waits(request: Request) -> Response:
        await request.body()
        began.set()
        try:
            await asyncio.Event().wait()  # a prediction whose answer never comes
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(b"never")

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    routes = [Route("/wait", waits, methods=["POST"]), Route("/echo", echo, methods=["POST"])]
    app = Starlette(routes=routes)
    assert install(app, routes, [waits, echo]) is not None
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    # A request task still waiting at shutdown is cancelled after 5 s, not awaited forever.
    config = uvicorn.Config(
        app, http=http, lifespan="off", log_level="warning", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    while not server.started:
        await asyncio.sleep(0.01)
    baseline = asyncio.all_tasks()
    try:
        # Answered: the disconnect watcher ends with its request.
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"http://127.0.0.1:{port}/echo", content=b"x" * 3000)
        assert answer.status_code == 200 and answer.content == b"x" * 3000
        await tasks_settle(baseline)
        # The client closes its connection while the endpoint awaits its prediction.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /wait HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
        await asyncio.wait_for(began.wait(), 30)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(30):  # a hang guard
            await cancelled.wait()
        await tasks_settle(baseline)
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("http", ["httptools", "h11"])  # uvicorn's two HTTP/1.1 protocols
def test_a_prediction_is_cancelled_when_its_client_leaves_and_no_task_is_left(http: str) -> None:
    """The endpoint's await is cancelled when the connection closes (before: it awaited
    forever, its task with it); an answered request leaves no watcher task behind."""
    asyncio.run(client_leaves_a_waiting_request(http))


# -- a real `mlserver start`, the runtime's batcher and metrics -----------------------------
LEAVING, STAYING = 7.0, 9.0


def infer_body(value: float) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [value, value]}
    return json.dumps({"inputs": [tensor]}).encode()


def outcomes(server: MLServerProcess) -> dict[str, float]:
    return {
        o: metric(server, "infergraph_requests_total", model="slow", outcome=o)
        for o in ("ok", "bad_input", "error", "cancelled")
    }


def leave_while_queued(server: MLServerProcess) -> None:
    """POST a whole request, wait until its row is in the batcher's queue, and close."""
    body = infer_body(LEAVING)
    head = (
        f"POST /v2/models/slow/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as conn:
        conn.sendall(head.encode() + body)
        settle(
            lambda: metric(server, "infergraph_batch_queue_size", model="slow") == 1,
            "the leaving request's row queued",
        )


@pytest.mark.slow
def test_a_rest_client_that_leaves_costs_no_forward_pass(tmp_path: Path) -> None:
    """A lone request waits out a 3 s batch window; its client leaves during it. It used to
    run its pass after the window, counted `ok`. Now, as a gRPC caller past its deadline:
    counted `cancelled`, no pass holds its row, the queue gauge is back to 0, MLServer's REST
    series count it as starlette_exporter counts a client gone unanswered (499), and the
    next request is answered."""
    passes = tmp_path / "passes.jsonl"
    root = tmp_path / "models"
    write_model(
        root, "slow", "recorded", max_batch_size=4, max_batch_time=3.0, base_ms=0,
        per_row_ms=0, pass_log=str(passes),
    )  # fmt: skip
    families = f"recorded={__name__}:RecordedPasses"
    with mlserver(root, env=families_env(families)) as server:
        before = outcomes(server)
        leave_while_queued(server)
        settle(lambda: sum(outcomes(server).values()) > sum(before.values()), "an outcome")
        after = outcomes(server)
        assert after == {**before, "cancelled": before["cancelled"] + 1}, (before, after)
        assert metric(server, "infergraph_batch_queue_size", model="slow") == 0
        assert metric(server, "infergraph_inflight_requests", model="slow") == 0

        answer = httpx.post(
            f"{server.url}/v2/models/slow/infer", content=infer_body(STAYING), timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [STAYING, STAYING]
        ran = [json.loads(line) for line in passes.read_text().splitlines()]
        assert [LEAVING] not in ran and ran.count([STAYING]) == 1, ran
        assert outcomes(server)["ok"] == before["ok"] + 1

        route = {"method": "POST", "path": "/v2/models/slow/infer"}
        assert metric(server, "rest_server_requests_total", status_code="499", **route) == 1
        assert metric(server, "rest_server_requests_total", status_code="200", **route) == 1
        assert metric(server, "rest_server_requests_in_progress", method="POST") == 0
        log = server.log()
        assert "Exception in ASGI application" not in log and "Task was destroyed" not in log
