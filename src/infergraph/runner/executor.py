"""Executes an InferenceGraph's topology against node endpoints, fully async.

The semantics match what the cluster engines do: a `when` routes the whole
request (Seldon v1 ROUTER, Seldon v2 triggers), an ensemble fans out in
parallel and joins, a node fed zero rows is skipped and yields empty tensors.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson

from infergraph.components.base import TensorSpec
from infergraph.components.conditions import evaluate
from infergraph.components.registry import component_class
from infergraph.errors import InputError, NodeError
from infergraph.graph.model import (
    REQUEST,
    Condition,
    EnsembleStep,
    InferenceGraph,
    NodeStep,
    SequenceStep,
    Step,
    WhenStep,
)
from infergraph.graph.validate import split_alternatives
from infergraph.runner.tensors import Tensor, as_array, empty_like, from_array, renamed, rows


@dataclass
class ExecState:
    """Tensors produced so far (by qualified ref), the last step's outputs, and timings."""

    tensors: dict[str, Tensor]
    current: dict[str, Tensor]
    parameters: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)

    def fork(self) -> ExecState:
        return ExecState(
            dict(self.tensors), dict(self.current), self.parameters, self.timings, self.path
        )


class GraphExecutor:
    """Runs one graph; `node_urls` maps node name -> its V2 infer URL."""

    def __init__(
        self, graph: InferenceGraph, node_urls: dict[str, str], session: aiohttp.ClientSession
    ) -> None:
        self.graph = graph
        self.node_urls = node_urls
        self.session = session
        self.nodes = {n.name: n for n in graph.spec.nodes}
        self.outputs: dict[str, tuple[TensorSpec, ...]] = {
            n.name: component_class(n.family).outputs for n in graph.spec.nodes
        }
        self.passthrough = {n.name: component_class(n.family).passthrough for n in graph.spec.nodes}

    async def infer(self, request: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InputError("inputs", "the request has no inputs")
        declared = {t.name for t in self.graph.spec.inputs}
        tensors: dict[str, Tensor] = {}
        current: dict[str, Tensor] = {}
        for tensor in inputs:
            if not isinstance(tensor, dict) or "name" not in tensor:
                raise InputError("inputs", "every input needs a name, datatype, shape and data")
            if tensor["name"] not in declared:
                raise InputError(
                    tensor["name"],
                    f"graph '{self.graph.name}' takes inputs {', '.join(sorted(declared))}",
                )
            tensors[f"{REQUEST}.{tensor['name']}"] = tensor
            current[tensor["name"]] = tensor
        state = ExecState(tensors, current, dict(request.get("parameters") or {}))
        state = await self.run(self.graph.spec.graph, state)
        state.timings["graph.total_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        parameters: dict[str, Any] = {**state.timings, "graph.path": ",".join(state.path)}
        return {
            "model_name": self.graph.name,
            "id": request.get("id"),
            "parameters": parameters,
            "outputs": [renamed(t, name) for name, t in state.current.items()],
        }

    async def run(self, step: Step, state: ExecState) -> ExecState:
        if isinstance(step, NodeStep):
            return await self.node(step, state)
        if isinstance(step, SequenceStep):
            for sub in step.sequence:
                state = await self.run(sub, state)
            return state
        if isinstance(step, EnsembleStep):
            return await self.ensemble(step, state)
        if isinstance(step, WhenStep):
            if self.holds(step.when, state):
                return await self.run(step.then, state)
            if step.otherwise is not None:
                return await self.run(step.otherwise, state)
            return state
        raise TypeError(step)

    def lookup(self, ref: str, state: ExecState) -> Tensor | None:
        for alt in split_alternatives(ref):
            if alt in state.tensors:
                return state.tensors[alt]
        return None

    def holds(self, cond: Condition, state: ExecState) -> bool:
        """A missing or empty tensor does not satisfy a condition (nothing to route on)."""
        tensor = self.lookup(cond.tensor, state)
        if tensor is None or rows(tensor) == 0:
            return False
        return evaluate(cond.model_dump(), as_array(tensor), cond.tensor)

    async def node(self, step: NodeStep, state: ExecState) -> ExecState:
        name = step.node
        feed: dict[str, Tensor] = {}
        for input_name, ref in step.inputs.items():
            tensor = self.lookup(ref, state)
            if tensor is None:
                raise NodeError(name, f"input '{input_name}': tensor '{ref}' was not produced")
            feed[input_name] = tensor
        if self.passthrough[name]:
            if not feed:
                feed = dict(state.current)
        else:
            # Unmapped inputs flow in by name: the previous step's outputs, then the request's.
            # Optional ones only when nothing was mapped (image vs pixel_values are alternatives).
            for spec in component_class(self.nodes[name].family).inputs:
                if spec.name not in feed and not (spec.optional and step.inputs):
                    tensor = state.current.get(spec.name) or state.tensors.get(
                        f"{REQUEST}.{spec.name}"
                    )
                    if tensor is not None:
                        feed[spec.name] = tensor
        state.path.append(name)
        if any(rows(t) == 0 for t in feed.values()):
            produced = {s.name: empty_like(s) for s in self.outputs[name]}
            state.timings[f"{name}.skipped"] = 1
        else:
            produced = await self.call(name, feed, state)
        out = ExecState(dict(state.tensors), produced, state.parameters, state.timings, state.path)
        for tensor_name, tensor in produced.items():
            out.tensors[f"{name}.{tensor_name}"] = tensor
        return out

    def node_parameters(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Unprefixed request parameters go to every node; `<node>.<key>` only to that node."""
        out = {}
        for key, value in params.items():
            owner, dot, rest = key.partition(".")
            if dot and owner in self.nodes:
                if owner == name:
                    out[rest] = value
            else:
                out[key] = value
        return out

    async def call(self, name: str, feed: dict[str, Tensor], state: ExecState) -> dict[str, Tensor]:
        node = self.nodes[name]
        body: dict[str, Any] = {"inputs": [renamed(t, k) for k, t in feed.items()]}
        params = self.node_parameters(name, state.parameters)
        if params:
            body["parameters"] = params
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=node.timeout_ms / 1000.0)
        try:
            async with self.session.post(
                self.node_urls[name],
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise NodeError(name, f"timed out after {node.timeout_ms:g} ms", 504) from None
        except aiohttp.ClientError as exc:
            raise NodeError(name, f"unreachable: {exc}", 502) from None
        state.timings[f"{name}.total_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise NodeError(name, f"returned non-JSON (HTTP {status})", 502) from None
        if status != 200:
            detail = reply.get("error") or reply.get("detail") or raw[:200].decode(errors="replace")
            code = 400 if 400 <= status < 500 else 502
            raise NodeError(name, f"HTTP {status}: {detail}", code)
        for key, value in (reply.get("parameters") or {}).items():
            if key.endswith("_ms") or key == "batch_size":
                state.timings[f"{name}.{key}"] = value
        return {t["name"]: t for t in reply.get("outputs", [])}

    async def ensemble(self, step: EnsembleStep, state: ExecState) -> ExecState:
        try:
            async with asyncio.TaskGroup() as group:  # a failing member cancels its siblings
                tasks = [group.create_task(self.run(m, state.fork())) for m in step.ensemble]
        except ExceptionGroup as group_error:
            # Report the first member's failure as it is: it already names its node.
            raise group_error.exceptions[0] from None
        results = [t.result() for t in tasks]
        merged = state.fork()
        for res in results:
            merged.tensors.update(res.tensors)
        combine = step.combine
        if combine.node is not None:
            feed: dict[str, Tensor] = {}
            for i, res in enumerate(results):
                for key, tensor in res.current.items():
                    feed[f"{key}_{i}"] = tensor
            merged.current = feed
            return await self.node(NodeStep(node=combine.node), merged)
        if combine.method == "merge":
            merged.current = {
                ref: t for ref, t in merged.tensors.items() if ref not in state.tensors
            }
            return merged
        arrays = []
        for res in results:
            tensor = res.current.get(combine.tensor)
            if tensor is None:
                raise NodeError("ensemble", f"a member returned no '{combine.tensor}' tensor")
            arrays.append(as_array(tensor).astype(np.float32))
        stacked = np.stack(arrays)
        if combine.method == "vote":
            votes = stacked.argmax(axis=-1)
            scores = np.zeros(stacked.shape[1:], dtype=np.float32)
            for member_votes in votes:
                scores[np.arange(len(member_votes)), member_votes] += 1.0 / len(arrays)
        else:
            scores = stacked.mean(axis=0)
        merged.current = {
            "scores": from_array("scores", scores),
            "label_index": from_array("label_index", scores.argmax(axis=-1)),
        }
        merged.path.append(f"combine:{combine.method}")
        return merged
