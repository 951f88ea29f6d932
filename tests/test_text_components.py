"""Text classification and language identification: tiny checkpoints behind `mlserver start`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infergraph.checkpoints.text_classification import (
    PAPLUCA_LANGUAGES,
    build_language_identifier,
    build_text_classifier,
)
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
from infergraph.components.text_classification import LanguageIdentifier, TextClassifier
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

TEXTS = [
    "I love this movie, it was wonderful.",
    "Terrible service.",
    "The capital of France is Paris.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Ich möchte eine Tasse Kaffee.",
    "ok",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "¿Dónde está la estación?",
]


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_text_classifier(tmp_path_factory.mktemp("ckpt") / "sst2")


@pytest.fixture(scope="session")
def langid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_language_identifier(tmp_path_factory.mktemp("ckpt") / "langid")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, classifier_dir: Path, langid_dir: Path
) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("models")
    write_model(models, "sentiment", "text-classification", str(classifier_dir),
                max_batch_size=16, max_batch_time=0.05, dtype="fp32")  # fmt: skip
    write_model(models, "langid", "language-identification", str(langid_dir),
                max_batch_size=16, max_batch_time=0.05)  # fmt: skip
    with mlserver(models) as proc:
        yield proc


def test_registry_classes_import_without_torch_at_module_level() -> None:
    assert component_class("text-classification") is TextClassifier
    assert component_class("language-identification") is LanguageIdentifier
    assert LanguageIdentifier.outputs[0].name == "language"


def test_component_classes_import_without_torch() -> None:
    """Graph validation and renderers read class attributes on machines without torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from infergraph.components.registry import component_class\n"
        "for f in ('text-classification', 'language-identification', 'translation',\n"
        "          'summarization', 'question-answering', 'speech-recognition',\n"
        "          'text-embedding'):\n"
        "    cls = component_class(f)\n"
        "    assert cls.family == f and cls.default_model and cls.inputs and cls.outputs\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_classifier_in_process(classifier_dir: Path) -> None:
    comp = TextClassifier(ComponentSettings(model_uri=str(classifier_dir), max_batch_size=4))
    comp.start()
    result = comp.predict({"text": np.array([t.encode() for t in TEXTS], dtype=object)})
    scores = result.outputs["scores"]
    assert scores.shape == (len(TEXTS), 2)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(result.outputs["confidence"], scores.max(axis=1))
    # Zero rows in, zero rows out (a frame with no detection reaches a classifier this way).
    empty = comp.predict({"text": np.array([], dtype=object)})
    assert empty.outputs["scores"].shape[0] == 0 and empty.outputs["label"].shape == (0,)
    with pytest.raises(InputError, match="not valid utf-8") as info:
        comp.predict({"text": np.array([b"fine", b"\xff\xfebad"], dtype=object)})
    assert info.value.input_name == "text" and info.value.index == 1


def test_rest_classification(server: MLServerProcess) -> None:
    resp = server.infer("sentiment", {"inputs": [text_input("text", TEXTS[:3])]})
    out = outputs(resp)
    assert len(out["label"]) == 3 and set(out["label"]) <= {"NEGATIVE", "POSITIVE"}
    scores = np.array(out["scores"]).reshape(3, 2)
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(out["confidence"], scores.max(axis=1), atol=1e-6)
    meta = {o["name"]: o for o in resp.json()["outputs"]}
    assert meta["scores"]["shape"] == [3, 2] and meta["label"]["datatype"] == "BYTES"


def test_rest_language_identification(server: MLServerProcess) -> None:
    out = outputs(server.infer("langid", {"inputs": [text_input("text", TEXTS)]}))
    assert out["language"] == out["label"]
    assert set(out["language"]) <= set(PAPLUCA_LANGUAGES)
    assert np.array(out["scores"]).reshape(len(TEXTS), -1).shape[1] == len(PAPLUCA_LANGUAGES)


def test_grpc_classification(server: MLServerProcess) -> None:
    rest = outputs(server.infer("sentiment", {"inputs": [text_input("text", TEXTS[:2])]}))
    got = grpc_infer(server, "sentiment", [("text", "BYTES", [2], [t.encode() for t in TEXTS[:2]])])
    assert got["label"] == rest["label"]
    assert np.allclose(got["scores"].reshape(-1), rest["scores"], atol=1e-5)


def test_concurrent_requests_are_batched_each_gets_its_own(server: MLServerProcess) -> None:
    solo = [
        outputs(server.infer("langid", {"inputs": [text_input("text", [t])]}))["scores"]
        for t in TEXTS
    ]
    responses = burst(server, "langid", [{"inputs": [text_input("text", [t])]} for t in TEXTS])
    for text_scores, resp in zip(solo, responses, strict=True):
        assert np.allclose(outputs(resp)["scores"], text_scores, atol=1e-4)
    assert max_batch_size(responses) > 1


def test_bad_request_in_a_burst_fails_alone(server: MLServerProcess) -> None:
    payloads = [{"inputs": [text_input("text", [t])]} for t in TEXTS]
    bad_at = 3
    payloads.insert(bad_at, {"inputs": [raw_bytes_input("text", [b"ok", b"\xc3\x28"])]})
    payloads.append(
        {"inputs": [text_input("text", ["word " * 600])], "parameters": {"truncate": True}}
    )
    responses = burst(server, "sentiment", payloads)
    bad = responses.pop(bad_at)
    assert bad.status_code == 400 and "input 'text' row 1" in bad.text and "utf-8" in bad.text
    assert parameter(responses.pop(), "truncated") == [0]
    assert all(r.status_code == 200 for r in responses)
    assert all("truncated" not in r.json()["parameters"] for r in responses)


def test_bad_inputs_are_400_naming_the_input(server: MLServerProcess) -> None:
    cases = [
        ({"inputs": [raw_bytes_input("text", [b"\xff"])]}, "not valid utf-8"),
        ({"inputs": [v2_input("text", "FP32", [1.0, 2.0])]}, "expected BYTES"),
        ({"inputs": [v2_input("words", "BYTES", ["hi"])]}, "missing"),
        ({"inputs": [text_input("text", ["fine", "word " * 600])]}, "the model's limit is 512"),
    ]
    for payload, message in cases:
        resp = server.infer("sentiment", payload)
        assert resp.status_code == 400, resp.text
        assert "'text'" in resp.text and message in resp.text, resp.text
    long = server.infer("sentiment", {"inputs": [text_input("text", ["word " * 600])]})
    assert "row 0 has 602 tokens" in long.text and "truncate: true" in long.text
    assert_ready(server, "sentiment")


def test_truncation_when_allowed_is_reported(server: MLServerProcess) -> None:
    payload = {
        "inputs": [text_input("text", ["short", "word " * 600])],
        "parameters": {"truncate": True},
    }
    resp = server.infer("sentiment", payload)
    assert len(outputs(resp)["label"]) == 2
    assert parameter(resp, "truncated") == [1]
    resp = server.infer("langid", payload)
    assert parameter(resp, "truncated") == [1]
