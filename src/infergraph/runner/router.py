"""HTTP front of the embedded runner: the graph at a V2 endpoint, nodes beside it.

Endpoints (the same shapes a Seldon Core v2 ingress serves):
  POST /v2/models/<graph>[/versions/<v>]/infer   run the whole graph (JSON or binary extension)
  GET  /v2/models/<graph>                        graph metadata (inputs, outputs, nodes)
  GET  /v2/models/<graph>/ready                  ready when every node is ready
  GET  /v2/models/<graph>/config                 a Triton-style configuration
  POST /v2/models/<graph>/infer/raw              the body is the graph's BYTES input (Triton's
                                                 embed_image pattern); query string: parameters
  POST /v2/models/<node>/infer[/raw]             one node, proxied to its MLServer
  GET  /v2/models/<node>[/ready|/config]         the node's metadata, readiness, config
  GET  /v2                                       server metadata
  GET  /v2/health/live, /v2/health/ready

A graph request is read as the runtimes read theirs, by the same reader
(`tensors.request.InferRequest.from_json_tensors`; `serving/binary.py` for the binary
extension), its tensors left V2 JSON: binary inputs become JSON tensors for the nodes,
requested `outputs` are honoured, and outputs come back binary when asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from infergraph.errors import InfergraphError, InputError, PayloadTooLargeError, status_for
from infergraph.graph.evaluate import Origin, blamed
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, plan_of
from infergraph.json_types import JSONObject, as_str
from infergraph.runner import upstream
from infergraph.runner.executor import GraphExecutor, GraphReply, trace_headers
from infergraph.serving import binary, request_body
from infergraph.serving.model_config import model_config
from infergraph.serving.protocol import select_outputs
from infergraph.serving.request_body import MAX_INFLATED_BYTES
from infergraph.tensors.binary import encode_binary, read_request
from infergraph.tensors.request import InferRequest
from infergraph.tensors.v2json import Tensor, from_tensor

log = logging.getLogger(__name__)
GRAPH_KEY = web.AppKey("graph", InferenceGraph)
EXECUTOR_KEY = web.AppKey("executor", GraphExecutor)
NODES_KEY = web.AppKey("node_bases", dict)
SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(
        body=binary.json_bytes(body), status=status, content_type="application/json"
    )


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


async def _body(request: web.Request) -> bytes:
    """The request body as its sender wrote it, read by the runtime's rules
    (`serving.request_body.inflated`): gzip, x-gzip or deflate undone, any other coding a
    400 naming Content-Encoding, a body past `MAX_INFLATED_BYTES` a 413.

    The router is served with aiohttp's own inflating off (`router_runner`; tests serve it
    the same way): that answered a body not in its coding with a bare 500, and an oversize
    one with a text/plain 413."""
    codings = request.headers.getall(request_body.HEADER, [])
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = MAX_INFLATED_BYTES
        raise PayloadTooLargeError("request", f"the body is over {limit} bytes") from None
    except web.RequestPayloadError as exc:  # a body its framing does not hold
        raise InputError("body", f"the body cannot be read ({exc})") from None
    return request_body.inflated(body, codings)


async def _infer(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    graph = request.app[GRAPH_KEY]
    if name != graph.name:
        return await _proxy_node(request, name, "/infer")
    try:
        payload = _read_request(graph, await _body(request), request.headers)
    except InfergraphError as exc:
        return _error(f"graph '{graph.name}': {exc}", status_for(exc).http)
    return await _run_graph(request, payload)


async def _infer_raw(request: web.Request) -> web.Response:
    """The Triton embed_image pattern: the whole body is the graph's BYTES input, the query
    string its request parameters, the answer JSON (as the runtime's own `/infer/raw`)."""
    name = request.match_info["model"]
    graph = request.app[GRAPH_KEY]
    if name != graph.name:
        return await _proxy_node(request, name, "/infer/raw")
    try:
        if not any(t.datatype == "BYTES" for t in graph.spec.inputs):
            raise InputError(
                "/infer/raw", f"graph '{graph.name}' has no BYTES input to take a raw body"
            )
        payload = _read_request(graph, await _body(request), {binary.HEADER: "0"})
    except InfergraphError as exc:
        return _error(f"graph '{graph.name}': {exc}", status_for(exc).http)
    payload.parameters = {k: v for k, v in request.query.items() if k != "binary_data_output"}
    payload.binary_all = False
    return await _run_graph(request, payload)


async def _run_graph(request: web.Request, payload: InferRequest[Tensor]) -> web.Response:
    """Run a read request through the graph; answer JSON or binary as the request asked.

    Every failure is the V2 error JSON: the executor's own errors with their status, and,
    as a backstop, anything else a 500 logged here, not aiohttp's text/plain page."""
    graph = request.app[GRAPH_KEY]
    try:
        reply = await request.app[EXECUTOR_KEY].infer(payload, trace_headers(request.headers))
        selected = _selected(request.app[EXECUTOR_KEY], reply, payload)
        outputs: list[Tensor] = [tensor for tensor, _ in selected]
        answer: JSONObject = {"model_name": reply["model_name"], "id": reply["id"]}
        if reply["id"] is None:
            answer.pop("id")
        answer.update(parameters=reply["parameters"], outputs=outputs)
        binary_out = any(payload.is_binary(str(tensor["name"])) for tensor in outputs)
        blobs = _binary_outputs(payload, selected) if binary_out else []
    except InfergraphError as exc:
        return _error(f"graph '{graph.name}': {exc}", status_for(exc).http)
    except Exception as exc:
        log.exception("graph '%s': request failed", graph.name)
        return _error(f"graph '{graph.name}': internal error: {type(exc).__name__}", 500)
    if not binary_out:
        return _json(answer)
    body, length = binary.write_response(answer, blobs)
    return web.Response(
        body=body,
        content_type=binary.OCTET_STREAM,
        headers={binary.HEADER: str(length)},
    )


def _selected(
    executor: GraphExecutor, reply: GraphReply, payload: InferRequest[Tensor]
) -> list[tuple[Tensor, Origin]]:
    """The outputs the request asked for, under the names it asked, each with its origin."""
    # The executor names each output (`graph.wire.renamed`): a name not a string is ours.
    produced = {as_str(t.get("name"), "outputs[].name"): t for t in reply["outputs"]}
    # A declared output the path taken did not produce (the other side of a `when`) is
    # left out, not refused: the request named an output the graph has.
    selected = select_outputs(produced, payload.outputs, list(executor.plan.outputs))
    return [
        ({**tensor, "name": name}, reply["origins"][as_str(tensor.get("name"), "name")])
        for name, tensor in selected.items()
    ]


def _binary_outputs(
    payload: InferRequest[Tensor], selected: list[tuple[Tensor, Origin]]
) -> list[bytes]:
    """The raw bytes of each output asked for binary, its data moved out of the JSON. The
    tensors are read here for the first time: one a node got wrong is that node's fault."""
    blobs = []
    for tensor, origin in selected:
        name = str(tensor["name"])
        if payload.is_binary(name):
            with blamed(origin, f"the binary output '{name}'"):
                _, raw = encode_binary(from_tensor(tensor))
            tensor.pop("data", None)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
    return blobs


def _read_request(
    graph: InferenceGraph, body: bytes, headers: Mapping[str, str]
) -> InferRequest[Tensor]:
    """JSON or binary-extension body -> the request the executor runs, read by the
    runtime's rules (`InferRequest.from_json_tensors`); binary inputs become JSON tensors
    for the nodes. A name no reading fits is left for the executor, which lists the graph's
    inputs."""
    length = binary.header_length(headers)
    if length is not None:
        raw_input = next((t.name for t in graph.spec.inputs if t.datatype == "BYTES"), None)
        payload: object = _json_inputs(read_request(body, length, raw_input))
    else:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InputError("request", f"body is not valid JSON: {exc}") from None
    return InferRequest.from_json_tensors(payload, [t.name for t in graph.spec.inputs])


def _json_inputs(request: JSONObject) -> JSONObject:
    """A binary request's inputs as the JSON tensors nodes are sent; inputs that are not a
    list of objects are left as they came, for `from_json_tensors` to refuse (a 400)."""
    inputs = request.get("inputs")
    if isinstance(inputs, list):
        request["inputs"] = [binary.to_json_tensor(t) if isinstance(t, dict) else t for t in inputs]
    return request


async def _proxy_node(request: web.Request, name: str, suffix: str) -> web.Response:
    """POST to a node's `/infer` or `/infer/raw`, query string and body as they came."""
    bases = request.app[NODES_KEY]
    if name not in bases:
        known = ", ".join([request.app[GRAPH_KEY].name, *bases])
        return _error(f"no graph or node named '{name}'; known: {known}", 404)
    session = request.app[SESSION_KEY]
    query = f"?{request.query_string}" if request.query_string else ""
    url = f"{bases[name]}/v2/models/{name}{suffix}{query}"
    timeout_ms = request.app[GRAPH_KEY].node(name).timeout_ms  # as a graph step's call
    timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000.0)
    try:
        body = await _body(request)
    except InfergraphError as exc:
        return _error(f"node '{name}': {exc}", status_for(exc).http)
    headers = _forwarded_headers(request)
    try:
        return _relay(await upstream.post(session, url, body, headers, timeout))
    except TimeoutError:
        return _error(f"node '{name}': timed out after {timeout_ms:g} ms", 504)
    except aiohttp.ClientError as exc:
        return _error(f"node '{name}': unreachable: {exc}", 502)


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    """A missing Content-Type is JSON, as MLServer reads it; binary and trace headers pass
    through."""
    headers = {
        **trace_headers(request.headers),
        "Content-Type": request.headers.get("Content-Type", "application/json"),
    }
    if binary.HEADER in request.headers:
        headers[binary.HEADER] = request.headers[binary.HEADER]
    return headers


