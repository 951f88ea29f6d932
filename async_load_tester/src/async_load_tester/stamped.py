"""A plain-TCP transport that hands each read over with the time the kernel received it.

A latency ends when the answer reaches this host, not when a busy event loop gets round
to reading it: at tens of thousands of requests a second the loop is always busy, and the
wait behind other answers (a few hundred microseconds at 32,000/s on one core) would be
the tester's own error in every figure. Linux stamps each received segment
(SO_TIMESTAMPNS); a read with `recvmsg` returns the stamp of the last byte read, which is
what ends the clock. asyncio's transports read with `recv` and never see the stamp, so
plain HTTP goes through this small transport instead (TLS keeps asyncio's, timed at the
read). Everything else a protocol expects of a transport (write, close, abort,
`connection_lost` on the next loop pass) behaves as asyncio's does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from typing import Protocol

# Linux's socket option and control message for a receive timestamp as a timespec
# (include/uapi/asm-generic/socket.h); Python's socket module does not name them.
SO_TIMESTAMPNS = SCM_TIMESTAMPNS = 35
_STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
_READ_SIZE = 1 << 16
_TIMESPEC = struct.Struct("qq")  # struct timespec on 64-bit Linux: seconds, nanoseconds
AVAILABLE = sys.platform == "linux" and hasattr(socket.socket, "recvmsg")


class StampedProtocol(Protocol):
    """What the transport drives: asyncio's protocol calls, reads with their arrival time."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def data_received_at(self, data: bytes, arrived: float) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...


def arrival(ancillary: list[tuple[int, int, bytes]], read: float) -> float:
    """When the kernel received the bytes just read, on the `time.perf_counter` clock, given
    `read`, that clock's reading at the read (an upper bound: nothing arrives after it).

    The kernel stamps CLOCK_REALTIME. The wall clock is read, then perf_counter at once, and
    the stamp's age on the first is taken back from the second: a preemption before the pair
    moves both alike, and one between them (nanoseconds apart) only makes the arrival late,
    never early, which `read` bounds. Read afresh every time, so a slewing wall clock never
    drifts it. Without a stamp (not Linux), or one from the future (the wall clock stepped),
    `read`. The sockets here ask for this one control message only, so it is the first."""
    if ancillary and ancillary[0][1] == SCM_TIMESTAMPNS:
        sec, nsec = _TIMESPEC.unpack_from(ancillary[0][2])
        age_ns = time.time_ns() - sec * 1_000_000_000 - nsec
        now = time.perf_counter()
        if age_ns > 0:
            return min(now - float(age_ns) * 1e-9, read)
    return read


def enable_stamps(sock: socket.socket) -> None:
    """Ask the kernel to stamp what this socket receives (a no-op where it cannot)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return


SocketAddress = tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]
Address = tuple[socket.AddressFamily, socket.SocketKind, int, SocketAddress]


async def resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[Address]:
    """The addresses to try for `host:port` (family, type, protocol, address), in order.

    Resolved once for a whole run: the loop resolves in a thread pool, and a burst of
    hundreds of connections, each resolving afresh, waited on it in turn."""
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not found:
        raise OSError(f"{host}:{port} resolved to no address")
    return [(family, kind, proto, address) for family, kind, proto, _, address in found]


async def open_stamped(
    loop: asyncio.AbstractEventLoop, protocol: StampedProtocol, addresses: list[Address]
) -> StampedTransport:
    """Connect to the first of `addresses` that accepts, and start `protocol` on it."""
    failure: OSError = OSError("no address to connect to")
    for family, kind, proto, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failure = _naming(exc, address)
            continue
        except BaseException:
            sock.close()
            raise
        enable_stamps(sock)
        return StampedTransport(loop, sock, protocol)
    raise failure


def _naming(exc: OSError, address: SocketAddress) -> OSError:
    """The error as the system names it ("Connection refused") and the address it was for."""
    if not exc.errno:
        return exc
    return type(exc)(exc.errno, f"{os.strerror(exc.errno)} ({address[0]!s}:{address[1]!s})")


class StampedTransport(asyncio.Transport):
    """One connected non-blocking socket, read with `recvmsg` for each read's arrival."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StampedProtocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._unsent = b""  # what the socket would not take yet; sent as it drains
        self._closing = False
        loop.add_reader(self._fd, self._readable)
        protocol.connection_made(self)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self._sock if name == "socket" else default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if self._unsent:
            self._unsent += bytes(data)
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lose(exc)
            return
        if sent < len(data):
            self._unsent = bytes(data[sent:])
            self._loop.add_writer(self._fd, self._writable)

    def close(self) -> None:
        self._lose(None)

    def abort(self) -> None:
        self._lose(None)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        self._unsent = self._unsent[sent:]
        if not self._unsent:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(_READ_SIZE, _STAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        if not data:  # the peer closed: what it sent is all there is
            self._lose(None)
            return
        self._protocol.data_received_at(data, arrival(ancillary, time.perf_counter()))

    def _lose(self, exc: Exception | None) -> None:
        """Stop reading and writing now; tell the protocol on the next pass, as asyncio does."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._unsent = b""
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Exception | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
