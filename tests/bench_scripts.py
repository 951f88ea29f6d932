"""The load tester's bench scripts, loaded by path for the tests that run their parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "async_load_tester" / "bench"


def load_bench_script(name: str) -> ModuleType:
    """`async_load_tester/bench/<name>.py`, once per test session (the scripts are scripts,
    not a package)."""
    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module
