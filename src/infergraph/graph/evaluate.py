"""One step of a compiled plan, evaluated on one request: the run-time rules every engine shares.

`graph.plan` decides what a graph means; this module applies that meaning to a request's
tensors, so the local router (`runner/executor.py`), the KServe graph step
(`serving/graph_step.py`) and the Seldon v1 unit (`serving/seldon_component.py`) only move
bytes. Each rule is written here once:

- the first alternative of `a.x | request.x` that exists wins (`first_present`);
- a node input whose tensor is absent is the client's error, 400 (`gather_feed`): with a
  plan that compiled, only a request that lacks a graph input gets there;
- a gate whose tensor is absent, or has zero rows, takes `otherwise` (`gate_side`);
- a step fed a zero-row tensor is not called and yields zero-row outputs (`zero_rows`,
  `empty_outputs`);
- `<node>.<key>` request parameters reach only that node, as `<key>`; every other key reaches
  every node (`node_parameters`, stated with the plan);
- an input no wiring maps comes by name from the previous step, then from the request
  (`inputs_by_name`, for a unit started without the plan's wiring);
- `graph.path` lists the nodes a request reached, in order, and a node that was not called
  for zero rows is marked `<node>.skipped` (`Trace`);
- a request holds exactly the graph's declared inputs, each with a shape its data fills,
  else it is the client's 400 before any step runs (`request_inputs`);
- request parameters reach nodes only: a built-in combine runs the graph's own method
  (`step_parameters`);
- a tensor a step cannot use is the client's error (400) only when the client sent it; one
  a node answered is that node's fault, a 502 naming it (`attributed`, `blamed`).

It is generic over the engine's tensor type (the V2 JSON tensors of `graph.wire`, or numpy
arrays on Seldon v1) and imports neither torch nor a server.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from infergraph.arrays import Array
from infergraph.components.base import Component, TensorSpec, empty_tensor
from infergraph.components.conditions import evaluate
from infergraph.errors import InputError, NodeError
from infergraph.graph import wire
from infergraph.graph.model import REQUEST
from infergraph.graph.plan import Side, Source, node_parameters, split_alternatives
from infergraph.json_types import JSONObject

__all__ = [
    "ARRAYS",
    "JSON",
    "PATH_KEY",
    "Origin",
    "TensorKind",
    "Trace",
    "alternatives",
    "attributed",
    "blamed",
    "blamed_inputs",
    "empty_outputs",
    "first_present",
    "gate_side",
    "gather_feed",
    "inputs_by_name",
    "node_parameters",
    "origin_of",
    "request_inputs",
    "step_parameters",
    "zero_rows",
]

PATH_KEY = "graph.path"
SKIPPED = "skipped"


@dataclass(frozen=True)
class TensorKind[T]:
    """What the rules need of an engine's tensor type: its row count and an empty one."""

    rows: Callable[[T], int]
    empty: Callable[[TensorSpec], T]


def _array_rows(array: Array) -> int:
    return int(array.shape[0]) if array.ndim else 1


JSON: TensorKind[wire.Tensor] = TensorKind(wire.rows, wire.empty_like)
ARRAYS: TensorKind[Array] = TensorKind(_array_rows, empty_tensor)


def alternatives(ref: str | Iterable[Source]) -> list[str]:
    """The refs of one input, in the order they are tried: `"a.x | request.x"` or plan sources."""
    if isinstance(ref, str):
        return split_alternatives(ref)
    return [source.ref for source in ref]


def first_present[T](refs: Sequence[str], tensors: Mapping[str, T]) -> T | None:
    """The first alternative that exists (the plan makes them exclusive)."""
    for ref in refs:
        tensor = tensors.get(ref)
        if tensor is not None:
            return tensor
    return None


def gather_feed[T](
    step: str,
    inputs: Mapping[str, Sequence[str]],
    find: Callable[[Sequence[str]], T | None],
    answered: Callable[[str], bool] = lambda _: False,
) -> dict[str, T]:
    """A step's inputs by name; `find` looks up one input's alternatives in the engine's store.

    A compiled plan feeds every input, so an absent one is a fault: the node's that
    `answered` (a node whose reply lacked a declared output, a 502 naming it), else the
    client's (400: a graph input the request lacks).
    """
    feed: dict[str, T] = {}
    for name, refs in inputs.items():
        tensor = find(refs)
        if tensor is None:
            for node, output in map(origin_of, refs):
                if answered(node):
                    reason = f"reply lacks output '{output}', which step '{step}' needs"
                    raise NodeError(node, reason, 502)
            raise InputError(
                name, f"step '{step}' needs tensor '{' | '.join(refs)}', which the request lacks"
            )
        feed[name] = tensor
    return feed


