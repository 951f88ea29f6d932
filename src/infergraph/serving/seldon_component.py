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
(`sampling_rate`, `detector.threshold`) travel as `meta.tags`.
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
    the graph's node names, which `<node>.<key>` request parameters may address.
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
        self.settings = _component_settings(
            family, model_uri, device, dtype, bool(warmup), int(max_batch_size), self.options
        )
        self._component: Component | None = None
        self._lock = threading.Lock()
        self._last = threading.local()
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
            payload = Payload.decode(X, self._gate_input())
            ref = str(self.condition["tensor"])
            side = ev.gate_side(self.condition, payload.lookup(ref), ref)
            route = 0 if side == "then" else 1
            self._remember({"route": route}, {})
            return route

        return self._guard(decide)

    def aggregate(
        self, features_list: list[object], feature_names_list: object = None
    ) -> JSONObject:
        """Combine ensemble members: built-in average/vote/merge, or the combiner node."""

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
                result = self._combine_scores(members)
            else:
                current: dict[str, Array] = {}
                for member in members:
                    current.update(member.current)
                result = self._predict(self._inputs(Payload(carried, current)), {})
            return self._encode(base.with_outputs(self.node, result.outputs))

        return self._guard(combine)

    def _combine_scores(self, members: list[Payload]) -> ComponentResult:
        """The built-in combine over each member's `tensor`. Scores a member did not give, or
        that the combiner cannot use, are that member's fault (a 502 naming it), as in the
        local router; a unit started without the rendered `inputs` knows no member's name
        and answers the client's 400."""
        reader = f"combiner '{self.node}'"
        inputs: dict[str, Array] = {}
        origins: dict[str, ev.Origin] = {}
        for i, member in enumerate(members):
            name = f"{self.tensor}_{i}"
            origins[name] = self._member_origin(name, member)
            if self.tensor not in member.current:
                missing = InputError(
                    name,
                    f"ensemble member {i} did not output '{self.tensor}'; it gave "
                    f"{', '.join(sorted(member.current)) or 'nothing'}",
                )
                raise ev.attributed(missing, origins[name], reader)
            inputs[name] = member.current[self.tensor]
        params = {"method": self.method} if self.method else {}
        with ev.blamed_inputs(origins.get, reader):
            return self._predict(inputs, params)

    def _member_origin(self, name: str, member: Payload) -> ev.Origin:
        """The node whose output feeds combine input `name`: the alternative of the rendered
        `inputs` that the member carries (the first one when it carries none)."""
        if not self.inputs.get(name):
            return (REQUEST, "")
        refs = ev.alternatives(str(self.inputs[name]))
        found = next((ref for ref in refs if ref in member.carried), refs[0])
        return ev.origin_of(found)

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
        payload = Payload.decode(features, self.first_input())
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
