"""gRPC ModelInfer through the runtime's fast path answers as MLServer's own path did.

Two real `mlserver start` processes serve the same identity models: one with the fast path
(serving/grpc_fast_path.py, the default), one with `INFERGRAPH_GRPC_FAST_PATH=0`, i.e.
MLServer 1.7's interceptor, servicer and DataPlane. The same requests go to both over a real
gRPC channel: the answers (values, datatypes, shapes, raw contents, ids, parameters, trailing
CloudEvents metadata), the errors (code and details) and the Prometheus series they leave
must be the same.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

from tests.servers import MLServerProcess, mlserver, write_model

Tensor = pb.ModelInferRequest.InferInputTensor
Contents = pb.InferTensorContents
# Response parameters whose values are timings: present on both paths, values differ.
TIMINGS = re.compile(r".*_ms$")


# The hooks' INFO lines (what `attach` did) in the server's log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
    "loggers": {"infergraph.serving": {"level": "INFO", "handlers": ["out"]}},
}


def _serve(root: Path, fast: bool) -> Iterator[MLServerProcess]:
    root.mkdir()
    write_model(root, "echo", "identity")
    write_model(root, "other", "identity")
    logging = root.parent / "logging.json"
    logging.write_text(json.dumps(LOGGING))
    env = {"MLSERVER_LOGGING_SETTINGS": str(logging)}
    if not fast:
        env["INFERGRAPH_GRPC_FAST_PATH"] = "0"
    with mlserver(root, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    yield from _serve(tmp_path_factory.mktemp("fast") / "models", fast=True)


@pytest.fixture(scope="module")
def mlserver_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    yield from _serve(tmp_path_factory.mktemp("slow") / "models", fast=False)


def call(server: MLServerProcess, request: pb.ModelInferRequest) -> dict[str, Any]:
    """One ModelInfer: the response as a dict (timing values blanked) and its trailers, or
    the error's code and details."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            response, rpc = stub.ModelInfer.with_call(request, timeout=60)
        except grpc.RpcError as exc:
            return {"code": exc.code().name, "details": exc.details()}
        ready = stub.ModelReady(pb.ModelReadyRequest(name=request.model_name), timeout=60)
    params = {
        k: (None if TIMINGS.match(k) else str(v)) for k, v in sorted(response.parameters.items())
    }
    response.ClearField("parameters")
    return {
        "response": response.SerializeToString(deterministic=True),
        "parameters": params,
        "trailers": sorted((m.key, m.value) for m in rpc.trailing_metadata()),
        "ready": ready.ready,
    }


def tensor(name: str, datatype: str, shape: list[int], **contents: Any) -> Any:
    return Tensor(name=name, datatype=datatype, shape=shape, contents=Contents(**contents))


