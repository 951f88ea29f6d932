"""image-classification (timm and transformers backends) behind a real `mlserver start`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from infergraph.components.base import ComponentSettings
from infergraph.components.image_classification import ImageClassifier
from infergraph.errors import InputError, SettingsError
from tests.servers import MLServerProcess, v2_input
from tests.vision_fixtures import (
    COLOURS,
    assert_ready,
    batch_size,
    burst,
    grpc_infer,
    image_input,
    jpeg,
    outputs,
    png,
    png_bomb,
    shared_checkpoints,
    shared_server,
)

pytestmark = pytest.mark.slow

LABELS = ["cat", "dog", "bird", "fish", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def vision_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MLServerProcess:
    return shared_server(request, tmp_path_factory)


@pytest.mark.parametrize("model", ["classify", "classify-vit"])
def test_scores_label_confidence_and_top_k(vision_server: MLServerProcess, model: str) -> None:
    payload = {"inputs": [image_input([png(COLOURS[0]), jpeg(3)])], "parameters": {"top_k": 3}}
    out = outputs(vision_server.infer(model, payload))
    scores = out["scores"]
    assert scores.shape == (2, len(LABELS))
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert list(out["label"]) == [LABELS[i] for i in scores.argmax(axis=1)]
    assert np.allclose(out["confidence"], scores.max(axis=1), atol=1e-6)
    assert out["top_k_labels"].shape == (2, 3) and out["top_k_scores"].shape == (2, 3)
    assert np.allclose(out["top_k_scores"], -np.sort(-scores, axis=1)[:, :3], atol=1e-6)
    assert (out["top_k_labels"][:, 0] == out["label"]).all()
    clipped = {"inputs": [image_input([png(COLOURS[1])])], "parameters": {"top_k": 100}}
    assert outputs(vision_server.infer(model, clipped))["top_k_labels"].shape == (1, len(LABELS))


def test_pixel_values_path_and_size_check(vision_server: MLServerProcess) -> None:
    pixels = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    ok = vision_server.infer(
        "classify",
        {"inputs": [v2_input("pixel_values", "FP32", pixels.ravel().tolist(), [2, 3, 64, 64])]},
    )
    assert outputs(ok)["scores"].shape == (2, len(LABELS))
    wrong = vision_server.infer(
        "classify", {"inputs": [v2_input("pixel_values", "FP32", [0.0] * 3072, [1, 3, 32, 32])]}
    )
    assert wrong.status_code == 400
    assert "input 'pixel_values'" in wrong.text and "64 x 64" in wrong.text
    assert_ready(vision_server, "classify")


def post_literal(server: MLServerProcess, model: str, payload: dict[str, object]) -> httpx.Response:
    """POST with Python's JSON writer, which spells non-finite floats NaN / Infinity as many
    clients do (httpx's `json=` refuses them)."""
    return httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300])
def test_non_finite_or_huge_top_k_is_a_400_naming_it(
    vision_server: MLServerProcess, value: float
) -> None:
    """JSON `Infinity` / `NaN` (Python's reader takes them) and 1e300 reach the integer check."""
    payload = {"inputs": [image_input([png(COLOURS[0])])], "parameters": {"top_k": value}}
    resp = post_literal(vision_server, "classify", payload)
    assert resp.status_code == 400, resp.text
    assert "top_k" in resp.json()["error"], resp.text
    assert_ready(vision_server, "classify")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_pixels_are_a_400_naming_the_value(
    vision_server: MLServerProcess, value: float
) -> None:
    pixels = [0.0] * 12288
    pixels[5] = value
    payload = {"inputs": [v2_input("pixel_values", "FP32", pixels, [1, 3, 64, 64])]}
    resp = post_literal(vision_server, "classify", payload)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert "pixel_values" in error and str(value).lower().lstrip("-") in error.lower(), error
    assert "text or objects" not in error
    assert_ready(vision_server, "classify")


def test_concurrent_requests_are_batched_and_each_gets_its_own(
    vision_server: MLServerProcess,
) -> None:
    images = [jpeg(i) for i in range(10)]
    solo = [outputs(vision_server.infer("classify", {"inputs": [image_input([i])]}))["scores"]
            for i in images]  # fmt: skip
    payloads = [{"inputs": [image_input([i])]} for i in images]
    sizes: list[int] = []
    for _ in range(3):
        responses = burst(vision_server, "classify", payloads)
        for response, expected in zip(responses, solo, strict=True):
            assert np.allclose(outputs(response)["scores"], expected, atol=1e-5)
        sizes = [batch_size(r) for r in responses]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1


