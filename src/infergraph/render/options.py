"""What a cluster deployment decides that the graph file does not: where artifacts live,
which registry the images come from, and where node pods are scheduled.

`infergraph render` builds these from flags, the operator from its Helm values; every
renderer takes one `RenderOptions` so both produce the same objects for the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infergraph.container_images import DEFAULT_REGISTRY
from infergraph.json_types import JSONObject

# Where a standard Seldon Core v2 install runs its controller (its POD_NAMESPACE).
SELDON_NAMESPACE = "seldon-mesh"


@dataclass(frozen=True)
class PodScheduling:
    """Applied to every node pod that asks for a GPU (`resources.gpu > 0`)."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[JSONObject] = field(default_factory=list)
    affinity: JSONObject | None = None
    runtime_class_name: str | None = None


@dataclass(frozen=True)
class RenderOptions:
    """`storage_uri` is the prefix model-settings.json folders are uploaded under
    (`<storage_uri>/<graph>/<node>`); the graph annotation `infergraph.io/storage-uri`
    overrides it per graph. None and no annotation: rendering stops and says how to give one.

    `settings_url` is the base URL of the operator's model-settings server (the chart's
    `<release>-settings` Service). Set, Seldon v2 Models whose weights are not in their storage
    folder (hub ids, family defaults, the gate/pass/combine helpers) read model-settings.json
    from there: `Model.spec.storageUri` is an rclone `http` connection string ending in the
    settings' content hash (`seldon_v2.settings_source`), so a settings edit changes the Model.
    None (`infergraph render` without `--settings-url`): their folder in `storage_uri`, where
    the user uploads the rendered files.

    `seldon_namespace` is Seldon Core v2's controller namespace: the only one its controller
    reads ServerConfigs from (seldon-core v2.10.2 operator/apis/mlops/v1alpha1/
    serverconfig_types.go:75-87), so a graph's ServerConfigs render there, named
    `<graph namespace>-<name>`. None: each graph's own namespace (a namespaced install).
    """

    storage_uri: str | None = None
    image_registry: str = DEFAULT_REGISTRY
    image_tag: str | None = None
    gpu_scheduling: PodScheduling = field(default_factory=PodScheduling)
    settings_url: str | None = None
    # Secrets (in each graph's namespace) every node pod pulls its images with: a private
    # `image_registry` needs them on the pods, not only on the operator.
    image_pull_secrets: tuple[str, ...] = ()
    seldon_namespace: str | None = SELDON_NAMESPACE
