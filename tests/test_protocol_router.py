"""The local graph router as real clients see it: `embed-image` served by `run_graph`.

The Triton `embed_image` client code verbatim, tritonclient over HTTP (binary in, binary out,
requested outputs, metadata, config, readiness of the graph and of a node), a body without
Content-Type, and bad input that must be a 4xx naming what was wrong.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests

from infergraph.graph.plan import load_graph
from infergraph.runner.local import RunningGraph, run_graph
from tests.vision_fixtures import COLOURS, png

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve k8s/graphs/embed-image.yaml offline (tiny SigLIP) on a thread of its own."""
    os.environ.setdefault("INFERGRAPH_CACHE", str(tmp_path_factory.mktemp("offline-cache")))
    graph = load_graph(REPO / "k8s/graphs/embed-image.yaml")
    started: dict[str, RunningGraph] = {}
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        async with run_graph(graph, offline=True, offline_scale="tiny", startup_timeout=300) as rg:
            started["rg"] = rg
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the waiting test
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(600)
    if failure:
        raise failure[0]
    yield started["rg"].url
    stop.set()
    thread.join(60)


def json_embedding(url: str, image: bytes) -> np.ndarray:
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(image).decode()],
                "parameters": {"content_type": "base64"},
            }
        ]
    }
    resp = httpx.post(f"{url}/v2/models/embed-image/infer", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return np.asarray(resp.json()["outputs"][0]["data"], dtype=np.float32).reshape(-1)


def test_embed_image_client_verbatim_through_the_graph(graph_url: str, tmp_path: Path) -> None:
    image_path = tmp_path / "image.png"
    image_path.write_bytes(png(COLOURS[0]))
    base_url = f"{graph_url}/v2/models"
    expected = json_embedding(graph_url, image_path.read_bytes())

    # TritonsProngs/triton-embed-image docs/embed_image.md, "Raw Image" (the model name is the
    # graph's: embed-image).
    with open(image_path, "rb") as f:
        image_bytes = f.read()

    image_embed_response = requests.post(
        url=f"{base_url}/embed-image/infer",
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": "0",
        },
        data=image_bytes,
    )

    header_length = int(image_embed_response.headers["Inference-Header-Content-Length"])
    image_embedding_np = np.frombuffer(
        image_embed_response.content[header_length:],
        dtype=np.float32,
    )
    assert np.allclose(image_embedding_np, expected, atol=1e-5)

    # "Base64 Encoded Image", same page.
    image_b64_str = base64.b64encode(image_bytes).decode("UTF-8")

    inference_request = {
        "parameters": {"base64_encoded": True},  # **MUST SET THIS**
        "inputs": [
            {
                "name": "INPUT_IMAGE",
                "shape": [1, 1],
                "datatype": "BYTES",
                "data": [image_b64_str],
            }
        ],
    }
    image_embed_response = requests.post(
        url=f"{base_url}/embed-image/infer",
        json=inference_request,
    ).json()
    image_embedding = image_embed_response["outputs"][0]["data"]
    assert np.allclose(image_embedding, expected, atol=1e-5)


def test_raw_image_posts_to_the_graph_and_to_its_node(graph_url: str) -> None:
    """`/infer/raw` (the body is the image, the answer JSON), as the runtime serves it and
    the graph file's comment promises: through the graph, and to the node beside it."""
    image = png(COLOURS[3])
    expected = json_embedding(graph_url, image)
    octet = {"Content-Type": "application/octet-stream"}
    for model in ("embed-image", "siglip"):
        resp = httpx.post(
            f"{graph_url}/v2/models/{model}/infer/raw", content=image, headers=octet, timeout=60
        )
        assert resp.status_code == 200, (model, resp.text)
        (output,) = resp.json()["outputs"]
        assert output["name"] == "embedding", model
        assert np.allclose(np.asarray(output["data"]).reshape(-1), expected, atol=1e-5), model
        garbage = httpx.post(
            f"{graph_url}/v2/models/{model}/infer/raw", content=b"garbage", timeout=60
        )
        assert garbage.status_code == 400, (model, garbage.text)
        assert "input 'image'" in garbage.json()["error"], (model, garbage.text)


