"""Graph pods pull from a private registry: `graphImages.pullSecrets` (chart), the operator's
INFERGRAPH_IMAGE_PULL_SECRETS, `infergraph render --image-pull-secret`, one RenderOptions
field, rendered into every pod spec our images run in: the Seldon v2 ServerConfig's podSpec,
each Seldon v1 componentSpec and the KServe predictor (PodSpec fields inline). Without it a
registry that needs credentials left every node pod in ImagePullBackOff (chart review of
2026-12-07), unless the user attached the secret to each engine's service accounts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infergraph.graph.plan import load_graph
from infergraph.operator.config import OperatorConfig
from infergraph.render import render
from infergraph.render.options import RenderOptions
from tests.test_chart import REQUIRED, by_kind, template
from tests.test_render_schemas import _skip_without_crds, validate

REPO = Path(__file__).resolve().parent.parent
SECRETS = ("registry-credentials", "mirror")


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind == "ServerConfig":
            specs.append(spec["podSpec"])
        elif kind == "SeldonDeployment":
            specs += [c["spec"] for p in spec["predictors"] for c in p["componentSpecs"]]
        elif kind == "InferenceService":
            specs.append(spec["predictor"])
    return specs


@pytest.mark.parametrize("engine", ["seldon-v2", "seldon-v1", "kserve"])
def test_every_pod_of_ours_gets_the_pull_secrets(engine: str) -> None:
    _skip_without_crds()
    graph = load_graph(REPO / "k8s/graphs/cascade.yaml")
    options = RenderOptions(storage_uri="s3://b/p", image_pull_secrets=SECRETS)
    objects = render(graph, engine, options)
    specs = pod_specs(objects)
    assert specs, engine
    for spec in specs:
        assert spec["imagePullSecrets"] == [{"name": name} for name in SECRETS]
    assert [p for obj in objects for p in validate(obj)] == []
    plain = pod_specs(render(graph, engine, RenderOptions(storage_uri="s3://b/p")))
    assert all("imagePullSecrets" not in spec for spec in plain)


def test_the_chart_hands_them_to_the_operator() -> None:
    values = {**REQUIRED, "graphImages": {"pullSecrets": list(SECRETS)}}
    container = by_kind(template(values), "Deployment")[0]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in container["containers"][0]["env"]}
    config = OperatorConfig.from_env({k: v for k, v in env.items() if v is not None})
    assert config.render_options().image_pull_secrets == SECRETS
