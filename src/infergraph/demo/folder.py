"""The demo's results folder: emptied for a new run, and held by one demo at a time.

A run writes its pid into the folder's marker file and holds an exclusive `flock` on it
until it ends (the kernel drops the lock when the process dies, however it dies). A second
demo on the same folder would otherwise empty it under the first, its server's log included,
and the two runs would write their results into one folder; it is refused instead.

The marker itself is never deleted while a run prepares the folder: only the rest of the
folder is, so the lock always sits on the one file every demo opens.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from infergraph.demo.server import DemoError

MARKER = ".infergraph-demo"


def _check_out(out: Path) -> None:
    """Refuse an `--out` that is not, and cannot become, a folder of the demo's."""
    if out.is_symlink() and not out.exists():
        raise DemoError(
            f"'{out}' is a symlink to '{os.readlink(out)}', which does not exist; "
            "pass another --out or remove the link"
        )
    if out.exists() and not out.is_dir():
        raise DemoError(f"'{out}' is a file, not a folder; pass another --out or move it")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DemoError(
            f"'{out}' exists and was not written by the demo; pass another --out or move it"
        )


def _lock(marker: Path, out: Path) -> IO[str]:
    """The marker, open and exclusively locked; refused while another demo holds it."""
    handle = open(marker, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        said = handle.read()
        handle.close()
        owner = said.split("pid ", 1)[1].split(")", 1)[0] if "pid " in said else "?"
        raise DemoError(
            f"a demo (pid {owner}) is writing to '{out}'; wait for it to end, or pass another --out"
        ) from None
    return handle


def _empty_but(out: Path, keep: Path) -> None:
    """Delete everything in `out` except `keep`; a link inside is removed, never followed."""
    for entry in out.iterdir():
        if entry.name == keep.name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_folder(out: Path) -> IO[str]:
    """Empty the folder of an earlier demo run (never a folder the demo did not write) and
    hold it for this run: keep the returned file open until the run ends.

    A symlink to a folder is followed: the folder it names is emptied, the link is kept.
    """
    _check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"cannot create the results folder '{out}': {exc}") from None
    marker = out / MARKER
    handle = _lock(marker, out)
    try:
        _empty_but(out, marker)
    except OSError as exc:
        handle.close()
        raise DemoError(f"cannot empty the results folder '{out}': {exc}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"written by `infergraph demo` (pid {os.getpid()}); the next run replaces it\n")
    handle.flush()
    return handle


def release(handle: IO[str]) -> None:
    """Let the next demo have the folder (process exit does the same)."""
    with contextlib.suppress(OSError):
        handle.close()
