"""The demo's graph server: `infergraph serve` in a process of its own, always stopped.

The server starts MLServer in a session of its own, so stopping the server's process
group alone could leave MLServer behind if the server died first; `stop` therefore
collects every descendant before it signals, and kills whatever outlives the grace period.
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

from infergraph.errors import InfergraphError
from infergraph.ports import PORT_RETRIES, free_port, log_shows_a_lost_port


class DemoError(InfergraphError):
    """A demo step could not run; the message says which and why."""


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (children of children included)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(children)
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class GraphServer:
    """`infergraph serve GRAPH --offline` on a free port, its output in `log`."""

    def __init__(self, graph_file: Path, offline_scale: str, log: Path) -> None:
        self.graph_file = graph_file
        self.offline_scale = offline_scale
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0
        self._family: set[int] = set()  # the server's processes, as last seen alive
        self._log_start = 0  # where the current start's output begins in `log`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GraphServer:
        self.log.write_bytes(b"")
        self._launch()
        return self

    def _launch(self) -> None:
        """Start `infergraph serve` on `self.port`, its output appended to `log`."""
        self._log_start = self.log.stat().st_size
        command = [sys.executable, "-m", "infergraph.cli", "serve", str(self.graph_file)]
        command += ["--offline", "--offline-scale", self.offline_scale, "--port", str(self.port)]
        with open(self.log, "ab") as sink:
            self.process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
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
            self._family.update(descendants(self.process.pid))
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    self.ready_s = time.monotonic() - started
                    return self.ready_s
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise DemoError(f"the graph was not ready after {timeout_s:.0f} s; its log: {self.log}")

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
        family = self._family | set(descendants(self.process.pid))
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            if not self.ready_s:
                _signal_all(sorted(family), signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_all([self.process.pid], signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10.0)  # never an untimed wait on a child
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(_alive(pid) for pid in family):
            time.sleep(0.2)
        _signal_all([pid for pid in family if _alive(pid)], signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the server and every process it started, without waiting: the last resort
        of a demo whose ordinary stop hangs (see `interrupt_guard`)."""
        if self.process is not None:
            family = self._family | set(descendants(self.process.pid)) | {self.process.pid}
            _signal_all(sorted(family), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
