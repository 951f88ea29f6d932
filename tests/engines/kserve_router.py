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
    map (a body that is not a JSON object: 500, main.go:278-291) and the answer is
    `json.Marshal` of `{<step name or index>: <response>}` (Go sorts map keys) with 200,
    unless a `Hard` step failed (its response and status win).
  - `Switch`: `pickupRouteByCondition(input, steps)`: the first step whose GJSON `condition`
    exists in the node's *input* runs on that input; none: 404 "None of the routes matched".
  - An error of a nested node (`nodeName`) reaches its caller as a 500, whatever its own
    status: only the root node's error keeps its status.
  - `Splitter`: weighted random pick (not rendered by the kit; not modelled).
- `executeStep`: a `nodeName` recurses into `routeStep`, else `callService` POSTs the bytes to
  `serviceUrl` and returns body and status. Headers (main.go:130-147): a client header goes
  along only when a `PROPAGATE_HEADERS` pattern (unanchored Go regexp) matches its name as
  net/http canonicalizes it (`X-Request-Id`); Content-Type defaults to application/json.
  The http.Client's timeout is `routerTimeouts.serviceClient` (main.go:149-157); a call that
  fails or times out answers 500 with the router's error body.

GJSON (github.com/tidwall/gjson `GetBytes(...).Exists()`) is modelled for the plain dotted
paths the kit renders (`carry.when.gate-0.then`); anything richer is refused, not guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

# post(url, body, headers, timeout seconds or None) -> (body, status); raises OSError (a
# TimeoutError included) when the call fails.
Post = Callable[[str, bytes, dict[str, str], float | None], tuple[bytes, int]]
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


def canonical_header(name: str) -> str:
    """net/http's textproto.CanonicalMIMEHeaderKey: `x-request-id` -> `X-Request-Id`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def go_decode(body: bytes) -> Any:
    """json.Unmarshal into interface{}: every number becomes a float64."""
    return json.loads(body, parse_int=float)


def go_number(x: float) -> str:
    """encoding/json's float64: the shortest digits that round-trip, in fixed notation
    unless |x| < 1e-6 or >= 1e21, where exponent form with `e-07` cleaned to `e-7`."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"json: unsupported value: {x}")
    if x != 0 and not 1e-6 <= abs(x) < 1e21:
        return repr(x).replace("e-0", "e-")
    return format(Decimal(repr(x)).normalize(), "f")


def go_string(text: str) -> str:
    """encoding/json's string: UTF-8 as is, HTML characters and U+2028/9 escaped."""
    out = json.dumps(text, ensure_ascii=False)
    for char, escaped in GO_ESCAPES.items():
        out = out.replace(char, escaped)
    return out


GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> str:
    if isinstance(value, dict):  # Go sorts map keys
        return "{" + ",".join(f"{go_string(k)}:{go_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return go_number(float(value))


def go_marshal(value: Any) -> bytes:
    """encoding/json's Marshal of a value decoded by `go_decode`."""
    return go_json(value).encode()


@dataclass
class Router:
    """One InferenceGraph `spec`; `post(url, body) -> (body, status)` reaches the services."""

    spec: dict[str, Any]
    post: Post
    propagate: tuple[str, ...] = ()  # PROPAGATE_HEADERS, split on commas
    calls: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def handle(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[bytes, int]:
        """`graphHandler`: the client's headers go with every call the patterns allow."""
        self.headers = {canonical_header(k): v for k, v in (headers or {}).items()}
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
                decoded = go_decode(body)
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
            # A nested node's error is a 500 whatever its own status: every caller of
            # executeStep answers `nil, 500, err` (Sequence main.go:357-358, Ensemble
            # main.go:279-291 and 310-311, Switch main.go:227-229); only the root's own
            # error keeps its status (graphHandler, main.go:407-411).
            try:
                return self.route(step["nodeName"], data)
            except RouterError as exc:
                raise RouterError(500, str(exc)) from None
        self.calls.append(step["serviceUrl"])
        return self.call_service(step["serviceUrl"], data)

    def call_service(self, url: str, data: bytes) -> tuple[bytes, int]:
        headers = {
            name: value
            for name, value in self.headers.items()
            if any(re.search(pattern, name) for pattern in self.propagate)
        }
        headers.setdefault("Content-Type", "application/json")
        timeout = self.spec.get("routerTimeouts", {}).get("serviceClient")
        try:
            return self.post(url, data, headers, timeout)
        except OSError as exc:
            raise RouterError(500, f"calling {url}: {exc}") from None
