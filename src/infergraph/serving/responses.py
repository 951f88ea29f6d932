"""A component's result as an Open Inference Protocol response: JSON or binary extension."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import orjson

from infergraph.arrays import Array
from infergraph.errors import Status, status_for
from infergraph.json_types import JSONObject
from infergraph.serving.binary import OCTET_STREAM, json_bytes, write_response
from infergraph.tensors.binary import binary_entry
from infergraph.tensors.v2json import EncodedTensor, encode_json_array


class Served(TypedDict):
    """One request as a runtime served it, before any wire form is written: the outputs asked
    for, by the name asked for, and the response parameters (`plain_parameters`' scalars)."""

    outputs: dict[str, Array]
    parameters: JSONObject


def plain_parameters(params: JSONObject) -> JSONObject:
    """Response parameters must be scalars: lists and dicts travel as JSON text."""
    return {
        key: json.dumps(value) if isinstance(value, (list, dict, tuple)) else value
        for key, value in params.items()
    }


def encode_outputs(
    outputs: dict[str, Array], binary: Callable[[str], bool]
) -> tuple[list[EncodedTensor], list[bytes]]:
    """Output tensors as JSON entries, with the bytes of those `binary` names (the request's
    `InferRequest.is_binary`) split off in order.

    Numbers stay flat arrays, each float written in its datatype's own precision by
    `http_body` (`tensors.v2json.encode_json_array`).
    """
    entries: list[EncodedTensor] = []
    blobs: list[bytes] = []
    for name, array in outputs.items():
        array = np.asarray(array)
        if binary(name):
            entry, raw = binary_entry(name, array)
            entries.append(entry)
            blobs.append(raw)
            continue
        datatype, shape, data, params = encode_json_array(array)
        entry = {"name": name, "datatype": datatype, "shape": shape, "data": data}
        if params:
            entry["parameters"] = params
        entries.append(entry)
    return entries, blobs


def http_body(header: JSONObject, blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """(body, headers): plain JSON, or the binary extension when any output is binary."""
    if not blobs:
        return json_bytes(header), {"Content-Type": "application/json"}
    body, length = write_response(header, blobs)
    return body, {"Content-Type": OCTET_STREAM, "Inference-Header-Content-Length": str(length)}


def error_body(exc: BaseException, prefix: str) -> tuple[Status, bytes]:
    """The shared error shape `{"error": "..."}` with the status `status_for` gives.

    A message quoting a lone surrogate (from a caller's text) is written with it escaped:
    orjson refuses it, and the error then became a 500 without a JSON body.
    """
    status = status_for(exc)
    message = {"error": f"{prefix}: {exc}"}
    try:
        return status, orjson.dumps(message)
    except orjson.JSONEncodeError:
        return status, json.dumps(message).encode("ascii")
