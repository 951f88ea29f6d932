"""A node as MLServer's model-settings.json: what the local runner writes and renderers ship."""

from __future__ import annotations

from collections.abc import Mapping

from infergraph.graph.model import Node
from infergraph.graph.runtime_settings import Json, RuntimeSettings
from infergraph.json_types import JSONObject

RUNTIME_IMPLEMENTATION = "infergraph.serving.mlserver_runtime.ComponentRuntime"


def model_settings(
    name: str,
    family: str,
    node: Node | None,
    uri: str | None,
    *,
    component_options: Mapping[str, Json] | None = None,
    relay: bool = False,
    graph_step: Mapping[str, Json] | None = None,
) -> JSONObject:
    """Same format as the repo's mlserver/<family>/model-settings.json files.

    `node` None is a weightless helper the renderers add (gates, pass-throughs), whose
    knobs (a gate's condition, a combiner's method) come as `component_options`;
    `uri` None leaves MLServer to point the runtime at the artifact folder.
    """
    settings: JSONObject = {
        "name": name,
        "implementation": RUNTIME_IMPLEMENTATION,
        "max_batch_size": node.batching.max_batch_size if node else 1,
        "max_batch_time": round(node.batching.max_batch_time_ms / 1000.0, 6) if node else 0.0,
    }
    params: JSONObject = {}
    if uri:
        params["uri"] = uri
    params["extra"] = runtime_settings(
        family, node, component_options, relay, graph_step
    ).to_extra()
    settings["parameters"] = params
    return settings


def runtime_settings(
    family: str,
    node: Node | None,
    component_options: Mapping[str, Json] | None = None,
    relay: bool = False,
    graph_step: Mapping[str, Json] | None = None,
) -> RuntimeSettings:
    """The node's runtime keys, with its options nested, never merged over them."""
    options = {**(node.options if node else {}), **(component_options or {})}
    if node is None:
        return RuntimeSettings(
            family=family, relay_request_parameters=relay, graph_step=graph_step, options=options
        )
    return RuntimeSettings(
        family=family,
        device=node.device,
        dtype=node.dtype,
        max_batch_size=node.batching.max_batch_size,
        max_batch_time_ms=node.batching.max_batch_time_ms,
        max_queue_rows=node.batching.max_queue_rows,
        instances=node.instances if node.instances > 1 else None,
        relay_request_parameters=relay,
        graph_step=graph_step,
        options=options,
    )
