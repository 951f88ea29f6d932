"""What a client's fault costs a real `mlserver start`: a 400 naming it, and nothing else.

One server serves `echo` (identity, answered inline) and `slow` (the benchmarks' controlled
node through the batcher: a 300 ms pass, up to 4 rows, a 400 ms batch window). Requests go
over real HTTP and gRPC:

- a binary BYTES input holding far more elements than its shape is refused at the first
  element too many, not after building every element (review finding 1);
- gRPC callers whose deadline passed cost no forward pass, leave the queue gauge, and are
  counted `cancelled`, not `error` (finding 2);
- a JSON body holding a lone UTF-16 surrogate escape is a 400 naming it, with a JSON
  Content-Type, wherever the escape is (finding 4).
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

from benchmarks.controlled import EXTRA_FAMILIES
from tests.servers import MLServerProcess, families_env, metric, mlserver, write_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("faults") / "models"
    root.mkdir()
    write_model(root, "echo", "identity")
    write_model(
        root, "slow", "controlled", max_batch_size=4, max_batch_time=0.4, base_ms=300,
        per_row_ms=0,
    )  # fmt: skip
    with mlserver(root, env=families_env(EXTRA_FAMILIES)) as srv:
        yield srv


# -- finding 1 -----------------------------------------------------------------------------------
def test_an_over_long_binary_bytes_input_is_refused_at_once(server: MLServerProcess) -> None:
    """The header says one element; 3 million follow (18 MB), then a garbage length prefix.
    Every element used to become a Python object before the count was checked (5 s of the
    event loop and 750 MB for 57 MB); the refusal now comes at the second element."""
    element = struct.pack("<I", 2) + b"ab"
    raw = element * 3_000_000 + struct.pack("<I", 0xFFFFFFFF)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    answer = httpx.post(
        f"{server.url}/v2/models/echo/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=60,
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == (
        "echo: input 'input': shape [1] needs 1 elements but data has more than 1"
    )


# -- finding 2 -----------------------------------------------------------------------------------
SLOW = pb.ModelInferRequest(
    model_name="slow",
    inputs=[
        pb.ModelInferRequest.InferInputTensor(
            name="input",
            datatype="FP32",
            shape=[1, 2],
            contents=pb.InferTensorContents(fp32_contents=[1, 2]),
        )
    ],
)


def gone(server: MLServerProcess) -> None:
    """A caller whose 150 ms deadline passes while its row waits for the batch window. The
    channel connects first: on a busy machine a connect could outlast the deadline, and the
    call would then end at the client without the server ever seeing it."""
    address = f"127.0.0.1:{server.grpc_port}"
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as caught:
        grpc.channel_ready_future(channel).result(timeout=30)
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(SLOW, timeout=0.15)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_callers_gone_before_their_pass_cost_nothing(server: MLServerProcess) -> None:
    """12 callers give up after 150 ms. Their rows took three 300 ms passes ahead of the next
    caller (who waited 0.9 s), the queue gauge kept showing them until another request came,
    and each was counted as a server error. Now: no pass, gauge 0, counted `cancelled`."""
    counted = {o: metric(server, "infergraph_requests_total", model="slow", outcome=o)
               for o in ("error", "cancelled", "ok")}  # fmt: skip
    callers = [threading.Thread(target=gone, args=(server,)) for _ in range(12)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    time.sleep(0.9)  # past the batch window: the abandoned rows have been taken
    assert metric(server, "infergraph_batch_queue_size", model="slow") == 0
    assert metric(server, "infergraph_inflight_requests", model="slow") == 0
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(SLOW, timeout=60)
    queue_ms = float(answer.parameters["queue_ms"].string_param)
    assert queue_ms < 650, queue_ms  # its own 400 ms window, no abandoned 300 ms pass ahead
    after = {o: metric(server, "infergraph_requests_total", model="slow", outcome=o)
             for o in counted}  # fmt: skip
    assert after["error"] == counted["error"]
    assert after["cancelled"] == counted["cancelled"] + 12
    assert after["ok"] == counted["ok"] + 1


# -- finding 4 -----------------------------------------------------------------------------------
SURROGATE_BODIES = {
    "a BYTES element": b'{"inputs":[{"name":"input","datatype":"BYTES","shape":[1],'
    b'"data":["\\ud800"]}]}',
    "an input name": b'{"inputs":[{"name":"\\ud800","datatype":"FP99","shape":[1],"data":[1]}]}',
    "the id": b'{"id":"\\udc00x","inputs":[{"name":"input","datatype":"FP32","shape":[1],'
    b'"data":[1.0]}]}',
    "beside NaN": b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1],"data":[NaN]}],'
    b'"parameters":{"note":"\\ud83d"}}',
}


@pytest.mark.parametrize("where", list(SURROGATE_BODIES))
def test_a_lone_surrogate_escape_is_a_400_naming_it(server: MLServerProcess, where: str) -> None:
    """`"\\ud800"` is valid JSON syntax but no text: orjson refuses it, the standard library's
    fallback (there for NaN literals) read it, and encoding it (a BYTES element, an error
    message naming the input, the echoed id) failed as a 500, some without a Content-Type."""
    answer = httpx.post(
        f"{server.url}/v2/models/echo/infer",
        content=SURROGATE_BODIES[where],
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error.startswith("echo: input 'request': ") and "lone surrogate" in error, error
    assert "request failed" not in server.log()
    valid_pair = (
        b'{"inputs":[{"name":"input","datatype":"BYTES","shape":[1],"data":["\\ud83d\\ude00"]}]}'
    )
    assert httpx.post(f"{server.url}/v2/models/echo/infer", content=valid_pair).status_code == 200
