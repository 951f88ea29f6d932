"""Profiling a graph that is already served: each node timed through its own endpoint.

The profile's third place of measurement, beside this machine's CPU and its GPU: the nodes
as they run where they are deployed (a GPU node pool behind KServe, the local runner,
any Open Inference Protocol server). Each node is sent requests of b synthetic rows at
`<base>/v2/models/<node>/infer` (in Seldon Core v2's mesh, at the name of the node's `Model`
and with the `seldon-model` header that routes to it), batch sizes in turns; a request of b
rows is one forward
pass of b in our runtimes, whose reply says so (`batch_size`) and how long the pass took
(`inference_ms`). A server that reports neither is timed by the client's round trip, and
the profile says which (`settings.pass_timing`). What the request costs outside its pass
(decoding, the wire) becomes the node's hop.
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from infergraph.engines import PROFILED, Engine, UnknownEngineError, names
from infergraph.engines import engine as engine_named
from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph, Node

# A reply without `inference_ms` is timed by its round trip.
ROUND_TRIP = "round-trip"
SERVER_REPORTED = "server-reported"


class EndpointError(InfergraphError):
    """A node endpoint could not be reached or refused the profiler's requests."""


# How a deployment names its nodes, each answering at <base>/v2/models/<name>/infer: the local
# runner (and a bare MLServer or Triton) by node name; KServe as the InferenceService
# `<graph>-<node>`, on its own host; Seldon Core v2 as the Model `<graph>-<node>`, picked in
# the mesh by the `seldon-model` header its Envoy routes on (each engine's `served_name` and
# `route_header` in infergraph.engines).
ENGINES = names(PROFILED)


@dataclass(frozen=True)
class Endpoints:
    """Where a served graph answers: one base URL, with per-node overrides (a KServe
    InferenceService per node has its own host), and how it names what it serves."""

    base: str
    graph: str  # the graph's name: KServe's and Seldon v2's nodes are named after it
    nodes: dict[str, str] = field(default_factory=dict)
    engine: str = "local"

    @property
    def serving(self) -> Engine:
        """The engine the graph is served by, from the table (checked by parse_endpoints)."""
        return engine_named(self.engine, PROFILED)

    def served_name(self, node: str) -> str:
        return self.serving.served_name(self.graph, node)

    def node_url(self, node: str) -> str:
        base = self.nodes.get(node, self.base).rstrip("/")
        return f"{base}/v2/models/{self.served_name(node)}/infer"

    def node_headers(self, node: str) -> dict[str, str]:
        return self.serving.node_headers(self.graph, node)

    def graph_url(self) -> str:
        return f"{self.base.rstrip('/')}/v2/models/{self.graph}/infer"

    def graph_headers(self) -> dict[str, str]:
        return self.serving.graph_headers(self.graph)

    def describe(self) -> dict[str, object]:
        return {"endpoint": self.base, "node_endpoints": dict(self.nodes), "engine": self.engine}


def _checked_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"{what}: '{url}' is not an http(s) URL such as http://host:8080")
    return url


def parse_endpoints(
    base: str, overrides: list[str], graph: InferenceGraph, engine: str = "local"
) -> Endpoints:
    """`--endpoint URL`, `--node-endpoint NODE=URL` entries and `--engine`, each checked."""
    try:
        engine_named(engine, PROFILED, "be profiled node by node")
    except UnknownEngineError as exc:
        raise EndpointError(f"--engine '{engine}': choose one of {', '.join(exc.valid)}") from None
    nodes = [n.name for n in graph.spec.nodes]
    per_node: dict[str, str] = {}
    for entry in overrides:
        name, sep, url = entry.partition("=")
        if not sep or not name:
            raise EndpointError(f"--node-endpoint '{entry}': write NODE=URL")
        if name not in nodes:
            raise EndpointError(
                f"--node-endpoint '{entry}': the graph has no node '{name}' "
                f"(nodes: {', '.join(nodes)})"
            )
        per_node[name] = _checked_url(url, f"--node-endpoint {name}")
    return Endpoints(_checked_url(base, "--endpoint"), graph.name, per_node, engine)


