"""Seldon Core v1's executor, the parts a `protocol: v2` chain depends on, written from its source.

seldon-core v1.18.2: before every unit call (transform-input/predict, predictor_process.go:112-113;
transform-output, 164-165) the executor `Chain`s the message (executor/api/rest/client.go:343-353),
which for `protocol: v2` is `ChainKFserving` (executor/api/rest/kfserving.go:10-35): the body
is decoded into Go's `interface{}` and, when it has `outputs` but no `inputs`, the field is
renamed and the map re-marshalled by encoding/json. So a unit's response reaches the next unit
with every other field (`parameters` included) kept, numbers through float64 (`0.0` becomes
`0`) and map keys sorted; a body that already has `inputs` goes on byte for byte, and one with
neither is an error the executor answers 500 (a plain error, not an httpStatusError:
server.go:97-99). The walk itself is `Executor` in tests/seldon/test_components.py.
"""

from __future__ import annotations

import json

from tests.engines.kserve_router import go_decode, go_marshal


class ChainError(ValueError):
    """ChainKFserving refused the body (the executor answers 500)."""


def chain_kfserving(body: bytes) -> bytes:
    """The next unit's request body from the previous unit's response (kfserving.go:10-35)."""
    try:
        message = go_decode(body)
    except ValueError as exc:
        raise ChainError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):  # `f.(map[string]interface{})` would panic
        raise ChainError("not a JSON object")
    if "inputs" in message:
        return body
    if "outputs" not in message:
        raise ChainError("Failed to convert kfserving response so it could be chained to new input")
    message["inputs"] = message.pop("outputs")
    return go_marshal(message)


def chained(response: dict) -> dict:
    """`chain_kfserving` on a decoded response, decoded again for a JSON client."""
    return json.loads(chain_kfserving(json.dumps(response).encode()))
