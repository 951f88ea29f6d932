"""One step of a KServe InferenceGraph: the body every node takes and returns on its own route.

KServe's router (kserve `cmd/router/main.go`) forwards whole JSON bodies: a Sequence step gets
the node's input (`data: $request`) or the previous step's response (`$response`), an Ensemble
answers `{"<step name>": <member response>, ...}`, and Switch routes and Sequence step
`condition`s test whether a GJSON path exists in a body. A plain V2 model cannot sit behind
it: a V2 response is not a V2 request (no `inputs`), and a node that needs `request.context`
after `asr` would never see it. So each rendered InferenceService serves this route,
`POST /v2/models/<model>/infer/graph`, whose response is also the next step's request:

    {"model_name": ..., "id": ..., "parameters": {"graph.path": "a,b"},
     "outputs": [graph outputs known so far, named as the graph names them],
     "inputs": [the tensors so far that a later step or a graph output reads, named
                "<step>.<tensor>" ("request.<name>" for the graph's inputs): the body is a
                valid V2 request too],
     "carry": {"parameters": <the client's request parameters>, "path": [nodes reached],
               "skipped": [nodes fed zero rows], "when": {"<gate>": {"<then|otherwise>": true}}}}

The step's wiring comes from the compiled plan, rendered into the model settings as
`parameters.extra.graph_step` (`infergraph.render.kserve`): which carried tensor feeds each
input, what the graph outputs are, which cascade pass-throughs are virtual (the tensors
a `when` without `otherwise` forwards are simply still carried), and which tensors the step
carries on (`GraphPlan.carried_after`: the rest would be re-sent at every later hop). The
plan's run-time rules (the first alternative that exists wins, a step fed a zero-row tensor
is not called, an absent gate tensor takes `otherwise`, `<node>.<key>` request parameters
reach only that node and never a built-in combine, the path, a client's request holding
exactly the graph's declared inputs with shapes their data fill, a node's tensor that a gate
or a combine cannot use being that node's 502) are `infergraph.graph.evaluate`'s, the same
the local router applies. A body is a step's answer by its shape (a `carry` object beside an
`inputs` list), so an Ensemble's map, nested ones included, is never taken for one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from infergraph.components.base import TensorSpec
from infergraph.errors import InputError
from infergraph.graph import evaluate as ev
from infergraph.graph.model import REQUEST
from infergraph.graph.wire import Tensor, check_shape, renamed
from infergraph.json_types import (
    JSONObject,
    JSONShapeError,
    as_int,
    as_list,
    as_object,
    as_str,
)
from infergraph.tensors.request import InferRequest

ROUTE_SUFFIX = "/infer/graph"
SETTINGS_KEY = "graph_step"
CARRY = "carry"

Call = Callable[[dict[str, Tensor], JSONObject], Awaitable[dict[str, Tensor]]]


@dataclass(frozen=True)
class PassThrough:
    """A cascade pass-through (a `when` without `otherwise`): on `side` of `gate` its
    tensors are the ones its `inputs` name (tensor -> alternatives)."""

    gate: str
    side: str
    inputs: dict[str, list[str]]

    @classmethod
    def parse(cls, value: object, where: str) -> PassThrough:
        data = as_object(value, where)
        return cls(
            gate=as_str(data["gate"], f"{where}.gate"),
            side=as_str(data["side"], f"{where}.side"),
            inputs=_ref_lists(data["inputs"], f"{where}.inputs"),
        )


@dataclass
class StepWiring:
    """What the renderer tells one InferenceService about its place in the graph."""

    step: str
    kind: str  # node | gate | combine | merge
    inputs: dict[str, list[str]]
    outputs: dict[str, list[str]]
    passes: dict[str, PassThrough]
    output_specs: list[TensorSpec]
    nodes: list[str]
    # The refs this step's answer carries on (`GraphPlan.carried_after`); None, in wiring
    # rendered before the renderer named them, carries every tensor as that wiring expects.
    carry: frozenset[str] | None = None
    # The graph's name and declared inputs, which a client's request must hold exactly (the
    # first step checks them); None in wiring rendered before, which checks nothing.
    graph: str = ""
    graph_inputs: list[str] | None = None

    def request_inputs(self, sent: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A client's tensors by `request.<name>`, refused as the local router refuses them
        (`evaluate.request_inputs`): a step that is first sees what no node has checked."""
        if self.graph_inputs is None:
            return unchecked(sent)
        return ev.request_inputs(self.graph, self.graph_inputs, sent, check_shape)

    @classmethod
    def parse(cls, data: Mapping[str, object]) -> StepWiring:
        """The wiring as `render.kserve.wiring` writes it; a malformed one is a settings
        error naming what is wrong, at load."""
        carry = data.get("carry")
        if carry is not None and not (
            isinstance(carry, list) and all(isinstance(ref, str) for ref in carry)
        ):
            raise InputError(SETTINGS_KEY, f"carry must be a list of tensor refs, got {carry!r}")
        try:
            return cls(
                step=str(data["step"]),
                kind=str(data["kind"]),
                inputs=_ref_lists(data.get("inputs", {}), "inputs"),
                outputs=_ref_lists(data.get("outputs", {}), "outputs"),
                passes={
                    name: PassThrough.parse(value, f"passes.{name}")
                    for name, value in as_object(data.get("passes", {}), "passes").items()
                },
                output_specs=[
                    _spec(spec, f"specs[{i}]")
                    for i, spec in enumerate(as_list(data.get("specs", []), "specs"))
                ],
                nodes=_strings(data.get("nodes", []), "nodes"),
                carry=None if carry is None else frozenset(carry),
                graph=str(data.get("graph", "")),
                graph_inputs=(
                    None
                    if data.get("graph_inputs") is None
                    else _strings(data["graph_inputs"], "graph_inputs")
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(SETTINGS_KEY, f"malformed step wiring: {exc}") from exc


def unchecked(sent: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A client's tensors by `request.<name>`, as they came (wiring that names no inputs)."""
    return {f"{REQUEST}.{name}": tensor for name, tensor in sent.items()}


Accept = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]


def _strings(value: object, where: str) -> list[str]:
    return [as_str(item, f"{where}[{i}]") for i, item in enumerate(as_list(value, where))]


def _ref_lists(value: object, where: str) -> dict[str, list[str]]:
    """name -> the tensor refs it reads (alternatives, first present wins)."""
    return {k: _strings(v, f"{where}.{k}") for k, v in as_object(value, where).items()}


def _spec(value: object, where: str) -> TensorSpec:
    """A declared output as the renderer writes it: `[name, datatype, shape]`."""
    name, datatype, shape = as_list(value, where)
    dims = as_list(shape, f"{where}[2]")
    return TensorSpec(
        as_str(name, f"{where}[0]"),
        as_str(datatype, f"{where}[1]"),
        tuple(as_int(d, f"{where}[2][{i}]") for i, d in enumerate(dims)),
    )


@dataclass
class Carry:
    """The request as it travels: its tensors by qualified name, left as V2 JSON (only those
    a step feeds are decoded), the client's parameters and id, plus the path and gate sides."""

    request: InferRequest[Tensor] = field(default_factory=InferRequest)
    trace: ev.Trace = field(default_factory=ev.Trace)
    when: dict[str, dict[str, bool]] = field(default_factory=dict)

    def absorb(self, body: JSONObject, accept: Accept = unchecked) -> None:
        """Add one carried body (a client request has no `carry`: its inputs are the graph's,
        which `accept` checks as the local router checks them)."""
        carry = body.get(CARRY)
        if not isinstance(carry, dict):
            sent = InferRequest.from_json_undecoded(body)
            self.request.inputs.update(accept(sent.inputs))
            self.request.parameters.update(sent.parameters)
            self.request.id = self.request.id or sent.id
            return
        # A step's body: its `parameters` are the trace's; the client's travel in `carry`.
        step = InferRequest.from_json_undecoded(
            {"inputs": body.get("inputs"), "id": body.get("id")}
        )
        for name, tensor in step.inputs.items():
            self.request.inputs.setdefault(name, tensor)
        parameters, trace, when = _read_carry(carry)
        self.request.parameters.update(parameters)
        self.trace.merge(trace)
        for gate, sides in when.items():
            self.when.setdefault(gate, {}).update(sides)
        self.request.id = self.request.id or step.id


def _read_carry(carry: JSONObject) -> tuple[JSONObject, ev.Trace, dict[str, dict[str, bool]]]:
    """A step body's `carry` as `respond` wrote it. It comes back through the client or the
    KServe router, so a wrong shape is the client's 400 naming where it is (an empty or
    absent field reads as empty, as before)."""
    try:
        parameters = as_object(carry.get("parameters") or {}, f"{CARRY}.parameters")
        path = _strings(carry.get("path") or [], f"{CARRY}.path")
        skipped = _strings(carry.get("skipped") or [], f"{CARRY}.skipped")
        when = {
            gate: {
                side: bool(flag) for side, flag in as_object(sides, f"{CARRY}.when.{gate}").items()
            }
            for gate, sides in as_object(carry.get("when") or {}, f"{CARRY}.when").items()
        }
    except JSONShapeError as exc:
        raise InputError(exc.where, str(exc).removeprefix(f"{exc.where}: ")) from None
    return parameters, ev.Trace(path, skipped), when


def gather(body: object, wiring: StepWiring | None = None) -> Carry:
    """One body, or an Ensemble's `{"<step>": body, ...}` merge (members that are merges
    themselves flattened), as one Carry. With the step's `wiring`, a client's request is
    checked against the graph's inputs and joined members' path follows the plan's order."""
    if not isinstance(body, dict):
        raise InputError("body", "expected a JSON object")
    carry = Carry()
    members = ensemble_members(body)
    if members is None:
        if "inputs" not in body and CARRY not in body:
            raise InputError(
                "body",
                "neither a V2 request, a graph step's response, nor an Ensemble's merge of them",
            )
        carry.absorb(body, unchecked if wiring is None else wiring.request_inputs)
        return carry
    for member in members:
        carry.absorb(member)  # a step's body, not the client's: nothing to accept
    if wiring is not None:
        carry.trace.in_order(wiring.nodes)
    return carry


def is_step_body(value: object) -> bool:
    """A graph step's answer, known by its shape (a `carry` object beside an `inputs` list),
    not by its keys alone: an Ensemble keys members by step name, and `carry` or `inputs`
    are node names a graph may use."""
    return (
        isinstance(value, dict)
        and isinstance(value.get(CARRY), dict)
        and isinstance(value.get("inputs"), list)
    )


def ensemble_members(body: JSONObject) -> list[JSONObject] | None:
    """The step bodies of an Ensemble's `{step: answer}` map, or None when `body` is none.
    A member that is itself a combine-less ensemble answers a map of its own: its bodies are
    the member's (the local router has every member's tensors too)."""
    if not body:
        return None
    found: list[JSONObject] = []
    for value in body.values():
        if is_step_body(value):
            found.append(as_object(value, "body"))
            continue
        inner = ensemble_members(value) if isinstance(value, dict) else None
        if inner is None:
            return None
        found.extend(inner)
    return found


def lookup(carry: Carry, refs: Sequence[str], wiring: StepWiring) -> Tensor | None:
    """The first alternative present; a cascade pass-through's tensor is what it forwards."""
    found = locate(carry, refs, wiring)
    return None if found is None else found[1]


def locate(carry: Carry, refs: Sequence[str], wiring: StepWiring) -> tuple[str, Tensor] | None:
    """`lookup`, with the ref the tensor was found under (a forwarded one's own ref), which
    names the step that made it."""
    for ref in refs:
        found = ev.first_present([ref], carry.request.inputs)
        if found is not None:
            return ref, found
        owner, _, tensor = ref.partition(".")
        passed = wiring.passes.get(owner)
        if passed is not None and carry.when.get(passed.gate, {}).get(passed.side):
            forwarded = locate(carry, passed.inputs.get(tensor, []), wiring)
            if forwarded is not None:
                return forwarded
    return None


def origin(carry: Carry, refs: Sequence[str], wiring: StepWiring) -> ev.Origin:
    """Who made the tensor `lookup` finds: a node, or the client (`request`)."""
    found = locate(carry, refs, wiring)
    return ev.origin_of(found[0]) if found is not None else (REQUEST, "")


async def run_step(wiring: StepWiring, body: object, call: Call) -> JSONObject:
    """Execute this step on a carried body and return the body for the next step.

    The rules (alternatives, an absent tensor, the gate, zero rows, parameters, the path) are
    `graph.evaluate`'s; this adapter only finds the carried tensors and calls the model.
    """
    carry = gather(body, wiring)
    produced: dict[str, Tensor] = {}
    if wiring.kind == "gate":
        refs = wiring.inputs.get("value", [])
        value = lookup(carry, refs, wiring)
        side = "otherwise"  # an absent tensor does not satisfy the condition
        if value is not None:
            # A tensor the gate cannot read is the fault of whoever made it.
            with ev.blamed(origin(carry, refs, wiring), f"gate '{wiring.step}'"):
                produced = await call({"value": renamed(value, "value")}, {})
            side = "then" if "then" in produced else "otherwise"
        carry.when.setdefault(wiring.step, {})[side] = True
    elif wiring.kind in ("node", "combine"):
        produced = await _evaluate(wiring, carry, call)
    for name, tensor in produced.items():
        carry.request.inputs[f"{wiring.step}.{name}"] = renamed(tensor, f"{wiring.step}.{name}")
    return respond(carry, wiring)


async def _evaluate(wiring: StepWiring, carry: Carry, call: Call) -> dict[str, Tensor]:
    """A node or combine step: called unless fed zero rows, then its empty outputs. A combine
    runs the graph's method (no request parameter), and an input it refuses is the fault of
    the member that made it (a 502 naming it), as in the local router."""
    found = ev.gather_feed(wiring.step, wiring.inputs, lambda refs: lookup(carry, refs, wiring))
    feed = {name: renamed(tensor, name) for name, tensor in found.items()}
    if wiring.kind == "node":
        carry.trace.reached(wiring.step)
    if ev.zero_rows(feed, ev.JSON):
        carry.trace.skip(wiring.step)
        return ev.empty_outputs(wiring.output_specs, ev.JSON)
    params = ev.step_parameters(wiring.step, wiring.kind, wiring.nodes, carry.request.parameters)
    if wiring.kind == "node":
        return await call(feed, params)

    def member(name: str) -> ev.Origin | None:  # whose scores the combiner refused
        refs = wiring.inputs.get(name)
        return None if refs is None else origin(carry, refs, wiring)

    with ev.blamed_inputs(member, f"combiner '{wiring.step}'"):
        return await call(feed, params)


def respond(carry: Carry, wiring: StepWiring) -> JSONObject:
    """The next step's body: the graph outputs known so far, and of the tensors only those a
    later step or an output reads (the router re-sends the whole body at every hop)."""
    outputs = []
    for name, refs in wiring.outputs.items():
        tensor = lookup(carry, refs, wiring)
        if tensor is not None:
            outputs.append(renamed(tensor, name))
    body: JSONObject = {
        "model_name": wiring.step,
        "parameters": carry.trace.parameters(),
        "outputs": outputs,
        "inputs": [
            renamed(t, name)
            for name, t in carry.request.inputs.items()
            if wiring.carry is None or name in wiring.carry
        ],
        CARRY: {
            "parameters": carry.request.parameters,
            "path": carry.trace.path,
            "skipped": carry.trace.skipped,
            "when": carry.when,
        },
    }
    if carry.request.id is not None:
        body["id"] = carry.request.id
    return body
