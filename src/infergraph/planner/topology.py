"""The graph as the simulator sees it: stages, their dependencies and branch gates.

This is the one module that reads the compiled graph plan (`infergraph.graph.plan`);
everything else in the planner works on `Topology`, which tests build directly. Cascade
pass-throughs and built-in combines are plan steps that run inside the router: stages with
no node, so no service time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph

if TYPE_CHECKING:
    from infergraph.graph.plan import GraphPlan


class TopologyError(InfergraphError):
    """The graph cannot be turned into stages the simulator can run."""


@dataclass(frozen=True)
class Stage:
    """One plan step. `node` is the graph node it runs on (None: inside the router, free)."""

    name: str
    node: str | None
    depends_on: frozenset[str] = frozenset()
    branch: tuple[tuple[str, str], ...] = ()  # (gate stage, "then" | "otherwise"), outermost first
    is_gate: bool = False


@dataclass(frozen=True)
class Topology:
    """Stages in topological order; the graph is done when every stage is done or skipped."""

    stages: tuple[Stage, ...]
    gate_labels: dict[str, str] = field(default_factory=dict)  # gate -> condition text

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for stage in self.stages:
            missing = stage.depends_on - seen
            if missing:
                raise TopologyError(
                    f"stage '{stage.name}' depends on {sorted(missing)}, not earlier stages"
                )
            for gate, side in stage.branch:
                if gate not in seen:
                    raise TopologyError(f"stage '{stage.name}' is gated by unknown '{gate}'")
                if side not in ("then", "otherwise"):
                    raise TopologyError(f"stage '{stage.name}': branch side '{side}'")
            seen.add(stage.name)

    @property
    def nodes(self) -> list[str]:
        return [s.node for s in self.stages if s.node is not None]

    @property
    def gates(self) -> list[str]:
        return [s.name for s in self.stages if s.is_gate]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def nodes_on_side(self, gate: str, side: str) -> list[str]:
        return [s.node for s in self.stages if s.node and (gate, side) in s.branch]


class _StepLike(Protocol):
    name: str
    kind: str
    node: Any
    depends_on: frozenset[str]
    branch: tuple[Any, ...]


def from_steps(steps: Iterable[_StepLike], labels: dict[str, str] | None = None) -> Topology:
    """Plan steps (`GraphPlan.steps`, topological order) -> stages."""
    stages = []
    for step in steps:
        node = step.node.name if step.kind == "node" and step.node is not None else None
        stages.append(
            Stage(
                name=step.name,
                node=node,
                depends_on=frozenset(step.depends_on),
                branch=tuple((b.gate, b.side) for b in step.branch),
                is_gate=step.kind == "gate",
            )
        )
    return Topology(tuple(stages), dict(labels or {}))


def topology_of(graph: InferenceGraph | GraphPlan) -> Topology:
    """The graph's stages from its compiled plan (compiled here when given a graph)."""
    from infergraph.graph.plan import plan_of

    plan = plan_of(graph)
    labels = {
        s.name: f"{s.condition.tensor} {s.condition.op} {s.condition.value}"
        for s in plan.steps
        if s.kind == "gate" and s.condition is not None
    }
    return from_steps(plan.steps, labels)
