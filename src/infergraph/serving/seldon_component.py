"""Seldon adapter: `InfergraphComponent` for `seldon-core-microservice` (Seldon Core v1).

No model logic lives here: a unit builds its component from the registry and only translates
the Seldon protocol. One class serves every v1 unit type, because the executor picks the
method by the unit's type: `predict` (MODEL), `transform_input` (TRANSFORMER),
`transform_output` (OUTPUT_TRANSFORMER), `route` (ROUTER) and `aggregate` (COMBINER).

Payloads between units are `jsonData` objects of named tensors, each an Open Inference
Protocol tensor `{"datatype", "shape", "data", "parameters"}` (plain lists are accepted from
clients). Keys are qualified `<node>.<tensor>` (and `request.<tensor>` for the graph inputs)
plus the bare names of the last step's outputs, so a unit can read any upstream tensor the
way the graph's `inputs:` mappings name them, including `a.x | request.x` alternatives.
Clients may also send `ndarray`, `strData` or `binData`: that becomes the component's first
input (at a ROUTER, the `request.<name>` tensor its condition tests). Request parameters
(`sampling_rate`, `detector.threshold`) travel as `meta.tags` (a COMBINER reads them from its
members' messages). The units the client's request reaches first refuse one that does not
hold exactly the graph's inputs, as the local router does.
seldon-core is imported lazily so the module also imports where it is not installed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from infergraph.arrays import Array
from infergraph.components.base import Component, ComponentResult, ComponentSettings
from infergraph.components.registry import component_class
from infergraph.errors import InfergraphError, InputError, SettingsError, status_for
from infergraph.graph import evaluate as ev
from infergraph.graph.model import REQUEST
from infergraph.graph.runtime_settings import RuntimeSettings
from infergraph.json_types import JSONObject
from infergraph.serving.heap import settle_heap
from infergraph.serving.seldon_metrics import UnitMetrics
from infergraph.tensors.request import InferRequest

log = logging.getLogger(__name__)


# -- Seldon protocol <-> named tensors -----------------------------------------------------------
def _error(exc: InfergraphError) -> Exception:
    """A seldon-core exception so the microservice answers 4xx/5xx JSON and stays up."""
    status = status_for(exc)
    try:
        from seldon_core.flask_utils import SeldonMicroserviceException
    except ImportError:  # pragma: no cover - exercised only without seldon-core
        return exc
    # seldon-core lives in .venv-seldon only, so to mypy (run from .venv) this class is Any.
    error: Exception = SeldonMicroserviceException(
        str(exc), status_code=status.http, reason=status.seldon_reason
    )
    # Its __init__ calls Exception.__init__ without the message (seldon_core 1.18.2
    # flask_utils.py:106), and a gRPC client is told str(exception) (grpcio
    # grpc/_server.py:621): without args it read 'Exception calling application: ' only.
    error.args = (str(exc),)
    return error


class Payload:
    """The request travelling through the v1 graph: one `InferRequest` whose tensors are the
    qualified refs carried on (`<node>.<tensor>`, `request.<tensor>`) and then the current
    step's outputs under their bare names, in the order `jsonData` holds them."""

    def __init__(self, carried: dict[str, Array], current: dict[str, Array]) -> None:
        self.request: InferRequest[Array] = InferRequest(inputs={**carried, **current})

    @property
    def carried(self) -> dict[str, Array]:
        return {k: v for k, v in self.request.inputs.items() if "." in k}

    @property
    def current(self) -> dict[str, Array]:
        return {k: v for k, v in self.request.inputs.items() if "." not in k}

    @classmethod
    def decode(cls, features: object, first_input: str) -> Payload:
        """A unit's request; a client's (no qualified name) carries its tensors as the graph's
        inputs, `request.<name>`."""
        tensors = InferRequest.from_seldon(features, first_input).inputs
        qualified = {k: v for k, v in tensors.items() if "." in k}
        bare = {k: v for k, v in tensors.items() if "." not in k}
        if not qualified:
            return cls({f"{REQUEST}.{k}": v for k, v in bare.items()}, bare)
        return cls(qualified, bare)

    @classmethod
    def of_client(cls, graph: str, declared: list[str], tensors: dict[str, Array]) -> Payload:
        """A client's request at a graph's first unit: exactly the graph's inputs, refused as
        the local router refuses them (`graph.evaluate.request_inputs`), a 400 naming the
        tensor before any component runs."""
        # Decoding a `jsonData` tensor already reshaped its data to its shape and refused a
        # shape the data does not fill, naming the input (`tensors.request.decode_seldon`).
        checked = ev.request_inputs(graph, declared, tensors)
        return cls(checked, dict(tensors))

    def lookup(self, ref: str) -> Array | None:
        """First alternative of `a.x | request.x` that is present."""
        return ev.first_present(ev.alternatives(ref), self.carried)

    def with_outputs(self, owner: str, outputs: dict[str, Array]) -> Payload:
        carried = self.carried
        carried.update({f"{owner}.{k}": v for k, v in outputs.items()})
        return Payload(carried, dict(outputs))

    def encode(self) -> JSONObject:
        return self.request.to_seldon()


