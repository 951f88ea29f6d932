"""The frozen heap of a loaded server."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from infergraph.serving.heap import settle_heap


@pytest.fixture(autouse=True)
def thawed_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the suite runs with an ordinary heap


class Held:
    """A container the collector tracks (instances of plain classes are)."""


def test_settle_freezes_survivors_and_collects_cycles() -> None:
    kept = Held()
    cycle = Held()
    cycle.me = cycle  # type: ignore[attr-defined]
    del cycle
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(kept)
    # A frozen object is out of the collector's generations: gc.get_objects() no longer
    # lists it, which is what keeps full collections short.
    assert not any(obj is kept for obj in gc.get_objects())
    garbage = Held()
    garbage.me = garbage  # type: ignore[attr-defined]
    del garbage
    assert gc.collect() >= 1, "objects made after the freeze are collected as before"
