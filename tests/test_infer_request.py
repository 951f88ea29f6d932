"""One request type for every wire form (issue 27): `tensors.request.InferRequest`.

Each form is written by the type and read back by it: the same names, arrays, dtypes and
shapes, id, parameters and outputs asked for. The gRPC form goes through MLServer's own
protobuf message (serialized and parsed again), so it is the message a client sends; a bad
tensor in any form is refused naming the input.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from mlserver.grpc import dataplane_pb2 as pb

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.graph.plan import parse_graph
from infergraph.render import render
from infergraph.serving import graph_step
from infergraph.tensors.request import InferRequest
from tests.test_graph_step_carry import LATE_FALLBACK, services, step
from tests.test_render_seldon import OPTIONS

ARRAYS: dict[str, Array] = {
    "image": np.array([b"\x89PNG\x00\xff", b"GIF89a"], dtype=object),
    "text": np.array([[b"hello"], ["h\u00e9llo".encode()]], dtype=object),
    "scores": np.array([[0.25, -1.5, 3.0]], dtype=np.float32),
    "wide": np.array([1.0e300, -2.5], dtype=np.float64),
    "ids": np.array([[1, -2], [3, 2**40]], dtype=np.int64),
    "small": np.array([7, -8], dtype=np.int8),
    "mask": np.array([True, False, True]),
    "counts": np.array([0, 2**32 + 1], dtype=np.uint64),
    "none": np.zeros((0, 4), dtype=np.float32),
}


def _request() -> InferRequest[Array]:
    return InferRequest(
        id="req-1",
        inputs=dict(ARRAYS),
        parameters={"threshold": 0.5, "top_k": 3, "label": "cat", "strict": True},
        outputs=["boxes", "label"],
        binary_outputs={"boxes"},
    )


def _assert_same_arrays(got: dict[str, Array], sent: dict[str, Array]) -> None:
    assert list(got) == list(sent)
    for name, array in sent.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].shape == array.shape, name
        assert got[name].tolist() == array.tolist(), name


def _assert_same_request(got: InferRequest[Array], sent: InferRequest[Array]) -> None:
    _assert_same_arrays(got.inputs, sent.inputs)
    assert (got.id, got.outputs, got.binary_outputs) == (sent.id, sent.outputs, sent.binary_outputs)
    assert got.binary_all == sent.binary_all


def test_v2_json_reads_back_what_it_wrote_through_real_json() -> None:
    sent = _request()
    body = orjson.loads(orjson.dumps(sent.to_json()))
    got = InferRequest.from_json(body)
    _assert_same_request(got, sent)
    assert got.parameters == sent.parameters
    image = next(t for t in body["inputs"] if t["name"] == "image")
    assert image["parameters"] == {"content_type": "base64"}  # not UTF-8: base64 in JSON


def test_the_binary_extension_reads_back_what_it_wrote() -> None:
    sent = _request()
    sent.binary_all = True
    body, length = sent.to_binary()
    header = orjson.loads(body[:length])
    assert all("data" not in t for t in header["inputs"])
    got = InferRequest.from_binary(body, length)
    _assert_same_request(got, sent)
    assert got.parameters == sent.parameters


def test_grpc_reads_back_what_it_wrote_typed_and_raw() -> None:
    sent = _request()
    for raw in (False, True):
        message = pb.ModelInferRequest(**sent.to_grpc(raw=raw))
        wire = pb.ModelInferRequest.FromString(message.SerializeToString())
        assert bool(wire.raw_input_contents) is raw
        got = InferRequest.from_grpc(wire)
        _assert_same_request(got, sent)
        # gRPC parameters hold bool, int64 and string: a float comes back as its text.
        assert got.parameters == {**sent.parameters, "threshold": "0.5"}


def test_fp16_goes_over_grpc_raw_only() -> None:
    half = InferRequest(inputs={"half": np.array([0.5, -2.0], dtype=np.float16)})
    with pytest.raises(InputError) as caught:
        half.to_grpc()
    assert caught.value.input_name == "half"
    wire = pb.ModelInferRequest(**half.to_grpc(raw=True))
    _assert_same_arrays(InferRequest.from_grpc(wire).inputs, half.inputs)


def test_seldon_json_data_reads_back_what_it_wrote() -> None:
    sent = InferRequest(inputs=dict(ARRAYS))
    json_data = orjson.loads(orjson.dumps(sent.to_seldon()))
    _assert_same_arrays(InferRequest.from_seldon(json_data, "image").inputs, sent.inputs)


def test_seldon_plain_payloads_become_the_first_input() -> None:
    assert InferRequest.from_seldon("hi", "text").inputs["text"].tolist() == [b"hi"]
    assert InferRequest.from_seldon(b"\x00", "image").inputs["image"].tolist() == [b"\x00"]
    floats = InferRequest.from_seldon(np.array([[1.0, 2.0]]), "x").inputs["x"]
    assert (floats.dtype, floats.shape) == (np.float32, (1, 2))


def test_a_raw_body_is_the_one_element_of_the_raw_input() -> None:
    got = InferRequest.from_raw(b"\xff\xd8 jpeg", "image", {"top_k": "2"})
    assert got.inputs["image"].tolist() == [b"\xff\xd8 jpeg"]
    assert got.parameters == {"top_k": "2"}
    assert got.binary_all is False


def test_undecoded_tensors_travel_as_they_came() -> None:
    sent = _request()
    body = orjson.loads(orjson.dumps(sent.to_json()))
    carried = InferRequest.from_json_undecoded(body)
    assert carried.inputs["scores"] == next(t for t in body["inputs"] if t["name"] == "scores")
    # Written again as V2 JSON, it decodes to the same arrays as the original.
    again = InferRequest.from_json(orjson.loads(orjson.dumps(carried.to_json())))
    _assert_same_arrays(again.inputs, sent.inputs)


def _bad_json() -> object:
    return {"inputs": [{"name": "scores", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}


def _bad_binary() -> tuple[bytes, int]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "scores",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 6},
                }
            ]
        }
    )
    return head + b"\x00" * 6, len(head)


def _bad_grpc() -> object:
    return pb.ModelInferRequest(
        inputs=[
            {
                "name": "scores",
                "datatype": "FP32",
                "shape": [4],
                "contents": {"fp32_contents": [1.0]},
            }
        ]
    )


@pytest.mark.parametrize(
    "read",
    [
        lambda: InferRequest.from_json(_bad_json()),
        lambda: InferRequest.from_binary(*_bad_binary()),
        lambda: InferRequest.from_grpc(_bad_grpc()),
        lambda: InferRequest.from_seldon(
            {"scores": {"datatype": "FP32", "shape": [2], "data": ["a", 1]}}, "x"
        ),
        lambda: InferRequest.from_json(
            {"inputs": [{"name": "scores", "datatype": "FP99", "shape": [1], "data": [1]}]}
        ),
    ],
    ids=["json", "binary", "grpc", "seldon", "datatype"],
)
def test_a_bad_tensor_in_any_form_is_refused_naming_the_input(read: Callable[[], object]) -> None:
    with pytest.raises(InputError) as caught:
        read()
    assert caught.value.input_name == "scores"


def test_a_name_given_twice_is_refused_not_overwritten() -> None:
    one = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]}
    with pytest.raises(InputError, match="given twice"):
        InferRequest.from_json(
            {"inputs": [one, {**one, "name": "INPUT_IMAGE"}]}, accepted=["image"]
        )


_IMAGE = {"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a"]}


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": [_IMAGE, {**_IMAGE, "name": "INPUT_IMAGE"}]},
        {"inputs": [{**_IMAGE, "name": ""}]},
        {"inputs": ["image"]},
        {"inputs": [{**_IMAGE, "parameters": "base64"}]},
        {"inputs": []},
        {"id": 1, "inputs": [_IMAGE]},
        {"inputs": [_IMAGE], "outputs": [{"name": "label", "parameters": []}]},
    ],
)
def test_a_request_decoded_or_not_is_refused_by_the_same_rule(body: dict[str, object]) -> None:
    """The router (tensors left V2 JSON) and a model (decoded) read a request by one rule."""
    with pytest.raises(InputError) as decoded:
        InferRequest.from_json(copy.deepcopy(body), accepted=["image"])
    with pytest.raises(InputError) as undecoded:
        InferRequest.from_json_tensors(copy.deepcopy(body), accepted=["image"])
    assert str(undecoded.value) == str(decoded.value)


def test_a_request_left_undecoded_names_its_tensors_as_a_model_reads_them() -> None:
    body = {
        "id": "r1",
        "inputs": [{**_IMAGE, "name": "INPUT_IMAGE", "data": ["YQ=="]}],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        "parameters": {"base64_encoded": True, "top_k": 3},
    }
    kept = InferRequest.from_json_tensors(copy.deepcopy(body), accepted=["image"])
    decoded = InferRequest.from_json(copy.deepcopy(body), accepted=["image"])
    assert kept.inputs["image"]["parameters"] == {"content_type": "base64"}
    assert InferRequest.from_json(kept.to_json()).inputs["image"].tolist() == [b"a"]
    assert decoded.inputs["image"].tolist() == [b"a"]
    for field in ("id", "parameters", "outputs", "binary_all", "binary_outputs"):
        assert getattr(kept, field) == getattr(decoded, field), field


def test_a_kserve_step_keeps_the_id_and_an_empty_carry_as_they_came() -> None:
    """A forwarder echoes the id it was sent; a step's body may carry no tensor."""
    carried = InferRequest.from_json_undecoded({"id": 7, "inputs": []})
    assert (carried.id, carried.inputs) == (7, {})


def test_a_kserve_graph_steps_answer_is_a_request_the_next_step_reads() -> None:
    """The step's body carries its request's tensors undecoded; written out, it is a V2
    request whose tensors decode to what the client sent and what the step produced."""
    steps = services(render(parse_graph(copy.deepcopy(LATE_FALLBACK)), "kserve", OPTIONS))
    sent = InferRequest(id="r7", inputs={"text": np.array([b"y", b"z"], dtype=object)})
    body = orjson.loads(orjson.dumps(step(steps["a"], sent.to_json())))
    assert body["id"] == "r7"
    got = InferRequest.from_json(body)
    assert set(got.inputs) <= {"request.text", "a.text"}
    assert got.inputs["a.text"].tolist() == [b"y", b"z"]  # identity: a's output is its input
    carry = graph_step.gather(body)
    assert carry.request.inputs["a.text"] == next(
        t for t in body["inputs"] if t["name"] == "a.text"
    )
