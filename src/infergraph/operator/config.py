"""Operator settings: what the Helm chart sets as environment variables (or flags override).

`render_options()` turns them into the one `RenderOptions` the renderers take, so the operator
and `infergraph render` produce the same objects for the same graph and settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infergraph.container_images import DEFAULT_REGISTRY
from infergraph.errors import SettingsError
from infergraph.render import ENGINES
from infergraph.render.options import PodScheduling, RenderOptions

FIELD_MANAGER = "infergraph-operator"
ENV_PREFIX = "INFERGRAPH_"


@dataclass(frozen=True)
class OperatorConfig:
    """`namespaces` empty: watch every namespace (the chart's cluster-wide RBAC)."""

    default_engine: str = "seldon-v2"
    namespaces: tuple[str, ...] = ()
    storage_uri: str | None = None
    image_registry: str = DEFAULT_REGISTRY
    image_tag: str | None = None
    gpu_scheduling: PodScheduling = field(default_factory=PodScheduling)
    field_manager: str = FIELD_MANAGER
    drift_interval_s: float = 60.0
    metrics_port: int = 8080
    health_port: int = 8081
    price_catalog: str | None = None
    # Seldon v2's controller namespace: ServerConfigs go there (None: the graph's namespace).
    seldon_namespace: str | None = None
    # The model-settings server (`settings_server`): its port, and the URL Seldon's agents reach
    # it at (the chart's `<release>-settings` Service). None: Seldon v2 Models keep their
    # storage folder and the settings must be uploaded there by hand (docs/rendering.md).
    settings_url: str | None = None
    settings_port: int = 8082
    # Retry of a pass that left children unapplied: kopf's TemporaryError delay doubles from
    # the base with each retry, up to the max (the drift timer's own runs included).
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0

    def __post_init__(self) -> None:
        if self.default_engine not in ENGINES:
            raise SettingsError(
                "defaultEngine", f"'{self.default_engine}' is not one of {', '.join(ENGINES)}"
            )
        if self.drift_interval_s <= 0:
            raise SettingsError("driftInterval", "must be > 0 seconds")
        if not 0 < self.retry_base_s <= self.retry_max_s:
            raise SettingsError("retry", "need 0 < retry_base_s <= retry_max_s")

    def retry_delay(self, retry: int) -> float:
        """Seconds before retry number `retry` (0 for the first) of a pass with refusals."""
        return min(self.retry_base_s * 2 ** min(retry, 30), self.retry_max_s)

    def render_options(self) -> RenderOptions:
        return RenderOptions(
            storage_uri=self.storage_uri,
            image_registry=self.image_registry,
            image_tag=self.image_tag,
            gpu_scheduling=self.gpu_scheduling,
            settings_url=self.settings_url,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> OperatorConfig:
        """Read INFERGRAPH_* variables (names in `ENV`); keyword overrides win (CLI flags)."""
        env = os.environ if env is None else env
        # One value per field, each of its field's type by its parser in `ENV`: the dataclass's
        # own signature cannot be checked against a table, so the values stay untyped here.
        values: dict[str, Any] = {}
        for attr, (name, parse) in ENV.items():
            raw = env.get(ENV_PREFIX + name)
            if raw not in (None, ""):
                try:
                    values[attr] = parse(raw)
                except (ValueError, TypeError) as exc:
                    raise SettingsError(ENV_PREFIX + name, str(exc)) from None
        scheduling = {
            key: values.pop(key)
            for key in ("node_selector", "tolerations", "affinity", "runtime_class_name")
            if key in values
        }
        values["gpu_scheduling"] = PodScheduling(**scheduling)
        values.update({k: v for k, v in overrides.items() if v not in (None, ())})
        return cls(**values)


def _json_of(kind: type) -> Any:
    def parse(raw: str) -> Any:
        value = json.loads(raw)
        if not isinstance(value, kind):
            raise ValueError(f"expected JSON {kind.__name__}, got {type(value).__name__}")
        return value

    return parse


def _namespaces(raw: str) -> tuple[str, ...]:
    return tuple(ns.strip() for ns in raw.split(",") if ns.strip())


# Attribute -> (variable name after INFERGRAPH_, parser). The chart's Deployment sets these.
ENV: dict[str, tuple[str, Any]] = {
    "default_engine": ("DEFAULT_ENGINE", str),
    "namespaces": ("WATCH_NAMESPACES", _namespaces),
    "storage_uri": ("STORAGE_URI", str),
    "image_registry": ("IMAGE_REGISTRY", str),
    "image_tag": ("IMAGE_TAG", str),
    "node_selector": ("GPU_NODE_SELECTOR", _json_of(dict)),
    "tolerations": ("GPU_TOLERATIONS", _json_of(list)),
    "affinity": ("GPU_AFFINITY", _json_of(dict)),
    "runtime_class_name": ("GPU_RUNTIME_CLASS", str),
    "drift_interval_s": ("DRIFT_INTERVAL_SECONDS", float),
    "metrics_port": ("METRICS_PORT", int),
    "health_port": ("HEALTH_PORT", int),
    "price_catalog": ("PRICE_CATALOG", str),
    "seldon_namespace": ("SELDON_NAMESPACE", str),
    "settings_url": ("SETTINGS_URL", str),
    "settings_port": ("SETTINGS_PORT", int),
}
