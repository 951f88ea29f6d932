"""Two versions of one model in one MLServer: each REST request reaches the version MLServer's
registry picks, as over gRPC and MLServer's own routes.

Every version registers the same routes (`/v2/models/echo/infer` and its `versions/{v}`
twin), and the first registered answered them all: a request for version 2 got version 1's
404 ("has no version '2'") although version 2 was loaded, and an unversioned one was answered
by whichever loaded first, where MLServer's registry answers with the newest.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.controlled import EXTRA_FAMILIES
from tests.servers import MLServerProcess, families_env, mlserver, settle, write_model

pytestmark = pytest.mark.slow

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("versions")
    for version in ("1", "2"):
        folder = write_model(root / f"v{version}", "echo", "identity")
        settings_path = folder / "model-settings.json"
        settings = json.loads(settings_path.read_text())
        settings["parameters"]["version"] = version
        settings_path.write_text(json.dumps(settings))
    with mlserver(root) as srv:
        yield srv


def _infer(server: MLServerProcess, path: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/echo{path}/infer", json=BODY, timeout=60)


@pytest.mark.parametrize("version", ["1", "2"])
def test_each_version_answers_its_own_requests(server: MLServerProcess, version: str) -> None:
    answer = _infer(server, f"/versions/{version}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert answer.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_an_unversioned_request_reaches_the_newest_as_mlservers_registry_picks(
    server: MLServerProcess,
) -> None:
    answer = _infer(server, "")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "2"


def test_a_version_not_loaded_is_a_404_naming_it(server: MLServerProcess) -> None:
    answer = _infer(server, "/versions/3")
    assert answer.status_code == 404, answer.text
    assert "3" in answer.text and "echo" in answer.text


@pytest.mark.parametrize("version", ["1", "2"])
def test_binary_requests_reach_their_version_too(server: MLServerProcess, version: str) -> None:
    """The binary tensor extension, which only the runtime's own route reads. Both versions:
    which one's route comes first depends on which finished loading first."""
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    body = header + np.array([1.0, 2.0], dtype=np.float32).tobytes()
    answer = httpx.post(
        f"{server.url}/v2/models/echo/versions/{version}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    size = int(answer.headers.get("Inference-Header-Content-Length", len(answer.content)))
    assert json.loads(answer.content[:size])["model_version"] == version


def _versioned(root: Path, version: str, **options: object) -> None:
    folder = write_model(root / f"v{version}", "echo", "controlled", base_ms=1, **options)
    settings_path = folder / "model-settings.json"
    settings = json.loads(settings_path.read_text())
    settings["parameters"]["version"] = version
    settings_path.write_text(json.dumps(settings))


def test_a_version_still_loading_is_not_ready_and_the_loaded_one_answers(tmp_path: Path) -> None:
    """MLServer registers a new version (and makes it the default) before its load() runs:
    the route that hands requests to the registry's version handed them to one with no
    engine yet, and every request got a 500 for the whole load. Unversioned requests stay
    with the loaded version; the loading one's own are MLServer's 400 "not ready yet"."""
    root = tmp_path / "models"
    _versioned(root, "1")
    with mlserver(root, env=families_env(EXTRA_FAMILIES)) as server:
        _versioned(root, "2", load_ms=6000)
        url = f"{server.url}/v2/repository/models/echo/load"
        loader = threading.Thread(target=lambda: httpx.post(url, timeout=120))
        loader.start()
        ready_2 = f"{server.url}/v2/models/echo/versions/2/ready"
        settle(lambda: httpx.get(ready_2, timeout=10).status_code != 404, "version 2 registered")
        unversioned = _infer(server, "")
        assert unversioned.status_code == 200, unversioned.text
        assert unversioned.json()["model_version"] == "1"
        loading = _infer(server, "/versions/2")
        assert loading.status_code == 400, loading.text
        assert "not ready" in loading.text
        loader.join(120)
        assert _infer(server, "").json()["model_version"] == "2"
