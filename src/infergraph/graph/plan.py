"""Compile an InferenceGraph once into the execution plan every consumer runs.

What a graph means is decided here and nowhere else: which tensor feeds each input (the
optional-input rule, `a.x | request.x` alternatives), how an ensemble is combined, which
branch of a `when` a step belongs to, and what the graph returns. The validator reports the
problems found while compiling; `graph.evaluate` applies the plan to each request, for the
local runner, the KServe graph step and the Seldon v1 unit alike; the renderers translate
it (flat steps for dataflow engines, the `root` block tree for tree-shaped ones); the
planner simulates it. No other module walks the `spec.graph` step tree, and consumers take
the compiled plan (`load_plan`, `parse_plan`, `plan_of`) rather than compile it again.

Semantics of a plan: a step runs when every `when` branch it sits under chose its side and
the steps it depends on have finished; steps with no dependency between them (ensemble
members) run in parallel; a gate decides on the whole request (reduce any/all over rows; a
missing or zero-row tensor does not satisfy the condition); a step fed a zero-row tensor is
not called and yields zero-row outputs.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from infergraph.components.base import Component, TensorSpec
from infergraph.components.registry import component_class
from infergraph.errors import GraphValidationError, SettingsError
from infergraph.graph.model import (
    REQUEST,
    Condition,
    EnsembleStep,
    InferenceGraph,
    Node,
    NodeStep,
    SequenceStep,
    Step,
    WhenStep,
    read_document,
    validate_schema,
)
from infergraph.json_types import JSONObject, Manifest
from infergraph.tensors.datatypes import V2_TO_NUMPY

StepKind = Literal["node", "gate", "pass", "combine"]
Side = Literal["then", "otherwise"]
GATE_FAMILY = "gate"
PASS_FAMILY = "identity"
COMBINER_FAMILY = "combiner"
# Every datatype but BYTES: the one table's keys.
NUMERIC = frozenset(V2_TO_NUMPY)


@dataclass(frozen=True)
class Source:
    """One way a tensor can arrive: the step that produces it (or `request`) and its name."""

    step: str
    tensor: str

    @property
    def ref(self) -> str:
        return f"{self.step}.{self.tensor}"


@dataclass(frozen=True)
class BranchRef:
    gate: str
    side: Side


@dataclass
class PlanStep:
    """One unit of execution: a graph node or a weightless helper (gate, pass, combine)."""

    name: str
    kind: StepKind
    family: str
    node: Node | None
    inputs: dict[str, tuple[Source, ...]]
    outputs: tuple[TensorSpec, ...]
    branch: tuple[BranchRef, ...]
    path: str
    role: str = "model"
    condition: Condition | None = None
    method: str | None = None

    @property
    def depends_on(self) -> frozenset[str]:
        deps = {s.step for alts in self.inputs.values() for s in alts if s.step != REQUEST}
        deps.update(b.gate for b in self.branch)
        return frozenset(deps)

    @property
    def local(self) -> bool:
        """Helpers run inside the local router; nodes on MLServer."""
        return self.kind != "node"


# -- the block tree, for engines whose graphs are trees (Seldon v1, KServe) -----------------
@dataclass
class UnitBlock:
    step: str


@dataclass
class ChainBlock:
    items: list[Block]


@dataclass
class FanOutBlock:
    """Members run in parallel on the same inputs; `combine` is the joining step, if any."""

    members: list[Block]
    combine: str | None


@dataclass
class RouteBlock:
    """`gate` picks `then` or `otherwise`; `passthrough` is the pass step of a cascade."""

    gate: str
    then: Block
    otherwise: Block | None
    passthrough: str | None


Block = UnitBlock | ChainBlock | FanOutBlock | RouteBlock


@dataclass
class GraphPlan:
    graph: InferenceGraph
    steps: list[PlanStep]
    outputs: dict[str, tuple[Source, ...]]
    root: Block

    def step(self, name: str) -> PlanStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def output_specs(self) -> list[TensorSpec]:
        """The graph's outputs as a client sees them: each name with its sources' datatype and
        the shape all of them fit (the compiler refuses sources that disagree: `type_clash`)."""
        specs = []
        for name, sources in self.outputs.items():
            each = [self.source_spec(source) for source in sources]
            shape = joined_shape([spec.shape for spec in each])
            specs.append(TensorSpec(name, each[0].datatype, shape))
        return specs

    def source_spec(self, source: Source) -> TensorSpec:
        """What `source` carries: a graph input as declared, else its step's output."""
        if source.step == REQUEST:
            found = next(t for t in self.graph.spec.inputs if t.name == source.tensor)
            return TensorSpec(found.name, found.datatype, tuple(found.shape))
        return next(t for t in self.step(source.step).outputs if t.name == source.tensor)

    def node_steps(self) -> list[PlanStep]:
        return [s for s in self.steps if s.kind == "node"]

    def helper_steps(self) -> list[PlanStep]:
        return [s for s in self.steps if s.kind != "node"]

    def carried_after(self, name: str | None) -> frozenset[str]:
        """The refs a request must still hold once step `name` ran (None: once every step ran).

        Engines that hand one growing body from step to step (the KServe graph step) drop the
        rest, so a request image does not travel every later hop. Needed are what a later step
        reads (a node's inputs, a gate's tested tensor, a combine's members) and what the
        graph returns. Plan order lists every step a body can reach after `name` after it
        (the other ensemble members and the other side of a `when` too, which only widens
        the set). A pass-through reads nothing itself: `pass.x` is its input `x` forwarded, so
        that input is needed wherever `pass.x` is, even when the plan lists the pass before
        `name` (on KServe a pass is no hop: its input is what travels).
        """
        later = self.steps[self.steps.index(self.step(name)) + 1 :] if name is not None else []
        readers = [st for st in later if st.kind != "pass"]
        wanted = [s for st in readers for alts in st.inputs.values() for s in alts]
        wanted += [s for alts in self.outputs.values() for s in alts]
        passes = {s.name: s for s in self.steps if s.kind == "pass"}
        needed: set[str] = set()
        while wanted:
            source = wanted.pop()
            if source.ref in needed:
                continue
            needed.add(source.ref)
            if source.step in passes:
                wanted += passes[source.step].inputs.get(source.tensor, ())
        return frozenset(needed)


