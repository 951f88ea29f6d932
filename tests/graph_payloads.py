"""V2 request bodies for a graph's declared inputs (synthetic images, audio and text)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from infergraph.components.image_decoding import synthetic_png
from infergraph.graph.model import InferenceGraph

TEXTS = {
    "text": "La tour Eiffel est le monument le plus visité de Paris. Elle fut construite en 1889.",
    "context": "The Eiffel Tower was built in 1889 and is the most visited monument in Paris.",
    "question": "When was the Eiffel Tower built?",
}


def tensor_for(name: str, datatype: str, rows: int = 1, seed: int = 0) -> dict[str, Any]:
    if datatype == "BYTES" and name == "image":
        data = [base64.b64encode(synthetic_png(96, 80, seed + i)).decode() for i in range(rows)]
        return {
            "name": name,
            "datatype": "BYTES",
            "shape": [rows],
            "data": data,
            "parameters": {"content_type": "base64"},
        }
    if datatype == "BYTES":
        return {
            "name": name,
            "datatype": "BYTES",
            "shape": [rows],
            "data": [TEXTS.get(name, "hello world")] * rows,
        }
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal((rows, 16000)).astype(np.float32) * 0.1
    return {
        "name": name,
        "datatype": "FP32",
        "shape": [rows, 16000],
        "data": samples.reshape(-1).tolist(),
    }


def request_for(
    graph: InferenceGraph, rows: int = 1, seed: int = 0, **params: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [tensor_for(t.name, t.datatype, rows, seed) for t in graph.spec.inputs]
    }
    if any(t.name == "audio" for t in graph.spec.inputs):
        params.setdefault("sampling_rate", 16000)
    if params:
        body["parameters"] = params
    return body
