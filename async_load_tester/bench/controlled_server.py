"""A V2 endpoint whose every request takes a known time: the load tester's ground truth.

Issue 28, "the load tester against ground truth". Each inference request is answered after
`median_ms * exp(sigma * z)`, z the next draw of a seeded standard normal: the log-normal
law of the planner's controlled node (`benchmarks/controlled.py`) with no per-row part, as
a per-request added delay. The server holds no CPU while it waits (an event-loop timer),
and it records, for every request, the time from the request's last byte read to its
response written (`time.perf_counter`). That record is the truth a load tester is checked
against; `GET /truth` returns it (milliseconds, in completion order) and starts a new one.

Why the recorded time and not the configured law's quantiles: an event-loop timer fires
up to a millisecond late (libuv and epoll both wait in whole milliseconds), more on a
loaded machine, so the delay a request really took differs from its draw by more than
the 2 % the tester is held to. Every client sees that overshoot, so it is part of the
latency a correct tester must report; the record holds it, the draw does not. What lies
outside the record is the loopback hop and the time the request waits in the kernel
before the loop reads it, tens of microseconds against a 20 ms median while the server
keeps up: that, and whatever the tester itself adds, is what the check measures.

It is deliberately not MLServer: MLServer's own parsing and queueing would add several
milliseconds no record here could attribute, and it could not reach the tester's rates.

    python controlled_server.py --port 8080 --median-ms 20 --sigma 0.5 --seed 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import cast

import numpy as np

RESPONSE_BODY = (
    b'{"model_name":"bench","model_version":"1","id":"0",'
    b'"outputs":[{"name":"scores","datatype":"FP32","shape":[1,4],"data":[0.1,0.2,0.3,0.4]}]}'
)
DRAWS = 1 << 22  # more requests than any run sends; the sequence then wraps


def http_response(body: bytes, status: str = "200 OK") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class Truth:
    """The delays to give, in order, and the times requests really took."""

    def __init__(self, median_ms: float, sigma: float, seed: int) -> None:
        z = np.random.default_rng(seed).standard_normal(DRAWS)
        self.delays_s = (median_ms / 1000.0 * np.exp(sigma * z)).tolist()
        self.next = 0
        self.taken_ms: list[float] = []
        self.drawn_ms: list[float] = []  # each recorded request's own draw, in the same order

    def delay_s(self) -> float:
        delay = self.delays_s[self.next % DRAWS]
        self.next += 1
        return float(delay)

    def take(self) -> bytes:
        """The record so far as JSON, and a fresh one. A request still waiting when its client
        went away is in neither list, though it used a draw."""
        body = json.dumps({"taken_ms": self.taken_ms, "drawn_ms": self.drawn_ms}).encode()
        self.taken_ms = []
        self.drawn_ms = []
        return body


class Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time (no client here pipelines)."""

    def __init__(self, truth: Truth) -> None:
        self.truth = truth
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head.split(" ", 2)[1] if " " in head else "/")

    def _answer(self, path: str) -> None:
        assert self.transport is not None
        if path.startswith("/truth"):
            self.transport.write(http_response(self.truth.take()))
            return
        if "/infer" not in path:
            self.transport.write(http_response(b'{"ready":true}'))
            return
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        delay = self.truth.delay_s()
        loop.call_later(delay, self._respond, started, delay)

    def _respond(self, started: float, delay: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        # uvloop's timers count from the loop's cached clock in whole milliseconds and can
        # fire before `delay` has passed since `started`: wait out the rest, so every request
        # takes at least its draw.
        remaining = delay - (time.perf_counter() - started)
        if remaining > 0:
            asyncio.get_running_loop().call_later(remaining, self._respond, started, delay)
            return
        self.transport.write(http_response(RESPONSE_BODY))
        self.truth.taken_ms.append((time.perf_counter() - started) * 1000.0)
        self.truth.drawn_ms.append(delay * 1000.0)


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip())
    return 0


async def serve(port: int, truth: Truth) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(truth), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--median-ms", type=float, default=20.0)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    truth = Truth(args.median_ms, args.sigma, args.seed)
    try:
        import uvloop

        uvloop.run(serve(args.port, truth))
    except ImportError:
        asyncio.run(serve(args.port, truth))


if __name__ == "__main__":
    main()
