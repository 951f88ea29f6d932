"""Operator settings: what the Helm chart sets as environment variables (or flags override).

`render_options()` turns them into the one `RenderOptions` the renderers take, so the operator
and `infergraph render` produce the same objects for the same graph and settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from infergraph.container_images import DEFAULT_REGISTRY
from infergraph.errors import SettingsError
from infergraph.json_types import JSONObject, as_object, as_objects, as_str_map
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
    image_pull_secrets: tuple[str, ...] = ()  # on every graph pod (`RenderOptions`)
    gpu_scheduling: PodScheduling = field(default_factory=PodScheduling)
    field_manager: str = FIELD_MANAGER
    drift_interval_s: float = 60.0
    # A graph waiting on its children is passed every `settle_interval_s`, for at most
    # `settle_window_s` per generation (`settling.SettleClock`).
    settle_interval_s: float = 5.0
    settle_window_s: float = 600.0
    metrics_port: int = 8080
    health_port: int = 8081
    price_catalog: str | None = None
    # Read the cluster's Nodes and their per-node pods for what a node of each class leaves a
    # new pod (`cost.observed`), every `node_refresh_s`; needs list on nodes and pods.
    observe_nodes: bool = False
    node_refresh_s: float = 300.0
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
        if self.settle_interval_s <= 0:
            raise SettingsError("settleInterval", "must be > 0 seconds")
        if self.settle_window_s < 0:
            raise SettingsError("settleWindow", "must be >= 0 seconds")
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
            image_pull_secrets=self.image_pull_secrets,
            seldon_namespace=self.seldon_namespace,
        )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        default_engine: str | None = None,
        namespaces: tuple[str, ...] = (),
    ) -> OperatorConfig:
        """Read INFERGRAPH_* variables (the chart's Deployment sets them); the flags of
        `infergraph operator` (`default_engine`, `namespaces`) win where given. An unset or
        empty variable leaves its setting at the default; a bad one is a SettingsError naming
        the variable."""
        read = _Environment(os.environ if env is None else env)
        defaults = cls()
        engine = read("DEFAULT_ENGINE", str, defaults.default_engine)
        watched = read("WATCH_NAMESPACES", _names, defaults.namespaces)
        return cls(
            default_engine=engine if default_engine is None else default_engine,
            namespaces=namespaces or watched,
            storage_uri=read("STORAGE_URI", str, defaults.storage_uri),
            image_registry=read("IMAGE_REGISTRY", str, defaults.image_registry),
            image_tag=read("IMAGE_TAG", str, defaults.image_tag),
            image_pull_secrets=read("IMAGE_PULL_SECRETS", _names, defaults.image_pull_secrets),
            gpu_scheduling=_gpu_scheduling(read, defaults.gpu_scheduling),
            drift_interval_s=read("DRIFT_INTERVAL_SECONDS", float, defaults.drift_interval_s),
            settle_interval_s=read("SETTLE_INTERVAL_SECONDS", float, defaults.settle_interval_s),
            settle_window_s=read("SETTLE_WINDOW_SECONDS", float, defaults.settle_window_s),
            metrics_port=read("METRICS_PORT", int, defaults.metrics_port),
            health_port=read("HEALTH_PORT", int, defaults.health_port),
            price_catalog=read("PRICE_CATALOG", str, defaults.price_catalog),
            observe_nodes=read("OBSERVE_NODES", _flag, defaults.observe_nodes),
            node_refresh_s=read("NODE_REFRESH_SECONDS", float, defaults.node_refresh_s),
            seldon_namespace=read("SELDON_NAMESPACE", str, defaults.seldon_namespace),
            settings_url=read("SETTINGS_URL", str, defaults.settings_url),
            settings_port=read("SETTINGS_PORT", int, defaults.settings_port),
        )


class _Environment:
    """The INFERGRAPH_* variables of one environment, each read as its setting's type."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__[T](self, name: str, parse: Callable[[str], T], default: T) -> T:
        """`INFERGRAPH_<name>` parsed, or `default` when it is unset or empty."""
        raw = self._env.get(ENV_PREFIX + name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:  # JSONShapeError is a TypeError
            raise SettingsError(ENV_PREFIX + name, str(exc)) from None


def _flag(raw: str) -> bool:
    """ "true" or "false", as Helm writes a boolean value."""
    if raw.lower() not in ("true", "false"):
        raise ValueError(f"expected true or false, got {raw!r}")
    return raw.lower() == "true"


def _gpu_scheduling(read: _Environment, defaults: PodScheduling) -> PodScheduling:
    """What the chart's `gpuScheduling` values set: JSON objects and lists, a class name."""
    return PodScheduling(
        node_selector=read("GPU_NODE_SELECTOR", _str_map, defaults.node_selector),
        tolerations=read("GPU_TOLERATIONS", _objects, defaults.tolerations),
        affinity=read("GPU_AFFINITY", _object, defaults.affinity),
        runtime_class_name=read("GPU_RUNTIME_CLASS", str, defaults.runtime_class_name),
    )


def _str_map(raw: str) -> dict[str, str]:
    return as_str_map(json.loads(raw), "$")


def _objects(raw: str) -> list[JSONObject]:
    return as_objects(json.loads(raw), "$")


def _object(raw: str) -> JSONObject:
    return as_object(json.loads(raw), "$")


def _names(raw: str) -> tuple[str, ...]:
    """A comma-separated list of names (namespaces, secrets)."""
    return tuple(name.strip() for name in raw.split(",") if name.strip())
