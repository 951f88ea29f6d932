"""The demo's results folder: one demo at a time writes it, and a bad `--out` is named.

A second demo on a folder a running demo writes to would wipe the first's files (its server's
log included) and mix both runs' results; it is refused, naming the running demo's pid. The
running demo here is a real second process holding the folder as `run_demo` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infergraph.demo.folder import MARKER, prepare_folder
from infergraph.demo.server import DemoError

REPO = Path(__file__).resolve().parent.parent

HOLDER = """
import sys, time
from pathlib import Path
from infergraph.demo.story import prepare_folder

out = Path(sys.argv[1])
held = prepare_folder(out)
(out / "server.log").write_text("the first demo's server log\\n")
print("ready", flush=True)
time.sleep(120)
"""


def _hold(out: Path) -> subprocess.Popen[str]:
    """A demo process that has prepared `out` and is still running."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_demo_on_a_folder_in_use_is_refused_naming_the_pid(tmp_path: Path) -> None:
    out = tmp_path / "demo-results"
    first = _hold(out)
    try:
        with pytest.raises(DemoError, match=f"a demo \\(pid {first.pid}\\) is writing to"):
            prepare_folder(out)
        assert (out / "server.log").read_text() == "the first demo's server log\n"
    finally:
        first.kill()
        first.wait()
    held = prepare_folder(out)  # the first demo has ended: its folder is the next run's
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    assert f"pid {os.getpid()}" in (out / MARKER).read_text()
    held.close()


def test_out_naming_a_file_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    done = subprocess.run(
        [sys.executable, "-m", "infergraph.cli", "demo", "--out", str(afile)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in said, said[-3000:]
    assert f"'{afile}' is a file, not a folder" in said, said[-3000:]
    assert afile.read_text() == "not a folder\n"


def test_out_a_symlink_to_an_earlier_demo_folder_clears_the_folder_and_keeps_the_link(
    tmp_path: Path,
) -> None:
    target = tmp_path / "runs" / "demo-results"
    prepare_folder(target).close()
    (target / "old.json").write_text("{}")
    (target / "plan").mkdir()
    link = tmp_path / "demo-results"
    link.symlink_to(target)
    held = prepare_folder(link)
    held.close()
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(p.name for p in target.iterdir()) == [MARKER]


def test_out_a_dangling_symlink_or_a_foreign_folder_behind_a_link_is_refused(
    tmp_path: Path,
) -> None:
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(DemoError, match=r"symlink to .*nowhere.*, which does not exist"):
        prepare_folder(dangling)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(theirs)
    with pytest.raises(DemoError, match="not written by the demo"):
        prepare_folder(link)
    assert (theirs / "keep.txt").read_text() == "mine"
