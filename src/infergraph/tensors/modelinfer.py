"""Tensors in the gRPC form of the Open Inference Protocol (`ModelInferRequest` / `Response`).

A gRPC tensor holds its elements in the typed field of `InferTensorContents` its datatype
names, or as one entry of `raw_input_contents` / `raw_output_contents` in the binary layout
(`tensors.binary`). MLServer turns the message into its pydantic types, read as V2 JSON.
"""

from __future__ import annotations

from typing import Any

from infergraph.arrays import Array
from infergraph.tensors.v2json import encode_json

# The `InferTensorContents` field of each datatype (grpc_predict_v2.proto). FP16 has none: it
# travels in the raw contents only.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def encode_grpc(array: Array) -> tuple[str, list[int], list[Any], dict[str, str]]:
    """As `encode_json`, but BYTES elements as bytes: gRPC's `bytes_contents` holds bytes."""
    datatype, shape, data, params = encode_json(array)
    if datatype == "BYTES":
        data = [d.encode("utf-8") if isinstance(d, str) else d for d in data]
    return datatype, shape, data, params
