"""The demo's graph server: `infergraph serve` in a process of its own, always stopped.

The server starts MLServer in a session of its own, so stopping the server's process
group alone could leave MLServer behind if the server died first; `stop` therefore
collects every descendant before it signals, and kills whatever outlives the grace period.
Each descendant is remembered with its start time, and signalled only while the process
with its pid is still the one that was seen: a pid freed and taken by an unrelated process
since (pid reuse) is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from infergraph.demo.cores import pinned
from infergraph.errors import InfergraphError
from infergraph.ports import PORT_RETRIES, free_port, log_shows_a_lost_port

Family = dict[int, int]  # pid -> its start time (clock ticks after boot), as first seen


class DemoError(InfergraphError):
    """A demo step could not run; the message says which and why."""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """When the process with this pid started (field 22 of /proc/PID/stat); None if none
    lives (a zombie counts as gone). Two processes that held one pid never share it."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


def descendants(pid: int) -> Family:
    """Every process below `pid`, read from /proc (children of children included), with
    its start time."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: Family = {}
    frontier = [pid]
    while frontier:
        for child in parents.get(frontier.pop(), []):
            started = start_time(child)
            if started is not None:
                found[child] = started
            frontier.append(child)
    return found


def _still(family: Family) -> Family:
    """The members of `family` still alive as the same process they were seen as."""
    return {pid: t for pid, t in family.items() if start_time(pid) == t}


def _signal_all(family: Family, sig: signal.Signals) -> None:
    """Signal each member that is still the process it was seen as.

    With a pidfd (Linux 5.3+) the check and the signal are one process's, so a pid taken
    between them cannot be hit; without one the window is a few microseconds.
    """
    for pid, started in sorted(family.items()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                handle = os.pidfd_open(pid)
            except OSError:  # gone, or no pidfds here
                if start_time(pid) == started:
                    os.kill(pid, sig)
                continue
            try:
                if start_time(pid) == started:
                    signal.pidfd_send_signal(handle, sig)
            finally:
                os.close(handle)


SERVERS = ("infergraph.cli serve", "infergraph serve", "mlserver start")


def other_servers() -> list[int]:
    """Graph servers already running on this machine (another demo's, a test's), by pid:
    they share the CPUs this run measures with."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        text = command.decode(errors="replace")
        if any(server in text for server in SERVERS) and start_time(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


class GraphServer:
    """`infergraph serve GRAPH --offline` on a free port, its output in `log`.

    `cpus`: the CPUs the server and everything it starts run on (None: wherever the demo
    does); see `infergraph.demo.cores`.
    """

    def __init__(
        self,
        graph_file: Path,
        offline_scale: str,
        log: Path,
        cpus: tuple[int, ...] | None = None,
    ) -> None:
        self.graph_file = graph_file
        self.offline_scale = offline_scale
        self.log = log
        self.cpus = cpus
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0
        self._family: Family = {}  # the server's processes, as seen alive
        self._log_start = 0  # where the current start's output begins in `log`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GraphServer:
        return self.start()

    def start(self) -> GraphServer:
        """Launch the server, its log emptied; `wait_ready` waits for it."""
        self.log.write_bytes(b"")
        self._launch()
        return self

    def command(self) -> list[str]:
        """What the server runs: `infergraph serve` on the graph, offline, on `self.port`."""
        return [
            *(sys.executable, "-m", "infergraph.cli", "serve", str(self.graph_file)),
            *("--offline", "--offline-scale", self.offline_scale, "--port", str(self.port)),
        ]

    def _launch(self) -> None:
        """Start the server on `self.cpus`, its output appended to `log`.

        The CPUs are set on the thread that forks, for the fork only, so the server has them
        from its first instruction and every process it starts inherits them.
        """
        self._log_start = self.log.stat().st_size
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if self.cpus is not None:  # torch follows the CPUs; OpenMP elsewhere may read this
            env.setdefault("OMP_NUM_THREADS", str(len(self.cpus)))
        with open(self.log, "ab") as sink, pinned(self.cpus):
            self.process = subprocess.Popen(
                self.command(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from start to ready (checkpoints built, MLServer and router up)."""
        assert self.process is not None
        started = time.monotonic()
        retries = PORT_RETRIES
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                # Picked, then taken before serve bound it: start again on a fresh port.
                if retries and log_shows_a_lost_port(self.log, self._log_start):
                    retries -= 1
                    self.port = free_port()
                    self._launch()
                    continue
                tail = self.log.read_text(errors="replace")[-3000:]
                raise DemoError(f"the graph server exited before it was ready:\n{tail}")
            self._remember()
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    self.ready_s = time.monotonic() - started
                    return self.ready_s
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise DemoError(f"the graph was not ready after {timeout_s:.0f} s; its log: {self.log}")

    def _remember(self) -> Family:
        """Add the server's descendants alive now to its family (a pid seen before keeps the
        start time it was first seen with) and return the whole family."""
        if self.process is not None and self.process.poll() is None:  # a reaped pid is free
            for pid, started in descendants(self.process.pid).items():
                self._family.setdefault(pid, started)
        return self._family

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM the server, then SIGKILL whatever of its processes outlives the grace.

        A ready server stops its MLServer itself. One still starting would first wait for
        MLServer to come up, so then every process of the family is signalled at once.
        """
        if self.process is None:
            return
        family = _still(self._remember())
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            if not self.ready_s:
                _signal_all(family, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()  # our own child, not yet reaped: its pid is still its own
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10.0)  # never an untimed wait on a child
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and _still(family):
            time.sleep(0.2)
        _signal_all(_still(family), signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the server and every process it started, without waiting: the last resort
        of a demo whose ordinary stop hangs, or a second Ctrl-C (see `interrupt_guard`)."""
        if self.process is None:
            return
        family = _still(self._remember())
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        _signal_all(family, signal.SIGKILL)

    def left_running(self) -> list[int]:
        """The pids of the server and its processes still running (none once stopped)."""
        if self.process is None:
            return []
        alive = sorted(_still(self._family))
        if self.process.poll() is None:
            alive.insert(0, self.process.pid)
        return alive
