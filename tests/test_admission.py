"""A bounded batch queue: `batching.maxQueueRows` refuses what would only wait ever longer.

Without a bound every request under overload is queued and waits longer than the one before
it; the forward passes then go to answers their callers have given up on. Triton's dynamic
batcher bounds its queue with `max_queue_size` and rejects what would pass it at once with
UNAVAILABLE (triton-inference-server/core src/dynamic_batch_scheduler.cc, `Enqueue`:
"Exceeds maximum queue size"), which a client, a load balancer or an autoscaler can act on.
Here the bound counts rows waiting for a forward pass (`MicroBatcher.pending_rows`, the
queue gauge), since rows, not requests, are what a pass takes.

- unit: the real `MicroBatcher`, its forward thread held on an Event;
- end to end: a real `mlserver start` serving the benchmarks' `controlled` node, over REST
  (503, `Retry-After`) and gRPC (UNAVAILABLE), counted `rejected`;
- the graph model and the CRD refuse `maxQueueRows: 0`, and the field reaches the runtime
  through model-settings.json's `parameters.extra`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Hashable, Iterator
from typing import Any

import grpc
import httpx
import jsonschema
import pytest
import yaml
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

from benchmarks.controlled import EXTRA_FAMILIES
from infergraph import errors
from infergraph.errors import GraphValidationError, PayloadTooLargeError, SettingsError
from infergraph.graph.crd import crd_manifest
from infergraph.graph.model_settings import model_settings
from infergraph.graph.plan import parse_graph
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.serving.batcher import MicroBatcher
from tests.servers import (
    REPO,
    MLServerProcess,
    families_env,
    metric,
    mlserver,
    settle,
    triton_grpc,
    write_model,
)


# -- unit: the real batcher ----------------------------------------------------------------------
class HeldForward:
    """A forward pass that waits for `release`, telling `entered` when a pass has begun."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.passes: list[list[Any]] = []

    def __call__(self, rows: list[Any], key: Hashable) -> list[Any]:
        del key
        self.entered.set()
        self.release.wait()
        self.passes.append(list(rows))
        return [row * 10 for row in rows]


async def _wait_for(condition: Any) -> None:
    """Yield to the loop until `condition()` holds (the tasks have reached their await)."""
    while not condition():
        await asyncio.sleep(0)


async def _queue_of_four_then_a_fifth() -> None:
    forward = HeldForward()
    seen: list[int] = []
    batcher = MicroBatcher([forward], 1, 0.0, on_pending=seen.append, max_queue_rows=4)
    # One row goes into a pass and holds the forward thread: it no longer counts as waiting.
    blocker = asyncio.ensure_future(batcher.submit([0], "k"))
    await asyncio.to_thread(forward.entered.wait)
    await _wait_for(lambda: batcher.pending_rows == 0)
    queued = [asyncio.ensure_future(batcher.submit([i], "k")) for i in range(1, 5)]
    await _wait_for(lambda: batcher.pending_rows == 4)

    fifth = asyncio.ensure_future(batcher.submit([5], "k"))
    await asyncio.sleep(0)  # one step of the task: refused before anything is awaited
    assert fifth.done(), "the fifth row must be refused at once, not queued"
    error = fifth.exception()
    assert isinstance(error, errors.QueueFullError), error
    assert "4 rows waiting" in str(error) and "limit of 4" in str(error), str(error)
    assert batcher.pending_rows == 4 and max(seen) == 4, seen  # nothing of it was counted

    forward.release.set()
    answers = await asyncio.gather(blocker, *queued)
    assert [rows for rows, _ in answers] == [[0], [10], [20], [30], [40]]
    assert batcher.pending_rows == 0
    # The rows have left: the queue takes a request again, and it is answered.
    rows, _ = await batcher.submit([6, 7, 8, 9], "k")
    assert rows == [60, 70, 80, 90]
    await batcher.close()


def test_a_row_past_the_limit_is_refused_at_once_and_the_queue_reopens_once_drained() -> None:
    asyncio.run(_queue_of_four_then_a_fifth())


