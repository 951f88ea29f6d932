"""Keep Python's full collections off a loaded model server's critical path.

A model server holds hundreds of thousands of long-lived objects (torch, transformers, the
server framework). CPython's oldest-generation collection walks every one of them while it
holds the GIL, stalling the forward pass in flight: 350-390 ms per collection with
all-MiniLM-L6-v2 under MLServer, every few seconds under load, which set the p99. Objects
frozen after loading are never walked again; objects made while serving are collected as
before.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


def settle_heap() -> None:
    """Collect once, then freeze what survives; call once a model is loaded.

    Thawing first lets an earlier, unloaded model's reference cycles be freed before the
    survivors are frozen again.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # Frozen objects are skipped by the collection at interpreter exit too: extensions that
    # count their live objects (nanobind, in torch's triton) would report them as leaks.
    atexit.unregister(gc.unfreeze)
    atexit.register(gc.unfreeze)


@contextmanager
def settled_heap() -> Iterator[None]:
    """`settle_heap` for the length of a block (a router serving, a profile's graph pass)."""
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
