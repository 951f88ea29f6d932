"""bench-loadtester's ground truth (issue 28): the controlled server and the comparison.

`make bench-loadtester` holds the tester's p50/p99/p99.9 to within 2 % of what the controlled
server recorded for the same requests. That figure is only worth reading if the record is a
truth: it holds exactly the requests the tester measured, no request took less than its
seeded draw, and no client can see a request faster than the server held it. These checks
run the real server and the real tester for two seconds; the 2 % goal itself needs an idle
machine and stays with the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop
from async_load_tester.config import LoadConfig
from async_load_tester.engine import StepPlan
from async_load_tester.recorder import Recorder
from async_load_tester.runner import Prepared
from async_load_tester.schedule import Segment

from tests.bench_scripts import load_bench_script
from tests.servers import free_port

pytestmark = pytest.mark.slow
TruthRow = dict[str, Any]  # the bench's own row type: the tool's name, then numbers


bench = load_bench_script("bench_loadtester")
controlled = load_bench_script("controlled_server")


@pytest.fixture(scope="module")
def truth_port() -> Iterator[int]:
    port = free_port()
    server = bench.start_truth_server(port)
    try:
        yield port
    finally:
        bench.stop(server)


@pytest.fixture(scope="module")
def ours_row(truth_port: int) -> TruthRow:
    """The tester at 50/s for 2 s against the controlled server, beside its record."""
    return bench.truth_ours(truth_port, 50.0, 2.0)


def test_the_record_holds_exactly_the_requests_the_tester_measured(ours_row: TruthRow) -> None:
    assert ours_row["errors"] == 0
    assert ours_row["requests"] > 50
    assert ours_row["truth_requests"] == ours_row["requests"]


def test_no_quantile_the_tester_reports_is_below_the_servers(ours_row: TruthRow) -> None:
    # Each request's client latency contains the time the server held it, so every order
    # statistic of the one dominates the other's (0.1 ms: the histogram's rounding).
    for key, _ in bench.TRUTH_QUANTILES:
        assert ours_row[f"{key}_ms"] >= ours_row[f"truth_{key}_ms"] - 0.1, key


def test_no_request_took_less_than_its_seeded_draw() -> None:
    port = free_port()
    server = bench.start_truth_server(port)  # a fresh sequence, from its first draw
    try:
        bench.run_ours(f"http://127.0.0.1:{port}", 50.0, 1.0)
        taken_ms, drawn_ms = (np.array(v) for v in bench.take_record(port))
    finally:
        bench.stop(server)
    assert taken_ms.size > 50 and taken_ms.size == drawn_ms.size
    # Each request against its own draw: requests still waiting when the tester stopped used
    # draws but are not recorded, so the record is not the first draws in any order.
    assert np.all(taken_ms >= drawn_ms - 1.0)  # 1 ms: a timer rounded to whole ms
    law = controlled.Truth(bench.TRUTH_MEDIAN_MS, bench.TRUTH_SIGMA, bench.TRUTH_SEED)
    assert set(np.round(drawn_ms, 6)) <= set(np.round(np.array(law.delays_s) * 1000.0, 6))


def test_the_record_starts_when_the_kernel_received_the_request() -> None:
    # A request that waits in the kernel while the server is not running (here: stopped for
    # 80 ms) waits for every client alike, so the truth holds that wait; a record that began
    # at the server's read left it, and each wake-up of the server, on the client's side.
    port = free_port()
    server = bench.start_truth_server(port)
    body = bench.request_body()
    head = f"POST /v2/models/{bench.MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
    request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    try:
        with socket.create_connection(("127.0.0.1", port)) as client:
            bench.take_record(port)
            os.kill(server.pid, signal.SIGSTOP)
            started = time.perf_counter()
            client.sendall(request)
            time.sleep(0.08)
            os.kill(server.pid, signal.SIGCONT)
            answer = b""
            while not answer.endswith(b"}]}"):
                answer += client.recv(1 << 16)
            seen_ms = (time.perf_counter() - started) * 1000.0
        taken_ms, drawn_ms = bench.take_record(port)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        bench.stop(server)
    assert len(taken_ms) == 1
    # Its draw counts from its arrival too, so it is answered at once when the server wakes.
    assert taken_ms[0] >= max(80.0, drawn_ms[0]) - 1.0
    assert taken_ms[0] <= seen_ms


class _SlowSend(controlled.Connection):
    """A connection whose send of the answer takes 20 ms, noting when the answer was handed."""

    handed: float = 0.0

    def write(self, data: bytes) -> None:
        if b'"outputs"' in data:
            self.handed = time.perf_counter()
            time.sleep(0.02)
        super().write(data)


def test_the_record_ends_when_the_answer_is_handed_to_the_kernel() -> None:
    # The client may read the answer as soon as it is handed over, before the send returns to
    # the server (CI at faa326d: a record of 84.6 ms for a request the client saw in 84.2 ms).
    # So the clock stops before the send, whatever the send costs.
    truth = controlled.Truth(1.0, 0.0, bench.TRUTH_SEED)
    request = b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"

    async def exchange() -> tuple[_SlowSend, float]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):
            end.setblocking(False)
        connection = _SlowSend(ours, truth, loop)
        started = time.perf_counter()
        await loop.sock_sendall(theirs, request)
        answer = b""
        while not answer.endswith(b"}]}"):
            answer += await asyncio.wait_for(loop.sock_recv(theirs, 1 << 16), 5.0)
        theirs.close()
        return connection, started

    connection, started = asyncio.run(exchange())
    assert len(truth.taken_ms) == 1
    assert truth.taken_ms[0] <= (connection.handed - started) * 1000.0


def test_a_record_larger_than_the_socket_buffer_comes_back_whole() -> None:
    # The highest-rate search leaves a record of tens of thousands of requests, megabytes of
    # JSON: more than one send on a non-blocking socket takes. The server must write the rest
    # as the socket drains (the full run of 21:05 timed out reading a truncated record).
    truth = controlled.Truth(bench.TRUTH_MEDIAN_MS, bench.TRUTH_SIGMA, bench.TRUTH_SEED)
    truth.taken_ms = [20.123456789] * 400_000
    truth.drawn_ms = [20.0] * 400_000
    truth.woke_ms = [0.05] * 400_000

    async def fetch() -> bytes:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):
            end.setblocking(False)
        controlled.Connection(ours, truth, loop)
        await loop.sock_sendall(theirs, b"GET /truth HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"]}"):
            answer += await asyncio.wait_for(loop.sock_recv(theirs, 1 << 20), 5.0)
        theirs.close()
        return answer

    answer = asyncio.run(fetch())
    record = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert len(record["taken_ms"]) == 400_000
    assert len(record["woke_ms"]) == 400_000


class _FoldSizes(Recorder):
    """A real recorder that also notes how many latencies each fold took in."""

    def __init__(self) -> None:
        super().__init__()
        self.folds: list[int] = []

    def drain(self) -> list[int]:
        self.folds.append(len(self.latency_us))
        return super().drain()


def test_latencies_are_folded_in_small_batches_while_sending(truth_port: int) -> None:
    # Folding into the HDR histograms costs about 2 us a value and the loop sends nothing
    # meanwhile: at 8,000/s a fold of the half second's 4,000 values held every send and
    # every read for 8.5 ms, twice a second, in the tester's own error. Folds every ~50 ms
    # keep each hold under a millisecond at that rate.
    config = LoadConfig(
        target=f"http://127.0.0.1:{truth_port}", model=bench.MODEL,
        payload="synthetic:tensor:1x4", input_name="input", rate=2000.0, duration=1.5,
        warmup=0.0, progress=False,
    )  # fmt: skip
    recorder = _FoldSizes()
    plan = StepPlan("open", 0.0, 1.5, segments=(Segment(0.0, 1.5, 2000.0, 2000.0),))

    async def run() -> None:
        await Prepared(config).driver(recorder).run(plan)

    uvloop.run(run())
    # Every scheduled send is made however late a loaded machine makes it, and every answer's
    # latency goes through a fold. How many are answered depends on the server keeping up:
    # at 800/s answered (1,200) a half-second fold would still take in 400, twice the bound.
    assert recorder.sent == 3000 and sum(recorder.folds) == recorder.ok > 1200
    # Folds of about 100 values, 20 a second (the last is the run's remainder); folds every
    # half second would take in 1,000. The median, not the largest: on a machine the other
    # tests load, one stall of the loop (306 values in CI on 2026-12-06) says nothing here.
    folds = sorted(recorder.folds[:-1])
    assert len(folds) >= 20 and folds[len(folds) // 2] <= 2000.0 * 0.1, folds


def test_nearest_rank_is_the_smallest_value_covering_the_percentile() -> None:
    values = [float(v) for v in range(1000, 0, -1)]
    assert bench.nearest_rank(values, 50.0) == 500.0
    assert bench.nearest_rank(values, 99.0) == 990.0
    assert bench.nearest_rank(values, 99.9) == 999.0
    assert bench.nearest_rank(values, 100.0) == 1000.0


def test_the_summary_keeps_each_tools_largest_error_with_its_sign() -> None:
    rows = [
        bench.truth_row(tool, rate, measured, [10.0] * 1000)
        for tool, rate, measured in (
            ("async-load-tester", 100.0, {"p50": 10.1, "p99": 10.2, "p999": 9.0}),
            ("async-load-tester", 1000.0, {"p50": 10.3, "p99": 10.1, "p999": 10.5}),
            ("k6", 100.0, {"p50": 12.0, "p99": 10.0, "p999": 10.0}),
            ("wrk", 100.0, {"p50": 10.0, "p99": 8.0, "p999": 10.0}),
        )
    ]
    summary = bench.truth_summary(rows, 900.0)
    assert summary["truth_max_rps"] == 900.0
    assert summary["truth_p50_error_pct"] == pytest.approx(3.0)
    assert summary["truth_p99_error_pct"] == pytest.approx(2.0)
    assert summary["truth_p999_error_pct"] == pytest.approx(-10.0)
    assert summary["k6_truth_p50_error_pct"] == pytest.approx(20.0)
    assert summary["wrk_truth_p99_error_pct"] == pytest.approx(-20.0)


def test_locust_counts_every_request_the_server_answered(truth_port: int, tmp_path: Path) -> None:
    # Locust's --csv file is a snapshot its writer takes once a second, not the final tally:
    # it missed the last second of every run and, on a starved CPU, held the empty first
    # snapshot (the committed run of 15:00 recorded 0 requests for every Locust run). The
    # count must be the run's final one: the server's record of the same run, less at most
    # a request per user sent before the stats were reset when spawning completed.
    (tmp_path / "body.json").write_bytes(bench.request_body())
    (tmp_path / "locustfile.py").write_text(bench.LOCUST_FILE)
    url = f"http://127.0.0.1:{truth_port}"
    bench.take_truth(truth_port)
    row = bench.run_locust(tmp_path, url, 4, 2.0, pace=25.0)
    answered = len(bench.take_truth(truth_port))
    assert row["errors"] == 0
    assert answered - 8 <= row["requests"] <= answered
    assert row["p50_ms"] >= bench.TRUTH_MEDIAN_MS * 0.9