def request_bodies(node: Node, sizes: list[int]) -> dict[int, bytes]:
    """OIP JSON requests carrying b rows of the node's own example inputs, per size b.

    The component is built but not loaded: its example inputs (synthetic images, texts,
    tones) need no weights, so profiling a GPU deployment needs no model here.
    """
    from infergraph.components.base import ComponentSettings
    from infergraph.components.registry import component_class
    from infergraph.tensors.v2json import to_tensor

    component = component_class(node.family)(
        ComponentSettings(model_uri=node.model_uri, options=dict(node.options))
    )
    bodies = {}
    for b in sizes:
        try:
            examples = component.example_inputs(b)
        except AttributeError as exc:  # a family whose examples need its loaded model
            raise EndpointError(
                f"node '{node.name}' ({node.family}) cannot build a request without its "
                f"model: {exc}"
            ) from None
        inputs = [to_tensor(name, array) for name, array in examples.items()]
        bodies[b] = json.dumps({"inputs": inputs}).encode()
    return bodies


@dataclass
class PassReply:
    """One timed request: its round trip, and what the server said of its pass."""

    round_trip_ms: float
    inference_ms: float | None
    batch_size: int | None


class NodeClient:
    """A kept-alive HTTP connection to one node's infer URL."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, timeout_s: float = 300.0
    ) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        self.url = url
        self._path = parts.path
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._conn = kind(parts.netloc, timeout=timeout_s)

    def send(self, body: bytes) -> PassReply:
        try:
            elapsed, resp, raw = self._post(body)
        except (OSError, http.client.HTTPException):
            # A kept-alive connection the server closed meanwhile: one fresh try.
            self._conn.close()
            try:
                elapsed, resp, raw = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                raise EndpointError(f"{self.url}: {exc}") from None
        if resp.status != 200:
            raise EndpointError(
                f"{self.url} answered HTTP {resp.status}: {raw[:300].decode(errors='replace')}"
            )
        try:
            params = json.loads(raw).get("parameters") or {}
        except (ValueError, AttributeError):
            raise EndpointError(f"{self.url} answered something that is not OIP JSON") from None
        return PassReply(elapsed, _number(params.get("inference_ms")), _size(params))

    def _post(self, body: bytes) -> tuple[float, http.client.HTTPResponse, bytes]:
        start = time.perf_counter()
        self._conn.request("POST", self._path, body=body, headers=self._headers)
        resp = self._conn.getresponse()
        raw = resp.read()
        return (time.perf_counter() - start) * 1000.0, resp, raw

    def close(self) -> None:
        self._conn.close()


def _number(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out >= 0 else None


def _size(params: dict[str, object]) -> int | None:
    value = _number(params.get("batch_size"))
    return int(value) if value is not None else None


@dataclass
class NodeTimer:
    """Times one node's passes through its endpoint, for `time_in_turns`."""

    client: NodeClient
    bodies: dict[int, bytes]
    overheads_ms: list[float] = field(default_factory=list)
    timing: set[str] = field(default_factory=set)

    def warm(self, passes: int = 2) -> None:
        for body in self.bodies.values():
            for _ in range(passes):
                self.client.send(body)

    def __call__(self, batch_size: int) -> float:
        reply = self.client.send(self.bodies[batch_size])
        if reply.batch_size is not None and reply.batch_size != batch_size:
            raise EndpointError(
                f"{self.client.url}: a request of {batch_size} rows ran in a pass of "
                f"{reply.batch_size}; profile a node no other traffic reaches, with its "
                f"maxBatchSize at least {batch_size}"
            )
        if reply.inference_ms is None:
            self.timing.add(ROUND_TRIP)
            return reply.round_trip_ms
        self.timing.add(SERVER_REPORTED)
        if batch_size == 1:
            self.overheads_ms.append(max(reply.round_trip_ms - reply.inference_ms, 0.0))
        return reply.inference_ms

    def hop_ms(self) -> float:
        """The request's cost outside its pass; 0 where the server reports no pass time."""
        return statistics.median(self.overheads_ms) if self.overheads_ms else 0.0


def node_timer(node: Node, endpoints: Endpoints, sizes: list[int]) -> NodeTimer:
    """A timer for `node`'s endpoint, its request bodies built and its passes warmed."""
    client = NodeClient(endpoints.node_url(node.name), endpoints.node_headers(node.name))
    timer = NodeTimer(client, request_bodies(node, sizes))
    timer.warm()
    return timer
