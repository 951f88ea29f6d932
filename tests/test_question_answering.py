"""Extractive QA: tiny DistilBERT checkpoint behind `mlserver start`, long contexts in windows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from infergraph.checkpoints.question_answering import build_question_answerer
from infergraph.components.base import ComponentSettings
from infergraph.components.question_answering import QuestionAnswerer
from infergraph.errors import InputError
from tests.servers import MLServerProcess, mlserver, v2_input, write_model
from tests.text_fixtures import (
    assert_ready,
    burst,
    grpc_infer,
    max_batch_size,
    outputs,
    raw_bytes_input,
    text_input,
)

pytestmark = pytest.mark.slow

CONTEXT = "The capital of France is Paris, a city on the river Seine. It has many museums."
QUESTIONS = [
    "What is the capital of France?",
    "Which river?",
    "What does it have?",
    "Where is Paris?",
    "Is it a city?",
]
LONG_CONTEXT = " ".join(
    f"Sentence {i} says the train leaves at {i} o'clock from platform {i % 7}." for i in range(40)
)


@pytest.fixture(scope="session")
def qa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_question_answerer(tmp_path_factory.mktemp("ckpt") / "qa")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, qa_dir: Path) -> Iterator[MLServerProcess]:
    models = tmp_path_factory.mktemp("models")
    # max_length 96 keeps windows small so a modest context already needs several.
    write_model(models, "qa", "question-answering", str(qa_dir), max_batch_size=32,
                max_batch_time=0.05, max_length=96, doc_stride=24)  # fmt: skip
    with mlserver(models) as proc:
        yield proc


def _check_spans(out: dict, contexts: list[str]) -> None:
    for answer, start, end, context in zip(
        out["answer"], out["start"], out["end"], contexts, strict=True
    ):
        assert 0 <= start <= end <= len(context)
        assert context[start:end] == answer


def test_long_context_is_split_into_windows_in_process(qa_dir: Path) -> None:
    comp = QuestionAnswerer(
        ComponentSettings(model_uri=str(qa_dir), max_batch_size=8, options={"max_length": 96})
    )
    comp.start()
    inputs = {
        "question": np.array([b"When does the train leave?"], dtype=object),
        "context": np.array([LONG_CONTEXT.encode()], dtype=object),
    }
    prepared = comp.prepare(inputs, {})
    assert len(prepared.rows) > 3  # several overlapping windows, one question
    result = comp.predict(inputs)
    _check_spans({k: list(v) for k, v in result.outputs.items()}, [LONG_CONTEXT])
    assert result.parameters["batch_size"] == len(prepared.rows)
    with pytest.raises(InputError, match="leaves under") as info:
        comp.predict({"question": np.array([b"why " * 120], dtype=object)}, {"context": "x y"})
    assert info.value.input_name == "question"


def test_rest_question_and_context_rows(server: MLServerProcess) -> None:
    contexts = [CONTEXT, LONG_CONTEXT]
    resp = server.infer(
        "qa",
        {"inputs": [text_input("question", QUESTIONS[:2]), text_input("context", contexts)]},
    )
    out = outputs(resp)
    _check_spans(out, contexts)
    assert all(0.0 <= s <= 1.0 for s in out["score"])
    dtypes = {o["name"]: o["datatype"] for o in resp.json()["outputs"]}
    assert dtypes == {"answer": "BYTES", "score": "FP32", "start": "INT64", "end": "INT64"}


def test_shared_context_parameter(server: MLServerProcess) -> None:
    resp = server.infer(
        "qa", {"inputs": [text_input("question", QUESTIONS)], "parameters": {"context": CONTEXT}}
    )
    _check_spans(outputs(resp), [CONTEXT] * len(QUESTIONS))


def test_grpc_question_answering(server: MLServerProcess) -> None:
    got = grpc_infer(
        server,
        "qa",
        [("question", "BYTES", [1], [QUESTIONS[0].encode()]),
         ("context", "BYTES", [1], [CONTEXT.encode()])],
    )  # fmt: skip
    assert CONTEXT[got["start"][0] : got["end"][0]] == got["answer"][0]


def test_concurrent_questions_each_get_their_own_answer(server: MLServerProcess) -> None:
    def payload(q: str) -> dict:
        return {"inputs": [text_input("question", [q]), text_input("context", [LONG_CONTEXT])]}

    solo = [outputs(server.infer("qa", payload(q))) for q in QUESTIONS]
    responses = burst(server, "qa", [payload(q) for q in QUESTIONS])
    for expected, resp in zip(solo, responses, strict=True):
        got = outputs(resp)
        assert (got["start"], got["end"]) == (expected["start"], expected["end"])
        assert np.allclose(got["score"], expected["score"], atol=1e-4)
    assert max_batch_size(responses) > 1


def test_bad_request_in_a_burst_fails_alone(server: MLServerProcess) -> None:
    good = {"inputs": [text_input("question", [QUESTIONS[0]]), text_input("context", [CONTEXT])]}
    bad = {
        "inputs": [text_input("question", [QUESTIONS[0]]), raw_bytes_input("context", [b"\xff"])]
    }
    responses = burst(server, "qa", [good, good, bad, good])
    assert responses[2].status_code == 400 and "'context'" in responses[2].text
    assert all(r.status_code == 200 for i, r in enumerate(responses) if i != 2)


def test_bad_inputs_are_400_naming_the_input(server: MLServerProcess) -> None:
    q = text_input("question", ["Where?"])
    cases = [
        ([raw_bytes_input("question", [b"\xc3\x28"]), text_input("context", [CONTEXT])],
         "'question'", "utf-8"),
        ([q, raw_bytes_input("context", [b"\xff"])], "'context'", "utf-8"),
        ([q], "'context'", "missing"),
        ([q, text_input("context", [CONTEXT, CONTEXT, CONTEXT])], "'context'", "has 3 rows"),
        ([q, text_input("context", ["   "])], "'context'", "empty"),
        ([v2_input("question", "FP32", [1.0]), text_input("context", [CONTEXT])],
         "'question'", "expected BYTES"),
        ([text_input("question", ["why " * 120]), text_input("context", [CONTEXT])],
         "'question'", "the model's limit of 96"),
    ]  # fmt: skip
    for inputs, name, message in cases:
        resp = server.infer("qa", {"inputs": inputs})
        assert resp.status_code == 400, resp.text
        assert name in resp.text and message in resp.text, resp.text
    assert_ready(server, "qa")
