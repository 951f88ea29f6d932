"""`parameters.extra` of a model-settings.json as one type, written and read by the same code.

The renderers and the local runner write it (`graph/model_settings.py`); the MLServer runtime
reads it (`serving/mlserver_runtime.py`, from a file, from Seldon v2's agent or from KServe's
MLSERVER_MODEL_EXTRA), and the Seldon v1 unit builds the same type from its graph
`parameters`. The runtime's own keys sit at the top; a component's knobs (a node's `options`,
a gate's condition, a combiner's method) sit under `options`, so an option named `family` or
`device` is the component's business and can never replace the runtime's.

A file written before `options` was nested (every key at the top) still loads: when there is
no `options` key, the keys this type does not know are taken as the options, with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from infergraph.components.base import ComponentSettings
from infergraph.errors import SettingsError

log = logging.getLogger(__name__)

WHERE = "parameters.extra"
OPTIONS_KEY = "options"
DTYPES = ("fp32", "fp16", "bf16")

# JSON as json.loads returns it: what parameters.extra holds.
Json = object


@dataclass(frozen=True)
class RuntimeSettings:
    """What the runtime needs besides the checkpoint URI: `None` leaves a field unset."""

    family: str
    device: str | None = None
    dtype: str | None = None
    warmup: bool | None = None
    # Seldon v2's agent keeps only `parameters` of model-settings.json, so batching travels
    # here too; the runtime prefers these over MLServer's top-level fields.
    max_batch_size: int | None = None
    max_batch_time_ms: float | None = None
    # rows that may wait for a forward pass (the node's batching.maxQueueRows); None: no limit
    max_queue_rows: int | None = None
    # copies of the model, each with its own forward thread (ComponentSettings.instances)
    instances: int | None = None
    # client input name -> component input name
    input_aliases: Mapping[str, str] = field(default_factory=dict)
    # answer with the request's parameters too (engines that chain response parameters)
    relay_request_parameters: bool = False
    # KServe InferenceGraph wiring, parsed by infergraph.serving.graph_step.StepWiring
    graph_step: Mapping[str, Json] | None = None
    options: Mapping[str, Json] = field(default_factory=dict)

    def to_extra(self) -> dict[str, Json]:
        """The JSON object for parameters.extra: unset fields, empty mappings and the relay
        when off are left out, so a file says only what differs from the defaults."""
        extra: dict[str, Json] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (isinstance(value, Mapping) and not value):
                continue
            if f.name == "relay_request_parameters" and not value:
                continue
            extra[f.name] = dict(value) if isinstance(value, Mapping) else value
        return extra

    @classmethod
    def from_extra(cls, extra: Json, where: str = WHERE) -> RuntimeSettings:
        """Parse parameters.extra; a SettingsError names the key that is missing or wrong."""
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise SettingsError(where, f"must be a JSON object, got {type(extra).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in extra if k not in known)
        top = {k: v for k, v in extra.items() if k in known}
        if unknown and OPTIONS_KEY in extra:
            raise SettingsError(
                f"{where}.{unknown[0]}",
                f"not a runtime key (those are {sorted(known - {OPTIONS_KEY})}); "
                f"a component's knobs go under {where}.{OPTIONS_KEY}",
            )
        if unknown:
            log.warning(
                "%s: keys %s read as the component's options; nest them under '%s' "
                "(the flat form is deprecated)",
                where,
                unknown,
                OPTIONS_KEY,
            )
            top[OPTIONS_KEY] = {k: v for k, v in extra.items() if k not in known}
        return cls._checked(top, where)

    @classmethod
    def _checked(cls, top: Mapping[str, Json], where: str) -> RuntimeSettings:
        """Each known key checked into its field's type; an absent or null key reads as the
        field's default (every check maps None to it)."""

        def key(name: str) -> tuple[str, Json]:
            return f"{where}.{name}", top.get(name)

        family = _text(*key("family"))
        if not family:
            raise SettingsError(f"{where}.family", "required: which component to serve")
        return cls(
            family=family,
            device=_text(*key("device")),
            dtype=_dtype(*key("dtype")),
            warmup=_flag(*key("warmup")),
            max_batch_size=_count(*key("max_batch_size")),
            max_batch_time_ms=_millis(*key("max_batch_time_ms")),
            max_queue_rows=_whole(*key("max_queue_rows"), 1, "1 or more rows"),
            instances=_instances(*key("instances")),
            input_aliases=_aliases(*key("input_aliases")),
            relay_request_parameters=bool(_flag(*key("relay_request_parameters"))),
            graph_step=_wiring(*key("graph_step")),
            options=_object(*key(OPTIONS_KEY)),
        )

    def component_settings(
        self, model_uri: str | None, max_batch_size: int, max_batch_time: float
    ) -> ComponentSettings:
        """The component's settings: this type's fields where set, the component's defaults
        otherwise; the batching knobs are the adapter's (MLServer's may sit outside extra)."""
        default = ComponentSettings()
        return ComponentSettings(
            model_uri=model_uri or None,
            device=default.device if self.device is None else self.device,
            dtype=default.dtype if self.dtype is None else self.dtype,
            warmup=default.warmup if self.warmup is None else self.warmup,
            max_batch_size=max_batch_size,
            max_batch_time=max_batch_time,
            instances=default.instances if self.instances is None else self.instances,
            options=dict(self.options),
        )


def _text(where: str, value: Json) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(where, f"expected a string, got {value!r}")
    return value


def _dtype(where: str, value: Json) -> str | None:
    if value is None:
        return None
    if value not in DTYPES:
        raise SettingsError(where, f"expected one of {list(DTYPES)}, got {value!r}")
    return str(value)


def _flag(where: str, value: Json) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise SettingsError(where, f"expected true or false, got {value!r}")
    return value


def _whole(where: str, value: Json, least: int, bound: str) -> int | None:
    """A whole number of at least `least` (JSON may write it as 2.0), or None when unset;
    `bound` says the limit in the error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise SettingsError(where, f"expected a whole number, got {value!r}")
    if value < least:
        raise SettingsError(where, f"must be {bound}, got {value!r}")
    return int(value)


def _count(where: str, value: Json) -> int | None:
    """Rows per forward pass. 0 is MLServer's own default for `max_batch_size` and means no
    batching, so it reads as 1, as it always has; only a negative count is an error."""
    count = _whole(where, value, 0, "0 (no batching) or more")
    return None if count is None else max(1, count)


def _instances(where: str, value: Json) -> int | None:
    """Copies of the model, each with its own forward thread."""
    return _whole(where, value, 1, "1 or more model copies")


def _millis(where: str, value: Json) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(where, f"expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise SettingsError(where, f"must be finite and not negative, got {value!r}")
    return float(value)


def _object(where: str, value: Json) -> dict[str, Json]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(where, f"expected a JSON object, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _aliases(where: str, value: Json) -> dict[str, str]:
    given = _object(where, value)
    aliases = {k: v for k, v in given.items() if isinstance(v, str)}
    if len(aliases) != len(given):
        raise SettingsError(where, "must map client name -> input")
    return aliases


def _wiring(where: str, value: Json) -> dict[str, Json] | None:
    return None if value is None else _object(where, value)
