"""Shipped mlserver/<family>/model-settings.json files are what MLServer and the registry expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mlserver.settings import ModelSettings, Settings

from infergraph.checkpoints.tokenizers import minilm_dir
from infergraph.components.registry import component_class, family_names
from infergraph.serving.mlserver_runtime import ComponentRuntime
from tests.servers import free_port, start_until_bound, stop, wait_ready

REPO = Path(__file__).resolve().parent.parent
FILES = sorted((REPO / "mlserver").glob("*/model-settings.json"))
PLUMBING = {"identity", "combiner", "crop-filter", "gate", "image-preprocessing"}


def test_every_model_family_ships_settings() -> None:
    shipped = {json.loads(f.read_text())["parameters"]["extra"]["family"] for f in FILES}
    assert set(family_names()) - PLUMBING <= shipped


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_settings_parse_and_name_a_real_checkpoint(path: Path) -> None:
    raw = json.loads(path.read_text())
    settings = ModelSettings.model_validate(raw)
    assert settings.implementation is ComponentRuntime
    extra = settings.parameters.extra
    cls = component_class(extra["family"])
    assert settings.parameters.uri, "the real checkpoint a user would deploy"
    assert settings.max_batch_size >= 1 and settings.max_batch_time >= 0
    assert extra.get("dtype", "fp32") in ("fp32", "fp16", "bf16")
    assert cls.uses_gpu


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_server_settings_keep_the_model_in_process(path: Path) -> None:
    """Each folder's settings.json: the runtime's extra routes need MLServer's own process."""
    settings = Settings.model_validate(json.loads((path.parent / "settings.json").read_text()))
    assert settings.parallel_workers == 0


@pytest.mark.slow  # starts a real `mlserver start`
def test_a_shipped_folder_serves_as_the_readme_starts_it(tmp_path: Path) -> None:
    """`mlserver start mlserver/text-embedding`, ports from MLServer's environment variables.

    The folder is copied as shipped; only the checkpoint points at the local copy of the
    real all-MiniLM-L6-v2 (no hub here). The model configuration and statistics routes
    answer only when the model runs in MLServer's process, as settings.json asks.
    """
    folder = Path(shutil.copytree(REPO / "mlserver" / "text-embedding", tmp_path / "embed"))
    model = json.loads((folder / "model-settings.json").read_text())
    model["parameters"]["uri"] = str(minilm_dir())
    (folder / "model-settings.json").write_text(json.dumps(model))
    proc, url = start_until_bound(lambda: _start_shipped(folder, tmp_path))
    try:
        name = model["name"]
        answer = httpx.post(
            f"{url}/v2/models/{name}/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{url}/v2/models/{name}/config", timeout=10).json()["name"] == name
        stats = httpx.get(f"{url}/v2/models/{name}/stats", timeout=10).json()
        assert stats["model_stats"][0]["inference_count"] == 1
    finally:
        stop(proc)


def _start_shipped(folder: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """One `mlserver start FOLDER` with fresh ports in MLServer's environment variables."""
    ports = {f"MLSERVER_{kind}_PORT": str(free_port()) for kind in ("HTTP", "GRPC", "METRICS")}
    env = {**os.environ, **ports, "MLSERVER_HOST": "127.0.0.1", "HF_HUB_OFFLINE": "1"}
    exe = shutil.which("mlserver", path=str(Path(sys.executable).parent)) or "mlserver"
    log = workdir / f"mlserver-{ports['MLSERVER_HTTP_PORT']}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [exe, "start", str(folder)], stdout=sink, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{ports['MLSERVER_HTTP_PORT']}"
    try:
        wait_ready(url, proc, lambda: log.read_text(errors="replace"), 180, "mlserver")
    except BaseException:
        stop(proc)
        raise
    return proc, url
