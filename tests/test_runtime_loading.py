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