# -- compilation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Produced:
    """A tensor as it exists at a point of the graph: its possible sources and its type.

    `clash` says how the two sides of a `when` that both make this name disagree on its type
    ("det.scores is FP32 [-1], cls2.scores is FP32 [-1, -1]"): harmless until a step reads
    the name or the graph answers with it, where `Compiler` refuses it."""

    sources: tuple[Source, ...]
    spec: TensorSpec
    clash: str = ""


@dataclass
class Scope:
    """Tensors existing at a point: qualified refs (`node.x`, `request.x`) and the last step's."""

    available: dict[str, Produced] = field(default_factory=dict)
    current: dict[str, Produced] = field(default_factory=dict)
    branch: tuple[BranchRef, ...] = ()

    def copy(self) -> Scope:
        return Scope(dict(self.available), dict(self.current), self.branch)


def node_parameters(node: str, nodes: Iterable[str], params: Mapping[str, object]) -> JSONObject:
    """Request parameters a node receives: unprefixed ones go to every node, `<node>.<key>`
    only to that node (as `<key>`). Every engine that carries request parameters uses this."""
    names = set(nodes)
    out: JSONObject = {}
    for key, value in params.items():
        owner, dot, rest = key.partition(".")
        if dot and owner in names:
            if owner == node:
                out[rest] = value
        else:
            out[key] = value
    return out


def split_alternatives(ref: str) -> list[str]:
    """`a.x | request.x`: the first alternative that exists at run time wins."""
    return [part.strip() for part in ref.split("|") if part.strip()]


def type_clash(named: Sequence[tuple[str, TensorSpec]]) -> str:
    """How the types of alternatives that may each arrive disagree ("a.x is FP32 [-1], b.y
    is BYTES [-1]"), or "" when they agree: one datatype, shapes that fit each other. A
    consumer and the graph's metadata see one type, so both must hold for every one."""
    agree = all(
        a.datatype == b.datatype and shapes_compatible(a.shape, b.shape)
        for (_, a), (_, b) in itertools.combinations(named, 2)
    )  # every pair: [-1, 4] fits [-1, -1] and [-1, -1] fits [-1, 7], but not 4 and 7
    return "" if agree else ", ".join(f"{ref} is {s.datatype} {list(s.shape)}" for ref, s in named)


