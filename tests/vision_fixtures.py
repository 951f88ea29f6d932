"""Shared fixtures for the vision component tests: tiny checkpoints and one real mlserver.

Every vision test module uses the same session-wide `vision_server` (one
`mlserver start` hosting all the tiny vision models) because starting mlserver
and loading models is the slow part on a shared CPU. Checkpoints are built with
each family's builder in `infergraph.checkpoints` (random weights, real architectures) and
reach the server the way users point at weights: `parameters.uri` = a folder.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import os
import struct
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers import MLServerProcess, grpc_model_infer, mlserver, v2_input, write_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The shipped model-settings use a positive batch time; "embed-mlbatch" keeps one to show that
# MLServer's own request merger stays off and ours batches per row.
BATCHING = {"max_batch_size": 16, "max_batch_time": 0.005}

_STATE: dict[str, Any] = {}


# -- images -------------------------------------------------------------------------------------
def png(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    """A solid-colour PNG: distinct colours give tiny random models distinct outputs."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG")
    return buffer.getvalue()


COLOURS = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (0, 0, 0),
    (255, 255, 255),
    (128, 64, 32),
    (32, 128, 64),
    (64, 32, 128),
    (200, 200, 100),
]


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real 1-bit PNG of width x height black pixels, about 50 KB on disk.

    Written chunk by chunk rather than with PIL, which would hold all
    400 million pixels in memory (one byte each) to save it.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    idat = b"".join(parts) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_input(images: list[bytes], name: str = "image") -> dict[str, Any]:
    """Images as a V2 BYTES input, base64 on the wire (the JSON way to carry binary)."""
    return v2_input(name, "BYTES", [b64(i) for i in images], content_type="base64")


# -- responses ----------------------------------------------------------------------------------
def outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    """Output tensors as numpy arrays in their declared shapes (BYTES base64 decoded)."""
    assert response.status_code == 200, response.text
    result: dict[str, np.ndarray] = {}
    for out in response.json()["outputs"]:
        data = out["data"]
        params = out.get("parameters") or {}
        if out["datatype"] == "BYTES":
            if params.get("content_type") == "base64":
                data = [base64.b64decode(d) for d in data]
            result[out["name"]] = np.array(data, dtype=object).reshape(out["shape"])
        else:
            result[out["name"]] = np.array(data, dtype=np.float64).reshape(out["shape"])
    return result


def batch_size(response: httpx.Response) -> int:
    return int(response.json()["parameters"]["batch_size"])


def assert_ready(server: MLServerProcess, model: str) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=10).status_code == 200


def burst(
    server: MLServerProcess, model: str, payloads: list[dict[str, Any]], workers: int = 12
) -> list[httpx.Response]:
    """Send every payload at once so the server's batcher can merge them."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: server.infer(model, p), payloads))


def grpc_infer(
    server: MLServerProcess,
    model: str,
    tensors: list[tuple[str, str, list[int], list[Any]]],
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ModelInfer call over gRPC; returns {output name: numpy array or list of bytes}."""
    response = grpc_model_infer(server, model, tensors, parameters)
    result: dict[str, Any] = {}
    for out in response.outputs:
        if out.datatype == "BYTES":
            result[out.name] = list(out.contents.bytes_contents)
        elif out.datatype == "FP32":
            result[out.name] = np.array(out.contents.fp32_contents).reshape(out.shape)
        elif out.datatype == "INT64":
            result[out.name] = np.array(out.contents.int64_contents).reshape(out.shape)
    return result


# -- checkpoints and the server -----------------------------------------------------------------
def build_checkpoints(root: Path) -> dict[str, Path]:
    """Every tiny checkpoint the vision tests serve, built once per session."""
    from infergraph.checkpoints.image_captioning import build_image_captioner
    from infergraph.checkpoints.image_classification import build_image_classifier
    from infergraph.checkpoints.image_embedding import build_image_embedder
    from infergraph.checkpoints.object_detection import build_object_detector

    return {
        "siglip": build_image_embedder(root / "siglip", "tiny"),
        "clip": build_image_embedder(root / "clip", "tiny", architecture="clip"),
        "blip": build_image_captioner(root / "blip", "tiny"),
        "timm": build_image_classifier(root / "timm", "tiny", backend="timm"),
        "vit": build_image_classifier(root / "vit", "tiny", backend="transformers"),
        "detr": build_object_detector(root / "detr", "tiny"),
    }


def shared_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny checkpoints, built on first use and shared by every vision test module."""
    if "checkpoints" not in _STATE:
        _STATE["checkpoints"] = build_checkpoints(tmp_path_factory.mktemp("vision-checkpoints"))
    return _STATE["checkpoints"]


def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> MLServerProcess:
    """One `mlserver start` hosting every tiny vision model, stopped when the session ends.

    Test modules wrap this in their own fixture; the cache here makes them share one
    server (starting mlserver and loading models is the slow part on a shared CPU).
    """
    if "server" in _STATE:
        return _STATE["server"]
    ck = {k: str(v) for k, v in shared_checkpoints(tmp_path_factory).items()}
    models = tmp_path_factory.mktemp("vision-models")
    write_model(models, "embed", "image-embedding", ck["siglip"], **BATCHING)
    write_model(models, "embed-clip", "image-embedding", ck["clip"], **BATCHING)
    write_model(models, "caption", "image-captioning", ck["blip"], **BATCHING, max_new_tokens=8)
    write_model(models, "classify", "image-classification", ck["timm"], **BATCHING)
    write_model(models, "classify-vit", "image-classification", ck["vit"], **BATCHING)
    write_model(models, "detect", "object-detection", ck["detr"], **BATCHING)
    write_model(
        models, "embed-mlbatch", "image-embedding", ck["siglip"], max_batch_size=16,
        max_batch_time=0.05,
    )  # fmt: skip
    stack = ExitStack()
    server = stack.enter_context(mlserver(models, startup_timeout=300))
    _STATE["server"] = server

    def stop() -> None:
        _STATE.pop("server", None)
        stack.close()

    request.config.add_cleanup(stop)
    return server
