"""The one hook this kit has into MLServer's internals: its REST route order.

MLServer (1.7) serves `/v2/models/{model_name}/infer` with a FastAPI route that parses the
body as JSON into its `InferenceRequest`, so a binary-extension body (tritonclient, the
KServe SDK, `mlserver infer -b`, Triton's raw `Inference-Header-Content-Length: 0`) is
refused before any model code runs. A model can only add routes (custom handlers), and
MLServer appends them after its own, where they never match. This module moves the
runtime's routes ahead of MLServer's generic ones once MLServer has registered them.

It relies on MLServer keeping its REST app a Starlette router in this process, i.e.
`parallel_workers: 0` (what every rendered server and the local runner set). When that
stops being true the routes are not found and a warning says so; tests/test_protocol_clients
fails loudly (binary requests answered 422) the day an MLServer release changes this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

from starlette.routing import BaseRoute, Router

from infergraph.serving.heap import tracked_objects

log = logging.getLogger(__name__)


def _is_router(obj: object) -> TypeGuard[Router]:
    """isinstance() by type(): a proxy's __class__ can warn."""
    return issubclass(type(obj), Router)


def promote(endpoints: list[Callable[..., Any]]) -> int:
    """Move the routes serving `endpoints` to the front of their router; how many moved."""
    wanted = {id(fn) for fn in endpoints}
    moved = 0
    for obj in tracked_objects():
        if not _is_router(obj):
            continue
        routes: list[BaseRoute] = obj.routes
        ours = [r for r in routes if id(getattr(r, "endpoint", None)) in wanted]
        for route in reversed(ours):
            routes.remove(route)
            routes.insert(0, route)
            moved += 1
    return moved


async def promote_when_registered(
    name: str, endpoints: list[Callable[..., Any]], timeout: float = 60.0
) -> None:
    """MLServer registers a model's custom handlers right after `load()`: wait, then promote."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        if promote(endpoints) >= len(endpoints):
            log.info("%s: binary and JSON infer routes ahead of MLServer's", name)
            return
    log.warning(
        "%s: MLServer's REST routes were not found in this process (parallel_workers > 0?); "
        "binary-extension requests to /v2/models/%s/infer will be refused by MLServer",
        name,
        name,
    )