def _relay(reply: upstream.NodeReply) -> web.Response:
    headers = {}
    if binary.HEADER in reply.headers:
        headers[binary.HEADER] = reply.headers[binary.HEADER]
    return web.Response(
        body=reply.body,
        status=reply.status,
        headers=headers,
        content_type=reply.content_type or "application/json",
    )


async def _node_get(request: web.Request, name: str, suffix: str) -> web.Response:
    """A node's metadata, readiness or config, from the MLServer that hosts it."""
    bases = request.app[NODES_KEY]
    if name not in bases:
        known = ", ".join([request.app[GRAPH_KEY].name, *bases])
        return _error(f"no graph or node named '{name}'; known: {known}", 404)
    try:
        async with request.app[SESSION_KEY].get(
            f"{bases[name]}/v2/models/{name}{suffix}", timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            body = await resp.read()
            return _relay(
                upstream.NodeReply(resp.status, body, CIMultiDict(resp.headers), resp.content_type)
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _error(f"node '{name}': unreachable: {exc}", 503 if suffix == "/ready" else 502)


async def _nodes_ready(app: web.Application) -> list[str]:
    """Names of nodes that are not ready."""
    session = app[SESSION_KEY]

    async def check(name: str, base: str) -> str | None:
        try:
            async with session.get(
                f"{base}/v2/models/{name}/ready", timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return None if resp.status == 200 else name
        except (aiohttp.ClientError, TimeoutError):
            return name

    results = await asyncio.gather(*(check(n, b) for n, b in app[NODES_KEY].items()))
    return [r for r in results if r]


async def _ready(request: web.Request) -> web.Response:
    name = request.match_info.get("model")
    graph = request.app[GRAPH_KEY]
    if name and name != graph.name:
        return await _node_get(request, name, "/ready")
    missing = await _nodes_ready(request.app)
    if missing:
        return _error(f"nodes not ready: {', '.join(missing)}", 503)
    return _json({"name": name, "ready": True} if name else {"ready": True})


async def _live(_: web.Request) -> web.Response:
    return _json({"live": True})


async def _server_metadata(_: web.Request) -> web.Response:
    return _json(
        {"name": "infergraph", "version": _version(), "extensions": ["binary_tensor_data"]}
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infergraph")
    except PackageNotFoundError:
        return "unknown"


async def _metadata(request: web.Request) -> web.Response:
    graph = request.app[GRAPH_KEY]
    name = request.match_info["model"]
    if name != graph.name:
        return await _node_get(request, name, "")
    return _json(
        {
            "name": graph.name,
            "versions": [],
            "platform": "infergraph",
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in graph.spec.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in request.app[EXECUTOR_KEY].plan.output_specs()
            ],
            "nodes": [n.name for n in graph.spec.nodes],
        }
    )


async def _config(request: web.Request) -> web.Response:
    graph = request.app[GRAPH_KEY]
    name = request.match_info["model"]
    if name != graph.name:
        return await _node_get(request, name, "/config")
    outputs = request.app[EXECUTOR_KEY].plan.output_specs()
    return _json(
        model_config(graph.name, "infergraph", graph.spec.inputs, outputs, backend="graph")
    )


class InferUrls(Mapping[str, str]):
    """Each node's V2 infer URL, read from the base URLs at every call: the local runner
    moves a node server it restarts to fresh ports and updates the bases in place."""

    def __init__(self, bases: Mapping[str, str]) -> None:
        self._bases = bases

    def __getitem__(self, node: str) -> str:
        return f"{self._bases[node]}/v2/models/{node}/infer"

    def __iter__(self) -> Iterator[str]:
        return iter(self._bases)

    def __len__(self) -> int:
        return len(self._bases)


def router_runner(source: InferenceGraph | GraphPlan, node_bases: dict[str, str]) -> web.AppRunner:
    """The router as `run_graph` serves it. A handler whose client hangs up is cancelled
    (`handler_cancellation`, off by default in aiohttp), so the graph stops there instead of
    calling its later nodes for nobody: under load, clients that time out and retry would
    otherwise have each abandoned request run its whole chain. aiohttp 3.14.5 cancels the
    handler on a lost connection only with it (web_protocol.py:392-409; `AppRunner` leaves it
    off, web.py:462); its TestServer turns it on (test_utils.py:129), so tests that use that
    never see the difference."""
    app = build_app(source, node_bases)
    # Bodies are inflated by the runtime's rules, in `_body`, not by aiohttp.
    return web.AppRunner(app, access_log=None, handler_cancellation=True, auto_decompress=False)


def build_app(source: InferenceGraph | GraphPlan, node_bases: dict[str, str]) -> web.Application:
    """`node_bases` maps node -> base URL of the MLServer hosting it; the router reads it on
    every request, so its owner may move a node by updating it."""
    plan = plan_of(source)
    graph = plan.graph
    # The runtime's limit: on the body as sent, and again on it inflated (`_body`).
    app = web.Application(client_max_size=MAX_INFLATED_BYTES)
    app[GRAPH_KEY] = graph
    app[NODES_KEY] = node_bases

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        session = upstream.node_session()
        app[SESSION_KEY] = session
        app[EXECUTOR_KEY] = GraphExecutor(plan, InferUrls(node_bases), session)
        yield
        await session.close()

    app.cleanup_ctx.append(session_ctx)
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.router.add_post(f"{base}/infer", _infer)
        app.router.add_post(f"{base}/infer/raw", _infer_raw)
        app.router.add_get(f"{base}/ready", _ready)
        app.router.add_get(f"{base}/config", _config)
        app.router.add_get(base, _metadata)
    app.router.add_get("/v2", _server_metadata)
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    return app
