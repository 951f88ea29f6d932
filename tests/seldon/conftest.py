"""Seldon Core v1 tests run in .venv-seldon (`.venv-seldon/bin/python -m pytest tests/seldon`).

seldon-core pins old Flask/protobuf and conflicts with MLServer, so the main virtualenv has no
seldon_core: there this folder is not collected at all.
"""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("seldon_core") is None:
    collect_ignore_glob = ["test_*.py"]
