"""What the router checks of a node's V2 reply before any step reads it.

The router keeps tensors in their wire form (`graph.wire`), so nothing decodes a node's
answer until a gate, the combiner or a binary output reads it, and then its error names an
*input*: a 400, which tells the client to fix a request it got right. A node is a server
of ours: what it answers wrong is a bad gateway, a 502 naming it, as the KServe router and
Seldon answer for a step's bad answer. So the reply's frame (an `outputs` list of named
objects, a `parameters` object) and each output's shape against its data are checked here,
where the node is known; the checks are the cheap ones (no element is read), and the rest is
attributed to the node where it is read (`evaluate.blamed`).
"""

from __future__ import annotations

from collections.abc import Mapping

from infergraph.errors import InputError, NodeError
from infergraph.graph.wire import Tensor, check_shape

MALFORMED = "returned a malformed V2 reply"
# How much of a node's non-JSON error body a graph error quotes (a proxy's HTML page is long).
DETAIL_CHARS = 200


def node_outputs(node: str, reply: Mapping[str, object]) -> dict[str, Tensor]:
    """A node's `outputs` by name, each a tensor whose shape its data fills; a `NodeError`
    (502) naming the node and the field for anything else."""
    outputs = reply.get("outputs", [])
    if not isinstance(outputs, list):
        kind = type(outputs).__name__
        raise NodeError(node, f"{MALFORMED}: 'outputs' is {kind}, not a list of tensors", 502)
    found: dict[str, Tensor] = {}
    for i, tensor in enumerate(outputs):
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if not isinstance(tensor, dict) or not isinstance(name, str):
            raise NodeError(node, f"{MALFORMED}: 'outputs[{i}]' is no tensor with a name", 502)
        try:
            check_shape(name, tensor)
        except InputError as exc:
            raise NodeError(node, f"{MALFORMED}: output '{name}': {exc.reason}", 502) from None
        found[name] = tensor
    return found


def node_timings(node: str, reply: Mapping[str, object]) -> dict[str, object]:
    """The node's own timings and batch size, as `<node>.<key>` graph response parameters."""
    parameters = reply.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        kind = type(parameters).__name__
        raise NodeError(node, f"{MALFORMED}: 'parameters' is {kind}, not an object", 502)
    return {
        f"{node}.{key}": value
        for key, value in parameters.items()
        if key.endswith("_ms") or key == "batch_size"
    }


def error_detail(raw: bytes, reply: object) -> str:
    """What a node's error answer says: its JSON `error` (or `detail`), else the start of
    its body as text (uvicorn's "Invalid HTTP request received.", a proxy's 413 page)."""
    if isinstance(reply, dict):
        detail = reply.get("error") or reply.get("detail")
        if detail:
            return str(detail)
    return raw[:DETAIL_CHARS].decode(errors="replace").strip()
