"""When a graph is passed sooner than the drift timer's: while it waits on its children.

A graph whose children are applied (`Rendered=True`) but which is not Ready waits on their
controllers: a pass every `settle_interval_s` lets its Ready follow their reports within
seconds. That lasts `settle_window_s` per generation of the graph, counted from when this
process first saw that generation waiting: a new spec opens a new window, a Ready that flaps
(a child that crash-loops) does not, so a graph that never settles costs a pass every few
seconds for one window per edit, then only the drift timer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from infergraph.operator.status import TRUE, condition


def waiting_on_children(status: Mapping[str, object]) -> bool:
    """Applied (Rendered) and not Ready. A graph no pass has reported on is the create
    handler's; one whose children were not applied is the retry's."""
    listed = status.get("conditions")
    found = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    if condition(found, "Rendered").get("status") != TRUE:
        return False
    return condition(found, "Ready").get("status") != TRUE


class SettleClock:
    """Per graph (uid): the generation last seen waiting, and since when (monotonic)."""

    def __init__(self, window_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._now = now
        self._since: dict[str, tuple[int, float]] = {}

    def due(self, uid: str, generation: int, status: Mapping[str, object]) -> bool:
        """Whether the graph waits on its children within its generation's window."""
        if not waiting_on_children(status):
            return False
        now = self._now()
        seen = self._since.get(uid)
        if seen is None or seen[0] != generation:
            self._since[uid] = seen = (generation, now)
        return now - seen[1] <= self.window_s

    def forget(self, uid: str) -> None:
        """The graph is deleted: nothing of it is kept."""
        self._since.pop(uid, None)