def _json_param(name: str, value: object, default: object) -> Any:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise SettingsError(name, f"not valid JSON: {exc}") from exc
    return value


def _component_settings(
    family: str | None,
    model_uri: str | None,
    device: str,
    dtype: str,
    warmup: bool,
    max_batch_size: int,
    options: dict[str, Any],
) -> ComponentSettings:
    """The unit's graph parameters read as the MLServer runtime reads parameters.extra
    (RuntimeSettings), so both adapters accept and refuse the same settings, naming the
    parameter; a unit with no family (a merge) runs no component and gets the defaults."""
    if not family:
        return ComponentSettings(options=options)
    extra = {"family": family, "device": device, "dtype": dtype, "warmup": warmup}
    extra.update({"max_batch_size": max_batch_size, "options": options})
    runtime = RuntimeSettings.from_extra(extra, where="parameters")
    return runtime.component_settings(model_uri, max_batch_size, 0.0)


class InfergraphComponent:
    """One Seldon v1 unit. Graph `parameters` arrive as constructor keyword arguments.

    family, model_uri, device, dtype, options (JSON), max_batch_size, warmup: the component;
    node: the graph node's name (qualifies its outputs); inputs (JSON): the step's `inputs:`
    mapping; condition (JSON): a ROUTER's `when`; method/tensor: a COMBINER's combine rule;
    carry (JSON list): the upstream tensors to pass on (all when absent); nodes (JSON list):
    the graph's node names, which `<node>.<key>` request parameters may address; graph and
    graph_inputs (JSON list): the graph's name and declared inputs, given to the units the
    client's request reaches first, which refuse a request that does not hold exactly those.
    """

    def __init__(
        self,
        family: str | None = None,
        node: str | None = None,
        model_uri: str | None = None,
        device: str = "auto",
        dtype: str = "fp32",
        options: str | JSONObject | None = None,
        inputs: str | dict[str, str] | None = None,
        max_batch_size: int = 1,
        warmup: bool = True,
        condition: str | JSONObject | None = None,
        method: str | None = None,
        tensor: str = "scores",
        carry: str | list[str] | None = None,
        nodes: str | list[str] | None = None,
        graph: str = "",
        graph_inputs: str | list[str] | None = None,
    ) -> None:
        self.family = family
        self.node = node or os.environ.get("PREDICTIVE_UNIT_ID") or (family or "unit")
        self.options = _json_param("options", options, {})
        self.inputs = _json_param("inputs", inputs, {})
        self.condition = _json_param("condition", condition, None)
        self.method = method
        self.tensor = tensor
        # Upstream tensors to pass on (refs like "request.image"); absent: all of them.
        self.carry = _json_param("carry", carry, None)
        # A unit started by hand knows no other node: only its own name addresses it.
        self.nodes = [str(n) for n in _json_param("nodes", nodes, [])] or [self.node]
        # A unit the client's request does not reach first (or one started by hand) checks none.
        declared = _json_param("graph_inputs", graph_inputs, None)
        self.graph_inputs = None if declared is None else [str(n) for n in declared]
        self.graph = graph
        self.settings = _component_settings(
            family, model_uri, device, dtype, bool(warmup), int(max_batch_size), self.options
        )
        self._component: Component | None = None
        self._lock = threading.Lock()
        self._last = threading.local()
        self._request = threading.local()  # the request's tags, from aggregate_raw
        self._metrics = UnitMetrics(self.node)
        self.ready = False

    # -- lifecycle ---------------------------------------------------------------------------
    def load(self) -> None:
        """Called by seldon-core in each worker before serving: builds and warms the model."""
        if self.family and self.family != "gate":
            self.component()
        self.ready = True

    def component(self) -> Component:
        if self._component is None:
            with self._lock:
                if self._component is None:
                    if not self.family:
                        raise SettingsError("family", f"unit '{self.node}' runs no component")
                    component = component_class(self.family)(self.settings)
                    component.start()
                    settle_heap()
                    self._component = component
        return self._component

    def first_input(self) -> str:
        if not self.family or self.family == "gate":
            return "input"
        cls = component_class(self.family)
        bytes_inputs = [s.name for s in cls.inputs if s.datatype == "BYTES"]
        return (bytes_inputs or [s.name for s in cls.inputs] or ["input"])[0]

    # -- Seldon methods --------------------------------------------------------------------------
    def predict(self, X: object, features_names: object = None, **kwargs: object) -> JSONObject:
        params = self.request_parameters(kwargs.get("meta"))
        return self._guard(lambda: self._encode(self._run(X, params)))

    def transform_input(
        self, X: object, features_names: object = None, **kwargs: object
    ) -> JSONObject:
        return self.predict(X, features_names, **kwargs)

    def transform_output(
        self, X: object, features_names: object = None, **kwargs: object
    ) -> JSONObject:
        return self.predict(X, features_names, **kwargs)

    def route(self, X: object, features_names: object = None, **kwargs: object) -> int:
        """0 = first child (`then`), 1 = second (`otherwise` or the cascade's pass-through)."""

        def decide() -> int:
            if not self.condition:
                raise SettingsError("condition", f"router '{self.node}' has no condition")
            payload = self._decode(X, self._gate_input())
            ref = str(self.condition["tensor"])
            side = ev.gate_side(self.condition, payload.lookup(ref), ref)
            route = 0 if side == "then" else 1
            self._remember({"route": route}, {})
            return route

        return self._guard(decide)

    def aggregate_raw(self, msgs: object) -> JSONObject:
        """Not a raw aggregate: the request's tags for `aggregate`, which seldon-core calls
        with the members' data alone. Every member copied the request's `meta.tags` into its
        answer, and seldon-core offers a COMBINER the members' whole messages here first,
        going on to decode them for `aggregate` when this declines with
        SeldonNotImplementedError (seldon-core 1.18.2 seldon_core/seldon_methods.py:562-583)."""
        self._request.tags = _members_tags(msgs)
        raise _declined("aggregate_raw")

    def aggregate(
        self, features_list: list[object], feature_names_list: object = None
    ) -> JSONObject:
        """Combine ensemble members: built-in average/vote/merge, or the combiner node, which
        is a node and so gets the request's parameters (`graph.evaluate.step_parameters`)."""
        tags: JSONObject = getattr(self._request, "tags", {})
        self._request.tags = {}  # this request's alone
        kind = "combine" if self.method else "node"  # the renderer names a built-in's method
        params = ev.step_parameters(self.node, kind, self.nodes, tags)

        def combine() -> JSONObject:
            if not features_list:
                raise InputError("seldonMessages", "no member outputs to combine")
            members = [Payload.decode(f, f"member_{i}") for i, f in enumerate(features_list)]
            carried: dict[str, Array] = {}
            for member in members:
                carried.update(member.carried)
            base = Payload(carried, {})
            if self.method == "merge" or self.family is None:
                self._remember({}, {})
                return self._encode(base.with_outputs(self.node, _merged(members)))
            if self.family == "combiner":
                result = self._combine_scores(members, carried, params)
            else:
                current: dict[str, Array] = {}
                for member in members:
                    current.update(member.current)
                result = self._predict(self._inputs(Payload(carried, current)), params)
            return self._encode(base.with_outputs(self.node, result.outputs))

        return self._guard(combine)

    def _combine_scores(
        self, members: list[Payload], carried: dict[str, Array], params: JSONObject
    ) -> ComponentResult:
        """The combine over the members' scores; a built-in one runs the graph's method.
        Scores a member did not give, or that the combiner cannot use, are that member's fault
        (a 502 naming it), as in the local router."""
        if self.inputs:
            inputs, origins = self._rendered_scores(carried)
        else:
            inputs, origins = self._named_scores(members)
        if self.method:
            params = {**params, "method": self.method}
        with ev.blamed_inputs(origins.get, f"combiner '{self.node}'"):
            return self._predict(inputs, params)

    def _rendered_scores(
        self, carried: dict[str, Array]
    ) -> tuple[dict[str, Array], dict[str, ev.Origin]]:
        """Each input the renderer wrote (`<tensor>_<i>`: `<member>.<tensor>`, the graph's
        `combine.tensor`), read from what the members carried, by who made it."""
        mapped = {name: ev.alternatives(str(ref)) for name, ref in self.inputs.items()}
        inputs = ev.gather_feed(
            self.node,
            mapped,
            lambda refs: ev.first_present(refs, carried),
            lambda step: step != REQUEST,  # a member answered it
        )
        origins = {
            name: ev.origin_of(next(ref for ref in refs if ref in carried))
            for name, refs in mapped.items()
        }
        return inputs, origins

    def _named_scores(
        self, members: list[Payload]
    ) -> tuple[dict[str, Array], dict[str, ev.Origin]]:
        """A unit started by hand (no `inputs`): each member's bare `tensor`; it knows no
        member's name, so a member without it is the client's 400."""
        inputs: dict[str, Array] = {}
        for i, member in enumerate(members):
            if self.tensor not in member.current:
                raise InputError(
                    f"{self.tensor}_{i}",
                    f"ensemble member {i} did not output '{self.tensor}'; it gave "
                    f"{', '.join(sorted(member.current)) or 'nothing'}",
                )
            inputs[f"{self.tensor}_{i}"] = member.current[self.tensor]
        return inputs, {}

    def _gate_input(self) -> str:
        """The name a client's bare payload (`strData`, `ndarray`, `binData`) takes at a
        ROUTER: the request tensor its condition tests, as a MODEL unit names it after its
        own input; else `input`."""
        for ref in ev.alternatives(str((self.condition or {}).get("tensor", ""))):
            owner, _, name = ref.partition(".")
            if owner == REQUEST and name:
                return name
        return "input"

    def metrics(self) -> list[JSONObject]:
        """Seldon custom metrics, read by seldon-core after every successful call.

        The `infergraph_*` series the MLServer runtime exports (the rendered v1 queue and
        in-flight scalers watch them), plus the last request's stage timings (TIMER, ms).
        """
        timings: dict[str, float] = getattr(self._last, "timings", {})
        out: list[JSONObject] = [
            {"type": "TIMER", "key": f"infergraph_{stage}", "value": float(ms)}
            for stage, ms in timings.items()
        ]
        rows = getattr(self._last, "rows", None)
        if rows is not None:
            out.append({"type": "COUNTER", "key": "infergraph_rows", "value": float(rows)})
        return out + self._metrics.report()

    def tags(self) -> JSONObject:
        """Response meta tags: timings keyed by node so a whole graph's stay apart."""
        tags: JSONObject = {f"{self.node}.{k}": v for k, v in self._last_tags().items()}
        return tags

    # -- helpers -----------------------------------------------------------------------------
    def _encode(self, payload: Payload) -> JSONObject:
        """The response: this unit's outputs, plus the upstream tensors later units need.

        With `carry` set (the refs downstream units read; `[]` for the last unit) a unit no
        longer echoes every carried tensor, e.g. a client's image, back to the client.
        """
        if self.carry is None:
            return payload.encode()
        keep = set(self.carry) | {f"{self.node}.{name}" for name in payload.current}
        carried = {k: v for k, v in payload.carried.items() if k in keep}
        return Payload(carried, payload.current).encode()

    def request_parameters(self, meta: object) -> JSONObject:
        """The request's parameters on v1: the client's `meta.tags`, which seldon-core copies
        from each unit's request into its response, so they reach every unit of the graph.

        The plan's rule (`graph.evaluate.node_parameters`), as on every engine: `<node>.<key>`
        reaches only that node, as `<key>`; any other key every node. The `<unit>.<stage>_ms`
        tags upstream units add are other nodes' (or a helper's, which no component reads).
        """
        tags = meta.get("tags") if isinstance(meta, dict) else None
        if not isinstance(tags, dict):
            return {}
        return ev.node_parameters(self.node, self.nodes, {str(k): v for k, v in tags.items()})

    def _run(self, features: object, params: JSONObject | None = None) -> Payload:
        if self.family is None:
            raise SettingsError("family", f"unit '{self.node}' has no component family")
        payload = self._decode(features, self.first_input())
        result = self._predict(self._inputs(payload), params or {})
        return payload.with_outputs(self.node, result.outputs)

    def _predict(self, feed: dict[str, Array], params: Mapping[str, object]) -> ComponentResult:
        """The component's answer, or, fed zero rows, the step's empty outputs without a call
        (`graph.evaluate`'s rule; a pass-through family passes its zero rows on as they are)."""
        cls = component_class(str(self.family))
        if not cls.passthrough and ev.zero_rows(feed, ev.ARRAYS):
            self._remember({"skipped": 1}, {}, 0)
            return ComponentResult(outputs=ev.empty_outputs(cls.outputs, ev.ARRAYS))
        result = self.component().predict(feed, params)
        self._remember_result(result)
        return result

    def _decode(self, features: object, first_input: str) -> Payload:
        """The unit's request; at a graph's first unit the client's, checked against the
        graph's inputs, where a bare payload (`strData`, `ndarray`, `binData`) is the graph's
        input when it declares one."""
        if self.graph_inputs is None:
            return Payload.decode(features, first_input)
        if len(self.graph_inputs) == 1:
            first_input = self.graph_inputs[0]
        tensors = InferRequest.from_seldon(features, first_input).inputs
        return Payload.of_client(self.graph, self.graph_inputs, tensors)

    def _inputs(self, payload: Payload) -> dict[str, Array]:
        """Exactly the sources the renderer wrote from the compiled plan (`inputs`), or, for a
        unit started by hand with no `inputs`, the component's inputs by name; both rules
        are `graph.evaluate`'s."""
        if self.inputs:
            mapped = {name: ev.alternatives(str(ref)) for name, ref in self.inputs.items()}
            return ev.gather_feed(
                self.node, mapped, lambda refs: ev.first_present(refs, payload.carried)
            )
        cls = component_class(str(self.family))
        return ev.inputs_by_name(cls, payload.current, payload.carried)

    def _remember_result(self, result: ComponentResult) -> None:
        timings = {
            k[: -len("_ms")]: float(v)
            for k, v in result.parameters.items()
            if k.endswith("_ms") and isinstance(v, (int, float))
        }
        rows = result.parameters.get("batch_size")  # a count, as every engine writes it
        self._remember(
            {f"{k}_ms": v for k, v in timings.items()},
            timings,
            rows if isinstance(rows, int) else None,
        )

    def _remember(
        self, tags: JSONObject, timings: dict[str, float], rows: int | None = None
    ) -> None:
        self._last.tags = tags
        self._last.timings = timings
        self._last.rows = rows

    def _last_tags(self) -> JSONObject:
        return dict(getattr(self._last, "tags", {}))

    def _guard[T](self, fn: Callable[[], T]) -> T:
        """Typed errors become Seldon errors with a status; the worker keeps serving."""
        with self._metrics.request() as outcome:
            try:
                return fn()
            except InfergraphError as exc:
                outcome.set(status_for(exc))
                log.warning("%s: %s", self.node, exc)
                raise _error(exc) from exc
            except Exception as exc:
                outcome.set(status_for(exc))
                raise


