"""The condition gate (Seldon v2 cascades) and the v1 component's payload handling, without
seldon-core: these run in the main virtualenv; the microservice tests live in tests/seldon."""

from __future__ import annotations

import numpy as np
import pytest

from infergraph.components.base import ComponentSettings
from infergraph.components.conditions import evaluate
from infergraph.components.plumbing import ConditionGate
from infergraph.errors import InputError
from infergraph.serving.seldon_component import InfergraphComponent, Payload


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [
        ({"op": "lt", "value": 0.8}, [0.9, 0.6], True),
        ({"op": "lt", "value": 0.8, "reduce": "all"}, [0.9, 0.6], False),
        ({"op": "ge", "value": 0.5}, [0.4], False),
        ({"op": "ne", "value": "en"}, [b"fr"], True),
        ({"op": "eq", "value": "en"}, [b"en"], True),
        ({"op": "in", "value": ["de", "fr"]}, [b"fr"], True),
        ({"op": "not_in", "value": ["de", "fr"]}, [b"fr"], False),
        ({"op": "eq", "value": 3}, [1, 3], True),
    ],
)
def test_evaluate(condition: dict, values: list, expected: bool) -> None:
    dtype = object if isinstance(values[0], bytes) else None
    assert evaluate(condition, np.array(values, dtype=dtype)) is expected


def test_numeric_op_on_text_is_an_input_error() -> None:
    with pytest.raises(InputError, match="needs a numeric tensor"):
        evaluate({"op": "lt", "value": 1}, np.array([b"x"], dtype=object))


def test_gate_emits_exactly_one_branch_tensor() -> None:
    gate = ConditionGate(
        ComponentSettings(options={"condition": {"op": "lt", "value": 0.8}}, warmup=True)
    )
    gate.start()
    unsure = gate.predict({"value": np.array([0.3], dtype=np.float32)})
    assert list(unsure.outputs) == ["then"]
    sure = gate.predict({"value": np.array([0.95], dtype=np.float32)})
    assert list(sure.outputs) == ["otherwise"]


def test_payload_forms_and_carried_tensors() -> None:
    request = Payload.decode({"text": ["a", "b"]}, "text")
    assert list(request.carried) == ["request.text"]
    assert request.current["text"].dtype == object
    after = request.with_outputs("clf", {"label": np.array(["x", "y"], dtype=object)})
    encoded = after.encode()
    assert set(encoded) == {"request.text", "clf.label", "label"}
    again = Payload.decode(encoded, "text")
    assert again.lookup("missing.x | clf.label") is not None
    assert Payload.decode("hello", "text").current["text"].tolist() == [b"hello"]
    assert Payload.decode(b"\x00\x01", "image").current["image"].tolist() == [b"\x00\x01"]
    assert Payload.decode(np.array([[1.0, 2.0]]), "input").current["input"].dtype == np.float32
    with pytest.raises(InputError, match="datatype"):
        Payload.decode({"x": {"data": [1]}}, "x")


def test_component_predict_and_aggregate_without_seldon_core() -> None:
    unit = InfergraphComponent(family="identity", node="pre")
    unit.load()
    out = unit.predict({"input": [[1.0, 2.0]]})
    assert out["pre.input"]["data"] == [1.0, 2.0]
    assert unit.tags()["pre.inference_ms"] >= 0
    assert {m["key"] for m in unit.metrics()} >= {"infergraph_inference", "infergraph_rows"}
    combine = InfergraphComponent(family="combiner", node="vote", method="vote")
    scores = {"datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.9]}
    other = {"datatype": "FP32", "shape": [1, 2], "data": [0.8, 0.2]}
    merged = combine.aggregate(
        [{"a.scores": scores, "scores": scores}, {"b.scores": other, "scores": other}]
    )
    assert merged["vote.scores"]["data"] == [0.5, 0.5]
    router = InfergraphComponent(condition='{"tensor": "a.scores", "op": "gt", "value": 0.85}')
    assert router.route({"a.scores": scores}) == 0
    assert router.route({"a.scores": other}) == 1
