"""The frozen heap of a loaded server, and the route hook that must still see through it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from infergraph.serving.heap import settle_heap, tracked_objects
from infergraph.serving.mlserver_routes import promote


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
    assert any(obj is kept for obj in tracked_objects())
    assert gc.get_freeze_count() > 0, "tracked_objects() leaves the heap frozen"
    garbage = Held()
    garbage.me = garbage  # type: ignore[attr-defined]
    del garbage
    assert gc.collect() >= 1, "objects made after the freeze are collected as before"


def test_routes_are_promoted_after_the_heap_is_frozen() -> None:
    """A second model loads into a server whose router was frozen by the first model's load."""

    async def generic(request: object) -> PlainTextResponse:
        return PlainTextResponse("generic")

    async def ours(request: object) -> PlainTextResponse:
        return PlainTextResponse("ours")

    router = Router(routes=[Route("/v2/models/{name}/infer", generic, methods=["POST"])])
    router.routes.append(Route("/v2/models/m/infer", ours, methods=["POST"]))
    settle_heap()
    assert promote([ours])[0] == 1
    assert [r.endpoint for r in router.routes] == [ours, generic]
