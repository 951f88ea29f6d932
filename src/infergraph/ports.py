"""Local ports for the servers infergraph starts, and how to tell that one was lost.

A picked port is free only until the server binds it. Two kinds of neighbour can take it in
between: another process picking at the same time, and the kernel, which gives any outgoing
connection a local port from its ephemeral range (`net.ipv4.ip_local_port_range`). Picking at
random below that range removes the second kind; the first stays possible, so whoever starts a
server watches its log for `lost_a_port` and starts it again on fresh ports.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

# Linux's default ephemeral range, for kernels that do not say (ip-sysctl.rst,
# ip_local_port_range: "32768 60999").
_DEFAULT_EPHEMERAL = (32768, 60999)
_EPHEMERAL_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Well clear of the registered services users run beside us (databases at 3306/5432/6379/8080
# and the like) while leaving thousands of ports to pick from.
LOWEST_PICK = 10000
# Fewer candidates than this below the ephemeral range and the kernel picks instead.
_MIN_RANGE = 1000
_ATTEMPTS = 64

# How uvicorn, grpcio and gunicorn report a port bound by someone else, lower-cased.
_LOST_SIGNS = ("address already in use", "failed to bind", "connection in use")
# A server that lost a port race is started again on fresh ports, this many times.
PORT_RETRIES = 3


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports, inclusive."""
    try:
        low, high = (int(part) for part in _EPHEMERAL_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def _candidate(low: int, high: int) -> int:
    """A random port in [low, high): random, not sequential, so that two pickers at the same
    moment rarely meet. `secrets` rather than `random`: a test that seeds `random` must not make
    every process pick the same ports."""
    return low + secrets.randbelow(high - low)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_pick() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now, below the kernel's ephemeral range."""
    low, _ = ephemeral_range()
    if low - LOWEST_PICK < _MIN_RANGE:
        return _kernel_pick()
    for _ in range(_ATTEMPTS):
        port = _candidate(LOWEST_PICK, low)
        if _bindable(port):
            return port
    return _kernel_pick()


def lost_a_port(log_text: str) -> bool:
    """Whether a server's log says it could not bind a port someone else holds."""
    text = log_text.lower()
    return any(sign in text for sign in _LOST_SIGNS)


def log_shows_a_lost_port(log: Path, start: int) -> bool:
    """Whether the output a server appended to `log` from byte `start` (this start's, where
    restarts append to one log) says it lost a port; a log not there says nothing."""
    try:
        with open(log, "rb") as log_file:
            log_file.seek(start)
            text = log_file.read().decode(errors="replace")
    except OSError:
        return False
    return lost_a_port(text)
