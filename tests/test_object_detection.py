"""object-detection (DETR; YOLOS in-process) behind a real `mlserver start`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from infergraph.checkpoints.object_detection import COCO_91_LABELS, build_object_detector
from infergraph.components.base import ComponentSettings
from infergraph.components.object_detection import ObjectDetector
from tests.servers import MLServerProcess
from tests.vision_fixtures import (
    COLOURS,
    assert_ready,
    batch_size,
    burst,
    grpc_infer,
    image_input,
    outputs,
    png,
    png_bomb,
    shared_server,
)

pytestmark = pytest.mark.slow

MODEL = "detect"
TINY_LABELS = {"N/A", "person", "bicycle", "car", "dog"}


@pytest.fixture(scope="module")
def vision_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MLServerProcess:
    return shared_server(request, tmp_path_factory)


def detect(server: MLServerProcess, images: list[bytes], **params: object) -> dict[str, np.ndarray]:
    return outputs(server.infer(MODEL, {"inputs": [image_input(images)], "parameters": params}))


def test_detections_index_their_image_and_crops_are_pngs(vision_server: MLServerProcess) -> None:
    from PIL import Image

    sizes = [(120, 80), (50, 90)]
    images = [png(COLOURS[0], sizes[0]), png(COLOURS[1], sizes[1])]
    out = detect(vision_server, images, threshold=0.0, crop_classes=sorted(TINY_LABELS))
    m = out["scores"].shape[0]
    assert m == 20  # ten queries per image, all kept at threshold 0
    assert out["boxes"].shape == (m, 4) and out["labels"].shape == (m,)
    assert sorted(set(out["image_index"].astype(int))) == [0, 1]
    assert set(out["labels"]) <= TINY_LABELS
    for box, row in zip(out["boxes"], out["image_index"].astype(int), strict=True):
        width, height = sizes[row]
        assert -1 <= box[0] <= box[2] <= width + 1 and -1 <= box[1] <= box[3] <= height + 1
    assert out["crops"].shape == (m,) and list(out["crop_index"].astype(int)) == list(range(m))
    crop = Image.open(io.BytesIO(out["crops"][0]))
    assert crop.format == "PNG" and crop.size[0] >= 1
    assert crop.getpixel((0, 0))[:3] == COLOURS[int(out["image_index"][0])]
    only = detect(vision_server, images, threshold=0.0, crop_classes=["bicycle"])
    assert list(only["labels"][only["crop_index"].astype(int)]) == ["bicycle"] * len(only["crops"])


def test_no_detections_give_well_formed_empty_tensors(vision_server: MLServerProcess) -> None:
    resp = vision_server.infer(
        MODEL,
        {"inputs": [image_input([png(COLOURS[2])])],
         "parameters": {"threshold": 0.99, "crop_classes": ["person"]}},
    )  # fmt: skip
    shapes = {o["name"]: o["shape"] for o in resp.json()["outputs"]}
    assert shapes == {
        "boxes": [0, 4], "scores": [0], "labels": [0], "image_index": [0], "crops": [0],
        "crop_index": [0],
    }  # fmt: skip


def test_concurrent_requests_each_get_their_own_detections(
    vision_server: MLServerProcess,
) -> None:
    images = [png(c) for c in COLOURS[:8]]  # one size: no padding differences
    solo = [detect(vision_server, [i], threshold=0.0) for i in images]
    payloads = [{"inputs": [image_input([i])], "parameters": {"threshold": 0.0}} for i in images]
    sizes: list[int] = []
    for _ in range(3):
        responses = burst(vision_server, MODEL, payloads)
        for response, expected in zip(responses, solo, strict=True):
            got = outputs(response)
            assert np.allclose(got["scores"], expected["scores"], atol=1e-4)
            assert np.allclose(got["boxes"], expected["boxes"], atol=1e-2)
            assert (got["image_index"] == 0).all()
        sizes = [batch_size(r) for r in responses]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1


def test_grpc_request(vision_server: MLServerProcess) -> None:
    got = grpc_infer(
        vision_server, MODEL, [("image", "BYTES", [1], [png(COLOURS[4])])], {"threshold": 0.0}
    )
    assert got["boxes"].shape == (10, 4) and len(got["labels"]) == 10


@pytest.mark.parametrize(
    ("inputs", "params", "needle"),
    [
        ([image_input([b"\x00\x01\x02"])], {}, "input 'image' row 0"),
        ([image_input([png_bomb()])], {}, "input 'image' row 0"),
        ([image_input([png((0, 0, 0))])], {"threshold": 2.0}, "threshold"),
        ([image_input([png((0, 0, 0))])], {"crop_classes": [1, 2]}, "crop_classes"),
    ],
    ids=["undecodable", "bomb", "threshold", "crop-classes"],
)
def test_bad_input_is_a_4xx_naming_the_input(
    vision_server: MLServerProcess,
    inputs: list[dict[str, object]],
    params: dict[str, object],
    needle: str,
) -> None:
    resp = vision_server.infer(MODEL, {"inputs": inputs, "parameters": params})
    assert 400 <= resp.status_code < 500 and needle in resp.text, resp.text
    assert_ready(vision_server, MODEL)


def test_bad_request_in_a_burst_fails_alone(vision_server: MLServerProcess) -> None:
    payloads = [{"inputs": [image_input([png(c)])]} for c in COLOURS[:6]]
    payloads[0] = {"inputs": [image_input([b"junk"])]}
    responses = burst(vision_server, MODEL, payloads)
    assert responses[0].status_code == 400 and "input 'image'" in responses[0].text
    assert all(r.status_code == 200 for r in responses[1:])


def test_yolos_checkpoint_through_the_same_auto_classes(tmp_path: Path) -> None:
    folder = build_object_detector(tmp_path / "yolos", "tiny", architecture="yolos")
    component = ObjectDetector(
        ComponentSettings(model_uri=str(folder), options={"threshold": 0.0}, max_batch_size=4)
    )
    component.start()
    assert type(component.model).__name__ == "YolosForObjectDetection"
    images = np.array([png(COLOURS[0], (64, 64)), png(COLOURS[1], (96, 64))], dtype=object)
    out = component.predict({"image": images}).outputs
    assert out["boxes"].shape == (20, 4) and set(out["image_index"]) == {0, 1}


def test_full_scale_labels_are_coco() -> None:
    assert len(COCO_91_LABELS) == 91
    assert COCO_91_LABELS[1] == "person" and COCO_91_LABELS[90] == "toothbrush"
    assert COCO_91_LABELS[18] == "dog" and COCO_91_LABELS[12] == "N/A"