FP32 = tensor("input", "FP32", [1, 4], fp32_contents=[0.5, -1.25, 3.0, 1e-7])
REQUESTS: dict[str, pb.ModelInferRequest] = {
    "fp32": pb.ModelInferRequest(model_name="echo", inputs=[FP32]),
    "with id": pb.ModelInferRequest(model_name="echo", id="req-7", inputs=[FP32]),
    "every datatype": pb.ModelInferRequest(
        model_name="echo",
        inputs=[
            tensor("f64", "FP64", [2], fp64_contents=[1.5, -2.25]),
            tensor("i64", "INT64", [1, 3], int64_contents=[1, -2, 2**40]),
            tensor("i32", "INT32", [2], int_contents=[7, -8]),
            tensor("u8", "UINT8", [3], uint_contents=[0, 7, 255]),
            tensor("ok", "BOOL", [2], bool_contents=[True, False]),
            tensor("text", "BYTES", [2], bytes_contents=[b"caf\xc3\xa9", b"two"]),
        ],
    ),
    "requested output": pb.ModelInferRequest(
        model_name="echo",
        inputs=[FP32, tensor("other", "INT64", [1], int64_contents=[3])],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="other")],
    ),
    "raw contents": pb.ModelInferRequest(
        model_name="echo",
        inputs=[Tensor(name="input", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[np.array([1.5, 2.5], "<f4").tobytes()],
    ),
    "raw, every kind": pb.ModelInferRequest(
        model_name="echo",
        inputs=[
            Tensor(name="i64", datatype="INT64", shape=[1, 2]),
            Tensor(name="ok", datatype="BOOL", shape=[3]),
            Tensor(name="half", datatype="FP16", shape=[2]),
            Tensor(name="text", datatype="BYTES", shape=[2]),
            Tensor(name="blob", datatype="BYTES", shape=[1]),
            tensor("kept", "FP64", [1], fp64_contents=[2.5]),
        ],
        raw_input_contents=[
            np.array([-3, 2**40], "<i8").tobytes(),
            np.array([True, False, True]).tobytes(),
            np.array([0.5, -2.0], "<f2").tobytes(),
            struct.pack("<I", 5) + b"caf\xc3\xa9" + struct.pack("<I", 3) + b"two",
            struct.pack("<I", 2) + b"\xff\xfe",  # not UTF-8: answered as the same bytes
        ],
        outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(name=n)
            for n in ("blob", "i64", "kept", "half", "ok", "text")
        ],
    ),
    "raw entries missing": pb.ModelInferRequest(
        model_name="echo",
        inputs=[
            Tensor(name="a", datatype="FP32", shape=[1]),
            Tensor(name="b", datatype="FP32", shape=[1]),
        ],
        raw_input_contents=[np.float32([1]).tobytes()],
    ),
    "raw, unknown datatype": pb.ModelInferRequest(
        model_name="echo",
        inputs=[Tensor(name="a", datatype="FP99", shape=[1])],
        raw_input_contents=[b"1234"],
    ),
    "request parameters": pb.ModelInferRequest(
        model_name="other",
        inputs=[FP32],
        parameters={"note": pb.InferParameter(string_param="x")},
    ),
    "version": pb.ModelInferRequest(model_name="echo", model_version="v9", inputs=[FP32]),
    "unknown model": pb.ModelInferRequest(model_name="nope", inputs=[FP32]),
    "too few values": pb.ModelInferRequest(
        model_name="echo", inputs=[tensor("input", "FP32", [1, 4], fp32_contents=[1.0])]
    ),
    "unknown datatype": pb.ModelInferRequest(
        model_name="echo", inputs=[tensor("input", "FP99", [1], fp32_contents=[1.0])]
    ),
    "short raw entry": pb.ModelInferRequest(
        model_name="echo",
        inputs=[Tensor(name="input", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[struct.pack("<3f", 1, 2, 3)],
    ),
    "no inputs": pb.ModelInferRequest(model_name="echo"),
    # Two negative dimensions multiply to a positive count, so the raw length check passes.
    "raw, negative dims": pb.ModelInferRequest(
        model_name="echo",
        inputs=[Tensor(name="input", datatype="FP32", shape=[-1, -2])],
        raw_input_contents=[np.float32([1, 2]).tobytes()],
    ),
    "raw BYTES, negative dims": pb.ModelInferRequest(
        model_name="echo",
        inputs=[Tensor(name="input", datatype="BYTES", shape=[-1, -1])],
        raw_input_contents=[struct.pack("<I", 2) + b"ab"],
    ),
}


def test_the_fast_path_serves_the_runtimes_models(
    fast: MLServerProcess, mlserver_path: MLServerProcess
) -> None:
    """Pins the hook: without this line in the log, ModelInfer went through MLServer's chain
    (its interceptors or DataPlane changed), still correct but several times the CPU."""
    assert "gRPC ModelInfer ahead of its servicer" in fast.log()
    assert "ModelInfer ahead of its servicer" not in mlserver_path.log()


@pytest.mark.parametrize("case", list(REQUESTS))
def test_same_answers_as_mlservers_path(
    fast: MLServerProcess, mlserver_path: MLServerProcess, case: str
) -> None:
    request = REQUESTS[case]
    got, expected = call(fast, request), call(mlserver_path, request)
    assert got == expected


def test_answers_and_errors_in_detail(fast: MLServerProcess) -> None:
    """What the comparison above holds, spelled out for the fast path on its own."""
    response = pb.ModelInferResponse.FromString(call(fast, REQUESTS["with id"])["response"])
    assert (response.id, response.model_name) == ("req-7", "echo")
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("input", "FP32", [1, 4])
    assert np.array_equal(
        np.float32([0.5, -1.25, 3.0, 1e-7]), np.float32(out.contents.fp32_contents)
    )
    trailers = dict(call(fast, REQUESTS["with id"])["trailers"])
    assert trailers["ce-id"] == "req-7" and trailers["ce-modelid"] == "echo"
    raw = pb.ModelInferResponse.FromString(call(fast, REQUESTS["raw contents"])["response"])
    assert np.frombuffer(raw.raw_output_contents[0], "<f4").tolist() == [1.5, 2.5]
    kinds = pb.ModelInferResponse.FromString(call(fast, REQUESTS["raw, every kind"])["response"])
    assert [o.name for o in kinds.outputs] == ["blob", "i64", "kept", "half", "ok", "text"]
    blob, i64, kept, half, ok, text = kinds.raw_output_contents  # every output goes raw
    # gRPC carries bytes: no base64 text in their place (tritonclient's and KServe's as_numpy
    # read the contents as they come; REST's binary extension answers the same bytes).
    assert blob == struct.pack("<I", 2) + b"\xff\xfe"
    assert "content_type" not in kinds.outputs[0].parameters
    assert np.frombuffer(i64, "<i8").tolist() == [-3, 2**40]
    assert np.frombuffer(half, "<f2").tolist() == [0.5, -2.0]
    assert np.frombuffer(ok, bool).tolist() == [True, False, True]
    assert text == struct.pack("<I", 5) + b"caf\xc3\xa9" + struct.pack("<I", 3) + b"two"
    assert np.frombuffer(kept, "<f8").tolist() == [2.5]
    short = call(fast, REQUESTS["too few values"])
    assert short["code"] == "INVALID_ARGUMENT" and "input 'input'" in short["details"], short
    raw_short = call(fast, REQUESTS["short raw entry"])
    assert raw_short["code"] == "INVALID_ARGUMENT" and "holds 12 bytes" in raw_short["details"]
    assert call(fast, REQUESTS["unknown model"])["code"] == "NOT_FOUND"
    assert call(fast, REQUESTS["fp32"])["ready"]


SERIES = re.compile(
    r"^(grpc_server_(?:started|handled)_total|grpc_server_handling_seconds_count"
    r"|model_infer_request_(?:success|failure)_total|model_infer_request_duration_count"
    r"|infergraph_requests_total)\{([^}]*)\} (\S+)$"
)


def series(server: MLServerProcess) -> dict[str, float]:
    """ModelInfer's series on the server's metrics port (method ModelInfer, or any model's)."""
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30).text
    found = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match and ("grpc_method" not in match[2] or 'grpc_method="ModelInfer"' in match[2]):
            found[f"{match[1]}{{{match[2]}}}"] = float(match[3])
    return found


def test_same_metrics_as_mlservers_path(
    fast: MLServerProcess, mlserver_path: MLServerProcess
) -> None:
    """The same calls leave the same counts in the same series on both servers."""
    before = {s.grpc_port: series(s) for s in (fast, mlserver_path)}
    for case in ("fp32", "raw contents", "too few values", "fp32", "unknown model"):
        for server in (fast, mlserver_path):
            call(server, REQUESTS[case])
    added = {}
    for server in (fast, mlserver_path):
        now = series(server)
        added[server.grpc_port] = {
            k: v - before[server.grpc_port].get(k, 0.0) for k, v in now.items()
        }
        added[server.grpc_port] = {k: v for k, v in added[server.grpc_port].items() if v}
    got, expected = added[fast.grpc_port], added[mlserver_path.grpc_port]
    assert got == expected
    started = [v for k, v in got.items() if k.startswith("grpc_server_started_total")]
    assert started == [5.0], got


def test_a_model_loaded_and_unloaded_later(
    fast: MLServerProcess, mlserver_path: MLServerProcess
) -> None:
    """Seldon v2 loads models into a running server through the repository API: the fast
    path serves them from their load on, and after their unload answers as MLServer does."""
    request = pb.ModelInferRequest(model_name="late", id="l", inputs=[FP32])
    answers = []
    for server in (fast, mlserver_path):
        write_model(server.workdir, "late", "identity")
        repository = f"{server.url}/v2/repository/models/late"
        assert httpx.post(f"{repository}/load", timeout=120).status_code == 200
        loaded = call(server, request)
        assert httpx.post(f"{repository}/unload", timeout=120).status_code == 200
        answers.append((loaded, call(server, request)))
    assert answers[0] == answers[1]
    (loaded, unloaded) = answers[0]
    assert "response" in loaded and unloaded["code"] == "NOT_FOUND", answers[0]


def test_an_integer_outside_its_datatype_is_refused_over_grpc_and_rest(
    fast: MLServerProcess,
) -> None:
    """gRPC's `int_contents` holds INT8 values as int32, and JSON any integer: 300 is no INT8.
    It was echoed back as 44; now both transports refuse it naming the element and range."""
    request = pb.ModelInferRequest(
        model_name="echo", inputs=[tensor("small", "INT8", [2], int_contents=[7, 300])]
    )
    refused = call(fast, request)
    assert refused["code"] == "INVALID_ARGUMENT", refused
    assert "input 'small'" in refused["details"]
    assert "element 1 (300) is outside INT8's range -128..127" in refused["details"]
    body = {"inputs": [{"name": "small", "datatype": "UINT8", "shape": [2], "data": [7, -1]}]}
    answer = httpx.post(f"{fast.url}/v2/models/echo/infer", json=body, timeout=60)
    assert answer.status_code == 400, answer.text
    assert "element 1 (-1) is outside UINT8's range 0..255" in answer.json()["error"]


@pytest.mark.parametrize("case", ["raw, negative dims", "raw BYTES, negative dims"])
def test_a_raw_input_whose_shape_is_wrong_is_invalid_argument_counted_as_bad_input(
    fast: MLServerProcess, case: str
) -> None:
    """The raw entry was decoded outside the runtime's error mapping: the shape's error
    reached gRPC as INTERNAL (logged with a traceback) and was missing from
    `infergraph_requests_total`, while the same request with a parameter (MLServer's
    converters) and REST answered INVALID_ARGUMENT naming the model (review finding 3)."""
    counted = 'infergraph_requests_total{model="echo",outcome="bad_input"}'
    before = series(fast).get(counted, 0.0)
    refused = call(fast, REQUESTS[case])
    assert refused["code"] == "INVALID_ARGUMENT", refused
    assert refused["details"].startswith("echo: input 'input': shape [-1, ")
    assert refused["details"].endswith("] has a negative dimension")
    assert series(fast).get(counted, 0.0) == before + 1


@pytest.mark.parametrize(
    ("datatype", "contents", "problem"),
    [
        ("INT32", {"fp32_contents": [1.5, -2.7]}, "element 0 (1.5) is not an integer"),
        ("BOOL", {"int_contents": [1, 2]}, "element 1 (2) is not 0, 1, true or false"),
        ("FP32", {"fp64_contents": [1.0, 1e39]}, "element 1 (1e+39) overflows FP32"),
    ],
)
def test_a_number_its_datatype_would_change_is_refused_over_grpc_and_rest(
    fast: MLServerProcess, datatype: str, contents: dict[str, list[float]], problem: str
) -> None:
    """INT32 [1.5, -2.7] was answered [1, -2], BOOL 2 as true, FP32 1e39 as inf (null over
    REST): values changed without a word (review finding 7). Both transports refuse them."""
    request = pb.ModelInferRequest(
        model_name="echo", inputs=[tensor("v", datatype, [2], **contents)]
    )
    refused = call(fast, request)
    assert refused["code"] == "INVALID_ARGUMENT", refused
    assert f"echo: input 'v': data is not valid {datatype}: {problem}" in refused["details"]
    data = next(iter(contents.values()))
    body = {"inputs": [{"name": "v", "datatype": datatype, "shape": [2], "data": data}]}
    answer = httpx.post(f"{fast.url}/v2/models/echo/infer", json=body, timeout=60)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert problem in answer.json()["error"]


@pytest.mark.parametrize("odd", ["\u4e2d-1", "a\nb"])
def test_an_id_no_metadata_can_carry_is_answered_in_the_response_only(
    fast: MLServerProcess, odd: str
) -> None:
    """gRPC metadata values are printable ASCII: an id outside it as a `ce-id` trailer fails
    the call after the model ran. It is answered in the response and left out of the
    trailers, as the REST route leaves it out of its headers."""
    got = call(fast, pb.ModelInferRequest(model_name="echo", id=odd, inputs=[FP32]))
    assert "response" in got, got
    assert pb.ModelInferResponse.FromString(got["response"]).id == odd
    trailers = dict(got["trailers"])
    assert "ce-id" not in trailers and trailers["ce-modelid"] == "echo"
