"""Helpers shared by the text and speech component tests: V2 payloads, gRPC, bursts."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from tests.servers import MLServerProcess, grpc_model_infer, v2_input

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def text_input(name: str, texts: list[str]) -> dict[str, Any]:
    return v2_input(name, "BYTES", texts)


def raw_bytes_input(name: str, rows: list[bytes]) -> dict[str, Any]:
    """BYTES rows that JSON cannot carry as text (invalid utf-8): send them base64 encoded."""
    encoded = [base64.b64encode(r).decode("ascii") for r in rows]
    return v2_input(name, "BYTES", encoded, content_type="base64")


def outputs(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def parameter(response: httpx.Response, name: str) -> Any:
    value = response.json()["parameters"][name]
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def assert_ready(server: MLServerProcess, model: str) -> None:
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=10).status_code == 200


def burst(
    server: MLServerProcess, model: str, payloads: list[dict[str, Any]], workers: int = 16
) -> list[httpx.Response]:
    """Send every payload at once so the server's batcher can merge them."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: server.infer(model, p), payloads))


def max_batch_size(responses: list[httpx.Response]) -> int:
    return max(int(r.json()["parameters"]["batch_size"]) for r in responses if r.status_code == 200)


def grpc_infer(
    server: MLServerProcess,
    model: str,
    tensors: list[tuple[str, str, list[int], list[Any]]],
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ModelInfer call over gRPC; returns {output name: list of values} and parameters."""
    response = grpc_model_infer(server, model, tensors, parameters)
    result: dict[str, Any] = {}
    for out in response.outputs:
        contents = out.contents
        if out.datatype == "BYTES":
            result[out.name] = [b.decode("utf-8") for b in contents.bytes_contents]
        elif out.datatype == "FP32":
            result[out.name] = np.array(contents.fp32_contents, dtype=np.float32).reshape(out.shape)
        elif out.datatype == "INT64":
            result[out.name] = list(contents.int64_contents)
    result["_parameters"] = {
        k: v.WhichOneof("parameter_choice") for k, v in response.parameters.items()
    }
    return result


def grpc_error(call: Callable[[], Any]) -> Any:
    """Run a gRPC call expected to fail; return the RpcError."""
    import grpc

    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the gRPC call succeeded but should have failed")
