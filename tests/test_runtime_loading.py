"""How the MLServer runtime loads models, through a real `mlserver start`.

Seldon v2 starts MLServer with `MLSERVER_LOAD_MODELS_AT_STARTUP=false` and a liveness
probe on `/v2/health/live` (src/infergraph/render/seldon_v2.py `_server_config`); the agent
then asks for each model through MLServer's repository API. MLServer awaits `model.load()`
on the loop that also answers the probes (MLServer 1.7 mlserver/registry.py
`_load_model`; handlers/dataplane.py `live`), so a load that blocks the loop for longer
than the probe allows gets the container killed mid-download.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.hub_server import hub_server
from tests.servers import mlserver, v2_input, write_model

pytestmark = pytest.mark.slow  # every test here starts a real MLServer

# The kubelet's default probe timeout (timeoutSeconds: 1).
PROBE_TIMEOUT_S = 1.0


def test_liveness_answers_while_a_model_downloads_on_a_cold_cache(tmp_path: Path) -> None:
    from infergraph.checkpoints.text_classification import build_text_classifier

    checkpoint = build_text_classifier(tmp_path / "checkpoint")
    models = tmp_path / "models"
    models.mkdir()
    write_model(models, "slow", "text-classification", "acme/slow-classifier", device="cpu")
    with hub_server(checkpoint) as hub:
        env = {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "cold-cache"),
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
        }
        with mlserver(models, env=env, load_models_at_startup=False) as server:
            answers: list[httpx.Response] = []

            def agent_load() -> None:  # what Seldon's agent does for each Model
                url = f"{server.url}/v2/repository/models/slow/load"
                answers.append(httpx.post(url, timeout=300))

            loader = threading.Thread(target=agent_load)
            loader.start()
            assert hub.weights_requested.wait(timeout=120), server.log()[-3000:]
            # The load is now blocked on the weights download: probe as the kubelet does.
            for _ in range(5):
                live = httpx.get(f"{server.url}/v2/health/live", timeout=PROBE_TIMEOUT_S)
                assert live.status_code == 200
                time.sleep(0.3)
            loading = httpx.get(f"{server.url}/v2/models/slow/ready", timeout=PROBE_TIMEOUT_S)
            assert loading.status_code != 200, "the model answered ready before its weights came"
            hub.release()
            loader.join(timeout=300)
            assert answers and answers[0].status_code == 200, server.log()[-3000:]
            reply = server.infer("slow", {"inputs": [v2_input("text", "BYTES", ["fine"], [1])]})
            assert reply.status_code == 200, reply.text
            assert reply.json()["outputs"][0]["name"] == "label"


def test_artifact_folder_laid_out_as_the_seldon_v2_agent_lays_it_out(tmp_path: Path) -> None:
    """A Model whose storageUri holds its weights loads those weights, not the family default
    (audit 9, refuted by MLServer's source). The renderer omits `parameters.uri` for it
    (src/infergraph/render/common.py `artifact`); the agent copies the artifact to
    `<agent-folder>/models/<model>_<version>/<version>/` (seldon-core v2.10.2
    scheduler/pkg/agent/repository/model_repository.go:151-170, the name from
    agent_svc_manager.go:686 and 711-716, version pinned to 1 in pkg/util/model.go:36-38,
    agent folder /mnt/agent in cmd/agent/cli/flags.go:39 and main.go:51) and rewrites
    model-settings.json (repository/mlserver/mlserver.go:144-161); MLServer is started on
    `/mnt/agent/models` (the rendered ServerConfig's MLSERVER_MODELS_DIR). MLServer 1.7.0
    sets an absent `parameters.uri` to the folder it read model-settings.json from
    (mlserver/repository/load.py:25-28, `load_model_settings`), for startup loads and for the
    repository API the agent calls alike, so the runtime receives the artifact folder."""
    import json

    from infergraph.checkpoints.text_classification import build_text_classifier
    from infergraph.graph.plan import parse_graph
    from infergraph.render import EXAMPLE_STORAGE, RenderOptions
    from infergraph.render import seldon_v2 as v2
    from tests.engines.seldon_v2 import agent_rewrite, loaded_name

    graph = parse_graph(
        {
            "apiVersion": "infergraph.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "art", "namespace": "ml"},
            "spec": {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "nodes": [
                    {
                        "name": "cls",
                        "family": "text-classification",
                        "modelUri": "s3://bucket/checkpoints/cls",
                        "options": {"device": "cpu"},
                    }
                ],
                "graph": {"node": "cls"},
            },
        }
    )
    rendered = v2.model_settings(graph, RenderOptions(storage_uri=EXAMPLE_STORAGE))["art-cls"]
    assert "uri" not in rendered["parameters"]  # the weights are the artifact
    agent_models = tmp_path / "mnt" / "agent" / "models"
    version_folder = agent_models / loaded_name("art-cls") / "1"
    build_text_classifier(version_folder)
    # Labels no default checkpoint has: the answer shows which weights were loaded.
    config = json.loads((version_folder / "config.json").read_text())
    config["id2label"] = {"0": "artifact-negative", "1": "artifact-positive"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (version_folder / "config.json").write_text(json.dumps(config))
    settings = agent_rewrite(rendered)
    (version_folder / "model-settings.json").write_text(json.dumps(settings))
    with mlserver(agent_models, env={"HF_HOME": str(tmp_path / "empty-cache")}) as server:
        reply = server.infer(
            loaded_name("art-cls"), {"inputs": [v2_input("text", "BYTES", ["ok"])]}
        )
        assert reply.status_code == 200, reply.text
        label = next(o for o in reply.json()["outputs"] if o["name"] == "label")
        assert label["data"][0] in {"artifact-negative", "artifact-positive"}
