"""Translation (Marian) and summarization (BART): tiny checkpoints behind `mlserver start`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infergraph.checkpoints.seq2seq import build_summarizer, build_translator
from infergraph.components.base import ComponentSettings
from infergraph.components.seq2seq import Translator
from infergraph.errors import InputError
from tests.servers import MLServerProcess, mlserver, v2_input, write_model
from tests.text_fixtures import (
    assert_ready,
    burst,
    grpc_infer,
    max_batch_size,
    outputs,
    parameter,
    raw_bytes_input,
    text_input,
)

pytestmark = pytest.mark.slow

FRENCH = [
    "Le chat dort sur le canapé.",
    "Bonjour, je voudrais un café.",
    "La capitale de la France est Paris.",
    "Nous avons traduit le document hier soir.",
    "Il pleut.",
    "Où est la gare ?",
]
SHORT = {"max_new_tokens": 6}


@pytest.fixture(scope="session")
def marian_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_translator(tmp_path_factory.mktemp("ckpt") / "marian")


@pytest.fixture(scope="session")
def bart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_summarizer(tmp_path_factory.mktemp("ckpt") / "bart")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, marian_dir: Path, bart_dir: Path
) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("models")
    write_model(models, "translate", "translation", str(marian_dir),
                max_batch_size=16, max_batch_time=0.05, max_new_tokens=6)  # fmt: skip
    write_model(models, "summarize", "summarization", str(bart_dir),
                max_batch_size=8, max_batch_time=0.05, max_new_tokens=6, max_length=64)  # fmt: skip
    with mlserver(models) as proc:
        yield proc


def test_generation_settings_are_bounded_and_keyed(marian_dir: Path) -> None:
    comp = Translator(ComponentSettings(model_uri=str(marian_dir), warmup=False))
    comp.start()
    text = {"text": np.array([b"Il pleut."], dtype=object)}
    a = comp.prepare(text, {"max_new_tokens": 5})
    b = comp.prepare(text, {"max_new_tokens": 5, "num_beams": 2})
    assert a.batch_key != b.batch_key and a.batch_key == (5, 1, 0)
    with pytest.raises(InputError, match="num_beams"):
        comp.prepare(text, {"num_beams": 99})
    with pytest.raises(InputError, match="max_new_tokens"):
        comp.prepare(text, {"max_new_tokens": 0})
    # Beam search on the same rows runs and returns one string per row.
    result = comp.predict({"text": np.array([b"Il pleut.", b"Bonjour"], dtype=object)},
                          {"max_new_tokens": 4, "num_beams": 2})  # fmt: skip
    assert result.outputs["translation"].shape == (2,)


def test_rest_translate_and_summarize(server: MLServerProcess) -> None:
    out = outputs(server.infer("translate", {"inputs": [text_input("text", FRENCH[:3])]}))
    assert len(out["translation"]) == 3 and all(isinstance(t, str) for t in out["translation"])
    resp = server.infer(
        "summarize",
        {"inputs": [text_input("text", [" ".join(FRENCH)])], "parameters": {"num_beams": 2}},
    )
    assert len(outputs(resp)["summary"]) == 1


def test_grpc_translation(server: MLServerProcess) -> None:
    rest = outputs(server.infer("translate", {"inputs": [text_input("text", FRENCH[:2])]}))
    got = grpc_infer(
        server, "translate", [("text", "BYTES", [2], [t.encode() for t in FRENCH[:2]])]
    )
    assert got["translation"] == rest["translation"]


def test_concurrent_requests_share_a_generate_call(server: MLServerProcess) -> None:
    solo = [
        outputs(server.infer("translate", {"inputs": [text_input("text", [t])]}))["translation"]
        for t in FRENCH
    ]
    responses = burst(server, "translate", [{"inputs": [text_input("text", [t])]} for t in FRENCH])
    assert [outputs(r)["translation"] for r in responses] == solo
    assert max_batch_size(responses) > 1


def test_burst_with_mixed_settings_and_a_bad_request(server: MLServerProcess) -> None:
    solo_short = [
        outputs(
            server.infer("translate", {"inputs": [text_input("text", [t])], "parameters": SHORT})
        )["translation"]
        for t in FRENCH[:3]
    ]
    solo_beam = outputs(
        server.infer(
            "translate",
            {"inputs": [text_input("text", [FRENCH[0]])], "parameters": {"num_beams": 2}},
        )
    )["translation"]
    payloads = [{"inputs": [text_input("text", [t])], "parameters": SHORT} for t in FRENCH[:3]]
    payloads.append({"inputs": [text_input("text", [FRENCH[0]])], "parameters": {"num_beams": 2}})
    payloads.append({"inputs": [raw_bytes_input("text", [b"\xff\xfe"])]})
    responses = burst(server, "translate", payloads)
    assert responses[-1].status_code == 400 and "'text'" in responses[-1].text
    assert [outputs(r)["translation"] for r in responses[:3]] == solo_short
    assert outputs(responses[3])["translation"] == solo_beam


def test_bad_inputs_are_400_naming_the_input(server: MLServerProcess) -> None:
    cases = [
        ("translate", {"inputs": [raw_bytes_input("text", [b"\xff"])]}, "'text'", "utf-8"),
        ("translate", {"inputs": [v2_input("text", "INT32", [1])]}, "'text'", "expected BYTES"),
        ("summarize", {"inputs": [text_input("text", ["mot " * 100])]}, "'text'", "limit is 64"),
        ("translate", {"inputs": [text_input("text", ["mot " * 600])]}, "'text'", "limit is 512"),
        (
            "translate",
            {"inputs": [text_input("text", ["Il pleut."])], "parameters": {"num_beams": 50}},
            "'num_beams'",
            "out of range",
        ),
    ]
    for model, payload, name, message in cases:
        resp = server.infer(model, payload)
        assert resp.status_code == 400, resp.text
        assert name in resp.text and message in resp.text, resp.text
    assert_ready(server, "translate")
    assert_ready(server, "summarize")


def test_truncation_when_allowed_is_reported(server: MLServerProcess) -> None:
    resp = server.infer(
        "summarize",
        {"inputs": [text_input("text", ["court", "mot " * 100])], "parameters": {"truncate": True}},
    )
    assert len(outputs(resp)["summary"]) == 2
    assert parameter(resp, "truncated") == [1]
