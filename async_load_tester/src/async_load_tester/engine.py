"""The load engine: open- and closed-loop drivers for HTTP/1.1 and gRPC.

HTTP goes through a minimal keep-alive client written as an asyncio Protocol
(uvloop underneath): each request is a pre-built bytes object written straight
to a pooled socket, and the response parser only finds the status line and the
body's end (Content-Length, chunked or close-delimited). That keeps the cost
per request to a few microseconds of Python, which is what lets one core keep
up with k6; aiohttp spends several times as much per request. Plain HTTP on
Linux runs the protocol on `stamped.StampedTransport`, so an answer's latency
ends when the kernel received it, however long the loop took to read it.

Open loop: every request has an intended send time from the schedule. The
scheduler sleeps on the event loop's timer until ~2 ms before the next one and
then spins through loop iterations (call_soon), because libuv timers only have
millisecond resolution; while answers are being taken in, a send that falls
due goes out between two of them (`catch_up`). Latency is measured from the
intended time, so when the tester or the server falls behind the delay shows
up in the numbers (no coordinated omission). A send that leaves more than `late_ms` after its
intended time is counted late; a send that finds `max_in_flight` requests
already outstanding is dropped (counted, and an SLO miss).

Closed loop: `concurrency` connections each send their next request as soon
as the previous answer arrives; latency counts from the actual send.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import re
import select
import ssl
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, Literal

from async_load_tester import stamped
from async_load_tester.errors import ConfigError
from async_load_tester.protocols.encode import MalformedResponse
from async_load_tester.protocols.encode import authority as host_port
from async_load_tester.recorder import Recorder
from async_load_tester.schedule import Arrival, Segment, arrival_chunks

Checker = Callable[[bytes, int], dict[str, float]]
ProgressFn = Callable[[dict[str, Any]], None]

_HEADER = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|inference-header-content-length)"
    rb"[ \t]*:[ \t]*([^\r\n]*)",
    re.IGNORECASE,
)
_MAX_HEAD = 64 * 1024
_SPIN_S = 0.002  # closer than this to the next send: wait precisely instead of on a timer
_PRECISE_MIN_S = 0.00005  # below this, just go round the loop once more
_WAKE_EARLY_S = 0.00002
_TICK_S = 0.5
# Folding latencies into the HDR histograms costs ~2 us a value with the loop held: fold
# often, so no send or read waits long behind a fold (8.5 ms per half second at 8,000/s).
_FOLD_S = 0.05
_SWEEP_S = 0.05
_RETRY_S = 0.01
_SELECT_MAX_FDS = 900  # select() handles fds below FD_SETSIZE (1024) only


@dataclass(frozen=True)
class StepPlan:
    """One measured step: open loop over `segments`, or closed loop at `concurrency`."""

    mode: Literal["open", "closed"]
    warmup: float
    duration: float | None
    requests: int | None = None
    segments: tuple[Segment, ...] = ()
    arrival: Arrival = "constant"
    concurrency: int = 1
    seed: int = 0


@dataclass
class StepOutcome:
    """What a step measured. `window_s` is its fixed measurement window (None for a
    --requests step, which ends at its count): throughput divides `recorder.window_ok` by it,
    since `elapsed_s` runs on to the last answer, a latency past the window's end."""

    recorder: Recorder
    elapsed_s: float
    wall_s: float
    in_flight_abandoned: int
    window_s: float | None = None


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    server_hostname: str | None = None
    insecure: bool = False


