"""SeldonDeployments rendered from small graphs of tiny classifiers, walked by the executor
model (`test_components.Executor`) over real `seldon-core-microservice` units: the cascade's
router sends only unsure requests to the big model, an ensemble's combiner averages its
members, and a video graph answers every frame, with or without detections.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from infergraph.graph.plan import parse_graph
from infergraph.render import EXAMPLE_STORAGE, render
from tests.seldon.test_components import OPTIONS, REPO, Executor, Pool, tensor

pytestmark = pytest.mark.slow


def uploaded(sdep: dict[str, Any], checkpoint: Path) -> dict[str, Path]:
    """Local checkpoints render as storage URIs (the user uploads them); map them back."""
    uris: dict[str, Path] = {}

    def walk(unit: dict[str, Any]) -> None:
        if "modelUri" in unit:
            assert unit["modelUri"].startswith(EXAMPLE_STORAGE)
            uris[unit["modelUri"]] = checkpoint
        for child in unit.get("children", []):
            walk(child)

    walk(sdep["spec"]["predictors"][0]["graph"])
    return uris


def graph(name: str, nodes: list[dict[str, Any]], topology: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "infergraph.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name},
        "spec": {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "nodes": nodes,
            "graph": topology,
        },
    }


def classifier_node(name: str, checkpoint: Path) -> dict[str, Any]:
    return {
        "name": name,
        "family": "text-classification",
        "modelUri": str(checkpoint),
        "batching": {"maxBatchSize": 4},
    }


@pytest.mark.parametrize(("threshold", "expected"), [(1.01, "big"), (0.0, "pass-0")])
def test_cascade_deployment_runs_big_model_only_when_unsure(
    pool: Pool, tiny_classifier: Path, threshold: float, expected: str
) -> None:
    doc = graph(
        "cascade",
        [classifier_node("small", tiny_classifier), classifier_node("big", tiny_classifier)],
        {
            "sequence": [
                {"node": "small"},
                {
                    "when": {"tensor": "small.confidence", "op": "lt", "value": threshold},
                    "then": {"node": "big", "inputs": {"text": "request.text"}},
                },
            ]
        },
    )
    sdep = render(parse_graph(doc), "seldon-v1", OPTIONS)[0]
    executor = Executor(pool, sdep, uploaded(sdep, tiny_classifier))
    out = executor.predict(executor.graph, {"strData": "the movie was great"})
    assert executor.calls[:2] == ["small/api/v1.0/predictions", "gate-0/route"]
    assert executor.calls[2] == f"{expected}/api/v1.0/predictions"
    # The answering unit carries what the graph returns: `<step>.<tensor>` for each output.
    assert "request.text" not in out["jsonData"]
    if expected == "big":
        assert tensor(out, "big.label")["shape"] == [1]
    else:
        assert "big.label" not in out["jsonData"]
        assert tensor(out, "pass-0.label")["shape"] == [1]  # small's answer, passed through


def test_ensemble_deployment_combines_members(pool: Pool, tiny_classifier: Path) -> None:
    doc = graph(
        "ensemble",
        [
            classifier_node("a", tiny_classifier),
            classifier_node("b", tiny_classifier),
            {"name": "vote", "family": "combiner", "options": {"labels": ["NEG", "POS"]}},
        ],
        {
            "ensemble": [{"node": "a"}, {"node": "b"}],
            "combine": {"node": "vote", "tensor": "scores"},
        },
    )
    # The members' scores are graph outputs too, so the combiner unit carries them back.
    doc["spec"]["outputs"] = {
        "scores": "vote.scores",
        "a": "a.scores",
        "b": "b.scores",
    }
    sdep = render(parse_graph(doc), "seldon-v1", OPTIONS)[0]
    executor = Executor(pool, sdep, uploaded(sdep, tiny_classifier))
    out = executor.predict(executor.graph, {"jsonData": {"text": ["i loved it", "bad plot"]}})
    assert executor.calls == [
        "a/api/v1.0/predictions",
        "b/api/v1.0/predictions",
        "vote/aggregate",
    ]
    a = tensor(out, "a.scores")["data"]
    b = tensor(out, "b.scores")["data"]
    combined = tensor(out, "vote.scores")["data"]
    assert combined == pytest.approx([(x + y) / 2 for x, y in zip(a, b, strict=True)], abs=1e-6)
    assert set(tensor(out, "vote.labels")["data"]) <= {"NEG", "POS"}


def video_graph(threshold: float) -> dict[str, Any]:
    """The shipped `video` graph with the detector's threshold fixed in its options."""
    import yaml

    doc = yaml.safe_load((REPO / "k8s" / "graphs" / "video.yaml").read_text())
    detector = doc["spec"]["nodes"][0]
    detector["options"] = {"threshold": threshold, "crop_classes": ["dog"]}
    return doc


@pytest.mark.parametrize("threshold", [1.0, 0.0], ids=["no-detection", "detections"])
def test_video_deployment_answers_every_frame(
    pool: Pool, tmp_path_factory: pytest.TempPathFactory, threshold: float
) -> None:
    """A frame with no detection reaches the classifier unit as a zero-row `detector.crops`
    (the v1 executor passes it on): the answer is a well-formed empty result, as locally."""
    from infergraph.components.image_decoding import synthetic_png
    from infergraph.runner.repository import offline_checkpoint

    os.environ.setdefault("INFERGRAPH_CACHE", str(tmp_path_factory.mktemp("offline")))
    parsed = parse_graph(video_graph(threshold))
    sdep = render(parsed, "seldon-v1", OPTIONS)[0]
    assert sdep["spec"]["protocol"] == "seldon"
    executor = Executor(pool, sdep)
    executor.checkpoints = {n.name: offline_checkpoint(n, "tiny") for n in parsed.spec.nodes}
    image = base64.b64encode(synthetic_png(96, 80, 0)).decode()
    frame = {"datatype": "BYTES", "shape": [1], "data": [image]}
    frame["parameters"] = {"content_type": "base64"}
    out = executor.predict(executor.graph, {"jsonData": {"image": frame}})
    assert executor.calls == ["detector/api/v1.0/predictions", "classifier/api/v1.0/predictions"]
    # The last unit carries only what the graph returns: no crops, no request image.
    assert "detector.crops" not in out["jsonData"] and "request.image" not in out["jsonData"]
    crops = tensor(out, "detector.crop_index")["shape"][0]
    label = tensor(out, "classifier.label")
    assert label["shape"] == [crops] and len(label["data"]) == crops
    assert tensor(out, "classifier.scores")["shape"][0] == crops
    if threshold == 1.0:
        assert crops == 0  # nothing scores above 1.0: the empty answer, not an error
    # Each label row ties back to its detection and frame.
    assert tensor(out, "detector.image_index")["shape"][0] >= crops
