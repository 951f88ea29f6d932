"""Fixtures of the Seldon Core v1 proof (run from `.venv-seldon` by `make seldon-test`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seldon.test_components import Pool


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One offline checkpoint cache for the local run and the v1 units."""
    path = tmp_path_factory.mktemp("offline-cache")
    before = os.environ.get("INFERGRAPH_CACHE")
    os.environ["INFERGRAPH_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("INFERGRAPH_CACHE", None)
    else:
        os.environ["INFERGRAPH_CACHE"] = before


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A test file's unit processes, keyed by unit and parameters: graphs that differ only in
    a router's threshold (the cascade's two cases) share their model units, as two
    SeldonDeployments would not, but each unit is still started as its container is."""
    pool = Pool(tmp_path_factory.mktemp("v1-units"))
    try:
        yield pool
    finally:
        pool.close()