def joined_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """One shape every one of `shapes` fits (they agree: `type_clash`): a dimension they all
    give, else -1. What the graph's metadata says of an output that more than one step makes."""
    return tuple(dims[0] if len(set(dims)) == 1 else -1 for dims in zip(*shapes, strict=True))


def shapes_compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def merged_by_reference(members: Iterable[Scope]) -> dict[str, Produced]:
    """A `merge` ensemble's result: each member tensor named by its qualified reference
    (`<step>.<tensor>`, its first source's), as a later step's `inputs:` reads it.

    Bare names would collide between members. The reference is the producer's, not the
    member's current name qualified again: a member that is itself a merge already names its
    tensors `b.x`, and prefixing that (`b.b.x`) would make the graph's answer depend on how
    deep the member sits. References cannot collide: every step runs once per graph.
    """
    return {p.sources[0].ref: p for scope in members for p in scope.current.values()}


class FreshNames:
    """`<kind>-<n>` names for synthesized steps that collide with no name already taken."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)
        self.counters: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        while True:
            index = self.counters.get(kind, 0)
            self.counters[kind] = index + 1
            name = f"{kind}-{index}"
            if name not in self.taken:
                self.taken.add(name)
                return name


class _Compiler:
    def __init__(self, graph: InferenceGraph) -> None:
        self.graph = graph
        self.problems: list[str] = []
        self.nodes = {n.name: n for n in graph.spec.nodes}
        self.classes: dict[str, type[Component]] = {}
        self.used: dict[str, str] = {}
        self.steps: list[PlanStep] = []
        self.fresh = FreshNames({*self.nodes, REQUEST})
        self.passes: dict[str, PlanStep] = {}  # gate -> pass step of a cascade
        for i, node in enumerate(graph.spec.nodes):
            try:
                cls = component_class(node.family)
            except (SettingsError, ImportError) as exc:
                self.problems.append(f"spec.nodes[{i}] ({node.name}): {exc}")
                continue
            self.classes[node.name] = cls
            if node.resources.gpu > 0 and not cls.uses_gpu:
                self.problems.append(
                    f"spec.nodes[{i}] ({node.name}): asks for {node.resources.gpu} GPU but "
                    f"family '{node.family}' cannot use one"
                )

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, tuple[Source, ...]], Block]:
        scope = Scope()
        for decl in self.graph.spec.inputs:
            spec = TensorSpec(decl.name, decl.datatype, tuple(decl.shape))
            produced = Produced((Source(REQUEST, decl.name),), spec)
            scope.available[f"{REQUEST}.{decl.name}"] = produced
            scope.current[decl.name] = produced
        scope, root = self.step(self.graph.spec.graph, scope, "spec.graph")
        for name in self.nodes:
            if name not in self.used:
                self.problems.append(f"node '{name}' is declared but no step runs it")
        return self.graph_outputs(scope), root

    def graph_outputs(self, scope: Scope) -> dict[str, tuple[Source, ...]]:
        declared = self.graph.spec.outputs
        if not declared:
            for name, produced in scope.current.items():
                if produced.clash:
                    self.problems.append(
                        f"spec.outputs: the graph answers with its last step's outputs, whose "
                        f"'{name}' takes the type of the side its `when` took "
                        f"({produced.clash}): declare spec.outputs, naming one side's tensor"
                    )
            return {name: p.sources for name, p in scope.current.items()}
        out: dict[str, tuple[Source, ...]] = {}
        for name, ref in declared.items():
            found = self.resolve(ref, scope, f"spec.outputs.{name}", consumer="")
            if found is not None:
                out[name] = found.sources
        return out

    def step(self, step: Step, scope: Scope, path: str) -> tuple[Scope, Block]:
        if isinstance(step, NodeStep):
            return self.node_step(step, scope, path)
        if isinstance(step, SequenceStep):
            items: list[Block] = []
            for i, sub in enumerate(step.sequence):
                scope, block = self.step(sub, scope, f"{path}.sequence[{i}]")
                items.append(block)
            return scope, items[0] if len(items) == 1 else ChainBlock(items)
        if isinstance(step, EnsembleStep):
            return self.ensemble(step, scope, path)
        if isinstance(step, WhenStep):
            return self.when(step, scope, path)
        raise TypeError(step)

    def add(self, step: PlanStep, scope: Scope, owner: str | None) -> Scope:
        """Record a step; its outputs become current (and `owner.x` refs when it is a node)."""
        self.steps.append(step)
        out = scope.copy()
        out.current = {}
        for spec in step.outputs:
            produced = Produced((Source(step.name, spec.name),), spec)
            if owner:
                out.available[f"{owner}.{spec.name}"] = produced
            out.current[spec.name] = produced
        return out

    # -- references ----------------------------------------------------------------------------
    def resolve(self, ref: str, scope: Scope, path: str, consumer: str) -> Produced | None:
        alternatives = split_alternatives(ref)
        found: list[Produced] = []
        for alt in alternatives:
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
            if alt in scope.available:
                found.append(scope.available[alt])
        if not found:
            later = sorted(
                {a.partition(".")[0] for a in alternatives} & (set(self.nodes) - set(self.used))
            )
            why = (
                f"node(s) {', '.join(later)} run later or not at all (cycle or order)"
                if later
                else "no earlier step produces it"
            )
            self.problems.append(f"{path}: tensor '{ref}' is consumed but {why}")
            return None
        return self.exclusive(found, scope, path, ref)

    def exclusive(self, found: list[Produced], scope: Scope, path: str, ref: str) -> Produced:
        """Alternatives as sources of which exactly one arrives.

        A branch's tensor exists only when its gate chose that side. An unconditional
        fallback after a cascade (a `when` with no `otherwise`) is forwarded through the
        cascade's pass step, so it arrives exactly when the branch did not run; once an
        unconditional alternative is reached, later ones can never win.
        """
        sources: list[Source] = []
        kept: list[Produced] = []  # the alternatives that can arrive
        for produced, source in ((p, s) for p in found for s in p.sources):
            if sources and self.gate_of(source) is None:
                if all(self.gate_of(s) is None for s in sources):
                    break
                cascade = self.cascade_of(sources)
                if cascade is None:
                    self.problems.append(
                        f"{path}: '{ref}' falls back to '{source.ref}', which exists whether "
                        "or not the `when` before it took its then-branch; with an explicit "
                        "otherwise branch only that branch's outputs can stand in"
                    )
                    break
                source = self.forward(cascade, source, found[0].spec, path)
            if source not in sources:
                sources.append(source)
            if produced not in kept:
                kept.append(produced)
        if len({self.gate_of(s) for s in sources}) > 1:
            self.problems.append(
                f"{path}: '{ref}' picks between branches of different `when` steps; only "
                "alternatives from the two sides of one `when` can be told apart"
            )
        if clash := type_clash([(p.sources[0].ref, p.spec) for p in kept]):
            self.problems.append(
                f"{path}: the alternatives of '{ref}' differ in type ({clash}); whichever "
                "arrives must have the one type its reader takes"
            )
        return Produced(tuple(sources), found[0].spec)

    def gate_of(self, source: Source) -> str | None:
        """The `when` whose side the source's step sits on, innermost; None outside any."""
        under = self.branch_of(source)
        return under[-1].gate if under else None

    def cascade_of(self, sources: list[Source]) -> PlanStep | None:
        gates = {gate for s in sources if (gate := self.gate_of(s)) is not None}
        if len(gates) != 1:
            return None
        return self.passes.get(next(iter(gates)))

    def forward(self, pass_step: PlanStep, source: Source, spec: TensorSpec, path: str) -> Source:
        for name, alts in pass_step.inputs.items():
            if alts == (source,):
                return Source(pass_step.name, name)
        name = source.tensor
        if name in pass_step.inputs:
            self.problems.append(
                f"{path}: pass-through '{pass_step.name}' already forwards a tensor named "
                f"'{name}'; rename one of them with inputs:"
            )
            return Source(pass_step.name, name)
        pass_step.inputs[name] = (source,)
        pass_step.outputs = (*pass_step.outputs, TensorSpec(name, spec.datatype, spec.shape))
        return Source(pass_step.name, name)

    # -- node steps ----------------------------------------------------------------------------
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

    def node_step(self, step: NodeStep, scope: Scope, path: str) -> tuple[Scope, Block]:
        block = UnitBlock(step.node)
        if not self.mark_used(step.node, path) or step.node not in self.classes:
            return scope, block
        cls = self.classes[step.node]
        inputs = self.node_inputs(step, cls, scope, path)
        outputs = (
            tuple(TensorSpec(k, p.spec.datatype, p.spec.shape) for k, p in inputs.items())
            if cls.passthrough
            else cls.outputs
        )
        plan_step = PlanStep(
            name=step.node,
            kind="node",
            family=cls.family,
            node=self.nodes[step.node],
            inputs={k: p.sources for k, p in inputs.items()},
            outputs=outputs,
            branch=scope.branch,
            path=path,
            role=step.role,
        )
        return self.add(plan_step, scope, step.node), block

    def node_inputs(
        self, step: NodeStep, cls: type[Component], scope: Scope, path: str
    ) -> dict[str, Produced]:
        """The one rule for what feeds a node.

        Mapped inputs come from their references. Unmapped ones flow in by name from the
        previous step's outputs, then the graph's inputs; optional ones only when nothing is
        mapped (`image` and `pixel_values` are alternatives). Pass-through families take
        their mapped inputs, else everything current.
        """
        where = f"node '{step.node}'"
        mapped = {
            name: self.resolve(ref, scope, f"{path}.inputs.{name}", step.node)
            for name, ref in step.inputs.items()
        }
        if cls.passthrough:
            given = {k: v for k, v in mapped.items() if v is not None}
            passed = given if step.inputs else dict(scope.current)
            for name, produced in passed.items():
                self.refuse_clash(produced, f"{path}: {where} passes on '{name}', which")
            return passed
        wanted = {s.name: s for s in cls.inputs}
        for name in step.inputs:
            if name not in wanted:
                self.problems.append(
                    f"{path}.inputs.{name}: {where} ({cls.family}) has no input '{name}'; "
                    f"its inputs are {', '.join(wanted)}"
                )
        inputs: dict[str, Produced] = {}
        for name, spec in wanted.items():
            if name in step.inputs:
                src = mapped.get(name)
            elif spec.optional and step.inputs:
                continue
            else:
                src = scope.current.get(name) or scope.available.get(f"{REQUEST}.{name}")
                if src is None and not spec.optional:
                    self.problems.append(
                        f"{path}: input '{name}' of {where} is consumed but no earlier step "
                        f"produces a tensor '{name}'; map it with inputs:"
                    )
            if src is not None and name not in step.inputs:
                self.refuse_clash(src, f"{path}: input '{name}' of {where} reads '{name}', which")
            if src is not None:
                self.check_types(src.spec, spec, f"{path}: input '{name}' of {where}")
                if not spec.optional:
                    self.check_arrives(src, scope.branch, f"{path}: input '{name}' of {where}")
                inputs[name] = src
        return inputs

    def check_arrives(self, produced: Produced, branch: tuple[BranchRef, ...], where: str) -> None:
        """A required input must exist whenever its step runs: one source under no branch
        the step is not under, or sources on both sides of one `when` the step is not under.
        A tensor only one side of a gate makes would otherwise reach a step that runs either
        way as a request that "lacks" it."""
        sides: dict[str, set[Side]] = {}
        for source in produced.sources:
            under = self.branch_of(source)
            if under == branch[: len(under)]:
                return
            if under[:-1] == branch[: len(under) - 1]:
                sides.setdefault(under[-1].gate, set()).add(under[-1].side)
        if any(len(covered) == 2 for covered in sides.values()):
            return
        gate, covered = next(iter(sides.items()), ("a `when`", {"then"}))
        refs = " | ".join(s.ref for s in produced.sources)
        self.problems.append(
            f"{where} reads '{refs}', which exists only when {gate} takes its "
            f"{'/'.join(sorted(covered))} side, but the step runs whichever side it takes: add "
            "an alternative from the other side ('a.x | b.y'), or move the step into that side"
        )

    def branch_of(self, source: Source) -> tuple[BranchRef, ...]:
        """The `when` sides the source's step sits under, outermost first (the request: none)."""
        step = next((s for s in self.steps if s.name == source.step), None)
        return step.branch if step is not None else ()

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

    # -- ensembles -----------------------------------------------------------------------------
    def ensemble(self, step: EnsembleStep, scope: Scope, path: str) -> tuple[Scope, Block]:
        results = [
            self.step(member, scope, f"{path}.ensemble[{i}]")
            for i, member in enumerate(step.ensemble)
        ]
        merged = scope.copy()
        for res, _ in results:
            merged.available.update(res.available)
        members = [block for _, block in results]
        combine = step.combine
        if combine.node is None and combine.method == "merge":
            merged.current = merged_by_reference([res for res, _ in results])
            return merged, FanOutBlock(members, None)
        inputs = self.member_tensors([res for res, _ in results], combine.tensor, path)
        if combine.node is not None:
            out, name = self.combiner_node(combine.node, inputs, merged, results, path)
        else:
            name = self.fresh("combine")
            helper = PlanStep(
                name=name,
                kind="combine",
                family=COMBINER_FAMILY,
                node=None,
                inputs={k: p.sources for k, p in inputs.items()},
                outputs=component_class(COMBINER_FAMILY).outputs[:2],
                branch=scope.branch,
                path=f"{path}.combine",
                method=combine.method,
            )
            out = self.add(helper, merged, None)
        return out, FanOutBlock(members, name)

    def member_tensors(self, results: list[Scope], tensor: str, path: str) -> dict[str, Produced]:
        """`<tensor>_<i>` per member: what a combiner stacks."""
        inputs: dict[str, Produced] = {}
        for i, res in enumerate(results):
            produced = res.current.get(tensor)
            if produced is None:
                self.problems.append(
                    f"{path}.ensemble[{i}]: member does not output '{tensor}' needed by the combine"
                )
            elif produced.clash:
                self.refuse_clash(
                    produced, f"{path}.ensemble[{i}]: the combine reads '{tensor}', which"
                )
            elif produced.spec.datatype not in ("FP32", "FP16", "FP64"):
                self.problems.append(
                    f"{path}.ensemble[{i}]: '{tensor}' is {produced.spec.datatype}; combining "
                    "needs floating-point scores"
                )
            else:
                inputs[f"{tensor}_{i}"] = produced
        return inputs

    def combiner_node(
        self,
        name: str,
        stacked: dict[str, Produced],
        merged: Scope,
        results: list[tuple[Scope, Block]],
        path: str,
    ) -> tuple[Scope, str]:
        """A graph node joins the members: a `combiner` stacks their scores, others map."""
        where = f"{path}.combine"
        if not self.mark_used(name, where) or name not in self.classes:
            return merged, name
        cls = self.classes[name]
        if cls.family == COMBINER_FAMILY:
            inputs = stacked
        else:
            current: dict[str, Produced] = {}
            for res, _ in results:
                current.update(res.current)
            inner = Scope(merged.available, current, merged.branch)
            inputs = self.node_inputs(NodeStep(node=name), cls, inner, where)
        step = PlanStep(
            name=name,
            kind="node",
            family=cls.family,
            node=self.nodes[name],
            inputs={k: p.sources for k, p in inputs.items()},
            outputs=cls.outputs,
            branch=merged.branch,
            path=where,
        )
        return self.add(step, merged, name), name

    # -- routing -------------------------------------------------------------------------------
    def when(self, step: WhenStep, scope: Scope, path: str) -> tuple[Scope, Block]:
        cond = step.when
        tested = self.resolve(cond.tensor, scope, f"{path}.when.tensor", consumer="")
        if tested is not None:
            self.check_condition(cond, tested.spec, path)
        gate_name = self.fresh("gate")
        gate = PlanStep(
            name=gate_name,
            kind="gate",
            family=GATE_FAMILY,
            node=None,
            inputs={"value": tested.sources} if tested else {},
            outputs=component_class(GATE_FAMILY).outputs,
            branch=scope.branch,
            path=f"{path}.when",
            condition=cond,
        )
        self.steps.append(gate)
        then_scope = scope.copy()
        then_scope.branch = (*scope.branch, BranchRef(gate_name, "then"))
        then, then_block = self.step(step.then, then_scope, f"{path}.then")
        other_scope = scope.copy()
        other_scope.branch = (*scope.branch, BranchRef(gate_name, "otherwise"))
        pass_name: str | None = None
        other_block: Block | None = None
        if step.otherwise is not None:
            other, other_block = self.step(step.otherwise, other_scope, f"{path}.otherwise")
        else:
            other = self.cascade_pass(gate_name, other_scope, path)
            pass_name = self.passes[gate_name].name
        out = scope.copy()
        out.available.update(then.available)
        out.available.update(other.available)
        out.current = {}
        for name in [*other.current, *(n for n in then.current if n not in other.current)]:
            alts = then.current.get(name), other.current.get(name)
            present = [p for p in alts if p is not None]
            sources = tuple(s for p in present for s in p.sources)
            clash = next((p.clash for p in present if p.clash), "")
            if not clash and len(present) == 2:
                clash = type_clash([(self.origin(p.sources[0]), p.spec) for p in present])
            out.current[name] = Produced(sources, present[0].spec, clash)
        return out, RouteBlock(gate_name, then_block, other_block, pass_name)

    def refuse_clash(self, produced: Produced, what: str) -> None:
        """A step reads a `when`'s tensor whose type depends on the side it took."""
        if produced.clash:
            self.problems.append(
                f"{what} takes the type of the side its `when` took ({produced.clash}): map "
                "one side's tensor with inputs:"
            )

    def origin(self, source: Source) -> str:
        """The ref a user wrote for `source`: what a cascade's pass step forwards, not the
        pass itself (`pass-0.scores` is the `cls.scores` current at the `when`)."""
        forwarded = next(
            (p.inputs.get(source.tensor) for p in self.passes.values() if p.name == source.step),
            None,
        )
        return forwarded[0].ref if forwarded else source.ref

    def cascade_pass(self, gate: str, scope: Scope, path: str) -> Scope:
        """A cascade's otherwise side forwards what was current at the `when`."""
        name = self.fresh("pass")
        step = PlanStep(
            name=name,
            kind="pass",
            family=PASS_FAMILY,
            node=None,
            inputs={k: p.sources for k, p in scope.current.items()},
            outputs=tuple(
                TensorSpec(k, p.spec.datatype, p.spec.shape) for k, p in scope.current.items()
            ),
            branch=scope.branch,
            path=f"{path} (cascade pass-through)",
        )
        self.passes[gate] = step
        out = self.add(step, scope, None)
        out.available = dict(scope.available)
        for name, produced in scope.current.items():  # what it forwards keeps its clash
            if produced.clash:
                out.current[name] = dataclasses.replace(out.current[name], clash=produced.clash)
        return out

    def check_condition(self, cond: Condition, spec: TensorSpec, path: str) -> None:
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


