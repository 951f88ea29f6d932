"""A V2 endpoint whose every request takes a known time: the load tester's ground truth.

Issue 28, "the load tester against ground truth". Each inference request is answered after
`median_ms * exp(sigma * z)`, z the next draw of a seeded standard normal: the log-normal
law of the planner's controlled node (`benchmarks/controlled.py`) with no per-row part, as
a per-request added delay. The server holds no CPU while it waits (an event-loop timer),
and it records, for every request, the time from the kernel's receipt of the request's last
byte (its SO_TIMESTAMPNS receive timestamp) to the response handed to the kernel
(`time.perf_counter` just before the send). That record is the truth a load tester is
checked against; `GET /truth` returns it (milliseconds, in completion order) and starts a new one.

Why the recorded time and not the configured law's quantiles: an event-loop timer fires
up to a millisecond late (libuv and epoll both wait in whole milliseconds), more on a
loaded machine, so the delay a request really took differs from its draw by more than
the 2 % the tester is held to. Every client sees that overshoot, so it is part of the
latency a correct tester must report; the record holds it, the draw does not.

Why from the kernel's receipt and not from the server's read: between the two the server
wakes up and reads, 0.05-0.07 ms at the median on this 2-core VM and 3-4 ms at p99 when a
neighbour holds the server's core (`woke_ms` in the record), and every client waits for
that as part of the answer; a record that starts at the read put it on the client's side,
in every tool's error alike.
On loopback the response is in the client's receive queue when `send` returns, so what
lies outside the record is the client's own share: its lateness against the schedule, its
send, and its wake-up, read and timestamp once the answer is there. That is what the check
measures.

It is deliberately not MLServer: MLServer's own parsing and queueing would add several
milliseconds no record here could attribute, and it could not reach the tester's rates.

    python controlled_server.py --port 8080 --median-ms 20 --sigma 0.5 --seed 0
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import time

import numpy as np
from async_load_tester.stamped import arrival, enable_stamps

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
        self.woke_ms: list[float] = []  # its kernel receipt to the server's read, the same order

    def delay_s(self) -> float:
        delay = self.delays_s[self.next % DRAWS]
        self.next += 1
        return float(delay)

    def take(self) -> bytes:
        """The record so far as JSON, and a fresh one. A request still waiting when its client
        went away is in neither list, though it used a draw."""
        record = {"taken_ms": self.taken_ms, "drawn_ms": self.drawn_ms, "woke_ms": self.woke_ms}
        body = json.dumps(record).encode()
        self.taken_ms, self.drawn_ms, self.woke_ms = [], [], []
        return body


class Connection:
    """HTTP/1.1 keep-alive on a raw socket, one request at a time (no client here pipelines).

    A raw socket, not an asyncio Protocol, because the record starts at the kernel's receive
    timestamp of the request (SO_TIMESTAMPNS, read with recvmsg), which a Protocol never sees.
    """

    def __init__(self, sock: socket.socket, truth: Truth, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.truth = truth
        self.loop = loop
        self.buffer = b""
        self.unsent = b""  # what the socket would not take yet; written as it drains
        self.open = True
        loop.add_reader(sock.fileno(), self.readable)

    def write(self, data: bytes) -> None:
        """Send `data` after anything still unsent; the socket is non-blocking, so a record of
        megabytes goes out over several writable events rather than in one send."""
        if self.unsent:
            self.unsent += data
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.unsent = data[sent:]
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.unsent = self.unsent[sent:]
        if not self.unsent:
            self.loop.remove_writer(self.sock.fileno())

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.close()
            return
        self.buffer += data
        read = time.perf_counter()
        arrived = arrival(ancillary, read)
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1")
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self._answer(head.split(" ", 2)[1] if " " in head else "/", arrived, read)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()

    def _answer(self, path: str, arrived: float, read: float) -> None:
        if path.startswith("/truth"):
            self.write(http_response(self.truth.take()))
            return
        if "/infer" not in path:
            self.write(http_response(b'{"ready":true}'))
            return
        delay = self.truth.delay_s()
        wait = delay - (time.perf_counter() - arrived)
        self.loop.call_later(wait, self._respond, arrived, delay, read - arrived)

    def _respond(self, started: float, delay: float, woke: float) -> None:
        if not self.open:
            return
        # The loop's timers count in whole milliseconds from a cached clock and can fire
        # before `delay` has passed since `started`: wait out the rest, so every request
        # takes at least its draw.
        remaining = delay - (time.perf_counter() - started)
        if remaining > 0:
            self.loop.call_later(remaining, self._respond, started, delay, woke)
            return
        # The clock stops as the answer is handed over: the client may read it before the
        # send returns here, so a stamp taken after the send could exceed what it saw.
        handed = time.perf_counter()
        self.write(http_response(RESPONSE_BODY))
        if not self.open:
            return
        self.truth.taken_ms.append((handed - started) * 1000.0)
        self.truth.drawn_ms.append(delay * 1000.0)
        self.truth.woke_ms.append(woke * 1000.0)


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip())
    return 0


def _accept(listener: socket.socket, truth: Truth, loop: asyncio.AbstractEventLoop) -> None:
    try:
        sock, _ = listener.accept()
    except BlockingIOError:
        return
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    enable_stamps(sock)
    Connection(sock, truth, loop)


async def serve(port: int, truth: Truth) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    # Set on the listener too: the kernel turns receive stamping on a moment after the first
    # socket asks for it, so asking at start stamps even the first connection's requests.
    enable_stamps(listener)
    loop.add_reader(listener.fileno(), _accept, listener, truth, loop)
    # The record grows by three floats a request (half a million objects at 32,000/s for
    # 5 s): the cyclic collector's passes over them held this loop for tens of milliseconds,
    # and every request waiting meanwhile took that long. Nothing here makes cycles.
    gc.disable()
    await asyncio.Event().wait()


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
