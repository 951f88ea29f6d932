"""What each engine names the objects a graph becomes: one leaf module that the renderers, which
create the objects, and the engine table (`infergraph.engines`), which the planner and the
operator ask, both read, so neither has to import the other.
"""

from __future__ import annotations

import hashlib

SELDON_V1_PREDICTOR = "default"
# The label on every object rendered for one graph node (the cost of a cluster reads it).
NODE_LABEL = "infergraph.io/node"


def k8s_name(*parts: str, limit: int = 63) -> str:
    """Join parts into a DNS-1123 label; over-long names keep a stable hash suffix."""
    name = "-".join(p.strip("-") for p in parts if p)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def seldon_v2_model(graph: str, step: str) -> str:
    """The Seldon `Model` a plan step is deployed as (its name in the mesh's `seldon-model`)."""
    return k8s_name(graph, step)


def seldon_v2_pipeline_route(graph: str) -> str:
    """What the mesh's `seldon-model` header names to reach the graph's `Pipeline`.

    Envoy matches the header exactly: a model's route is its name, a pipeline's its name
    with the `.pipeline` suffix (seldon-core `scheduler/pkg/envoy/xdscache/resource.go`,
    `makePipelineEnvoyRoute`; the suffix is `util.SeldonPipelineHeaderSuffix`).
    """
    return f"{graph}.pipeline"


# The longest InferenceService name KServe can run in Standard mode: its predictor's pods and
# selector carry `app: isvc.<isvc>-predictor` (kserve@aaac4e2 pkg/constants/constants.go:
# 758-760, 802-807; reconcilers/deployment/deployment_reconciler.go:146, 153), a label value
# of at most 63 characters.
KSERVE_SERVICE_MAX = 63 - len("isvc.") - len("-predictor")


def kserve_service(graph: str, step: str) -> str:
    """The InferenceService a plan step is deployed as; its MLServer serves the model under
    the same name (`MLSERVER_MODEL_NAME`). Past KSERVE_SERVICE_MAX characters it keeps a
    stable hash suffix."""
    return k8s_name(graph, step, limit=KSERVE_SERVICE_MAX)
