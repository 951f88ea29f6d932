"""V2 tensor objects in `SeldonMessage.jsonData` over Seldon v1 gRPC, against the real
`seldon-core-microservice`.

Over gRPC `jsonData` is a `google.protobuf.Value`, whose numbers are all doubles, and
seldon-core hands it to the unit through `json_format.MessageToDict` (seldon_core 1.18.2
utils.py:202, `get_data_from_proto`; protobuf 3.20.3 json_format.py:346-360 keeps a number a
float): a tensor's shape `[1, 4]` reached the unit as `[1.0, 4.0]` and was refused ("shape
must be a list of integers"), though the same request over REST was answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.seldon.test_components import PATHS, Pool, Service, classifier_params, tensor

if TYPE_CHECKING:  # seldon-core is in .venv-seldon only: imported where used, as in its tests
    from seldon_core.proto.prediction_pb2_grpc import ModelStub

pytestmark = pytest.mark.slow

IDENTITY = {"node": "echo", "family": "identity"}

# One V2 tensor object per numeric datatype whose values a double carries exactly, and the
# array the identity unit answers for it (`echo.<input>`).
NUMERIC = {
    "FP32": {"datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
    "INT64": {"datatype": "INT64", "shape": [2, 2], "data": [[3, -7], [0, 2**40]]},
    "INT32": {"datatype": "INT32", "shape": [3], "data": [-1, 0, 65536]},
    "UINT8": {"datatype": "UINT8", "shape": [1, 2, 2], "data": [0, 255, 7, 128]},
    "BOOL-numbers": {"datatype": "BOOL", "shape": [2], "data": [1, 0]},
    "BOOL": {"datatype": "BOOL", "shape": [2], "data": [True, False]},
}


def grpc_port(service: Service) -> int:
    """The port the unit's gRPC server was started on (`--grpc-port` of its command line)."""
    args = service.process.args
    assert isinstance(args, list), args  # as `tests.seldon.test_components.start` passes it
    return int(args[args.index("--grpc-port") + 1])


@contextmanager
def model_stub(service: Service) -> Iterator[ModelStub]:
    """seldon-core's own client stub on the unit's gRPC server, as the v1 executor calls it."""
    from seldon_core.proto import prediction_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port(service)}")
    try:
        yield prediction_pb2_grpc.ModelStub(channel)
    finally:
        channel.close()


def predict_grpc(stub: ModelStub, json_data: dict[str, Any]) -> dict[str, Any]:
    """`Predict` with `json_data` as the message's `jsonData` (a protobuf Value: numbers
    become doubles on the way), answered as a dict."""
    from google.protobuf import json_format
    from seldon_core.proto import prediction_pb2

    request = prediction_pb2.SeldonMessage()
    json_format.ParseDict(json_data, request.jsonData)
    answer: dict[str, Any] = json_format.MessageToDict(stub.Predict(request, timeout=120))
    return answer


def predict_rest(service: Service, json_data: dict[str, Any]) -> dict[str, Any]:
    response = service.post(PATHS["MODEL"], {"jsonData": json_data})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("case", list(NUMERIC))
def test_a_v2_tensor_in_json_data_over_grpc_is_answered_as_over_rest(pool: Pool, case: str) -> None:
    """Integer shapes and integer / bool data arrive as doubles: read as the REST request
    is, the identity unit answers the same tensor both ways (1.0 == 1 when compared; the
    gRPC answer's own numbers are doubles again)."""
    svc = pool.get("echo-v1", "MODEL", IDENTITY)
    sent = {"x": NUMERIC[case]}
    by_rest = tensor(predict_rest(svc, sent), "echo.x")
    with model_stub(svc) as stub:
        by_grpc = tensor(predict_grpc(stub, sent), "echo.x")
    assert by_grpc == by_rest, (by_grpc, by_rest)
    assert by_rest["datatype"] == NUMERIC[case]["datatype"]
    assert by_rest["shape"] == NUMERIC[case]["shape"]


def test_the_classifier_answers_a_bytes_tensor_sent_over_grpc(
    pool: Pool, tiny_classifier: Path
) -> None:
    """The reported request: `{"text": {"datatype": "BYTES", "shape": [1], ...}}`."""
    svc = pool.get("clf", "MODEL", classifier_params("clf", tiny_classifier))
    sent = {"text": {"datatype": "BYTES", "shape": [1], "data": ["hello"]}}
    by_rest = predict_rest(svc, sent)
    with model_stub(svc) as stub:
        by_grpc = predict_grpc(stub, sent)
    label = tensor(by_grpc, "clf.label")
    assert label == tensor(by_rest, "clf.label") and label["shape"] == [1]
    assert label["data"][0] in {"NEGATIVE", "POSITIVE"}
    assert tensor(by_grpc, "scores")["data"] == pytest.approx(tensor(by_rest, "scores")["data"])


REFUSED = [
    ({"datatype": "FP32", "shape": [1.5], "data": [1]}, "shape must be a list of integers"),
    ({"datatype": "INT32", "shape": [2], "data": [1, 2.5]}, "element 1 (2.5) is not an integer"),
    ({"datatype": "BOOL", "shape": [1], "data": [0.5]}, "is not 0, 1, true or false"),
]


def refused_over_grpc(svc: Service, sent: dict[str, Any]) -> tuple[grpc.RpcError, str]:
    """The error `Predict` of `{"x": sent}` raises, and what the unit logged meanwhile."""
    before = svc.log.stat().st_size
    with model_stub(svc) as stub:
        with pytest.raises(grpc.RpcError) as caught:
            predict_grpc(stub, {"x": sent})
        ok = {"x": {"datatype": "FP32", "shape": [1], "data": [0.5]}}
        assert tensor(predict_grpc(stub, ok), "echo.x")["data"] == [0.5]  # still serving
    assert svc.process.poll() is None
    with open(svc.log, "rb") as log:
        log.seek(before)
        return caught.value, log.read().decode(errors="replace")


@pytest.mark.parametrize(("sent", "problem"), REFUSED)
def test_a_fractional_number_is_still_refused_over_grpc_naming_the_input(
    pool: Pool, sent: dict[str, Any], problem: str
) -> None:
    """Only whole doubles stand for integers: a fractional shape or integer element is the
    client's error, named where the unit reports it, and the unit keeps serving gRPC."""
    svc = pool.get("echo-v1", "MODEL", IDENTITY)
    error, logged = refused_over_grpc(svc, sent)
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert "echo: input 'x': " in logged and problem in logged, logged


def test_the_grpc_client_is_told_which_input_was_wrong(pool: Pool) -> None:
    """seldon-core's gRPC server answers str(exception) (grpcio grpc/_server.py:621), and
    SeldonMicroserviceException leaves its args empty (seldon_core flask_utils.py:106): the
    unit's reason reached a gRPC client as 'Exception calling application: ' only."""
    svc = pool.get("echo-v1", "MODEL", IDENTITY)
    error, _ = refused_over_grpc(svc, REFUSED[0][0])
    details = error.details()
    assert "input 'x'" in details and REFUSED[0][1] in details, details
