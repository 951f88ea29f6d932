"""Ctrl-C always ends the demo: the watchdog `interrupt_guard` arms on the first SIGINT.

Each case is a real Python process sent a real SIGINT. The hang case reproduces what a
teardown stuck on a lock looks like (the main thread blocked in an untimed lock wait, as a
demo was once seen under load) and checks the process still exits, says why, shows its
threads and runs the cleanup that kills what the demo started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from infergraph.demo.server import GraphServer
from infergraph.demo.story import interrupted_text
from tests.servers import running

GUARDED = """
import sys, threading, time
from pathlib import Path
from infergraph.demo.interrupts import interrupt_guard

marker = Path(sys.argv[1])
hang = sys.argv[2] == "hang"
try:
    with interrupt_guard(1.0, lambda: marker.write_text("killed")):
        print("ready", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    if hang:
        stuck = threading.Lock()
        stuck.acquire()
        stuck.acquire()  # a teardown that never returns
"""


def _interrupted(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", GUARDED, str(tmp_path / "cleanup"), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sent


def test_a_teardown_that_hangs_after_ctrl_c_still_exits_130_and_shows_its_threads(
    tmp_path: Path,
) -> None:
    done, _ = _interrupted(tmp_path, "hang")
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stdout
    assert "did not stop within 1 s of Ctrl-C" in done.stderr
    assert "most recent call first" in done.stderr  # faulthandler's stack of each thread
    assert (tmp_path / "cleanup").read_text() == "killed"


def test_a_demo_that_stops_in_time_is_left_to_exit_on_its_own(tmp_path: Path) -> None:
    done, _ = _interrupted(tmp_path, "stop")
    assert done.returncode == 0, done.stderr  # the program's own exit, not the watchdog's 130
    assert "did not stop" not in done.stderr
    assert not (tmp_path / "cleanup").exists()


# `run_demo` itself, its graph server a real process slow to honour SIGTERM (as a server still
# starting MLServer is) and its sweep a step that takes long enough to be interrupted.
DEMO_SLOW_TO_STOP = """
import subprocess, sys, time
from pathlib import Path
from infergraph.demo import steps, story
from infergraph.demo.server import GraphServer
from infergraph.demo.steps import DemoSettings

out, pidfile = Path(sys.argv[1]), Path(sys.argv[2])
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
)

class SlowToStop(GraphServer):
    def _launch(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", IGNORES_SIGTERM],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pidfile.write_text(str(self.process.pid))

    def wait_ready(self, timeout_s):
        self.ready_s = 0.5
        return self.ready_s

def a_load_step(*args, **kwargs):
    print("measuring", flush=True)
    time.sleep(120)

story.GraphServer = SlowToStop
steps.find_knee = a_load_step
try:
    story.run_demo(DemoSettings(out=out, scale="tiny"))
except KeyboardInterrupt:
    sys.exit(130)
"""


def _wait_ignoring_sigterm(pid: int) -> None:
    """Until the stand-in server has set SIGTERM aside (its SigIgn mask has bit 15)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = next(line for line in status.splitlines() if line.startswith("SigIgn"))
        if int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.05)
    raise AssertionError("the stand-in server never ignored SIGTERM")


def test_a_second_ctrl_c_while_the_server_stops_kills_it_and_never_cuts_the_stop_short(
    tmp_path: Path,
) -> None:
    """The impatient user: Ctrl-C, and again 2 s later while the server is still stopping.

    The second escalates to SIGKILL instead of abandoning the stop, so nothing is left
    running, and the demo says every process is stopped only once that is true.
    """
    pidfile, said = tmp_path / "server.pid", tmp_path / "demo.out"
    with said.open("w") as sink:  # a file, not a pipe: a server left running cannot hold it
        proc = subprocess.Popen(
            [sys.executable, "-c", DEMO_SLOW_TO_STOP, str(tmp_path / "out"), str(pidfile)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "100"},
        )
    server = 0
    try:
        deadline = time.monotonic() + 120
        while "measuring" not in said.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, said.read_text()
            time.sleep(0.1)
        server = int(pidfile.read_text())
        _wait_ignoring_sigterm(server)
        proc.send_signal(signal.SIGINT)
        time.sleep(2.0)
        assert running(server)  # the first Ctrl-C's SIGTERM is ignored: still stopping
        proc.send_signal(signal.SIGINT)
        second = time.monotonic()
        proc.wait(timeout=60)
        took = time.monotonic() - second
        left = running(server)
        rest = said.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if server and running(server):
            os.kill(server, signal.SIGKILL)
    assert not left, f"the graph server outlived the demo:\n{rest[-3000:]}"
    assert proc.returncode == 130, rest[-3000:]
    assert took < 20, f"the second Ctrl-C did not cut the 30 s grace short ({took:.0f} s)"
    assert "every process the demo started is stopped" in " ".join(rest.split())
    assert "Traceback" not in rest, rest[-3000:]


class Sleeper(GraphServer):
    """A server that never stops by itself: what a stop that failed leaves."""

    def command(self) -> list[str]:
        return ["sleep", "300"]


def test_the_demo_says_every_process_is_stopped_only_when_none_is_left(tmp_path: Path) -> None:
    server = Sleeper(Path("graph.yaml"), "tiny", tmp_path / "server.log").start()
    assert server.process is not None
    try:
        said = interrupted_text(server)
        assert "still running" in said and f"pid {server.process.pid}" in said
        assert "every process" not in said
    finally:
        server.kill()
        server.process.wait()
    assert "every process the demo started is stopped" in interrupted_text(server)
    assert "every process the demo started is stopped" in interrupted_text(None)