def test_grpc_request(vision_server: MLServerProcess) -> None:
    images = [png(COLOURS[5])]
    got = grpc_infer(vision_server, "classify", [("image", "BYTES", [1], images)])
    rest = outputs(vision_server.infer("classify", {"inputs": [image_input(images)]}))
    assert np.allclose(got["scores"], rest["scores"], atol=1e-5)
    assert [label.decode() for label in got["label"]] == list(rest["label"])


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([image_input([b"\xff\xd8\xff broken jpeg"])], "input 'image' row 0"),
        ([v2_input("pixel_values", "INT64", [0] * 12288, [1, 3, 64, 64])], "pixel_values"),
        ([v2_input("pixel_values", "FP32", [0.0] * 4096, [1, 64, 64])], "pixel_values"),
        ([image_input([png((0, 0, 0)), png_bomb()])], "input 'image' row 1"),
    ],
    ids=["undecodable", "int-pixels", "3d-pixels", "bomb"],
)
def test_bad_input_is_a_4xx_naming_the_input(
    vision_server: MLServerProcess, inputs: list[dict[str, object]], needle: str
) -> None:
    resp = vision_server.infer("classify", {"inputs": inputs})
    assert 400 <= resp.status_code < 500 and needle in resp.text, resp.text
    assert_ready(vision_server, "classify")


def test_bad_request_in_a_burst_fails_alone(vision_server: MLServerProcess) -> None:
    payloads = [{"inputs": [image_input([jpeg(i)])]} for i in range(8)]
    payloads[5] = {"inputs": [image_input([b"nope"])]}
    responses = burst(vision_server, "classify", payloads)
    assert responses[5].status_code == 400 and "input 'image'" in responses[5].text
    assert all(outputs(r)["label"].shape == (1,) for i, r in enumerate(responses) if i != 5)


def test_backend_is_detected_from_the_checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ck = shared_checkpoints(tmp_path_factory)

    def component(folder: str, **options: object) -> ImageClassifier:
        return ImageClassifier(ComponentSettings(model_uri=folder, options=options))

    assert component(str(ck["timm"])).backend() == "timm"
    assert component(str(ck["vit"])).backend() == "transformers"
    assert component("timm/resnet50.a1_in1k").backend() == "timm"
    assert component("google/vit-base-patch16-224").backend() == "transformers"
    assert component("microsoft/resnet-50", backend="timm").backend() == "timm"
    with pytest.raises(SettingsError, match="backend"):
        component(str(ck["timm"]), backend="onnx").backend()
    loaded = component(str(ck["timm"]))
    loaded.settings.warmup = False
    loaded.start()
    assert loaded.labels == LABELS and loaded.input_hw == (64, 64)


def test_an_odd_sized_pixel_tensor_does_not_fail_its_batchmates(tmp_path: Path) -> None:
    """A processor sized by its shortest edge (ConvNeXt's, which microsoft/resnet-50 ships)
    has no fixed input size to check `pixel_values` against, and every request's rows went
    into one `torch.stack`: one caller's 40 x 50 tensor failed the well-formed caller batched
    with it. Rows of another size now make their own batch."""
    import asyncio

    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    from infergraph.serving.engine import ComponentEngine

    labels = {0: "a", 1: "b", 2: "c"}
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 8], depths=[1, 1], num_labels=3,
                          id2label=labels, label2id={v: k for k, v in labels.items()})  # fmt: skip
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(tmp_path)
    settings = ComponentSettings(
        model_uri=str(tmp_path), warmup=False, max_batch_size=8, max_batch_time=0.05
    )
    classifier = ImageClassifier(settings)
    classifier.start()

    async def both() -> list[object]:
        engine = ComponentEngine([classifier])
        good = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
        odd = np.random.default_rng(1).random((1, 3, 40, 50), dtype=np.float32)
        try:
            return await asyncio.gather(
                engine.infer({"pixel_values": good}, {}),
                engine.infer({"pixel_values": odd}, {}),
                return_exceptions=True,
            )
        finally:
            await engine.close()

    good_result, odd_result = asyncio.run(both())
    assert not isinstance(good_result, BaseException), good_result
    assert good_result.outputs["label"].shape == (1,)  # type: ignore[union-attr]
    assert not isinstance(odd_result, BaseException) or isinstance(odd_result, InputError)
