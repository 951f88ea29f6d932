"""Ctrl-C that always ends the demo, even if a teardown step hangs.

The first SIGINT raises KeyboardInterrupt as usual, so every `finally` and context manager
runs and the partial results are written. It also arms a watchdog: if the process is still
alive `grace_s` later (a teardown blocked on a lock a signal left held, a child that ignores
SIGTERM), the watchdog prints every thread's stack to stderr, so the hang can be diagnosed,
runs the caller's `on_timeout` (kill what the demo started) and exits with 130, the shell's
code for an interrupted command.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED_EXIT = 130


@contextmanager
def interrupt_guard(grace_s: float, on_timeout: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGINT raises KeyboardInterrupt and arms a `grace_s` watchdog.

    Outside the main thread (where Python cannot install signal handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = threading.Event()

    def expire() -> None:
        late = f"\nthe demo did not stop within {grace_s:.0f} s of Ctrl-C; its threads:\n"
        sys.stderr.write(late)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        try:
            on_timeout()
        finally:
            os._exit(INTERRUPTED_EXIT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if not armed.is_set():
            armed.set()
            watchdog = threading.Timer(grace_s, expire)
            watchdog.daemon = True  # never keeps a process that did stop alive
            watchdog.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
