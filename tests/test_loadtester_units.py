"""Load tester pieces that need no server: schedules, traces, payloads, encodings, config."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import orjson
import pytest
from async_load_tester.cli import app
from async_load_tester.payloads import load_payloads
from async_load_tester.plots import pareto_front
from async_load_tester.protocols import grpc_predict_v2_pb2 as pb
from async_load_tester.protocols.encode import (
    MalformedResponse,
    check_seldon_json,
    check_v2_json,
    encode_all,
    grpc_message,
    parse_headers,
    v2_binary_body,
)
from async_load_tester.schedule import (
    arrival_chunks,
    generate_trace,
    parse_schedule,
    trace_schedule,
    with_warmup,
)
from typer.testing import CliRunner

from async_load_tester import ConfigError, LoadConfig, PayloadError

CASCADE = Path(__file__).resolve().parent.parent / "k8s" / "graphs" / "cascade.yaml"


def offsets(
    spec: str, duration: float, arrival: str = "constant", warmup: float = 0.0
) -> np.ndarray:
    segments = with_warmup(parse_schedule(spec, duration), warmup)
    return np.array([t for chunk in arrival_chunks(segments, arrival, 7) for t in chunk])  # type: ignore[arg-type]


def test_constant_schedule_is_exact_and_does_not_drift() -> None:
    t = offsets("constant:1000", 30)
    assert len(t) == 30_000
    assert np.allclose(t, np.arange(30_000) / 1000.0, atol=1e-9)


def test_poisson_rate_and_seed() -> None:
    t = offsets("constant:500", 20, "poisson")
    assert len(t) == pytest.approx(10_000, rel=0.05)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)  # exponential: CV 1
    assert np.array_equal(t, offsets("constant:500", 20, "poisson"))


def test_step_ramp_and_warmup() -> None:
    t = offsets("step:100@2,300@2", 0, warmup=1.0)
    assert len(t) == 100 + 200 + 600  # warm-up runs at the first step's rate
    assert np.count_nonzero((t >= 3) & (t < 5)) == 600
    ramp = offsets("ramp:0-200", 10)
    assert len(ramp) == pytest.approx(1000, abs=1)
    assert np.count_nonzero(ramp >= 5) > 3 * np.count_nonzero(ramp < 5) - 10


def test_trace_file_and_generator(tmp_path: Path) -> None:
    counts = generate_trace(50, 200, 600, seed=1)
    assert len(counts) == 600
    assert np.mean(counts) == pytest.approx(50, abs=1)
    assert max(counts) == pytest.approx(200, abs=2)
    assert counts == generate_trace(50, 200, 600, seed=1)
    path = tmp_path / "trace.txt"
    path.write_text("# comment\n3\n0\n5\n")
    sched = trace_schedule(path)
    t = np.array([x for c in arrival_chunks(sched.segments, "constant", 0) for x in c])
    assert [np.count_nonzero((t >= s) & (t < s + 1)) for s in range(3)] == [3, 0, 5]


def test_trace_command(tmp_path: Path) -> None:
    out = tmp_path / "t.txt"
    result = CliRunner().invoke(
        app, ["trace", "--mean", "20", "--peak", "80", "--duration", "120", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    values = [int(x) for x in out.read_text().splitlines() if not x.startswith("#")]
    assert len(values) == 120 and max(values) == pytest.approx(80, abs=2)


def test_payload_kinds(tmp_path: Path) -> None:
    image = load_payloads("synthetic:image:32x16")
    data = image[0].inputs[0].items[0]  # type: ignore[index]
    assert data.startswith(b"\x89PNG") and image[0].inputs[0].name == "image"
    audio = load_payloads("synthetic:audio:0.5")[0].inputs[0]
    assert audio.datatype == "FP32" and audio.shape == (1, 8000)
    tensor = load_payloads("synthetic:tensor:2x3:INT64", input_name="ids")[0].inputs[0]
    assert (tensor.name, tensor.shape, tensor.array.dtype) == ("ids", (2, 3), np.int64)  # type: ignore[union-attr]
    (tmp_path / "texts.jsonl").write_text('"hello"\n{"text": "world"}\n')
    assert [p.inputs[0].items for p in load_payloads(str(tmp_path / "texts.jsonl"))] == [
        (b"hello",),
        (b"world",),
    ]
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(data)
    assert load_payloads(str(tmp_path / "imgs"))[0].label == "a.png"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:video", "unknown synthetic kind"),
        ("synthetic:tensor", "give a shape"),
        ("synthetic:tensor:0x3", "positive dimensions"),
        ("/no/such/folder", "is not a folder"),
    ],
)
def test_bad_payloads(spec: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        load_payloads(spec)


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="holds no image"):
        load_payloads(str(tmp_path))


def test_encodings() -> None:
    payload = load_payloads("synthetic:tensor:1x4", input_name="input")[0]
    wire = encode_all(
        [payload],
        "v2-rest",
        model="m",
        version=None,
        path="/v2/models/m/infer",
        host="h:1",
        headers={"Seldon-Model": "m"},
    )[0].wire
    head, body = wire.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: h:1")
    assert b"Seldon-Model: m" in head and f"Content-Length: {len(body)}".encode() in head
    assert orjson.loads(body)["inputs"][0]["shape"] == [1, 4]
    # Binary tensor extension: JSON header then little-endian values.
    raw, json_len = v2_binary_body(payload)
    header = orjson.loads(raw[:json_len])
    assert header["inputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.array_equal(np.frombuffer(raw[json_len:], "<f4"), payload.inputs[0].array.reshape(-1))  # type: ignore[union-attr]
    text = load_payloads("synthetic:text:3")[0]
    raw, json_len = v2_binary_body(text)
    item = text.inputs[0].items[0]  # type: ignore[index]
    assert raw[json_len:] == struct.pack("<I", len(item)) + item
    request = pb.ModelInferRequest.FromString(grpc_message(payload, "m", None))
    assert request.model_name == "m" and len(request.raw_input_contents[0]) == 16


def test_response_checks() -> None:
    assert check_v2_json(
        b'{"outputs": [], "parameters": {"queue_ms": 1, "fast.inference_ms": 2.5, "x": 3}}'
    ) == {
        "queue_ms": 1.0,
        "fast.inference_ms": 2.5,
    }
    with pytest.raises(MalformedResponse):
        check_v2_json(b'{"outputs": [')
    with pytest.raises(MalformedResponse):
        check_v2_json(b'{"error": "x"}')
    assert check_seldon_json(
        b'{"data": {}, "meta": {"metrics": [{"key": "a_ms", "value": 2}]}}'
    ) == {"a_ms": 2.0}


def test_pareto_front() -> None:
    points = [(1.0, 50.0, "a"), (2.0, 40.0, "b"), (3.0, 45.0, "c"), (0.5, 90.0, "d")]
    assert [p[2] for p in pareto_front(points)] == ["d", "a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"rate": 0}, "--rate"),
        ({"rate": -5}, "--rate"),
        ({}, "--rate"),
        ({"rate": 5, "concurrency": 2}, "--rate"),
        ({"concurrency_range": "64:1"}, "--concurrency-range"),
        ({"concurrency_range": "1:64:x1"}, "--concurrency-range"),
        ({"sweep": True}, "--sweep"),
        ({"rate": 5, "target": "ftp://x"}, "--target"),
        ({"rate": 5, "path_template": "/x/{nope}"}, "--path-template"),
        ({"schedule": "step:5"}, "--schedule"),
        ({"rate": 5, "engine": "seldon-v2"}, "--engine"),
        ({"rate": 5, "engine": "local", "graph": CASCADE}, "--engine"),
        ({"rate": 5, "engine": "seldon-v3", "graph": CASCADE}, "--engine"),
    ],
)
def test_bad_config(kwargs: dict[str, object], option: str) -> None:
    base: dict[str, object] = {"target": "http://127.0.0.1:1", "model": "m"}
    with pytest.raises(ConfigError) as info:
        LoadConfig(**{**base, **kwargs}).validated()  # type: ignore[arg-type]
    assert info.value.option == option


def test_concurrency_range_levels() -> None:
    config = LoadConfig(target="http://x:1", model="m", concurrency_range="1:64:x2")
    assert config.concurrency_levels() == [1, 2, 4, 8, 16, 32, 64]
    assert LoadConfig(target="x:1", model="m", concurrency_range="2:10:4").concurrency_levels() == [
        2,
        6,
        10,
    ]


def test_headers_and_path_template() -> None:
    assert parse_headers(["Seldon-Model: cascade", "Host: ingress.local"]) == {
        "Seldon-Model": "cascade",
        "Host": "ingress.local",
    }
    with pytest.raises(ConfigError, match="not 'Name: value'"):
        parse_headers(["garbage"])
    config = LoadConfig(
        target="http://127.0.0.1:8080/prefix",
        model="cascade",
        namespace="prod",
        rate=1,
        path_template="/seldon/{namespace}/{model}/v2/models/{model}/infer",
    )
    assert config.path() == "/prefix/seldon/prod/cascade/v2/models/cascade/infer"
