"""Executes a compiled graph plan against node endpoints, fully async.

Every step starts as soon as the steps it depends on have finished, so ensemble members
run in parallel. Gates, cascade pass-throughs and built-in combiners run here in the
router; node steps are V2 calls to MLServer. The meaning of each step (its inputs, its
branch, the zero-row rule) comes from `infergraph.graph.plan`, the same plan the
renderers translate, so a graph behaves here as it does on a cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import aiohttp
import orjson

from infergraph.components.base import ComponentSettings
from infergraph.components.plumbing import Combiner
from infergraph.errors import NodeError
from infergraph.graph import evaluate as ev
from infergraph.graph.evaluate import Origin, blamed
from infergraph.graph.model import REQUEST, InferenceGraph
from infergraph.graph.plan import GraphPlan, PlanStep, Source, plan_of
from infergraph.graph.wire import Tensor, check_shape, renamed
from infergraph.json_types import JSONObject
from infergraph.runner import replies, upstream
from infergraph.serving.binary import array_tensor, json_bytes
from infergraph.tensors.request import InferRequest
from infergraph.tensors.v2json import from_tensor

# Forwarded from the graph request to every node call: a W3C trace context and a request id,
# as Seldon v1's executor (which forwards every header) and KServe's router (the headers its
# PROPAGATE_HEADERS matches, kserve cmd/router/main.go:130-147) pass them on.
TRACE_HEADERS = ("traceparent", "tracestate", "x-request-id")


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The trace headers of an incoming request, to pass on to the nodes it calls."""
    return {name: headers[name] for name in TRACE_HEADERS if name in headers}


class GraphReply(TypedDict):
    """The graph's V2 answer as the executor builds it; the router picks the outputs asked
    for and writes it as JSON or the binary extension. `origins` (output -> `Origin`) is
    the router's, not the client's: it names the node whose output cannot be encoded."""

    model_name: str
    id: str | None
    parameters: JSONObject
    outputs: list[Tensor]
    origins: dict[str, Origin]


@dataclass
class Run:
    """One request in flight: tensors by `step.tensor`, where each came from, the steps that
    ran, gate decisions, timings, trace."""

    tensors: dict[str, Tensor]
    parameters: JSONObject
    headers: dict[str, str] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    ran: set[str] = field(default_factory=set)
    decisions: dict[str, str] = field(default_factory=dict)
    timings: JSONObject = field(default_factory=dict)
    trace: ev.Trace = field(default_factory=ev.Trace)

    def find(self, refs: Sequence[str]) -> Tensor | None:
        return ev.first_present(refs, self.tensors)

    def lookup(self, sources: tuple[Source, ...]) -> Tensor | None:
        return self.find(ev.alternatives(sources))

    def origin(self, sources: tuple[Source, ...]) -> Origin:
        """Where the tensor `lookup` finds came from (`first_present`'s pick): the step that
        answered it, or for a pass-through's output the origin of what it forwarded."""
        for source in sources:
            if self.tensors.get(source.ref) is not None:
                return self.origins.get(source.ref, (source.step, source.tensor))
        return (REQUEST, "")