def request_inputs[T](
    graph: str,
    declared: Collection[str],
    sent: Mapping[str, T],
    check: Callable[[str, T], None] | None = None,
) -> dict[str, T]:
    """The request's tensors by `request.<input>`: each one the graph declares, each declared
    one present, each passing `check` (its shape against its data; None where decoding has
    already checked it), else the client's 400.

    The shape is read for the zero-row rule before any node sees it, so it must say what the
    data holds: `[0]` over data would skip every node, a 200 for a request each node
    refuses. Every declared input is required: without one a node's feed is never produced,
    which is the client's error, not a node's (502), and a branch that was not taken must not
    hide it.
    """
    tensors: dict[str, T] = {}
    for name, tensor in sent.items():
        if name not in declared:
            raise InputError(name, f"graph '{graph}' takes inputs {', '.join(sorted(declared))}")
        if check is not None:
            check(name, tensor)
        tensors[f"{REQUEST}.{name}"] = tensor
    missing = sorted(set(declared) - set(sent))
    if missing:
        raise InputError(
            missing[0], f"missing: graph '{graph}' takes inputs {', '.join(sorted(declared))}"
        )
    return tensors


def step_parameters(
    step: str, kind: str, nodes: Iterable[str], params: Mapping[str, object]
) -> JSONObject:
    """What of the request's parameters a step is called with. Parameters reach nodes
    (`node_parameters`); a built-in combine is no node and runs the method the graph names,
    whatever a request's `method` says, as the local router runs it."""
    if kind != "node":
        return {}
    return node_parameters(step, nodes, params)


# Who made a tensor: the node that answered it (or `request`) and its name there.
type Origin = tuple[str, str]


def origin_of(ref: str) -> Origin:
    """The producer of a qualified ref `<step>.<tensor>` (`request.<name>`: the client)."""
    step, _, tensor = ref.partition(".")
    return (step, tensor)


def attributed(exc: InputError, origin: Origin, reader: str) -> InputError | NodeError:
    """An `InputError` about a tensor is the client's (400) only when the client sent it; a
    tensor a node answered is that node's fault, a 502 naming it and its output."""
    node, tensor = origin
    if node == REQUEST:
        return exc
    return NodeError(node, f"output '{tensor}' is unusable by {reader}: {exc.reason}", 502)


@contextmanager
def blamed(origin: Origin, reader: str) -> Iterator[None]:
    """`attributed` for what `reader` does with a tensor of that origin."""
    try:
        yield
    except InputError as exc:
        raise attributed(exc, origin, reader) from None


@contextmanager
def blamed_inputs(origin: Callable[[str], Origin | None], reader: str) -> Iterator[None]:
    """`blamed` for a step reading several inputs (a combine over members' scores): an
    `InputError` naming one of them is its producer's fault; one naming none is raised as
    it is."""
    try:
        yield
    except InputError as exc:
        found = origin(exc.input_name)
        if found is None:
            raise
        raise attributed(exc, found, reader) from None


def gate_side(condition: Mapping[str, object] | None, value: Array | None, name: str) -> Side:
    """A `when` decides on the whole request; an absent or zero-row tensor does not satisfy it."""
    if condition is None or value is None:
        return "otherwise"
    return "then" if evaluate(condition, value, name) else "otherwise"


def zero_rows[T](feed: Mapping[str, T], kind: TensorKind[T]) -> bool:
    """Whether the step is skipped: any input with zero rows (a frame with no detection)."""
    return any(kind.rows(tensor) == 0 for tensor in feed.values())


def empty_outputs[T](specs: Iterable[TensorSpec], kind: TensorKind[T]) -> dict[str, T]:
    """What a skipped step yields: a well-formed zero-row tensor per declared output."""
    return {spec.name: kind.empty(spec) for spec in specs}


def inputs_by_name[T](
    cls: type[Component], current: Mapping[str, T], carried: Mapping[str, T]
) -> dict[str, T]:
    """The plan's rule for unmapped inputs, for a unit that runs without the plan's wiring.

    Each input comes by name from the previous step's outputs (`current`), then from the
    graph's inputs (`request.<name>` in `carried`); a pass-through family takes everything
    current. Inputs found nowhere are left out for the component to name.
    """
    if cls.passthrough:
        return dict(current)
    found: dict[str, T] = {}
    for spec in cls.inputs:
        tensor = current.get(spec.name)
        if tensor is None:
            tensor = carried.get(f"{REQUEST}.{spec.name}")
        if tensor is not None:
            found[spec.name] = tensor
    return found


@dataclass
class Trace:
    """The graph's own response parameters: which nodes a request reached, which were skipped."""

    path: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def reached(self, node: str) -> None:
        if node not in self.path:
            self.path.append(node)

    def skip(self, node: str) -> None:
        if node not in self.skipped:
            self.skipped.append(node)

    def merge(self, other: Trace) -> None:
        """Join the trace of another branch (an ensemble member's body on KServe)."""
        for node in other.path:
            self.reached(node)
        for node in other.skipped:
            self.skip(node)

    def in_order(self, nodes: Sequence[str]) -> None:
        """Put joined branches' nodes in the plan's order (`nodes`), where members that start
        together are reached, not in the order an engine happens to list them (KServe's
        router keys an Ensemble's members by name, sorted); a node not listed goes last."""
        rank = {node: i for i, node in enumerate(nodes)}
        self.path.sort(key=lambda node: rank.get(node, len(rank)))
        self.skipped.sort(key=lambda node: rank.get(node, len(rank)))

    def parameters(self) -> JSONObject:
        """`graph.path` plus `<node>.skipped: 1` for each node not called."""
        out: JSONObject = {PATH_KEY: ",".join(self.path)}
        out.update({f"{node}.{SKIPPED}": 1 for node in self.skipped})
        return out
