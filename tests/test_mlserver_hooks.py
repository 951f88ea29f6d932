"""The runtime's hooks into MLServer's internals (serving/mlserver_hooks.py), pinned.

The version gate fails loudly for an MLServer the hooks were not read against; on the
installed one, each hook is checked through a real `mlserver start`, for a model loaded at
startup and one loaded later through the repository API (as Seldon v2's agent loads them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from mlserver.settings import ModelParameters, ModelSettings

import mlserver
from infergraph.serving import mlserver_hooks
from infergraph.serving.mlserver_hooks import MLServerVersionError, require_supported_mlserver
from infergraph.serving.triton_grpc import SERVICE
from tests.servers import MLServerProcess, write_model
from tests.servers import mlserver as start_mlserver


# -- the version gate ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.8.0", "1.6.2", "2.0.0rc1", "unknown"])
def test_the_gate_names_the_installed_and_the_supported_versions(version: str) -> None:
    with pytest.raises(MLServerVersionError) as caught:
        require_supported_mlserver(version)
    message = str(caught.value)
    assert f"MLServer {version} is installed" in message
    assert "1.7.x" in message and "mlserver_hooks.py" in message


def test_the_installed_mlserver_passes_the_gate() -> None:
    require_supported_mlserver()
    require_supported_mlserver("1.7.5")


def test_an_unsupported_mlserver_fails_the_runtime_at_its_first_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an MLServer upgrade meets: the model's construction fails, naming both versions."""
    from infergraph.serving.mlserver_runtime import ComponentRuntime

    monkeypatch.setattr(mlserver, "__version__", "1.8.1")
    settings = ModelSettings(
        name="echo",
        implementation=ComponentRuntime,
        parameters=ModelParameters(extra={"family": "identity"}),
    )
    with pytest.raises(MLServerVersionError, match=r"MLServer 1\.8\.1 is installed.*1\.7\.x"):
        ComponentRuntime(settings)
    with pytest.raises(MLServerVersionError):
        mlserver_hooks.running_mlserver()


def test_without_a_running_mlserver_attach_warns_and_does_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A runtime driven outside `mlserver start` (a parallel worker, a test)."""

    class Model:
        name = "alone"
        version = None

        def triton_config(self) -> dict[str, object]:
            return {}

        def triton_statistics(self) -> dict[str, object]:
            return {}

    async def attach() -> object:
        return mlserver_hooks.attach(Model(), [])

    assert asyncio.run(attach()) is None
    assert "no MLServer is running in this process" in caplog.text


# -- the hooks on the installed MLServer ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("hooks")
    write_model(root, "first", "identity", max_batch_size=4, max_batch_time=0.001)
    with start_mlserver(root) as srv:
        write_model(root, "later", "identity")
        resp = httpx.post(f"{srv.url}/v2/repository/models/later/load", timeout=120)
        assert resp.status_code == 200, resp.text + srv.log()[-3000:]
        yield srv


def binary_request(server: MLServerProcess, model: str, values: list[float]) -> httpx.Response:
    """A binary-extension body, which MLServer's own /infer route refuses (422)."""
    raw = np.asarray(values, dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, len(values)],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    return httpx.post(
        f"{server.url}/v2/models/{model}/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=60,
    )


def model_config(server: MLServerProcess, model: str) -> bytes:
    """Triton's ModelConfig RPC, its request written by hand (field 1: the model's name)."""
    name = model.encode()
    request = b"\x0a" + bytes([len(name)]) + name
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.unary_unary(f"{SERVICE}ModelConfig")
        reply: bytes = call(request, timeout=30)
    return reply


@pytest.mark.slow
@pytest.mark.parametrize("model", ["first", "later"])
def test_routes_readiness_and_triton_rpcs_on_a_real_mlserver(
    server: MLServerProcess, model: str
) -> None:
    resp = binary_request(server, model, [1.5, 2.5])
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == [1.5, 2.5]
    ready = httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"name": model, "ready": True})
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).json() == {"ready": True}
    config = model_config(server, model)
    assert model.encode() in config and b"infergraph" in config
    assert "no MLServer is running" not in server.log()


@pytest.mark.slow
def test_an_unloaded_model_leaves_the_triton_rpcs(server: MLServerProcess) -> None:
    write_model(server.workdir, "brief", "identity")
    for action in ("load", "unload"):
        url = f"{server.url}/v2/repository/models/brief/{action}"
        assert httpx.post(url, timeout=120).status_code == 200
    with pytest.raises(grpc.RpcError) as caught:
        model_config(server, "brief")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # MLServer removed the model's routes: its own /infer answers (no such model).
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    assert server.infer("brief", body).status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_bytes", "problem"),
    [
        (b"\x09" + bytes(8), "unexpected wire type 1"),  # field 1 as fixed64
        (b"\x0a\x80", "truncated varint"),
    ],
)
@pytest.mark.parametrize("rpc", ["ModelStatistics", "ModelConfig"])
def test_a_malformed_triton_request_is_invalid_argument(
    server: MLServerProcess, rpc: str, request_bytes: bytes, problem: str
) -> None:
    """ModelStatistics decoded its request outside the error mapping ModelConfig has: a
    malformed one reached gRPC as UNKNOWN `Unexpected <class 'ValueError'>` (finding 8)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.unary_unary(f"{SERVICE}{rpc}")
        with pytest.raises(grpc.RpcError) as caught:
            call(request_bytes, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"bad request: {problem}"