def _tight_timer_slack() -> None:
    """Ask Linux for 1 ns timer slack (default 50 us) so precise waits wake on time."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK


class _Driver:
    """Scheduling, accounting and finishing shared by the HTTP and gRPC drivers."""

    def __init__(
        self,
        wires: Sequence[bytes],
        recorder: Recorder,
        *,
        timeout_s: float,
        max_in_flight: int,
        late_s: float,
        checker: Checker | None,
        check_every: int,
        track_stages: bool,
    ) -> None:
        if not wires:
            raise ConfigError("--payload", "no payloads to send")
        self.loop = asyncio.get_running_loop()
        self.wires = list(wires)
        self.n_wires = len(self.wires)
        self.wire_i = 0
        self.rec = recorder
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.late_s = late_s
        self.checker = checker if check_every > 0 else None
        self.check_every = max(check_every, 1)
        self.check_n = 0
        self.track_stages = track_stages
        self.inflight = 0
        self.closed_loop = False
        self.stopping = False
        self.measure_from = float("inf")
        self.stop_at = float("inf")
        self.limit: int | None = None
        self.measured_issued = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.progress: ProgressFn | None = None
        self._handles: list[asyncio.TimerHandle] = []
        self._recent: list[int] = []  # latencies folded since the last progress tick
        self._status_kind: dict[int, str] = {}
        self._due = float("inf")  # the next open-loop send's intended time
        self._offs: list[float] = []
        self._oi = 0
        self._t0 = 0.0

    # ------------------------------------------------------------------ helpers

    def next_wire(self) -> bytes:
        i = self.wire_i
        self.wire_i = i + 1 if i + 1 < self.n_wires else 0
        return self.wires[i]

    def status_kind(self, status: int) -> str:
        kind = self._status_kind.get(status)
        if kind is None:
            kind = self._status_kind[status] = f"http_{status}"
        return kind

    def finish_if_idle(self) -> None:
        if self.stopping and self.inflight <= 0 and not self.done.done():
            self.done.set_result(None)

    def record_success(
        self, intended: float, sent: float, now: float, body: Any, json_len: int
    ) -> None:
        rec = self.rec
        if self.checker is not None:
            self.check_n += 1
            if self.check_n >= self.check_every:
                self.check_n = 0
                try:
                    timings = self.checker(body() if callable(body) else body, json_len)
                except MalformedResponse as exc:
                    rec.error("malformed", str(exc))
                    return
                if timings and self.track_stages:
                    stages = rec.stages
                    for key, value in timings.items():
                        stages[key].append(value)
        rec.ok += 1
        rec.latency_us.append(int((now - intended) * 1e6))
        rec.service_us.append(int((now - sent) * 1e6))
        rec.last_done = now
        if now <= self.stop_at:
            rec.window_ok += 1

    def record_warmup_success(self, now: float) -> None:
        """A warm-up request answered OK inside the window: throughput counts it (the server
        did that work in the window) though its latency is not measured or its body parsed."""
        if self.measure_from <= now <= self.stop_at:
            self.rec.window_ok += 1

    # ------------------------------------------------------------------ running

    async def run(self, plan: StepPlan, progress: ProgressFn | None = None) -> StepOutcome:
        self.progress = progress
        await self.prepare(plan)
        _tight_timer_slack()
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a collection pause would show up as late sends and tail latency
        wall0 = perf_counter()
        try:
            # Open loop starts 50 ms out so the first sends are not born late.
            start = perf_counter() + (0.05 if plan.mode == "open" else 0.0)
            self.measure_from = start + plan.warmup
            self.rec.first_intended = self.measure_from
            if plan.duration is not None:
                self.stop_at = self.measure_from + plan.duration
            self.limit = plan.requests
            self._every(_TICK_S, self._tick)
            self._every(_FOLD_S, self._fold)
            self._every(_SWEEP_S, self.sweep)
            if plan.mode == "open":
                self._chunks = arrival_chunks(plan.segments, plan.arrival, plan.seed)
                self._t0 = start
                self.loop.call_at(self.loop.time() + 0.04, self._schedule)
            else:
                self.closed_loop = True
                self.start_closed(plan.concurrency)
                if self.stop_at != float("inf"):
                    delay = max(self.stop_at - perf_counter(), 0.0)
                    self.loop.call_at(self.loop.time() + delay, self._stop_closed)
            grace = self.timeout_s + 5.0
            while True:
                try:
                    await asyncio.wait_for(asyncio.shield(self.done), timeout=grace)
                    break
                except TimeoutError:
                    if self.stopping:
                        break
        finally:
            for handle in self._handles:
                handle.cancel()
            if gc_was_enabled:
                gc.enable()
            abandoned = max(self.inflight, 0)
            await self.close()
        self.rec.drain()
        end = self.rec.last_done if self.rec.last_done > self.measure_from else perf_counter()
        elapsed = max(end - self.measure_from, 1e-9)
        window = plan.duration if plan.requests is None else None
        return StepOutcome(self.rec, elapsed, perf_counter() - wall0, abandoned, window)

    def _every(self, period: float, fn: Callable[[], None]) -> None:
        """Run `fn` every `period` until the step is done; its slot in `_handles` always
        holds the next pass's handle (to cancel at the end), never the passes already run."""
        slot = len(self._handles)

        def again() -> None:
            fn()
            if not self.done.done():
                self._handles[slot] = self.loop.call_later(period, again)

        self._handles.append(self.loop.call_later(period, again))

    def _fold(self) -> None:
        self._recent.extend(self.rec.drain())

    def _tick(self) -> None:
        self._fold()
        values, self._recent = self._recent, []
        self.rec.recent_us = values
        if self.closed_loop and perf_counter() >= self.stop_at:
            self._stop_closed()
        if self.progress is not None:
            self.progress(self.live_stats(values))

    def live_stats(self, recent: list[int]) -> dict[str, Any]:
        rec = self.rec
        now = perf_counter()
        return {
            "elapsed": max(now - self.measure_from, 0.0),
            "warming": now < self.measure_from,
            "ok": rec.ok,
            "errors": rec.error_count,
            "late": rec.late,
            "dropped": rec.dropped,
            "in_flight": self.inflight,
            "recent_p50_ms": sorted(recent)[len(recent) // 2] / 1000 if recent else None,
            "measured": self.measured_issued,
        }

    def _schedule(self) -> None:
        """Send every request whose intended time has come, then wait for the next."""
        t = self._send_due(perf_counter())
        if t is None:
            return
        wait = t - perf_counter()
        if wait > _SPIN_S:
            self.loop.call_later(wait - _SPIN_S * 0.75, self._schedule)
            return
        if wait > _PRECISE_MIN_S:
            self.precise_wait(wait - _WAKE_EARLY_S)
        self.loop.call_soon(self._schedule)

    def catch_up(self) -> None:
        """Send what has fallen due while the loop was taking in answers, without waiting for
        the rest of them: a late send is the tester's error in its latency, while an answer
        taken in late costs nothing (its arrival time is the kernel's)."""
        if perf_counter() >= self._due:
            self._send_due(perf_counter())

    def _send_due(self, now: float) -> float | None:
        """Send every request intended by `now`; the next one's intended time, or None once
        the schedule (or the run) has ended. Both the scheduler's passes and the answers'
        catch-ups come here, so once the end is found every later call sends nothing."""
        if self.stopping:
            return None
        offs, i, t0 = self._offs, self._oi, self._t0
        stop_at, limit = self.stop_at, self.limit
        while True:
            if i >= len(offs):
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._stop_open()
                    return None
                self._offs = offs = chunk
                i = 0
                continue
            t = t0 + offs[i]
            if t > now:
                break
            if t >= stop_at or (limit is not None and self.measured_issued >= limit):
                self._stop_open()
                return None
            i += 1
            self._fire(t)
        self._oi = i
        self._due = t
        return t

    def precise_wait(self, seconds: float) -> None:
        """Sleep up to `seconds` unless a response arrives first (drivers with sockets).

        Spinning through the loop would also be precise but burns the core, and a
        core hog gets preempted for whole scheduler slices when the machine is
        shared; a sleeper is woken promptly.
        """

    def _fire(self, intended: float) -> None:
        measured = intended >= self.measure_from
        rec = self.rec
        if measured:
            self.measured_issued += 1
            rec.sent += 1
        if self.inflight >= self.max_in_flight and not self.has_idle():
            if measured:
                rec.dropped += 1
            return
        sent = perf_counter()
        if measured:
            lag = sent - intended
            if lag > self.late_s:
                rec.late += 1
                if lag > rec.max_late_s:
                    rec.max_late_s = lag
        self.inflight += 1
        self.send_open(self.next_wire(), intended, sent, measured)

    def _stop_open(self) -> None:
        self._due = float("inf")
        self.stopping = True
        self.finish_if_idle()

    def _stop_closed(self) -> None:
        self.stopping = True
        self.finish_if_idle()

    def closed_may_issue(self, now: float) -> bool:
        if self.stopping:
            return False
        if now >= self.stop_at or (self.limit is not None and self.measured_issued >= self.limit):
            self.stopping = True
            return False
        return True

    # ------------------------------------------------------------ to implement

    async def prepare(self, plan: StepPlan) -> None:
        raise NotImplementedError

    def has_idle(self) -> bool:
        raise NotImplementedError

    def send_open(self, wire: bytes, intended: float, sent: float, measured: bool) -> None:
        raise NotImplementedError

    def start_closed(self, concurrency: int) -> None:
        raise NotImplementedError

    def sweep(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# =============================================================================== HTTP


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    __slots__ = (
        "arrived",
        "body_len",
        "body_start",
        "buf",
        "busy",
        "chunked",
        "close_after",
        "drv",
        "fd",
        "intended",
        "json_len",
        "measured",
        "pending",
        "sent",
        "status",
        "transport",
    )

    def __init__(self, drv: HttpDriver) -> None:
        self.drv = drv
        self.fd = -1
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.pending: tuple[bytes, float, bool] | None = None
        self.intended = 0.0
        self.sent = 0.0
        self.measured = False
        self.arrived = 0.0  # when the bytes last read reached this host (perf_counter)
        self._reset_parse()

    def _reset_parse(self) -> None:
        self.body_len = -2  # -2: awaiting head, -1: until close, >= 0: bytes
        self.body_start = 0
        self.status = 0
        self.chunked = False
        self.close_after = False
        self.json_len = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.drv.connected(self)

    def send(self, wire: bytes, intended: float, sent: float, measured: bool) -> None:
        self.busy = True
        self.intended = intended
        self.sent = sent
        self.measured = measured
        self.transport.write(wire)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        """A read through asyncio's transport (TLS), timed when the loop hands it over."""
        self.data_received_at(data, perf_counter())

    def data_received_at(self, data: bytes, arrived: float) -> None:
        """Parse the response as its bytes arrive: head first, then the body its head announced.

        The hot path: one call per read, each step a few slices and finds on the buffer it is
        handed (never a copy of it), and unfinished input kept in `self.buf` for the next read.
        `arrived` (the kernel's receive time where the transport has it) ends the latency.
        """
        self.arrived = arrived
        if not self.busy:
            self.transport.abort()  # type: ignore[union-attr]  # unsolicited bytes
            return
        buf = self.buf + data if self.buf else data
        if self.body_len == -2 and not self._read_head(buf):
            return
        if self.body_len >= 0:
            self._read_sized_body(buf)
        elif self.body_len == -3:
            self._read_chunked_body(buf)
        else:
            self.buf = buf  # close-delimited: the body ends with the connection

    def _read_head(self, buf: bytes) -> bool:
        """Parse the head once it is whole; False when there is no body to read yet.

        False covers a head still arriving (kept), a malformed one (failed) and an interim 1xx
        response, which is skipped by handing what follows it back to `data_received`.
        """
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._fail("malformed", "response head over 64 KiB")
            else:
                self.buf = buf
            return False
        status = self._status_line(buf)
        if status is None:
            return False
        if 100 <= status < 200:  # interim response: skip it
            self.buf = b""
            rest = buf[end + 4 :]
            if rest:
                self.data_received(rest)
            return False
        # An HTTP/1.0 answer closes its connection unless it says keep-alive (RFC 9112 9.3).
        length = self._header_fields(buf, end, buf[5:8] == b"1.0")
        if length is None:
            return False
        self.status = status
        self.body_start = end + 4
        if self.chunked:
            length = -3
        elif length < 0 and status in (204, 304):
            length = 0
        self.body_len = length
        return True

    def _status_line(self, buf: bytes) -> int | None:
        """The status code, or None (the request failed) when the head is not HTTP/1.x."""
        if buf[:7] != b"HTTP/1.":
            self._fail("malformed", f"not an HTTP/1.x response: {bytes(buf[:40])!r}")
            return None
        try:
            return int(buf[9:12])
        except ValueError:
            self._fail("malformed", f"bad status line: {bytes(buf[:40])!r}")
            return None

    def _header_fields(self, buf: bytes, end: int, http10: bool) -> int | None:
        """Read the framing headers into the parse state; returns Content-Length (-1: none).

        One regex pass over the head finds only the four headers that matter, so other headers
        cost no Python work. None (the request failed) when a length is not a number. An
        HTTP/1.0 answer (`http10`) closes the connection unless it says `keep-alive`.
        """
        length = -1
        self.close_after = http10
        try:
            for name, value in _HEADER.findall(buf, 0, end + 2):
                lname = name.lower()
                if lname == b"content-length":
                    length = int(value)
                elif lname == b"transfer-encoding":
                    self.chunked = b"chunked" in value.lower()
                elif lname == b"connection":
                    tokens = value.lower()
                    self.close_after = b"close" in tokens or (
                        http10 and b"keep-alive" not in tokens
                    )
                else:
                    self.json_len = int(value)
        except ValueError:
            self._fail("malformed", "unparseable Content-Length")
            return None
        return length

    def _read_sized_body(self, buf: bytes) -> None:
        """Complete once Content-Length bytes are in; more than that is a protocol error.

        One request is in flight per connection, so bytes past the body cannot be a next reply.
        """
        stop = self.body_start + self.body_len
        have = len(buf)
        if have < stop:
            self.buf = buf
            return
        if have > stop:
            self._fail("malformed", "bytes after the response body")
            return
        self.buf = b""
        self._complete(buf, self.body_start, stop)

    def _read_chunked_body(self, buf: bytes) -> None:
        """Complete once the last chunk is in; a body that never ends is cut off at 256 MiB."""
        decoded = _dechunk(buf, self.body_start)
        if decoded is None:
            self.buf = buf
            if len(buf) > 256 * 1024 * 1024:
                self._fail("malformed", "chunked body never ends")
            return
        if not isinstance(decoded, bytes):
            self._fail("malformed", "bad chunked encoding")
            return
        self.buf = b""
        self._complete(decoded, 0, len(decoded))

    def _complete(self, buf: bytes, start: int, stop: int) -> None:
        status, close, json_len = self.status, self.close_after, self.json_len
        self._reset_parse()
        self.busy = False
        self.drv.completed(self, status, buf, start, stop, json_len, close)

    def _fail(self, kind: str, detail: str) -> None:
        self.buf = b""
        self._reset_parse()
        if self.busy:
            self.busy = False
            self.drv.failed(self, kind, detail)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            if self.body_len == -1 and exc is None:
                buf = self.buf
                self.buf = b""
                self.close_after = True
                self._complete(buf, self.body_start, len(buf))
            else:
                self.busy = False
                self.buf = b""
                reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
                self._reset_parse()
                self.drv.failed(self, "reset", reason)
        self.drv.lost(self)


def _dechunk(buf: bytes, pos: int) -> bytes | bool | None:
    """Chunked body from `pos`: the bytes, None if incomplete, False if malformed."""
    parts: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(buf[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            return False
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers end with an empty line
            if end < 0:
                return None
            return b"".join(parts) if end + 4 == len(buf) else False
        if len(buf) < pos + size + 2:
            return None
        parts.append(buf[pos : pos + size])
        pos += size + 2


class HttpDriver(_Driver):
    """Open/closed loop over a pool of keep-alive HTTP/1.1 connections."""

    def __init__(
        self,
        endpoint: Endpoint,
        wires: Sequence[bytes],
        recorder: Recorder,
        *,
        connections: int,
        **kw: Any,
    ) -> None:
        super().__init__(wires, recorder, **kw)
        self.endpoint = endpoint
        self.initial_connections = connections
        self.idle: deque[_Conn] = deque()
        self.conns: set[_Conn] = set()
        self.connecting = 0
        self.ssl: ssl.SSLContext | None = None
        if endpoint.tls:
            self.ssl = ssl.create_default_context()
            if endpoint.insecure:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        self._tasks: set[asyncio.Task[None]] = set()
        self.fds: list[int] = []
        self.addresses: list[stamped.Address] = []  # resolved once, at the first connect

    def precise_wait(self, seconds: float) -> None:
        fds = self.fds
        if 0 < len(fds) <= _SELECT_MAX_FDS:
            with contextlib.suppress(OSError, ValueError):
                select.select(fds, (), (), seconds)

    async def prepare(self, plan: StepPlan) -> None:
        if self.ssl is None and stamped.AVAILABLE:
            # Once, before any connection: a burst of connects each resolving afresh would
            # queue on the loop's resolver threads. A name that does not resolve fails each
            # request's connect instead, where it is counted.
            with contextlib.suppress(OSError):
                self.addresses = await stamped.resolve(
                    self.loop, self.endpoint.host, self.endpoint.port
                )
        count = (
            plan.concurrency
            if plan.mode == "closed"
            else min(self.initial_connections, self.max_in_flight)
        )
        if plan.mode == "closed":
            self.max_in_flight = plan.concurrency
            return  # closed loop connects as its users start
        results = await asyncio.gather(
            *(self._open(None) for _ in range(count)), return_exceptions=True
        )
        del results  # refused connections are counted when requests need them

    async def _open(self, pending: tuple[bytes, float, bool] | None) -> None:
        conn = _Conn(self)
        conn.pending = pending
        self.connecting += 1
        try:
            await asyncio.wait_for(self._connect(conn), timeout=self.timeout_s)
        except (OSError, TimeoutError) as exc:
            self.connecting -= 1
            if conn.pending is not None:
                _, _, measured = conn.pending
                conn.pending = None
                self.inflight -= 1
                if measured:
                    self.rec.error("connect", f"{type(exc).__name__}: {exc}")
                if self.closed_loop:
                    self.loop.call_later(_RETRY_S, self._closed_next, None)
                self.finish_if_idle()

    async def _connect(self, conn: _Conn) -> None:
        """Plain HTTP on Linux reads with the kernel's receive times; TLS through asyncio."""
        ep = self.endpoint
        if self.ssl is None and stamped.AVAILABLE:
            if not self.addresses:
                self.addresses = await stamped.resolve(self.loop, ep.host, ep.port)
            await stamped.open_stamped(self.loop, conn, self.addresses)
            return
        await self.loop.create_connection(
            lambda: conn, ep.host, ep.port, ssl=self.ssl,
            server_hostname=ep.server_hostname if self.ssl else None,
        )  # fmt: skip

    def _spawn(self, pending: tuple[bytes, float, bool] | None) -> None:
        task = self.loop.create_task(self._open(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connected(self, conn: _Conn) -> None:
        self.connecting -= 1
        self.conns.add(conn)
        conn.fd = _fileno(conn.transport)
        if conn.fd >= 0:
            self.fds.append(conn.fd)
        pending = conn.pending
        if pending is not None:
            conn.pending = None
            wire, intended, measured = pending
            conn.send(wire, intended, perf_counter(), measured)
        elif self.stopping:
            conn.transport.close()  # type: ignore[union-attr]
        else:
            self.idle.append(conn)

    def has_idle(self) -> bool:
        return bool(self.idle)

    def send_open(self, wire: bytes, intended: float, sent: float, measured: bool) -> None:
        idle = self.idle
        if idle:
            idle.popleft().send(wire, intended, sent, measured)
        else:
            self._spawn((wire, intended, measured))

    def start_closed(self, concurrency: int) -> None:
        for _ in range(concurrency):
            self._closed_next(None)

    def _closed_next(self, conn: _Conn | None) -> None:
        now = perf_counter()
        if not self.closed_may_issue(now):
            if conn is not None:
                self.idle.append(conn)
            self.finish_if_idle()
            return
        measured = now >= self.measure_from
        if measured:
            self.measured_issued += 1
            self.rec.sent += 1
        self.inflight += 1
        wire = self.next_wire()
        if conn is None:
            self._spawn((wire, now, measured))
        else:
            conn.send(wire, now, now, measured)

    def completed(
        self,
        conn: _Conn,
        status: int,
        buf: bytes,
        start: int,
        stop: int,
        json_len: int,
        close: bool,
    ) -> None:
        now = conn.arrived
        self.inflight -= 1
        if conn.measured:
            if 200 <= status < 300:
                self.record_success(
                    conn.intended, conn.sent, now, partial(_slice, buf, start, stop), json_len
                )
            else:
                self.rec.error(
                    self.status_kind(status),
                    bytes(buf[start : min(stop, start + 300)]).decode("utf-8", "replace"),
                )
        elif 200 <= status < 300:
            self.record_warmup_success(now)
        if close:
            conn.transport.close()  # type: ignore[union-attr]
            if self.closed_loop:
                self._closed_next(None)
        elif self.closed_loop:
            self._closed_next(conn)
        else:
            self.idle.append(conn)
            self.catch_up()
        if self.stopping:
            self.finish_if_idle()

    def failed(self, conn: _Conn, kind: str, detail: str) -> None:
        self.inflight -= 1
        if conn.measured:
            self.rec.error(kind, detail)
        if self.closed_loop:
            self.loop.call_soon(self._closed_next, None)
        self.finish_if_idle()

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn.fd >= 0:
            with contextlib.suppress(ValueError):
                self.fds.remove(conn.fd)
            conn.fd = -1
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def sweep(self) -> None:
        deadline = perf_counter() - self.timeout_s
        for conn in list(self.conns):
            if conn.busy and conn.sent < deadline:
                conn._fail("timeout", f"no complete response within {self.timeout_s:g} s")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.busy = False
                conn.transport.abort()
        await asyncio.sleep(0)


def _fileno(transport: asyncio.BaseTransport | None) -> int:
    sock = transport.get_extra_info("socket") if transport is not None else None
    try:
        return sock.fileno() if sock is not None else -1
    except (OSError, ValueError):
        return -1


def _slice(buf: bytes, start: int, stop: int) -> bytes:
    return buf[start:stop] if start or stop != len(buf) else buf


# =============================================================================== gRPC


# The answers of a server that is up but overloaded: HTTP 503 (our batcher's full queue,
# Triton's max_queue_size, a router relaying either) and gRPC UNAVAILABLE sent by the server.
# They count as refusals, which a graph's `spec.slo.maxRefusedPercent` limits.
REFUSAL_KINDS = ("http_503", "grpc_unavailable")
# How grpc-core's details begin when the channel itself failed and no server answered
# (grpcio 1.85's wording): the call could not be placed ...
_CHANNEL_CONNECT = (
    "failed to connect to all addresses",
    "connections to all backends failing",
    "dns resolution failed",
    "could not contact dns servers",
    "connection attempt timed out",
    "empty address",
)
# ... or the connection went while the call was on it.
_CHANNEL_LOST = (
    "socket closed",
    "connection reset",
    "connection going away",
    "recvmsg",
    "sendmsg",
    "goaway received",
    "transport closed",
    "client transport closed",
    "endpoint closed",
    "endpoint closing",
    "endpoint read failed",
    "broken pipe",
    "keepalive",
    "ping timeout",
    "cancelling all calls",
    "channel shutdown",
    "channel destroyed",
    "delayed close",
    "fd shutdown",
    "secure read failed",
    "handshake read failed",
    "handshake write failed",
    "tls handshake failed",
    "timeout occurred",
    "transport destroyed",
)


# This kit's runtimes refuse with "<model>: overloaded: ..." (errors.QueueFullError).
_OVERLOADED = re.compile(r"[\w.-]+: overloaded\b")


def _unavailable_kind(detail: str) -> str:
    """UNAVAILABLE is both grpc-core's code for a channel that failed and a server's answer
    that it is overloaded, and nothing else tells them apart (the client sees the same empty
    metadata and a debug string that repeats the details): grpc-core's own details begin
    with one of its phrases above; anything else came from the server (ours: "<model>:
    overloaded: ...", Envoy's "upstream connect error ... reset reason: overflow") and is a
    refusal. Matched at the start, so a model named `connector` or `geofence` does not turn
    its refusals into channel failures."""
    if _OVERLOADED.match(detail):  # before the phrases: a model may be named `keepalive-x`
        return "grpc_unavailable"
    lowered = detail.lower()
    if lowered.startswith(_CHANNEL_CONNECT):
        return "connect"
    if lowered.startswith(_CHANNEL_LOST):
        return "reset"
    return "grpc_unavailable"


class GrpcDriver(_Driver):
    """Open/closed loop over grpc.aio channels; requests are pre-serialized bytes."""

    METHOD = "/inference.GRPCInferenceService/ModelInfer"

    def __init__(
        self,
        endpoint: Endpoint,
        wires: Sequence[bytes],
        recorder: Recorder,
        *,
        channels: int,
        metadata: Sequence[tuple[str, str]],
        authority: str | None,
        **kw: Any,
    ) -> None:
        super().__init__(wires, recorder, **kw)
        import grpc

        self.grpc = grpc
        target = host_port(endpoint.host, endpoint.port)  # gRPC's target name
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.use_local_subchannel_pool", 1),  # separate connections per channel
        ]
        if authority:
            options.append(("grpc.default_authority", authority))
        if endpoint.tls:
            creds = grpc.ssl_channel_credentials()
            self.channels = [
                grpc.aio.secure_channel(target, creds, options=options) for _ in range(channels)
            ]
        else:
            self.channels = [
                grpc.aio.insecure_channel(target, options=options) for _ in range(channels)
            ]
        self.methods = [ch.unary_unary(self.METHOD) for ch in self.channels]
        self.method_i = 0
        self.metadata = tuple(metadata) or None
        self.calls: dict[asyncio.Future[Any], float] = {}

    async def prepare(self, plan: StepPlan) -> None:
        if plan.mode == "closed":
            self.max_in_flight = plan.concurrency
        for ch in self.channels:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(ch.channel_ready(), timeout=min(self.timeout_s, 10.0))

    def has_idle(self) -> bool:
        return False

    def _call(self, wire: bytes, intended: float, sent: float, measured: bool) -> None:
        i = self.method_i
        self.method_i = i + 1 if i + 1 < len(self.methods) else 0
        call = self.methods[i](wire, timeout=self.timeout_s, metadata=self.metadata)
        fut = asyncio.ensure_future(call)
        self.calls[fut] = sent
        fut.add_done_callback(partial(self._done, intended, sent, measured))

    def send_open(self, wire: bytes, intended: float, sent: float, measured: bool) -> None:
        self._call(wire, intended, sent, measured)

    def start_closed(self, concurrency: int) -> None:
        for _ in range(concurrency):
            self._closed_next()

    def _closed_next(self) -> None:
        now = perf_counter()
        if not self.closed_may_issue(now):
            self.finish_if_idle()
            return
        measured = now >= self.measure_from
        if measured:
            self.measured_issued += 1
            self.rec.sent += 1
        self.inflight += 1
        self._call(self.next_wire(), now, now, measured)

    def _done(self, intended: float, sent: float, measured: bool, fut: asyncio.Future[Any]) -> None:
        now = perf_counter()
        self.calls.pop(fut, None)
        self.inflight -= 1
        exc = None if fut.cancelled() else fut.exception()
        kind, detail = self._error_kind(exc) if exc is not None else ("", "")
        if measured:
            if fut.cancelled():
                self.rec.error("cancelled", "call cancelled at shutdown")
            elif exc is not None:
                self.rec.error(kind, detail)
            else:
                self.record_success(intended, sent, now, fut.result(), -1)
        elif not fut.cancelled() and exc is None:
            self.record_warmup_success(now)
        if self.closed_loop:
            if kind == "connect":
                self.loop.call_later(_RETRY_S, self._closed_next)  # don't spin on a dead target
            else:
                self._closed_next()
        else:
            self.catch_up()
        if self.stopping:
            self.finish_if_idle()

    def _error_kind(self, exc: BaseException) -> tuple[str, str]:
        grpc = self.grpc
        if isinstance(exc, grpc.aio.AioRpcError):
            code = exc.code()
            detail = exc.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return "timeout", detail
            if code == grpc.StatusCode.UNAVAILABLE:
                return _unavailable_kind(detail), detail
            return f"grpc_{code.name.lower()}", detail
        return "malformed" if isinstance(
            exc, MalformedResponse
        ) else "client", f"{type(exc).__name__}: {exc}"

    def sweep(self) -> None:
        return None  # gRPC deadlines time calls out

    async def close(self) -> None:
        for fut in list(self.calls):
            fut.cancel()
        for ch in self.channels:
            await ch.close(grace=None)
