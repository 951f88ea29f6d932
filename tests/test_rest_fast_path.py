"""The runtime's REST routes answered ahead of MLServer's middleware keep what it did.

`infergraph.serving.rest_fast_path` skips MLServer's FastAPI route machinery and middleware
for the runtime's own routes; these tests pin, on a real `mlserver start`, that clients see
the same answers as through the middleware: MLServer's REST metrics with the route's path
template, gzip when asked for and large enough, and MLServer's 404 once a model is unloaded.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.servers import mlserver, series, write_model

pytestmark = pytest.mark.slow


def body(n: int) -> dict[str, object]:
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, n], "data": [0.5] * n}]}


def test_metrics_gzip_and_unload_match_mlserver(tmp_path: Path) -> None:
    write_model(tmp_path, "m", "identity")
    with mlserver(tmp_path) as server:
        url = f"{server.url}/v2/models/m/infer"
        plain = httpx.post(url, json=body(200), headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        # httpx decodes gzip itself: read the raw bytes to see what travelled.
        with httpx.stream("POST", url, json=body(200), headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == "gzip"
            assert r.headers["vary"] == "Accept-Encoding"
        # The same answer (its timing parameters aside).
        assert json.loads(gzip.decompress(raw))["outputs"] == plain.json()["outputs"]
        small = httpx.post(url, json=body(2), headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under GZipMiddleware's 500 bytes
        bad = httpx.post(url, json={"inputs": [{"name": "input", "datatype": "FP32"}]})
        assert bad.status_code == 400

        metrics = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
        route = {"method": "POST", "path": "/v2/models/m/infer", "app_name": "mlserver"}
        assert series(metrics, "rest_server_requests_total", status_code="200", **route) == 3
        assert series(metrics, "rest_server_requests_total", status_code="400", **route) == 1
        assert (
            series(
                metrics, "rest_server_request_duration_seconds_count", status_code="200", **route
            )
            == 3
        )
        assert series(metrics, "rest_server_requests_in_progress", method="POST") == 0

        unloaded = httpx.post(f"{server.url}/v2/repository/models/m/unload", timeout=60)
        assert unloaded.status_code == 200
        gone = httpx.post(url, json=body(2))
        assert gone.status_code == 404, gone.text
        assert httpx.post(f"{server.url}/v2/repository/models/m/load", timeout=60).is_success
        again = httpx.post(url, json=body(2))
        assert again.status_code == 200, again.text
        assert again.json()["outputs"][0]["data"] == [0.5, 0.5]


# FP32 values whose float64 text is long, and the edges of FP32's range: the smallest
# subnormal, the largest finite value, 2**24 (where FP32 stops holding every integer), -0.
FP32_EDGES = [0.1, 1 / 3, 1e-45, 3.4028234663852886e38, 16777216.0, -0.0, -2.5e-08]


def test_fp32_outputs_travel_as_fp32_text_and_read_back_bit_exact(tmp_path: Path) -> None:
    """An FP32 output is written in FP32's shortest text (0.1, not the 0.10000000149011612
    its float64 widening prints), which any JSON reader parsing to float64 and casting to
    float32 reads back to the same bits; an embedding's body is about 40 % smaller."""
    write_model(tmp_path, "m", "identity")
    sent = np.array(FP32_EDGES, dtype=np.float32)
    request = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 7], "data": FP32_EDGES}]
    }
    with mlserver(tmp_path) as server:
        url = f"{server.url}/v2/models/m/infer"
        answer = httpx.post(url, json=request, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200, answer.text
        assert b"[0.1,0.33333334,1e-45,3.4028235e+38,16777216.0,-0.0,-2.5e-8]" in answer.content
        got = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float64).astype(np.float32)
        assert got.view(np.uint32).tolist() == sent.view(np.uint32).tolist()

        vector = np.random.default_rng(0).standard_normal(384).astype(np.float32) / 20
        embedding = {
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [1, 384], "data": vector.tolist()}
            ]
        }
        big = httpx.post(url, json=embedding, headers={"Accept-Encoding": "identity"})
        data = big.json()["outputs"][0]["data"]
        assert np.array_equal(np.asarray(data, np.float64).astype(np.float32), vector)
        widened = len(json.dumps(vector.tolist(), separators=(",", ":")))
        written = len(json.dumps(data, separators=(",", ":")))
        assert written < 0.65 * widened, (written, widened)


def test_compressed_requests_are_read_as_mlserver_reads_them(tmp_path: Path) -> None:
    """A client may compress its request (tritonclient's `request_compression_algorithm`,
    gzip or deflate, as Triton's HTTP endpoint takes): MLServer's own Request gunzips
    (mlserver/rest/requests.py:17-23), so the fast path reads the same bodies, JSON and the
    binary tensor extension alike. A body that does not inflate, or inflates past the limit,
    is a clear 400 / 413; the server goes on answering."""
    import zlib

    import tritonclient.http as triton

    from infergraph.serving.request_body import MAX_INFLATED_BYTES

    write_model(tmp_path, "m", "identity")
    data = np.arange(200, dtype=np.float32).reshape(1, 200)
    with mlserver(tmp_path) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        for binary in (False, True):
            for algorithm in ("gzip", "deflate"):
                tensor = triton.InferInput("input", [1, 200], "FP32")
                tensor.set_data_from_numpy(data, binary_data=binary)
                result = client.infer("m", [tensor], request_compression_algorithm=algorithm)
                assert np.array_equal(result.as_numpy("input"), data), (binary, algorithm)
        client.close()

        url = f"{server.url}/v2/models/m/infer"
        text = json.dumps(body(4)).encode()
        gz = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        assert httpx.post(url, content=gzip.compress(text), headers=gz).status_code == 200
        bad = httpx.post(url, content=text, headers=gz)
        assert bad.status_code == 400 and "gzip" in bad.json()["error"], bad.text
        odd = httpx.post(url, content=text, headers={**gz, "Content-Encoding": "br"})
        assert odd.status_code == 400 and "'br'" in odd.json()["error"], odd.text
        bomb = zlib.compress(b" " * (MAX_INFLATED_BYTES + 1), 9)
        big = httpx.post(url, content=bomb, headers={**gz, "Content-Encoding": "deflate"})
        assert big.status_code == 413 and "inflates past" in big.json()["error"], big.text
        assert httpx.post(url, json=body(2)).status_code == 200


