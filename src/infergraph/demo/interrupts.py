"""Ctrl-C that always ends the demo, and never cuts its cleanup short.

The first SIGINT raises KeyboardInterrupt as usual, so every `finally` and context manager
runs and the partial results are written. It also arms a watchdog: if the process is still
alive `grace_s` later (a teardown blocked on a lock a signal left held, a child that ignores
SIGTERM), the watchdog prints every thread's stack to stderr, so the hang can be diagnosed,
runs the kills it was given (what the demo started) and exits with 130, the shell's code for
an interrupted command.

A Ctrl-C once the demo is already stopping (a second one, as an impatient user presses, or
one during a `shield`ed stop) raises nothing: an exception there would abandon the stop half
done and leave the server running. It kills what the demo started instead, so the stop in
progress finds it gone and finishes at once. A Ctrl-C inside a shield the demo was not
already stopping for is raised when the shield ends.
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


class Guard:
    """What Ctrl-C does inside `interrupt_guard`; `shield` marks the demo's teardown."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.interrupted = False  # a KeyboardInterrupt was raised: all that follows is cleanup
        self._kills: list[Callable[[], None]] = []
        self._watchdog: threading.Timer | None = None
        self._shielding = 0
        self._deferred = False

    def also_kill(self, kill: Callable[[], None]) -> None:
        """Run `kill` (SIGKILL what the demo started) on escalation or when time runs out."""
        self._kills.append(kill)

    def _kill_all(self) -> None:
        for kill in self._kills:
            kill()

    def _expire(self) -> None:
        late = f"\nthe demo did not stop within {self.grace_s:.0f} s of Ctrl-C; its threads:\n"
        sys.stderr.write(late)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        try:
            self._kill_all()
        finally:
            os._exit(INTERRUPTED_EXIT)

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """Arm the watchdog; raise KeyboardInterrupt unless the demo is already stopping."""
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.grace_s, self._expire)
            self._watchdog.daemon = True  # never keeps a process that did stop alive
            self._watchdog.start()
        if not (self.interrupted or self._shielding):
            self.interrupted = True
            raise KeyboardInterrupt
        self._deferred = self._deferred or not self.interrupted
        os.write(2, b"\nCtrl-C while the demo stops: killing what it started\n")
        self._kill_all()

    @contextmanager
    def shield(self) -> Iterator[None]:
        """A teardown step Ctrl-C must not cut short: a Ctrl-C within it kills instead, and
        (unless the demo was already interrupted) is raised once the step is done."""
        self._shielding += 1
        try:
            yield
        finally:
            self._shielding -= 1
        if self._deferred and not self.interrupted and not self._shielding:
            self._deferred = False
            self.interrupted = True
            raise KeyboardInterrupt


@contextmanager
def interrupt_guard(
    grace_s: float, on_timeout: Callable[[], None] | None = None
) -> Iterator[Guard]:
    """Within the block, SIGINT raises KeyboardInterrupt once and arms a `grace_s` watchdog;
    later ones kill what the demo started (`on_timeout`, and `Guard.also_kill`'s).

    Outside the main thread (where Python cannot install signal handlers) Ctrl-C is left
    as it is.
    """
    guard = Guard(grace_s)
    if on_timeout is not None:
        guard.also_kill(on_timeout)
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.signal(signal.SIGINT, guard.on_sigint)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGINT, previous)
