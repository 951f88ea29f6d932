"""The serving engines a graph runs on, each one `Engine` in one table, `ENGINES`.

Why one table: what differs between engines (which renderer writes the manifests, how a node
is named and routed to, where the graph answers in the cluster, what its scalers can read)
was decided by string switches in the CLI, the renderers, the operator and the planner, so
adding an engine meant finding every one. Now each engine states its facts once here and
callers ask `engine(name)`; a new engine is one renderer module plus one entry below.

Importing this module imports no renderer (each is named here and imported on first use),
so the planner and operator stay light and `infergraph.render`, which asks this table,
forms no import cycle with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING

from infergraph.cluster_names import (
    SELDON_V1_PREDICTOR,
    kserve_service,
    seldon_v2_model,
    seldon_v2_pipeline_route,
)
from infergraph.cost.pods import PodShape, kserve_pods, seldon_v1_pods, seldon_v2_pods
from infergraph.errors import InfergraphError, RenderError
from infergraph.json_types import JSONObject, Manifest, at

if TYPE_CHECKING:
    from infergraph.graph.plan import GraphPlan
    from infergraph.render.options import RenderOptions
    from infergraph.render.seldon_v2 import ServedSettings


def _by_node_name(graph: str, node: str) -> str:
    return node


def _graph_name(graph: str) -> str:
    return graph


class UnknownEngineError(InfergraphError, ValueError):
    """An engine name outside the table (or one that cannot do what was asked of it);
    `valid` lists the names that can, so each caller can say them in its own words."""

    def __init__(self, name: str, valid: tuple[str, ...], purpose: str = "") -> None:
        self.name = name
        self.valid = valid
        if purpose and name in names():
            what = f"engine '{name}' cannot {purpose}"
        else:
            what = f"unknown engine '{name}'"
        super().__init__(f"{what}; choose one of {', '.join(valid)}")


@dataclass(frozen=True)
class Engine:
    """Everything the CLI, renderers, operator and planner need to know about one engine."""

    name: str
    # How the profiler reaches one node (`--engine` of `infergraph plan profile`); None: the
    # engine gives a node no endpoint of its own, so it cannot be profiled node by node.
    naming: str | None
    # `infergraph.render.<renderer>` writes its manifests; None: it renders nothing.
    renderer: str | None = None
    # (graph, node) -> the model name the node answers at under /v2/models/<name>/infer.
    served_name: Callable[[str, str], str] = _by_node_name
    # The header its mesh routes on (to the served name for a node, the graph's route for
    # the graph); None: the URL alone routes.
    route_header: str | None = None
    graph_route: Callable[[str], str] = _graph_name
    # (graph, namespace, live objects) -> the URL a client in the cluster calls.
    cluster_url: Callable[[str, str, list[Manifest]], str] | None = None
    # Models share Server pods (scraped by the server label, not the graph's).
    shared_servers: bool = False
    # Autoscaling metrics its scaling model cannot compute, each with why.
    refused_metrics: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Its scalers read custom metrics through prometheus-adapter (values file rendered).
    metrics_adapter: bool = False
    # Writes one model-settings.json per Model beside its manifests, for upload.
    settings_files: bool = False
    # The operator serves its Models' settings (`ServedSettings`) from its settings server.
    serves_settings: bool = False
    # Its renderer leaves notes for the user (printed by `infergraph render`).
    has_notes: bool = False
    # The pods it creates from the rendered objects, with their requests (what a graph costs
    # on it: `infergraph.cost.engine_cost`); None: it renders nothing to run.
    pods: Callable[[list[Manifest]], list[PodShape]] | None = None

    @property
    def deployed(self) -> bool:
        """Served on a cluster (any engine that renders): profiling it needs its URL."""
        return self.renderer is not None

    def pods_of(self, objs: list[Manifest]) -> list[PodShape]:
        """The pods it creates from its rendered `objs` (RenderError for an engine that
        renders nothing)."""
        if self.pods is None:
            valid = ", ".join(names(RENDERED))
            raise RenderError(self.name, f"it runs no pods; choose one of {valid}")
        return self.pods(objs)

    def _module(self) -> ModuleType:
        if self.renderer is None:
            valid = ", ".join(names(RENDERED))
            raise RenderError(self.name, f"it renders no manifests; choose one of {valid}")
        return import_module(f"infergraph.render.{self.renderer}")

    def render(self, plan: GraphPlan, options: RenderOptions | None) -> list[Manifest]:
        """Every Kubernetes object of the graph on this engine."""
        objs: list[Manifest] = self._module().render(plan, options)
        return objs

    def model_settings(
        self, plan: GraphPlan, options: RenderOptions | None
    ) -> dict[str, JSONObject]:
        """Model name -> its model-settings.json, for the engines that write them as files."""
        if not self.settings_files:
            return {}
        settings: dict[str, JSONObject] = self._module().model_settings(plan, options)
        return settings

    def served_settings(self, plan: GraphPlan, options: RenderOptions) -> dict[str, ServedSettings]:
        """Model name -> the settings the operator serves for it (none for most engines)."""
        if not self.serves_settings:
            return {}
        served: dict[str, ServedSettings] = self._module().served_settings(plan, options)
        return served

    def notes(self, objs: list[Manifest]) -> list[str]:
        """What the renderer wants the user told about these objects."""
        if not self.has_notes:
            return []
        notes: list[str] = self._module().render_notes(objs)
        return notes

    def node_headers(self, graph: str, node: str) -> dict[str, str]:
        """Headers that route a request to one node."""
        if self.route_header is None:
            return {}
        return {self.route_header: self.served_name(graph, node)}

    def graph_headers(self, graph: str) -> dict[str, str]:
        """Headers that route a request to the whole graph."""
        if self.route_header is None:
            return {}
        return {self.route_header: self.graph_route(graph)}


def _seldon_v2_url(graph: str, namespace: str, live: list[Manifest]) -> str:
    """The `seldon-mesh` Service routes `/v2/models/<graph>/infer` to the Pipeline when the
    request carries `Seldon-Model: <graph>.pipeline`."""
    return f"http://seldon-mesh.{namespace}/v2/models/{graph}/infer"


def _kserve_url(graph: str, namespace: str, live: list[Manifest]) -> str:
    """The InferenceGraph's router Service."""
    return f"http://{graph}.{namespace}"


