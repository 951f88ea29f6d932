"""A node as MLServer's model-settings.json: what the local runner writes and renderers ship."""

from __future__ import annotations

from infergraph.graph.model import Node
from infergraph.json_types import JSONObject

RUNTIME_IMPLEMENTATION = "infergraph.serving.mlserver_runtime.ComponentRuntime"


def model_settings(
    name: str,
    family: str,
    node: Node | None,
    uri: str | None,
    extra: JSONObject | None = None,
) -> JSONObject:
    """Same format as the repo's mlserver/<family>/model-settings.json files.

    `node` None is a weightless helper the renderers add (gates, pass-throughs);
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
    full_extra: JSONObject = {"family": family}
    if node is not None:
        full_extra.update({"device": node.device, "dtype": node.dtype})
        # Seldon Core v2's agent rewrites model-settings.json keeping only `parameters` (and
        # name, inputs, outputs, platform, versions, parallel_workers, implementation), so
        # the batching settings travel here too; the runtime prefers these.
        full_extra["max_batch_size"] = node.batching.max_batch_size
        full_extra["max_batch_time_ms"] = node.batching.max_batch_time_ms
        full_extra.update(node.options)
    full_extra.update(extra or {})
    params["extra"] = full_extra
    settings["parameters"] = params
    return settings