def compile_plan(graph: InferenceGraph) -> GraphPlan:
    """The graph's one meaning; GraphValidationError lists every problem with its path."""
    compiler = _Compiler(graph)
    if compiler.problems:
        raise GraphValidationError(graph.name, compiler.problems)
    outputs, root = compiler.run()
    if compiler.problems:
        raise GraphValidationError(graph.name, compiler.problems)
    return GraphPlan(graph, compiler.steps, outputs, root)


def plan_of(source: InferenceGraph | GraphPlan) -> GraphPlan:
    """What a consumer runs: the plan it was given, or a graph built in code, compiled here.

    Consumers take a compiled plan so a graph is compiled once (`load_plan`, `parse_plan`)
    and its facts (families, GPU use, wiring) are not checked again downstream.
    """
    return source if isinstance(source, GraphPlan) else compile_plan(source)


def parse_plan(data: Manifest, source: str = "<memory>") -> GraphPlan:
    """A graph document, validated (schema, then topology) and compiled once."""
    return compile_plan(validate_schema(data, source))


def load_plan(path: str | Path) -> GraphPlan:
    """A graph file, validated and compiled once: what `serve` and `render` start from."""
    return parse_plan(read_document(path), str(path))


def parse_graph(data: Manifest, source: str = "<memory>") -> InferenceGraph:
    """Parse and fully validate (schema, then topology); errors list every problem with its path.

    A consumer that runs or renders the graph wants `parse_plan` instead: the same checks,
    and the compiled plan they produce is kept rather than compiled again. (This lives with
    the compiler, not with the schema in `graph.model`, so that the schema module does not
    import the compiler that imports it.)
    """
    graph = validate_schema(data, source)
    compile_plan(graph)
    return graph


def load_graph(path: str | Path) -> InferenceGraph:
    """A graph file, validated as `parse_graph` does."""
    return parse_graph(read_document(path), str(path))
