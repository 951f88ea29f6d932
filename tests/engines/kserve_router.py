"""KServe's InferenceGraph router as an executable model, written from its source.

kserve/kserve `cmd/router/main.go` (the router image the InferenceGraph controller deploys,
its spec passed as `--graph-json`), kept small on purpose:

- `graphHandler`: the client's body goes to `routeStep("root", ...)`; an error answers
  `{"error": ..., "cause": ...}` (router_error.go) with the step's status, else the body
  and status of the last step as they are.
- `routeStep`, per `routerType`:
  - `Sequence`: steps in order; `request` is the node's input unless the step says
    `data: $response` and it is not the first step, then the previous step's response bytes.
    A step with a `condition` first checks that the previous response is valid JSON (else
    500 "invalid response", so a condition on the first step always fails) and, when the GJSON
    path does not exist in it, ends the Sequence returning that previous response with 200.
    A `Hard` step answering non-2xx ends the Sequence with that body and status; a `Soft` one
    (the default) lets the next step run on the error body.
  - `Ensemble`: every step gets the node's input concurrently; each response is decoded into a
    map (a body that is not a JSON object: 500, main.go:278-291) and the answer is `json.Marshal` of `{<step name or index>: <response>}` (Go sorts map
    keys) with 200, unless a `Hard` step failed (its response and status win).
  - `Switch`: `pickupRouteByCondition(input, steps)`: the first step whose GJSON `condition`
    exists in the node's *input* runs on that input; none: 404 "None of the routes matched".
  - `Splitter`: weighted random pick (not rendered by the kit; not modelled).
- `executeStep`: a `nodeName` recurses into `routeStep`, else `callService` POSTs the bytes to
  `serviceUrl` with `Content-Type: application/json` and returns body and status.

GJSON (github.com/tidwall/gjson `GetBytes(...).Exists()`) is modelled for the plain dotted
paths the kit renders (`carry.when.gate-0.then`); anything richer is refused, not guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Post = Callable[[str, bytes], tuple[bytes, int]]
PLAIN_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class RouterError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def gjson_exists(body: bytes, path: str) -> bool:
    """`gjson.GetBytes(body, path).Exists()` for a plain dotted path of object keys."""
    if not PLAIN_PATH.match(path):
        raise ValueError(f"GJSON path '{path}' is beyond this model (plain dotted keys only)")
    value: Any = json.loads(body)
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return False
    return True


def valid_json(body: bytes | None) -> bool:
    if not body:
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def go_marshal(value: Any) -> bytes:
    """encoding/json's Marshal of decoded JSON: map keys sorted, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Router:
    """One InferenceGraph `spec`; `post(url, body) -> (body, status)` reaches the services."""

    spec: dict[str, Any]
    post: Post
    calls: list[str] = field(default_factory=list)

    def handle(self, body: bytes) -> tuple[bytes, int]:
        try:
            return self.route("root", body)
        except RouterError as exc:
            error = {"error": "Failed to process request", "cause": str(exc)}
            return json.dumps(error).encode(), exc.status

    def route(self, name: str, data: bytes) -> tuple[bytes, int]:
        node = self.spec["nodes"][name]
        kind = node["routerType"]
        if kind == "Sequence":
            return self.sequence(node["steps"], data)
        if kind == "Ensemble":
            return self.ensemble(node["steps"], data)
        if kind == "Switch":
            for step in node["steps"]:
                if valid_json(data) and gjson_exists(data, step["condition"]):
                    return self.execute(step, data)
            raise RouterError(404, "None of the routes matched with the switch condition")
        raise RouterError(500, f"invalid route type: {kind}")

    def sequence(self, steps: list[dict[str, Any]], data: bytes) -> tuple[bytes, int]:
        response: bytes = b""
        status = 0
        for i, step in enumerate(steps):
            request = response if step.get("data") == "$response" and i > 0 else data
            if step.get("condition"):
                if not valid_json(response):
                    raise RouterError(500, "invalid response")
                if not gjson_exists(response, step["condition"]):
                    return response, 200
            response, status = self.execute(step, request)
            if step.get("dependency") == "Hard" and not 200 <= status <= 299:
                return response, status
        return response, status

    def ensemble(self, steps: list[dict[str, Any]], data: bytes) -> tuple[bytes, int]:
        with ThreadPoolExecutor(max_workers=len(steps)) as pool:
            results = list(pool.map(lambda s: self.execute(s, data), steps))
        merged: dict[str, Any] = {}
        for i, (step, (body, status)) in enumerate(zip(steps, results, strict=True)):
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise RouterError(500, f"member {i}: {exc}") from None
            # Each answer is unmarshalled into map[string]interface{}: anything but a JSON
            # object is an error, answered 500 (cmd/router/main.go:278-291).
            if not isinstance(decoded, dict):
                raise RouterError(500, f"member {i}: json: cannot unmarshal into a map")
            if step.get("dependency") == "Hard" and not 200 <= status <= 299:
                return go_marshal(decoded), status
            merged[step.get("name") or str(i)] = decoded
        return go_marshal(merged), 200

    def execute(self, step: dict[str, Any], data: bytes) -> tuple[bytes, int]:
        if step.get("nodeName"):
            return self.route(step["nodeName"], data)
        self.calls.append(step["serviceUrl"])
        return self.post(step["serviceUrl"], data)
