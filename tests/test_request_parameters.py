"""Request knobs in the forms that reach a runtime on every engine (docs/protocols.md).

Seldon v2's REST pipeline gateway truncates numbers to int64 and refuses lists
(seldon-core v2.10.2 scheduler/pkg/kafka/pipeline/v2.go:457-474), so clients send fractional
and list knobs as text; these are the parsers that read them back.
"""

from __future__ import annotations

import pytest

from infergraph.components.object_detection import _crop_classes
from infergraph.components.parameters import as_float
from infergraph.errors import InputError
from tests.engines.seldon_v2 import GatewayError, gateway_request


def test_crop_classes_as_a_list_comma_text_or_json_encoded_text() -> None:
    assert _crop_classes(["person", "dog"]) == ["person", "dog"]
    assert _crop_classes("person, dog") == ["person", "dog"]
    assert _crop_classes('["person", "traffic light"]') == ["person", "traffic light"]
    with pytest.raises(InputError, match="crop_classes"):
        _crop_classes('["person"')
    with pytest.raises(InputError, match="crop_classes"):
        _crop_classes("[1, 2]")


def test_text_knobs_pass_the_gateway_and_read_back_exactly() -> None:
    sent = {
        "inputs": [],
        "parameters": {"threshold": "0.7", "crop_classes": '["dog"]', "max_crops": 3},
    }
    params = gateway_request(sent)["parameters"]
    assert as_float(params["threshold"], "threshold", 0.0, 1.0) == 0.7
    assert _crop_classes(params["crop_classes"]) == ["dog"]
    assert params["max_crops"] == 3
    assert gateway_request({"inputs": [], "parameters": {"threshold": 0.7}})["parameters"] == {
        "threshold": 0
    }
    with pytest.raises(GatewayError):
        gateway_request({"inputs": [], "parameters": {"crop_classes": ["dog"]}})
