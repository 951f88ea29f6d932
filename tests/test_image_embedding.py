"""image-embedding (SigLIP, CLIP) behind a real `mlserver start`: REST, raw body, gRPC, batching."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from infergraph.checkpoints.image_embedding import checkpoint_config
from infergraph.components.base import ComponentSettings
from infergraph.components.image_embedding import ImageEmbedder
from tests.servers import MLServerProcess, v2_input
from tests.vision_fixtures import (
    COLOURS,
    assert_ready,
    b64,
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

MODEL = "embed"


@pytest.fixture(scope="module")
def vision_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MLServerProcess:
    return shared_server(request, tmp_path_factory)


@pytest.fixture(scope="module")
def vision_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_checkpoints(tmp_path_factory)


def embed(server: MLServerProcess, images: list[bytes], **params: object) -> httpx.Response:
    payload: dict[str, object] = {"inputs": [image_input(images)]}
    if params:
        payload["parameters"] = params
    return server.infer(MODEL, payload)


def test_image_and_text_embeddings(vision_server: MLServerProcess) -> None:
    images = [png(COLOURS[0]), jpeg(1)]
    resp = vision_server.infer(
        MODEL,
        {
            "inputs": [
                image_input(images),
                v2_input("text", "BYTES", ["a red square", "noise", "a cat"]),
            ]
        },
    )
    out = outputs(resp)
    assert out["embedding"].shape == (2, 32)
    assert out["text_embedding"].shape == (3, 32)
    assert out["logits_per_image"].shape == (2, 3)
    assert np.allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, atol=1e-5)
    assert not np.allclose(out["embedding"][0], out["embedding"][1])
    # logits are SigLIP's scaled cosine similarity plus bias
    cosine = (out["embedding"] @ out["text_embedding"].T).ravel()
    scale, bias = np.polyfit(cosine, out["logits_per_image"].ravel(), 1)
    assert scale > 0
    assert np.allclose(scale * cosine + bias, out["logits_per_image"].ravel(), atol=1e-3)

    raw = embed(vision_server, images, normalize=False)
    raw_vectors = outputs(raw)["embedding"]
    assert not np.allclose(np.linalg.norm(raw_vectors, axis=1), 1.0)
    normed = raw_vectors / np.linalg.norm(raw_vectors, axis=1, keepdims=True)
    assert np.allclose(normed, out["embedding"], atol=1e-5)


def test_plain_base64_text_and_pixel_values_match_encoded_images(
    vision_server: MLServerProcess, vision_checkpoints: dict[str, Path]
) -> None:
    import io

    from PIL import Image
    from transformers import AutoProcessor

    image = jpeg(7)
    reference = outputs(embed(vision_server, [image]))["embedding"]
    # base64 text without content_type: the component recognises it is not an image itself
    plain = vision_server.infer(MODEL, {"inputs": [v2_input("image", "BYTES", [b64(image)])]})
    assert np.allclose(outputs(plain)["embedding"], reference, atol=1e-5)
    # preprocessed pixels, as a client-side preprocessor would send them
    processor = AutoProcessor.from_pretrained(vision_checkpoints["siglip"])
    pixels = processor.image_processor(
        images=[Image.open(io.BytesIO(image)).convert("RGB")], return_tensors="np"
    )["pixel_values"].astype(np.float32)
    resp = vision_server.infer(
        MODEL,
        {
            "inputs": [
                v2_input("pixel_values", "FP32", pixels.reshape(-1).tolist(), list(pixels.shape))
            ]
        },
    )
    assert np.allclose(outputs(resp)["embedding"], reference, atol=1e-4)


def test_raw_octet_stream_route(vision_server: MLServerProcess) -> None:
    image = png(COLOURS[3])
    resp = httpx.post(
        f"{vision_server.url}/v2/models/{MODEL}/infer/raw",
        content=image,
        headers={"content-type": "application/octet-stream"},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    via_raw = np.array(resp.json()["outputs"][0]["data"]).reshape(1, -1)
    via_json = outputs(embed(vision_server, [image]))["embedding"]
    assert np.allclose(via_raw, via_json, atol=1e-5)
    bad = httpx.post(
        f"{vision_server.url}/v2/models/{MODEL}/infer/raw", content=b"garbage", timeout=60
    )
    assert bad.status_code == 400 and "input 'image'" in bad.text


def test_grpc_request(vision_server: MLServerProcess) -> None:
    images = [png(COLOURS[4]), png(COLOURS[5])]
    got = grpc_infer(
        vision_server,
        MODEL,
        [("image", "BYTES", [2], images), ("text", "BYTES", [1], [b"a photo"])],
    )
    assert got["embedding"].shape == (2, 32)
    assert got["text_embedding"].shape == (1, 32)
    assert np.allclose(
        got["embedding"], outputs(embed(vision_server, images))["embedding"], atol=1e-5
    )


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
    vision_server: MLServerProcess,
) -> None:
    images = [png(c) for c in COLOURS]
    solo = [outputs(embed(vision_server, [i]))["embedding"][0] for i in images]
    responses = burst(vision_server, MODEL, [{"inputs": [image_input([i])]} for i in images])
    for response, expected in zip(responses, solo, strict=True):
        assert np.allclose(outputs(response)["embedding"][0], expected, atol=1e-5)
    sizes = [batch_size(r) for r in responses]
    for _ in range(3):  # merging depends on timing: a burst on an idle server may not queue up
        if max(sizes) > 1:
            break
        more = burst(vision_server, MODEL, [{"inputs": [image_input([i])]} for i in images])
        sizes = [batch_size(r) for r in more]
    assert max(sizes) > 1


def test_text_over_the_limit_needs_truncate(vision_server: MLServerProcess) -> None:
    long_text = " ".join(["elephant"] * 40)  # far more than the tiny model's 16 tokens
    payload = {"inputs": [v2_input("text", "BYTES", ["short", long_text])]}
    resp = vision_server.infer(MODEL, payload)
    assert resp.status_code == 400
    assert "input 'text' row 1" in resp.text and "truncate" in resp.text
    resp = vision_server.infer(MODEL, {**payload, "parameters": {"truncate": True}})
    assert outputs(resp)["text_embedding"].shape == (2, 32)
    assert resp.json()["parameters"]["truncated_rows"] == "[1]"


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([image_input([png((1, 2, 3)), b"not an image"])], "input 'image' row 1"),
        ([v2_input("pixel_values", "FP64", [0.0] * 3072, [1, 3, 32, 32])], "pixel_values"),
        ([v2_input("pixel_values", "FP32", [0.0] * 1024, [1, 1, 32, 32])], "pixel_values"),
        ([v2_input("pixel_values", "FP32", [0.0] * 768, [1, 3, 16, 16])], "32 x 32"),
        ([image_input([png_bomb()])], "input 'image' row 0"),
    ],
    ids=["undecodable", "fp64-pixels", "one-channel", "wrong-size", "bomb"],
)
def test_bad_input_is_a_4xx_naming_the_input(
    vision_server: MLServerProcess, inputs: list[dict[str, object]], needle: str
) -> None:
    resp = vision_server.infer(MODEL, {"inputs": inputs})
    assert 400 <= resp.status_code < 500, resp.text
    assert needle in resp.text
    assert_ready(vision_server, MODEL)


def bad_request_fails_alone(server: MLServerProcess, model: str) -> None:
    payloads = [{"inputs": [image_input([png(c)])]} for c in COLOURS[:8]]
    payloads[3] = {"inputs": [image_input([b"\x89PNG broken"])]}
    responses = burst(server, model, payloads)
    assert responses[3].status_code == 400 and "input 'image'" in responses[3].text
    for i, response in enumerate(responses):
        if i != 3:
            assert outputs(response)["embedding"].shape == (1, 32)


def test_bad_request_in_a_burst_fails_alone(vision_server: MLServerProcess) -> None:
    bad_request_fails_alone(vision_server, MODEL)


def test_mlserver_batch_time_does_not_merge_whole_requests(vision_server: MLServerProcess) -> None:
    """With the shipped settings (max_batch_time > 0) a bad request must still fail alone."""
    bad_request_fails_alone(vision_server, "embed-mlbatch")
    mixed = {"inputs": [image_input([png(COLOURS[0])]), v2_input("text", "BYTES", ["a", "b"])]}
    out = outputs(vision_server.infer("embed-mlbatch", mixed))
    assert out["embedding"].shape == (1, 32) and out["text_embedding"].shape == (2, 32)


def test_clip_checkpoint_serves_too(vision_server: MLServerProcess) -> None:
    resp = vision_server.infer(
        "embed-clip",
        {"inputs": [image_input([png(COLOURS[1])]), v2_input("text", "BYTES", ["a", "b c"])]},
    )
    out = outputs(resp)
    assert out["embedding"].shape == (1, 32)
    assert out["text_embedding"].shape == (2, 32)
    assert out["logits_per_image"].shape == (1, 2)


def test_text_rows_batch_like_solo(vision_checkpoints: dict[str, Path]) -> None:
    """CLIP text rows of different lengths are padded in run_batch without changing results."""
    component = ImageEmbedder(
        ComponentSettings(model_uri=str(vision_checkpoints["clip"]), warmup=False, max_batch_size=8)
    )
    component.start()
    texts = ["a", "a much longer caption text", "mid length"]
    together = component.predict({"text": np.array(texts, dtype=object)}).outputs["text_embedding"]
    for i, text in enumerate(texts):
        alone = component.predict({"text": np.array([text], dtype=object)}).outputs
        assert np.allclose(alone["text_embedding"][0], together[i], atol=1e-5)


def test_full_scale_config_is_so400m() -> None:
    config = checkpoint_config("full")
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.intermediate_size) == (
        1152,
        27,
        4304,
    )
    assert (vision.image_size, vision.patch_size, vision.num_attention_heads) == (384, 14, 16)
    assert (text.vocab_size, text.max_position_embeddings, text.hidden_size) == (32000, 64, 1152)
