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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import aiohttp
import orjson

from infergraph.components.base import ComponentSettings
from infergraph.components.plumbing import Combiner
from infergraph.errors import InputError, NodeError
from infergraph.graph import evaluate as ev
from infergraph.graph.model import REQUEST, InferenceGraph
from infergraph.graph.plan import GraphPlan, PlanStep, Source, plan_of
from infergraph.graph.wire import Tensor, renamed
from infergraph.json_types import JSONObject
from infergraph.runner import upstream
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
    for and writes it as JSON or the binary extension."""

    model_name: str
    id: str | None
    parameters: JSONObject
    outputs: list[Tensor]


@dataclass
class Run:
    """One request in flight: tensors by `step.tensor`, gate decisions, timings, trace."""

    tensors: dict[str, Tensor]
    parameters: JSONObject
    headers: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trace: ev.Trace = field(default_factory=ev.Trace)

    def find(self, refs: Sequence[str]) -> Tensor | None:
        return ev.first_present(refs, self.tensors)

    def lookup(self, sources: tuple[Source, ...]) -> Tensor | None:
        return self.find(ev.alternatives(sources))


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
        for name, sources in self.plan.outputs.items():
            tensor = run.lookup(sources)
            if tensor is not None:
                outputs.append(renamed(tensor, name))
        return {
            "model_name": self.graph.name,
            "id": request.id,
            "parameters": {**run.timings, **run.trace.parameters()},
            "outputs": outputs,
        }

    def request_tensors(self, request: InferRequest[Tensor]) -> dict[str, Tensor]:
        """The request's tensors by `request.<input>`; each must be one the graph declares."""
        declared = {t.name for t in self.graph.spec.inputs}
        tensors: dict[str, Tensor] = {}
        for name, tensor in request.inputs.items():
            if name not in declared:
                raise InputError(
                    name, f"graph '{self.graph.name}' takes inputs {', '.join(sorted(declared))}"
                )
            tensors[f"{REQUEST}.{name}"] = tensor
        # Every declared input is required: without one a node's feed is never produced,
        # which is the client's error (400), as on Seldon v2 and KServe, not a node's (502).
        missing = sorted(declared - {name.removeprefix(f"{REQUEST}.") for name in tensors})
        if missing:
            raise InputError(
                missing[0],
                f"missing: graph '{self.graph.name}' takes inputs {', '.join(sorted(declared))}",
            )
        return tensors

    async def run_step(self, step: PlanStep, run: Run, done: dict[str, asyncio.Event]) -> None:
        for dep in step.depends_on:
            await done[dep].wait()
        try:
            if all(run.decisions.get(b.gate) == b.side for b in step.branch):
                for name, tensor in (await self.execute(step, run)).items():
                    run.tensors[f"{step.name}.{name}"] = tensor
        finally:
            done[step.name].set()

    def feed(self, step: PlanStep, run: Run) -> dict[str, Tensor]:
        inputs = {name: ev.alternatives(sources) for name, sources in step.inputs.items()}
        return ev.gather_feed(step.name, inputs, run.find)

    async def execute(self, step: PlanStep, run: Run) -> dict[str, Tensor]:
        """The step's outputs; the rules (gate, zero rows, path) are `graph.evaluate`'s."""
        if step.kind == "gate":
            value = run.lookup(step.inputs.get("value", ()))
            condition = step.condition.model_dump() if step.condition is not None else None
            array = from_tensor(value) if value is not None else None
            run.decisions[step.name] = ev.gate_side(condition, array, "value")
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
            return combine_scores(feed, str(step.method))
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
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise NodeError(name, f"returned non-JSON (HTTP {status})", 502) from None
        if not isinstance(reply, dict):
            kind = type(reply).__name__
            raise NodeError(name, f"returned JSON {kind}, not an object (HTTP {status})", 502)
        if status != 200:
            detail = reply.get("error") or reply.get("detail") or raw[:200].decode(errors="replace")
            # The node's own 4xx (a 413 for an oversize input, a 404 for a model it lacks),
            # as the KServe router relays a step's status; anything else is a bad gateway.
            code = status if 400 <= status < 500 else 502
            raise NodeError(name, f"HTTP {status}: {detail}", code)
        for key, value in (reply.get("parameters") or {}).items():
            if key.endswith("_ms") or key == "batch_size":
                run.timings[f"{name}.{key}"] = value
        return {t["name"]: t for t in reply.get("outputs", [])}


def combine_scores(feed: dict[str, Tensor], method: str) -> dict[str, Tensor]:
    """The built-in ensemble combine: the same `combiner` component a cluster runs."""
    combiner = Combiner(ComponentSettings(options={"method": method}))
    result = combiner.predict({name: from_tensor(tensor, name) for name, tensor in feed.items()})
    return {name: array_tensor(name, array) for name, array in result.outputs.items()}
