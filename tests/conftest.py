"""Fixtures shared by the test files that serve real models.

`offline_cache` points the checkpoint cache (`INFERGRAPH_CACHE`) at a fresh folder for one
test file, so the tiny checkpoints a file builds are built once and never leak into another
file's run. `model_host` is the file's one MLServer (`tests.servers.ModelHost`): each case
loads its models on it through the repository API, which costs a fraction of starting a
server per case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ModelHost
from tests.servers import model_host as start_model_host


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("offline-cache")
    before = os.environ.get("INFERGRAPH_CACHE")
    os.environ["INFERGRAPH_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("INFERGRAPH_CACHE", None)
    else:
        os.environ["INFERGRAPH_CACHE"] = before


@pytest.fixture(scope="module")
def model_host(
    offline_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelHost]:
    """Started after `offline_cache`, so the server reads the file's checkpoint cache."""
    with start_model_host(tmp_path_factory.mktemp("model-host")) as host:
        yield host
