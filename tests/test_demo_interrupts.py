"""Ctrl-C always ends the demo: the watchdog `interrupt_guard` arms on the first SIGINT.

Each case is a real Python process sent a real SIGINT. The hang case reproduces what a
teardown stuck on a lock looks like (the main thread blocked in an untimed lock wait, as a
demo was once seen under load) and checks the process still exits, says why, shows its
threads and runs the cleanup that kills what the demo started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

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