class GraphExecutor:
    """Runs one graph's compiled plan; `node_urls` maps node name -> its V2 infer URL."""

    def __init__(
        self,
        source: GraphPlan | InferenceGraph,
        node_urls: Mapping[str, str],
        session: aiohttp.ClientSession,
    ) -> None:
        self.plan: GraphPlan = plan_of(source)
        self.graph = graph = self.plan.graph
        self.node_urls = node_urls
        self.session = session
        self.node_names = {n.name for n in graph.spec.nodes}
        self.declared = [t.name for t in graph.spec.inputs]

    async def infer(
        self, request: InferRequest[Tensor], headers: Mapping[str, str] | None = None
    ) -> GraphReply:
        """Run the graph; `headers` (trace context, request id) go with every node call, and
        the request's parameters (the protocol's already taken out) to the nodes they name."""
        started = time.perf_counter()
        run = Run(self.request_tensors(request), dict(request.parameters), dict(headers or {}))
        done: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in self.plan.steps}
        try:
            async with asyncio.TaskGroup() as group:  # a failing step cancels the others
                for step in self.plan.steps:
                    group.create_task(self.run_step(step, run, done))
        except ExceptionGroup as group_error:
            # Report the first failure as it is: it already names its node.
            raise group_error.exceptions[0] from None
        run.timings["graph.total_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        outputs: list[Tensor] = []
        origins: dict[str, Origin] = {}
        for name, sources in self.plan.outputs.items():
            tensor = run.lookup(sources)
            if tensor is not None:
                outputs.append(renamed(tensor, name))
                origins[name] = run.origin(sources)
        return {
            "model_name": self.graph.name,
            "id": request.id,
            "parameters": {**run.timings, **run.trace.parameters()},
            "outputs": outputs,
            "origins": origins,
        }

    def request_tensors(self, request: InferRequest[Tensor]) -> dict[str, Tensor]:
        """The request's tensors by `request.<input>`, checked before any node runs: each
        must be one the graph declares, present, and fill its shape (`evaluate.request_inputs`,
        the rule the KServe graph step's first step applies too)."""
        return ev.request_inputs(self.graph.name, self.declared, request.inputs, check_shape)

    async def run_step(self, step: PlanStep, run: Run, done: dict[str, asyncio.Event]) -> None:
        for dep in step.depends_on:
            await done[dep].wait()
        try:
            if all(run.decisions.get(b.gate) == b.side for b in step.branch):
                for name, tensor in (await self.execute(step, run)).items():
                    ref = f"{step.name}.{name}"
                    run.tensors[ref] = tensor
                    if step.kind == "pass" and name in step.inputs:  # forwarded: not its own
                        run.origins[ref] = run.origin(step.inputs[name])
                run.ran.add(step.name)
        finally:
            done[step.name].set()

    def feed(self, step: PlanStep, run: Run) -> dict[str, Tensor]:
        """The step's inputs; one a node that ran did not answer is that node's fault."""
        inputs = {name: ev.alternatives(sources) for name, sources in step.inputs.items()}
        return ev.gather_feed(step.name, inputs, run.find, self._answered(run))

    def _answered(self, run: Run) -> Callable[[str], bool]:
        return lambda step: step in self.node_names and step in run.ran

    def decide(self, step: PlanStep, run: Run) -> None:
        """A gate's side; a tensor it cannot read is the fault of whoever made it."""
        sources = step.inputs.get("value", ())
        value = run.lookup(sources)
        condition = step.condition.model_dump() if step.condition is not None else None
        with blamed(run.origin(sources), f"gate '{step.name}'"):
            array = from_tensor(value) if value is not None else None
            run.decisions[step.name] = ev.gate_side(condition, array, "value")

    def combine(self, step: PlanStep, feed: dict[str, Tensor], run: Run) -> dict[str, Tensor]:
        """The built-in combiner over the members' scores; a member's scores it cannot use
        (unreadable, or a shape the others lack) are that member's fault."""

        def origin(name: str) -> ev.Origin | None:
            return run.origin(step.inputs[name]) if name in step.inputs else None

        with ev.blamed_inputs(origin, f"combiner '{step.name}'"):
            return combine_scores(feed, str(step.method))

    async def execute(self, step: PlanStep, run: Run) -> dict[str, Tensor]:
        """The step's outputs; the rules (gate, zero rows, path) are `graph.evaluate`'s."""
        if step.kind == "gate":
            self.decide(step, run)
            return {}
        feed = self.feed(step, run)
        if step.kind == "pass":
            return feed
        if step.kind == "node":
            run.trace.reached(step.name)
        if ev.zero_rows(feed, ev.JSON):
            run.trace.skip(step.name)
            return ev.empty_outputs(step.outputs, ev.JSON)
        if step.kind == "combine":
            return self.combine(step, feed, run)
        return await self.call(step.name, feed, run)

    async def call(self, name: str, feed: dict[str, Tensor], run: Run) -> dict[str, Tensor]:
        node = self.graph.node(name)
        body: JSONObject = {"inputs": [renamed(t, k) for k, t in feed.items()]}
        params = ev.node_parameters(name, self.node_names, run.parameters)
        if params:
            body["parameters"] = params
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=node.timeout_ms / 1000.0)
        try:
            answer = await upstream.post(
                self.session,
                self.node_urls[name],
                json_bytes(body),  # the router's own tensors hold arrays (`array_tensor`)
                {**run.headers, "Content-Type": "application/json"},
                timeout,
            )
            raw, status = answer.body, answer.status
        except TimeoutError:
            raise NodeError(name, f"timed out after {node.timeout_ms:g} ms", 504) from None
        except aiohttp.ClientError as exc:
            raise NodeError(name, f"unreachable: {exc}", 502) from None
        run.timings[f"{name}.total_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        reply = node_reply(name, raw, status)
        outputs = replies.node_outputs(name, reply)
        run.timings.update(replies.node_timings(name, reply))
        return outputs


def node_reply(name: str, raw: bytes, status: int) -> JSONObject:
    """A node's answer as a JSON object. Its status is read first: an error answer keeps
    its 4xx and its text even when that text is no JSON (uvicorn's "Invalid HTTP request
    received.", a proxy's 413 page)."""
    try:
        reply: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if status == 200:
            raise NodeError(name, f"returned non-JSON (HTTP {status})", 502) from None
        reply = None
    if status != 200:
        # The node's own 4xx (a 413 for an oversize input, a 404 for a model it lacks),
        # as the KServe router relays a step's status, and its 503 (overloaded: its queue
        # is full, or unreachable behind a proxy): a retry may succeed, so the caller
        # should back off. Any other status is a bad gateway.
        code = status if 400 <= status < 500 or status == 503 else 502
        raise NodeError(name, f"HTTP {status}: {replies.error_detail(raw, reply)}", code)
    if not isinstance(reply, dict):
        kind = type(reply).__name__
        raise NodeError(name, f"returned JSON {kind}, not an object (HTTP {status})", 502)
    return reply


def combine_scores(feed: dict[str, Tensor], method: str) -> dict[str, Tensor]:
    """The built-in ensemble combine over the members' V2 JSON scores: the same `combiner`
    component a cluster runs (a score it cannot read is an `InputError` naming it)."""
    arrays = {name: from_tensor(t, name) for name, t in feed.items()}
    combiner = Combiner(ComponentSettings(options={"method": method}))
    result = combiner.predict(arrays)
    return {name: array_tensor(name, array) for name, array in result.outputs.items()}