def test_tritonclient_http_through_the_router(graph_url: str) -> None:
    import tritonclient.http as httpclient

    image = png(COLOURS[1])
    expected = json_embedding(graph_url, image)
    client = httpclient.InferenceServerClient(graph_url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "infergraph"
    assert client.is_model_ready("embed-image") and client.is_model_ready("siglip")
    assert client.get_model_metadata("embed-image")["inputs"][0]["name"] == "image"
    assert {t["name"] for t in client.get_model_metadata("siglip")["outputs"]} >= {"embedding"}
    assert client.get_model_config("embed-image")["input"][0]["data_type"] == "TYPE_STRING"
    for binary in (True, False):
        tensor = httpclient.InferInput("image", [1], "BYTES")
        data = image if binary else base64.b64encode(image).decode()
        tensor.set_data_from_numpy(np.array([data], dtype=object), binary_data=binary)
        wanted = [httpclient.InferRequestedOutput("embedding", binary_data=binary)]
        result = client.infer("embed-image", [tensor], outputs=wanted, request_id=f"r{binary}")
        assert result.get_response()["id"] == f"r{binary}"
        assert "graph.total_ms" in result.get_response()["parameters"]
        assert np.allclose(result.as_numpy("embedding").reshape(-1), expected, atol=1e-5)
    # A node beside the graph, binary too, and a model version path.
    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object), binary_data=True)
    node = client.infer("siglip", [tensor], outputs=[httpclient.InferRequestedOutput("embedding")])
    assert np.allclose(node.as_numpy("embedding").reshape(-1), expected, atol=1e-5)
    versioned = client.infer("embed-image", [tensor], model_version="1")
    assert np.allclose(versioned.as_numpy("embedding").reshape(-1), expected, atol=1e-5)
    client.close()


def test_triton_siglip_vision_model_request_through_the_router(
    graph_url: str, tmp_path: Path
) -> None:
    """The Triton SigLIP deployment's vision-model request (`PIXEL_VALUES` FP32 [N, 3, H, W]
    from the SigLIP processor, output `EMBEDDING`, tritonclient binary) to the graph's
    SigLIP node through the router; the graph itself answers `EMBEDDING` for an image."""
    import io

    import tritonclient.http as httpclient
    from PIL import Image
    from transformers import AutoProcessor

    from infergraph.checkpoints.image_embedding import build_image_embedder

    image = png(COLOURS[2])
    expected = json_embedding(graph_url, image)
    processor = AutoProcessor.from_pretrained(build_image_embedder(tmp_path / "siglip", "tiny"))
    pixels = processor(images=[Image.open(io.BytesIO(image)).convert("RGB")], return_tensors="np")[
        "pixel_values"
    ].astype(np.float32)
    client = httpclient.InferenceServerClient(graph_url.removeprefix("http://"))
    tensor = httpclient.InferInput("PIXEL_VALUES", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    wanted = [httpclient.InferRequestedOutput("EMBEDDING", binary_data=True)]
    node = client.infer("siglip", [tensor], outputs=wanted)
    assert np.allclose(node.as_numpy("EMBEDDING").reshape(-1), expected, atol=1e-5)
    encoded = httpclient.InferInput("INPUT_IMAGE", [1], "BYTES")
    encoded.set_data_from_numpy(np.array([image], dtype=object), binary_data=True)
    graph = client.infer("embed-image", [encoded], outputs=wanted)
    assert [o["name"] for o in graph.get_response()["outputs"]] == ["EMBEDDING"]
    assert np.allclose(graph.as_numpy("EMBEDDING").reshape(-1), expected, atol=1e-5)
    client.close()


def test_body_without_content_type_is_json(graph_url: str) -> None:
    body = json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    ).encode()
    host = graph_url.removeprefix("http://")
    for model in ("embed-image", "siglip"):
        connection = http.client.HTTPConnection(host, timeout=60)  # sends no Content-Type
        connection.request("POST", f"/v2/models/{model}/infer", body=body)
        raw = connection.getresponse()
        resp = httpx.Response(raw.status, content=raw.read())
        connection.close()
        # Read as JSON: the image is judged (and refused, naming it), not the body.
        assert resp.status_code == 400, resp.text
        assert "input 'image'" in resp.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{nope", "not valid JSON"),
        (b'{"parameters": [1], "inputs": []}', "must be a JSON object"),
        (b'{"inputs": [{"name": 1}]}', "'name' must be a string"),
        (
            b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]},'
            b' {"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["b"]}]}',
            "given twice",
        ),
        (b'{"inputs": [{"name": "colour", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
         "takes inputs image"),
        (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                 "data": [base64.b64encode(png(COLOURS[2])).decode()]}],
                     "outputs": [{"name": "nope"}]}).encode(), "no output named nope"),
        (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],'
         b' "data": [[[[[[["a"]]]]]]]}]}', "nested deeper"),
    ],
)  # fmt: skip
def test_bad_graph_requests_are_4xx_naming_the_fault(
    graph_url: str, body: bytes, message: str
) -> None:
    resp = httpx.post(
        f"{graph_url}/v2/models/embed-image/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert 400 <= resp.status_code < 500, resp.text
    assert message in resp.json()["error"], resp.text
    assert httpx.get(f"{graph_url}/v2/health/ready", timeout=10).status_code == 200
