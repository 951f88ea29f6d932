"""Topology checks that need the component interfaces: run before anything starts.

Walks the step tree in execution order, tracking which tensors exist at each
point, so a reference to a tensor that no earlier step produces (including a
cycle) is caught with the path of the offending step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infergraph.components.base import Component, TensorSpec
from infergraph.components.registry import component_class
from infergraph.errors import GraphValidationError, SettingsError
from infergraph.graph.model import (
    REQUEST,
    EnsembleStep,
    InferenceGraph,
    NodeStep,
    SequenceStep,
    Step,
    WhenStep,
)

NUMERIC = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
}


@dataclass
class Scope:
    """Tensors available at a point of execution: qualified refs and the last step's outputs."""

    available: dict[str, TensorSpec] = field(default_factory=dict)
    current: dict[str, TensorSpec] = field(default_factory=dict)

    def copy(self) -> Scope:
        return Scope(dict(self.available), dict(self.current))


def split_alternatives(ref: str) -> list[str]:
    """`a.x | request.x`: the first alternative that exists at run time wins."""
    return [part.strip() for part in ref.split("|") if part.strip()]


def shapes_compatible(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


class _Checker:
    def __init__(self, graph: InferenceGraph) -> None:
        self.graph = graph
        self.problems: list[str] = []
        self.nodes = {n.name: n for n in graph.spec.nodes}
        self.classes: dict[str, type[Component]] = {}
        self.used: dict[str, str] = {}
        for i, node in enumerate(graph.spec.nodes):
            try:
                self.classes[node.name] = component_class(node.family)
            except (SettingsError, ImportError) as exc:
                self.problems.append(f"spec.nodes[{i}] ({node.name}): {exc}")
                continue
            cls = self.classes[node.name]
            if node.resources.gpu > 0 and not cls.uses_gpu:
                self.problems.append(
                    f"spec.nodes[{i}] ({node.name}): asks for {node.resources.gpu} GPU but "
                    f"family '{node.family}' cannot use one"
                )

    def run(self) -> None:
        scope = Scope()
        for decl in self.graph.spec.inputs:
            spec = TensorSpec(decl.name, decl.datatype, tuple(decl.shape))
            scope.available[f"{REQUEST}.{decl.name}"] = spec
            scope.current[decl.name] = spec
        self.step(self.graph.spec.graph, scope, "spec.graph")
        for name in self.nodes:
            if name not in self.used:
                self.problems.append(f"node '{name}' is declared but no step runs it")

    def step(self, step: Step, scope: Scope, path: str) -> Scope:
        if isinstance(step, NodeStep):
            return self.node_step(step, scope, path)
        if isinstance(step, SequenceStep):
            for i, sub in enumerate(step.sequence):
                scope = self.step(sub, scope, f"{path}.sequence[{i}]")
            return scope
        if isinstance(step, EnsembleStep):
            return self.ensemble(step, scope, path)
        if isinstance(step, WhenStep):
            return self.when(step, scope, path)
        raise TypeError(step)

    def mark_used(self, name: str, path: str) -> bool:
        if name not in self.nodes:
            self.problems.append(f"{path}: unknown node '{name}'")
            return False
        if name in self.used:
            self.problems.append(
                f"{path}: node '{name}' already runs at {self.used[name]}; a node runs once "
                "per graph (declare a second node to reuse a model)"
            )
            return False
        self.used[name] = path
        return True

    def resolve(self, ref: str, scope: Scope, path: str, consumer: str) -> TensorSpec | None:
        found = None
        for alt in split_alternatives(ref):
            owner, _, tensor = alt.partition(".")
            if not tensor:
                self.problems.append(f"{path}: reference '{alt}' must be <node>.<tensor>")
                return None
            if owner == consumer:
                self.problems.append(
                    f"{path}: node '{consumer}' consumes its own output '{alt}' (cycle)"
                )
                return None
            if owner != REQUEST and owner not in self.nodes:
                self.problems.append(f"{path}: reference '{alt}' names unknown node '{owner}'")
                return None
            if alt in scope.available and found is None:
                found = scope.available[alt]
        if found is None:
            owners = {a.partition(".")[0] for a in split_alternatives(ref)}
            later = [o for o in owners if o in self.nodes and o not in self.used]
            why = (
                f"node(s) {', '.join(sorted(later))} run later or not at all (cycle or order)"
                if later
                else "no earlier step produces it"
            )
            self.problems.append(f"{path}: tensor '{ref}' is consumed but {why}")
        return found

    def node_step(self, step: NodeStep, scope: Scope, path: str) -> Scope:
        if not self.mark_used(step.node, path):
            return scope
        cls = self.classes.get(step.node)
        if cls is None:
            return scope
        out = scope.copy()
        if cls.passthrough:
            given = {
                name: self.resolve(ref, scope, f"{path}.inputs.{name}", step.node)
                for name, ref in step.inputs.items()
            }
            produced = {k: v for k, v in given.items() if v is not None} or dict(scope.current)
        else:
            wanted = {s.name: s for s in cls.inputs}
            for name in step.inputs:
                if name not in wanted:
                    self.problems.append(
                        f"{path}.inputs.{name}: node '{step.node}' ({cls.family}) has no input "
                        f"'{name}'; its inputs are {', '.join(wanted)}"
                    )
            for name, spec in wanted.items():
                if name in step.inputs:
                    src = self.resolve(step.inputs[name], scope, f"{path}.inputs.{name}", step.node)
                elif spec.optional and step.inputs:
                    src = None  # alternatives (image / pixel_values): only what is mapped
                else:
                    src = scope.current.get(name) or scope.available.get(f"{REQUEST}.{name}")
                    if src is None and not spec.optional:
                        self.problems.append(
                            f"{path}: input '{name}' of node '{step.node}' is consumed but no "
                            f"earlier step produces a tensor '{name}'; map it with inputs:"
                        )
                if src is not None:
                    self.check_types(src, spec, f"{path}: input '{name}' of node '{step.node}'")
            produced = {s.name: s for s in cls.outputs}
        for name, spec in produced.items():
            out.available[f"{step.node}.{name}"] = spec
        out.current = dict(produced)
        return out

    def check_types(self, src: TensorSpec, dst: TensorSpec, where: str) -> None:
        if src.datatype != dst.datatype and not (
            src.datatype in NUMERIC and dst.datatype in NUMERIC and dst.datatype.startswith("FP")
        ):
            self.problems.append(
                f"{where}: datatype mismatch, producer gives {src.datatype}, consumer takes "
                f"{dst.datatype}"
            )
        elif not shapes_compatible(src.shape, dst.shape):
            self.problems.append(
                f"{where}: shape mismatch, producer gives {list(src.shape)}, consumer takes "
                f"{list(dst.shape)}"
            )

    def ensemble(self, step: EnsembleStep, scope: Scope, path: str) -> Scope:
        results = [
            self.step(member, scope, f"{path}.ensemble[{i}]")
            for i, member in enumerate(step.ensemble)
        ]
        out = scope.copy()
        for res in results:
            out.available.update(res.available)
        combine = step.combine
        if combine.node is not None:
            inputs = {}
            for res in results:
                inputs.update(res.current)
            inner = Scope(out.available, inputs)
            if not self.mark_used(combine.node, f"{path}.combine"):
                return out
            cls = self.classes.get(combine.node)
            produced = {s.name: s for s in cls.outputs} if cls else {}
            for name, spec in produced.items():
                out.available[f"{combine.node}.{name}"] = spec
            out.current = produced
            del inner
            return out
        if combine.method == "merge":
            # Every tensor a member produced, qualified by its node: names would collide.
            out.current = {
                ref: spec for ref, spec in out.available.items() if ref not in scope.available
            }
            return out
        for i, res in enumerate(results):
            spec = res.current.get(combine.tensor)
            if spec is None:
                self.problems.append(
                    f"{path}.ensemble[{i}]: member does not output '{combine.tensor}' needed by "
                    f"combine method '{combine.method}'"
                )
            elif spec.datatype not in ("FP32", "FP16", "FP64"):
                self.problems.append(
                    f"{path}.ensemble[{i}]: '{combine.tensor}' is {spec.datatype}; "
                    f"'{combine.method}' needs floating-point scores"
                )
        out.current = {
            "scores": TensorSpec("scores", "FP32", (-1, -1)),
            "label_index": TensorSpec("label_index", "INT64", (-1,)),
        }
        return out

    def when(self, step: WhenStep, scope: Scope, path: str) -> Scope:
        cond = step.when
        spec = self.resolve(cond.tensor, scope, f"{path}.when.tensor", consumer="")
        if spec is not None:
            numeric_op = cond.op in ("lt", "le", "gt", "ge")
            if numeric_op and spec.datatype not in NUMERIC:
                self.problems.append(
                    f"{path}.when: op '{cond.op}' needs a numeric tensor; '{cond.tensor}' is "
                    f"{spec.datatype}"
                )
            if numeric_op and not isinstance(cond.value, (int, float)):
                self.problems.append(f"{path}.when: op '{cond.op}' needs a number as value")
            if cond.op in ("in", "not_in") and not isinstance(cond.value, list):
                self.problems.append(f"{path}.when: op '{cond.op}' needs a list as value")
        then = self.step(step.then, scope, f"{path}.then")
        other = self.step(step.otherwise, scope, f"{path}.otherwise") if step.otherwise else scope
        out = scope.copy()
        # Tensors from either branch may be referenced with `a | b` fallbacks downstream.
        out.available.update(then.available)
        out.available.update(other.available)
        out.current = {**other.current, **then.current}
        return out


def validate_topology(graph: InferenceGraph) -> None:
    checker = _Checker(graph)
    if not checker.problems:
        checker.run()
    if checker.problems:
        raise GraphValidationError(graph.name, checker.problems)