def _members_tags(msgs: object) -> JSONObject:
    """The request's tags as the COMBINER's members carry them, merged as seldon-core merges
    their `meta` (seldon_core/seldon_methods.py:536-543): a JSON list or `seldonMessages`
    over REST, a SeldonMessageList over gRPC."""
    if isinstance(msgs, dict):
        msgs = msgs.get("seldonMessages")
    if isinstance(msgs, list):
        metas = [m.get("meta") for m in msgs if isinstance(m, dict)]
    else:
        from seldon_core.utils import get_meta_from_proto

        metas = [get_meta_from_proto(m) for m in getattr(msgs, "seldonMessages", [])]
    tags: JSONObject = {}
    for meta in metas:
        if isinstance(meta, dict) and isinstance(meta.get("tags"), dict):
            tags.update({str(k): v for k, v in meta["tags"].items()})
    return tags


def _declined(method: str) -> Exception:
    """seldon-core's "not implemented", on which it goes on to its own handling."""
    try:
        from seldon_core.user_model import SeldonNotImplementedError
    except ImportError:  # pragma: no cover - exercised only without seldon-core
        return NotImplementedError(method)
    declined: Exception = SeldonNotImplementedError(f"{method} is not implemented")
    return declined


def _merged(members: list[Payload]) -> dict[str, Array]:
    """A merge's own outputs: the members' bare names that only one member gave. A name two
    members share would be the last one's alone (its qualified `<member>.<name>` refs,
    carried, keep both apart)."""
    merged: dict[str, Array] = {}
    seen: set[str] = set()
    for member in members:
        for name, tensor in member.current.items():
            if name in seen:
                merged.pop(name, None)
                continue
            seen.add(name)
            merged[name] = tensor
    return merged


def b64(data: bytes) -> str:
    """binData helper for clients and tests."""
    return base64.b64encode(data).decode("ascii")
