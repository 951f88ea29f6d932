"""image-captioning (BLIP) behind a real `mlserver start`: REST, gRPC, batching, bounds."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from infergraph.checkpoints.image_captioning import checkpoint_config
from infergraph.components.base import ComponentSettings
from infergraph.components.image_captioning import ImageCaptioner
from infergraph.errors import InputError
from tests.servers import MLServerProcess, v2_input
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
    shared_checkpoints,
    shared_server,
)

pytestmark = pytest.mark.slow

MODEL = "caption"


@pytest.fixture(scope="module")
def vision_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MLServerProcess:
    return shared_server(request, tmp_path_factory)


def caption(server: MLServerProcess, images: list[bytes], **params: object) -> httpx.Response:
    payload: dict[str, object] = {"inputs": [image_input(images)]}
    if params:
        payload["parameters"] = params
    return server.infer(MODEL, payload)


def test_one_caption_per_image(vision_server: MLServerProcess) -> None:
    resp = caption(vision_server, [png(COLOURS[0]), png(COLOURS[1])])
    out = resp.json()["outputs"]
    assert [o["name"] for o in out] == ["caption"]
    assert out[0]["shape"] == [2] and out[0]["datatype"] == "BYTES"
    assert all(isinstance(c, str) for c in out[0]["data"])
    assert out[0]["data"][0] != out[0]["data"][1]  # the tiny model's captions follow the image


def test_prompt_beams_and_bounds(vision_server: MLServerProcess) -> None:
    images = [png(COLOURS[2])]
    prompted = outputs(caption(vision_server, images, prompt="a picture of"))["caption"][0]
    assert prompted.startswith("a picture of")
    as_input = vision_server.infer(
        MODEL, {"inputs": [image_input(images), v2_input("prompt", "BYTES", ["a picture of"])]}
    )
    assert outputs(as_input)["caption"][0] == prompted
    beams = caption(vision_server, images, num_beams=2, max_new_tokens=4)
    assert outputs(beams)["caption"].shape == (1,)
    for params, needle in [
        ({"max_new_tokens": 500}, "max_new_tokens"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"num_beams": 50}, "num_beams"),
        ({"num_beams": "many"}, "num_beams"),
    ]:
        resp = caption(vision_server, images, **params)
        assert resp.status_code == 400 and needle in resp.text, resp.text
    assert_ready(vision_server, MODEL)


def test_concurrent_requests_each_get_their_own_caption(vision_server: MLServerProcess) -> None:
    images = [png(c) for c in COLOURS[:8]]
    solo = [outputs(caption(vision_server, [i]))["caption"][0] for i in images]
    payloads = [{"inputs": [image_input([i])]} for i in images]
    # a request with other generation settings joins the burst: it must not share their batch
    payloads.append({"inputs": [image_input(images[:1])], "parameters": {"max_new_tokens": 2}})
    sizes: list[int] = []
    for _ in range(3):
        responses = burst(vision_server, MODEL, payloads)
        for response, expected in zip(responses, solo, strict=False):
            assert outputs(response)["caption"][0] == expected
        short = outputs(responses[-1])["caption"][0]
        assert len(short.split()) <= 2
        sizes = [batch_size(r) for r in responses]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1


def test_grpc_request(vision_server: MLServerProcess) -> None:
    images = [png(COLOURS[3])]
    got = grpc_infer(vision_server, MODEL, [("image", "BYTES", [1], images)])
    expected = outputs(caption(vision_server, images))["caption"][0]
    assert [c.decode() for c in got["caption"]] == [expected]


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([image_input([png((1, 2, 3)), b"GIF89a nonsense"])], "input 'image' row 1"),
        ([image_input([png_bomb()])], "input 'image' row 0"),
        ([v2_input("pixels", "FP32", [0.0], [1])], "input 'image'"),
    ],
    ids=["undecodable", "bomb", "missing"],
)
def test_bad_input_is_a_4xx_naming_the_input(
    vision_server: MLServerProcess, inputs: list[dict[str, object]], needle: str
) -> None:
    resp = vision_server.infer(MODEL, {"inputs": inputs})
    assert 400 <= resp.status_code < 500 and needle in resp.text, resp.text
    assert_ready(vision_server, MODEL)


def test_bad_request_in_a_burst_fails_alone(vision_server: MLServerProcess) -> None:
    payloads = [{"inputs": [image_input([png(c)])]} for c in COLOURS[:6]]
    payloads[2] = {"inputs": [image_input([b"not an image at all"])]}
    responses = burst(vision_server, MODEL, payloads)
    assert responses[2].status_code == 400 and "input 'image'" in responses[2].text
    assert all(outputs(r)["caption"].shape == (1,) for i, r in enumerate(responses) if i != 2)


def test_prompt_rows_must_agree(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = shared_checkpoints(tmp_path_factory)["blip"]
    component = ImageCaptioner(ComponentSettings(model_uri=str(folder), warmup=False))
    component.start()
    images = np.array([png(COLOURS[0]), png(COLOURS[1])], dtype=object)
    with pytest.raises(InputError, match="prompt"):
        component.predict({"image": images, "prompt": np.array([b"a", b"b"], dtype=object)})
    result = component.predict({"image": images}, {"max_new_tokens": 3})
    assert result.outputs["caption"].shape == (2,) and result.parameters["batch_size"] == 2


def test_full_scale_config_is_blip_base(tmp_path: Path) -> None:
    config = checkpoint_config("full")
    assert (config.vision_config.hidden_size, config.vision_config.num_hidden_layers) == (768, 12)
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (384, 16)
    text = config.text_config
    assert (text.vocab_size, text.bos_token_id, text.sep_token_id) == (30524, 30522, 102)
    assert text.encoder_hidden_size == 768
