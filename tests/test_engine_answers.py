"""Answers as the engines write them can be sent on to our runtimes as they are.

Seldon v2's pipeline gateway writes an empty tensor's data as JSON `null`: its
`NamedTensor.MarshalJSON` marshals the Go slice of the typed contents, and an empty repeated
proto field is a nil slice (seldon-core v2.10.2 scheduler/pkg/kafka/pipeline/v2.go:82-160,
249-268). A video frame with no detection answers `boxes` as `{"shape": [0, 4], "data": null}`.
A client that forwards that tensor to a runtime must get a (0, 4) array, not a 400.
"""

from __future__ import annotations

from infergraph.serving.protocol import parse_request
from tests.engines.seldon_v2 import gateway_json, pb


def test_an_empty_tensor_from_the_seldon_v2_gateway_is_read_back() -> None:
    empty = [
        pb.ModelInferResponse.InferOutputTensor(name="boxes", datatype="FP32", shape=[0, 4]),
        pb.ModelInferResponse.InferOutputTensor(name="label", datatype="BYTES", shape=[0]),
    ]
    answer = gateway_json(pb.ModelInferResponse(model_name="video", outputs=empty))
    assert [t["data"] for t in answer["outputs"]] == [None, None]
    parsed = parse_request({"inputs": answer["outputs"]}, ["boxes", "label"])
    assert parsed.inputs["boxes"].shape == (0, 4)
    assert parsed.inputs["label"].shape == (0,)


def test_null_data_for_a_tensor_with_elements_is_still_refused() -> None:
    import pytest

    from infergraph.errors import InputError

    with pytest.raises(InputError, match="needs 2 elements"):
        parse_request(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": None}]}, ["x"]
        )