def test_an_outputs_own_binary_data_wins_over_the_requests_default(tmp_path: Path) -> None:
    """Triton's binary data extension: `binary_data_output` is the default for outputs that
    do not say, and an output's own `binary_data` wins either way."""
    from infergraph.tensors.request import InferRequest

    write_model(tmp_path, "m", "identity")
    request = {
        **body(3),
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "input", "parameters": {"binary_data": False}}],
    }
    assert not InferRequest.from_json(request).is_binary("input")
    assert InferRequest.from_json({**request, "outputs": [{"name": "input"}]}).is_binary("input")
    with mlserver(tmp_path) as server:
        url = f"{server.url}/v2/models/m/infer"
        answer = httpx.post(url, json=request)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["outputs"][0]["data"] == [0.5, 0.5, 0.5]
        default = httpx.post(url, json={**request, "outputs": [{"name": "input"}]})
        assert "inference-header-content-length" in default.headers


def test_a_version_the_model_does_not_have_is_a_404(tmp_path: Path) -> None:
    """A model without a version answers /versions/<v>/infer as MLServer does, 404 (its
    registry finds no such version: mlserver/registry.py, `_find_model`), as its ready and
    metadata routes and gRPC do; it used to answer any version."""
    write_model(tmp_path, "m", "identity")
    with mlserver(tmp_path) as server:
        versioned = httpx.post(f"{server.url}/v2/models/m/versions/zzz/infer", json=body(2))
        assert versioned.status_code == 404, versioned.text
        assert "version 'zzz'" in versioned.json()["error"]
        ready = httpx.get(f"{server.url}/v2/models/m/versions/zzz/ready")
        assert ready.status_code == 404
        assert httpx.post(f"{server.url}/v2/models/m/infer", json=body(2)).status_code == 200


def test_an_endpoint_that_raises_answers_a_json_500() -> None:
    """What ServerErrorMiddleware would answer, as JSON: the body was JSON but the response
    had no Content-Type (review finding 4). Real ASGI app, called over httpx's transport."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from infergraph.serving.rest_fast_path import install

    async def broken(request: Request) -> Response:
        raise RuntimeError("a fault of ours")

    route = Route("/v2/models/m/infer", broken, methods=["POST"])
    app = Starlette(routes=[route])
    assert install(app, [route], [broken]) is not None

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v2/models/m/infer", content=b"{}")

    answer = asyncio.run(call())
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "internal server error"}


def test_infer_answers_an_id_and_cloudevents_headers_as_mlserver_does(tmp_path: Path) -> None:
    """MLServer's REST infer gives a request without an id a generated one and answers the
    CloudEvents `Ce-*` headers (1.7 handlers/dataplane.py `_prepare_payload`,
    `response_middleware`); the runtime's own route answered neither (review finding 5)."""
    write_model(tmp_path, "echo", "identity")
    plain = tmp_path / "plain"
    plain.mkdir()
    settings = {"name": "plain", "implementation": "tests.plain_mlmodel.PlainEcho"}
    (plain / "model-settings.json").write_text(json.dumps(settings))
    repo = str(Path(__file__).resolve().parents[1])
    with mlserver(tmp_path, env={"PYTHONPATH": repo}) as server:
        answers = {}
        for model in ("plain", "echo"):
            for sent_id in (None, "req-9"):
                sent = {**body(1), **({"id": sent_id} if sent_id else {})}
                answer = httpx.post(f"{server.url}/v2/models/{model}/infer", json=sent)
                assert answer.status_code == 200, answer.text
                answers[model, sent_id] = answer
    for sent_id in (None, "req-9"):
        theirs, ours = answers["plain", sent_id], answers["echo", sent_id]
        ce = {k: v for k, v in ours.headers.items() if k.startswith("ce-")}
        expected = {
            k: v.replace("plain", "echo")
            for k, v in theirs.headers.items()
            if k.startswith("ce-") and k not in ("ce-id", "ce-requestid")
        }
        given = ours.json()["id"]
        assert given == (sent_id or given) and re.fullmatch(r"[-0-9a-f]{36}|req-9", given)
        assert ce == {**expected, "ce-id": given, "ce-requestid": given}
        assert theirs.json()["id"] == theirs.headers["ce-id"]
        assert ce["ce-type"] == "io.seldon.serving.inference.response"
    assert answers["echo", None].json()["id"] != answers["plain", None].json()["id"]
    # An id no HTTP header can carry (not Latin-1, or a line break) is answered in the body
    # and left out of the Ce-* id headers, not a 500 from the header encoding.
    with mlserver(tmp_path, env={"PYTHONPATH": repo}) as server:
        for odd in ("\u4e2d-1", "a\r\nx-injected: 1"):
            answer = httpx.post(f"{server.url}/v2/models/echo/infer", json={**body(1), "id": odd})
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == odd
            assert "ce-id" not in answer.headers and "x-injected" not in answer.headers
            assert answer.headers["ce-type"] == "io.seldon.serving.inference.response"