def _seldon_v1_url(graph: str, namespace: str, live: list[Manifest]) -> str:
    """The executor Service `<graph>-<predictor>` on port 8000; for `protocol: v2` the path
    names no model, because the executor calls every unit with the URL's model name
    (seldon-core v1.18.2 executor/api/rest/server.go:315-318) while each unit's MLServer is
    named after its container, so `/v2/models/<graph>/infer` is a 404 and
    `/v2/models/infer` reaches them."""
    protocol = next(
        (at(o, "spec").get("protocol") for o in live if o.get("kind") == "SeldonDeployment"),
        "v2",
    )
    base = f"http://{graph}-{SELDON_V1_PREDICTOR}.{namespace}:8000"
    path = "/api/v1.0/predictions" if protocol == "seldon" else "/v2/models/infer"
    return base + path


_SELDON_V2_REFUSED = MappingProxyType(
    {
        "cpu": "Seldon Core v2 scales a Model and its Server on Prometheus metrics only "
        "(an HPA on a Model's scale subresource selects no pods, so CPU utilisation never "
        "computes); use metric rps, inflight or queue",
        "gpu": "metric 'gpu' cannot compute on Seldon Core v2: a Model's scale "
        "selector is `server=<name>` (seldon-core operator/scheduler/model.go:271), which "
        "matches no pod, so a per-pod GPU average over the Model never computes, and "
        "scaling the Server alone leaves the Model's replicas behind; use metric queue, "
        "inflight or rps (GPU utilisation scaling works on seldon-v1 and kserve)",
    }
)

# Table order is the order engines are listed and rendered in (k8s/rendered/<engine>/).
ENGINES: tuple[Engine, ...] = (
    Engine(
        name="local",
        naming="by node name: the local runner, MLServer, Triton",
    ),
    Engine(
        name="seldon-v2",
        naming="the mesh: Models <graph>-<node> picked by the seldon-model header, the graph "
        "as <graph>.pipeline",
        renderer="seldon_v2",
        served_name=seldon_v2_model,
        route_header="seldon-model",
        graph_route=seldon_v2_pipeline_route,
        cluster_url=_seldon_v2_url,
        shared_servers=True,
        refused_metrics=_SELDON_V2_REFUSED,
        metrics_adapter=True,
        settings_files=True,
        serves_settings=True,
        pods=seldon_v2_pods,
    ),
    Engine(
        name="seldon-v1",
        naming=None,
        renderer="seldon_v1",
        cluster_url=_seldon_v1_url,
        pods=seldon_v1_pods,
    ),
    Engine(
        name="kserve",
        naming="InferenceServices <graph>-<node>; give each its host with --node-endpoint",
        renderer="kserve",
        served_name=kserve_service,
        cluster_url=_kserve_url,
        has_notes=True,
        pods=kserve_pods,
    ),
)

# The engines `infergraph render` and the operator can deploy to.
RENDERED: tuple[Engine, ...] = tuple(e for e in ENGINES if e.renderer is not None)
# The engines whose nodes the profiler can reach one by one.
PROFILED: tuple[Engine, ...] = tuple(e for e in ENGINES if e.naming is not None)


def names(among: tuple[Engine, ...] = ENGINES) -> tuple[str, ...]:
    """The engines' names, in table order (what help texts and errors list)."""
    return tuple(e.name for e in among)


def engine(name: str, among: tuple[Engine, ...] = ENGINES, purpose: str = "") -> Engine:
    """The engine called `name` among `among`; UnknownEngineError names the valid ones
    (`purpose` says what the others cannot do, for a known engine outside `among`)."""
    for candidate in among:
        if candidate.name == name:
            return candidate
    raise UnknownEngineError(name, names(among), purpose)


def listing(among: tuple[Engine, ...], describe: Callable[[Engine], str] = lambda e: e.name) -> str:
    """'a, b or c' (each described by `describe`), for help texts."""
    parts = [describe(e) for e in among]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"