async def _oversized_alone() -> None:
    forward = HeldForward()
    forward.release.set()
    batcher = MicroBatcher([forward], 8, 0.0, max_queue_rows=4)
    with pytest.raises(PayloadTooLargeError, match=r"5 rows.*never.*limit of 4") as caught:
        await batcher.submit([1, 2, 3, 4, 5], "k")
    assert not isinstance(caught.value, errors.QueueFullError)
    assert batcher.pending_rows == 0
    rows, _ = await batcher.submit([1, 2, 3, 4], "k")  # exactly the limit fits
    assert rows == [10, 20, 30, 40]
    await batcher.close()


def test_a_request_larger_than_the_limit_alone_is_refused_as_too_large() -> None:
    """A retry could never succeed: it is no overload (503) but a request over a configured
    size limit, which the runtime already answers 413 / RESOURCE_EXHAUSTED."""
    asyncio.run(_oversized_alone())


async def _unbounded_by_default() -> None:
    forward = HeldForward()
    batcher = MicroBatcher([forward], 1, 0.0)
    blocker = asyncio.ensure_future(batcher.submit([0], "k"))
    await asyncio.to_thread(forward.entered.wait)
    queued = [asyncio.ensure_future(batcher.submit([i] * 50, "k")) for i in range(1, 5)]
    await _wait_for(lambda: batcher.pending_rows == 200)
    forward.release.set()
    answers = await asyncio.gather(blocker, *queued)
    assert [len(rows) for rows, _ in answers] == [1, 50, 50, 50, 50]
    await batcher.close()


def test_without_a_limit_the_queue_takes_everything_as_before() -> None:
    asyncio.run(_unbounded_by_default())


# -- the graph model, the CRD and model-settings.json ----------------------------------------------
def _graph(batching: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "k8s" / "graphs" / "cascade.yaml").read_text())
    data["spec"]["nodes"][0]["batching"] = batching
    return data


def test_the_graph_refuses_a_queue_of_zero_rows_naming_the_field() -> None:
    with pytest.raises(GraphValidationError) as caught:
        parse_graph(_graph({"maxBatchSize": 4, "maxQueueRows": 0}))
    text = str(caught.value)
    assert "spec.nodes.0.batching.maxQueueRows" in text, text
    assert "greater than or equal to 1" in text, text


def test_the_graph_refuses_a_queue_shorter_than_a_batch() -> None:
    """Rows waiting include those the next batch gathers: a limit below maxBatchSize would
    cap every batch at the limit while saying it is larger."""
    with pytest.raises(GraphValidationError) as caught:
        parse_graph(_graph({"maxBatchSize": 8, "maxQueueRows": 4}))
    text = str(caught.value)
    assert "maxQueueRows 4 is below maxBatchSize 8" in text, text
    assert parse_graph(_graph({"maxBatchSize": 4, "maxQueueRows": 4}))


def test_the_crd_refuses_a_queue_of_zero_rows() -> None:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    field = schema["properties"]["spec"]["properties"]["nodes"]["items"]["properties"]["batching"][
        "properties"
    ]["maxQueueRows"]
    assert field["type"] == "integer" and field["minimum"] == 1, field
    jsonschema.validate(4, field)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(0, field)


def test_max_queue_rows_travels_in_parameters_extra_and_absent_stays_absent() -> None:
    graph = parse_graph(_graph({"maxBatchSize": 4, "maxBatchTimeMs": 5, "maxQueueRows": 64}))
    node = graph.spec.nodes[0]
    extra = model_settings(node.name, node.family, node, None)["parameters"]["extra"]
    assert extra["max_queue_rows"] == 64, extra
    assert RuntimeSettings.from_extra(extra).max_queue_rows == 64
    unbounded = parse_graph(_graph({"maxBatchSize": 4})).spec.nodes[0]
    extra = model_settings(node.name, node.family, unbounded, None)["parameters"]["extra"]
    assert "max_queue_rows" not in extra, extra


def test_the_runtime_refuses_a_queue_of_zero_rows_in_its_settings() -> None:
    with pytest.raises(SettingsError, match=r"parameters\.extra\.max_queue_rows"):
        RuntimeSettings.from_extra({"family": "identity", "max_queue_rows": 0})


