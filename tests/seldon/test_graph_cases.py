"""Named cases of shipped graphs on Seldon Core v1: the cascade confident and unsure (both in
every run), and in the sweep the video frame with and without detections, the ensemble joined
by a combiner node, and nlp in English and French.

A file of its own so that `make seldon-test`'s test processes (one file each) share the work:
the proof is the one `test_graphs.check` makes, against the real local run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_cases import forced_langid, load, tiny
from tests.graph_payloads import request_for
from tests.seldon.test_components import Pool
from tests.seldon.test_graphs import check

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("threshold", "expected"), [(-1.0, ["fast"]), (2.0, ["fast", "accurate"])])
def test_cascade_confident_and_unsure(
    pool: Pool, tmp_path: Path, offline_cache: Path, threshold: float, expected: list
) -> None:
    data = load("cascade")
    data["spec"]["graph"]["sequence"][1]["when"]["value"] = threshold
    graph = tiny(data)
    assert check(graph, tmp_path, offline_cache, [request_for(graph)], pool) == [expected]


@pytest.mark.sweep
def test_video_frame_without_and_with_detections(
    pool: Pool, tmp_path: Path, offline_cache: Path
) -> None:
    """`detector.threshold` reaches only the detector: locally as a node-prefixed request
    parameter, on v1 as the same key in `meta.tags`."""
    graph = tiny(load("video"))
    none = request_for(graph, **{"detector.threshold": 1.0})
    several = request_for(
        graph, rows=2, **{"detector.threshold": 0.0, "detector.crop_classes": "dog"}
    )
    check(graph, tmp_path, offline_cache, [none, several], pool)


@pytest.mark.sweep
def test_ensemble_joined_by_a_combiner_node(
    pool: Pool, tmp_path: Path, offline_cache: Path
) -> None:
    data = load("ensemble")
    data["spec"]["nodes"].append({"name": "joiner", "family": "combiner", "options": {}})
    data["spec"]["graph"]["combine"] = {"node": "joiner", "tensor": "scores"}
    graph = tiny(data)
    paths = check(graph, tmp_path, offline_cache, [request_for(graph)], pool)
    assert paths[0][-1] == "joiner"


@pytest.mark.sweep
@pytest.mark.parametrize(("language", "expected"), [("en", False), ("fr", True)])
def test_nlp_english_and_french(
    pool: Pool, tmp_path: Path, offline_cache: Path, language: str, expected: bool
) -> None:
    data = load("nlp")
    data["spec"]["nodes"][0]["modelUri"] = forced_langid(tmp_path / "ckpt", language)
    graph = tiny(data)
    (path,) = check(graph, tmp_path / "run", offline_cache, [request_for(graph)], pool)
    assert ("translate" in path) is expected