# -- end to end: a real `mlserver start` -----------------------------------------------------------
LIMIT = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    """`bounded`: up to 4 rows a pass, a 60 s batch window (a batch leaves only when full),
    at most 4 rows waiting. Rows stay waiting until a request fills the batch."""
    root = tmp_path_factory.mktemp("admission") / "models"
    root.mkdir()
    write_model(
        root, "bounded", "controlled", max_batch_size=4, max_batch_time=60.0,
        max_queue_rows=LIMIT, base_ms=10, per_row_ms=0,
    )  # fmt: skip
    with mlserver(root, env=families_env(EXTRA_FAMILIES)) as srv:
        yield srv


def rest_body(rows: int) -> dict[str, Any]:
    data = [float(i) for i in range(rows * 2)]
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 2], "data": data}]}


def grpc_request(rows: int) -> pb.ModelInferRequest:
    contents = pb.InferTensorContents(fp32_contents=[float(i) for i in range(rows * 2)])
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=[rows, 2], contents=contents
    )
    return pb.ModelInferRequest(model_name="bounded", inputs=[tensor])


def post(server: MLServerProcess, rows: int) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/bounded/infer", json=rest_body(rows), timeout=120)


@pytest.mark.slow
def test_a_full_queue_answers_503_and_unavailable_and_the_server_goes_on(
    server: MLServerProcess,
) -> None:
    """3 rows wait for a batch to fill; 2 more would make 5 > 4: refused over REST and gRPC,
    counted `rejected`; 1 more fits, fills the batch, and both waiting requests are answered."""
    rejected = metric(server, "infergraph_requests_total", model="bounded", outcome="rejected")
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(post(server, 3)))
    waiting.start()

    def three_waiting() -> bool:
        assert not answers, [a.text for a in answers]  # its 3 rows wait for a fourth row
        return metric(server, "infergraph_batch_queue_size", model="bounded") == 3

    settle(three_waiting, "3 rows waiting")

    refused = post(server, 2)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["retry-after"] == "1"
    message = refused.json()["error"]
    assert message.startswith("bounded: "), message
    assert "3 rows waiting" in message and f"limit of {LIMIT}" in message, message

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(grpc_request(2), timeout=60)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    assert caught.value.details() == message

    assert metric(server, "infergraph_batch_queue_size", model="bounded") == 3
    counted = metric(server, "infergraph_requests_total", model="bounded", outcome="rejected")
    assert counted == rejected + 2

    filler = post(server, 1)  # 3 + 1 = 4 rows: fits, and fills the batch
    waiting.join(120)
    assert filler.status_code == 200, filler.text
    assert [a.status_code for a in answers] == [200], [a.text for a in answers]
    assert answers[0].json()["outputs"][0]["shape"] == [3, 2]
    after = post(server, 4)  # the queue is empty again: a whole batch is taken at once
    assert after.status_code == 200, after.text
    assert metric(server, "infergraph_batch_queue_size", model="bounded") == 0


@pytest.mark.slow
def test_a_request_larger_than_the_queue_is_413_and_resource_exhausted(
    server: MLServerProcess,
) -> None:
    bad_input = metric(server, "infergraph_requests_total", model="bounded", outcome="bad_input")
    refused = post(server, LIMIT + 1)
    assert refused.status_code == 413, refused.text
    message = refused.json()["error"]
    assert "5 rows" in message and "never" in message and f"limit of {LIMIT}" in message
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(grpc_request(LIMIT + 1), timeout=60)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value
    counted = metric(server, "infergraph_requests_total", model="bounded", outcome="bad_input")
    assert counted == bad_input + 2
    assert post(server, LIMIT).status_code == 200


@pytest.mark.slow
def test_the_model_configuration_says_the_queue_bound(server: MLServerProcess) -> None:
    """A client sizing its concurrency (perf_analyzer, tritonclient's get_model_config) reads
    the bound where it reads the rows per pass: REST `/config` and gRPC `ModelConfig`."""
    config = httpx.get(f"{server.url}/v2/models/bounded/config", timeout=10).json()
    params = config["parameters"]
    assert params["max_queue_rows"] == {"string_value": str(LIMIT)}, params
    assert params["max_rows_per_forward_pass"] == {"string_value": "4"}, params
    over_grpc = triton_grpc(server, "bounded")["config"]
    assert isinstance(over_grpc, dict)
    assert over_grpc["parameters"]["max_queue_rows"] == {"string_value": str(LIMIT)}, over_grpc
