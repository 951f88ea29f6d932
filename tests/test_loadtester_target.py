"""Where requests go: the REST path for a model version, the target's scheme against the
protocol, gRPC's default port and HTTP/1.0 framing, against real servers on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from async_load_tester.cli import app
from typer.testing import CliRunner

from async_load_tester import ConfigError, LoadConfig, run_load
from tests.loadtest_alt_servers import GRPC_TLS_SERVER, http10_server
from tests.loadtest_servers import loadtest_server


@pytest.mark.parametrize("protocol", ["v2-rest", "v2-rest-binary"])
def test_model_version_goes_into_the_rest_path(protocol: str) -> None:
    """The Open Inference Protocol names a version in the path; gRPC sends it in the request,
    and REST dropped it, measuring whatever version the server defaults to."""
    with loadtest_server() as server:
        config = LoadConfig(
            target=server.url, model="m", model_version="2", protocol=protocol,  # type: ignore[arg-type]
            rate=20, duration=0.5, warmup=0.0, progress=False,
        )  # fmt: skip
        step = run_load(config).steps[0]
        served = server.counts("m").paths
    assert step.sent == 10 and step.ok == 10, step.errors
    assert set(served) == {"/v2/models/m/versions/2/infer"}


def test_model_version_without_a_place_in_the_path_is_refused() -> None:
    """A version the request cannot carry is refused by name, not silently dropped."""
    base = {"target": "http://127.0.0.1:1", "model": "m", "model_version": "2", "rate": 1.0}
    with pytest.raises(ConfigError, match="seldon-rest") as seldon:
        LoadConfig(**base, protocol="seldon-rest").validated()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\{version\}") as template:
        LoadConfig(**base, path_template="/models/{model}/infer").validated()  # type: ignore[arg-type]
    assert seldon.value.option == template.value.option == "--model-version"
    templated = LoadConfig(**base, path_template="/m/{model}/v/{version}").validated()  # type: ignore[arg-type]
    assert templated.path() == "/m/m/v/2"


@pytest.mark.parametrize(
    ("scheme", "protocol"), [("grpc", "v2-rest"), ("grpcs", "seldon-rest"), ("grpc", None)]
)
def test_grpc_target_with_a_rest_protocol_is_refused(scheme: str, protocol: str | None) -> None:
    """A gRPC URL with a REST protocol (the default one included) fails at start-up naming
    both, before any request: it used to send HTTP/1.1 to the port and count every answer."""
    with loadtest_server() as server:
        port = server.url.rsplit(":", 1)[1]
        args = ["run", "--target", f"{scheme}://127.0.0.1:{port}", "--model", "m",
                "--rate", "20", "--duration", "0.3", "--warmup", "0", "--no-progress"]  # fmt: skip
        if protocol is not None:
            args += ["--protocol", protocol]
        result = CliRunner().invoke(app, args)
        served = server.counts("m").paths
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{scheme}://" in message and (protocol or "v2-rest") in message, message
    assert "--protocol v2-grpc" in message, message
    assert served == []


@pytest.mark.parametrize("scheme", ["grpc", "grpcs", "http"])
def test_grpc_target_without_a_port_uses_8081(scheme: str) -> None:
    """gRPC's default port is the same whatever the scheme says (it was 80 for grpc://)."""
    config = LoadConfig(target=f"{scheme}://127.0.0.1", model="m", protocol="v2-grpc", rate=1)
    assert config.validated().endpoint()[2] == 8081


@pytest.mark.parametrize(
    "load", [{"concurrency": 4, "requests": 100}, {"rate": 100.0, "duration": 1.0}],
    ids=["closed", "open"],
)  # fmt: skip
def test_http10_answers_close_the_connection(load: dict[str, float]) -> None:
    """An HTTP/1.0 answer without `Connection: keep-alive` ends its connection (RFC 9112
    9.3): the next request goes on a new one, not on the closed one to be counted `reset`."""
    with http10_server() as url:
        base = {"target": url, "model": "m", "warmup": 0.0, "timeout_s": 5.0}
        config = LoadConfig.model_validate({**base, "progress": False, **load})
        step = run_load(config).steps[0]
    assert step.errors == {}, step.error_samples
    assert step.ok == step.sent == 100


@pytest.mark.parametrize("target", ["grpcs://127.0.0.1:{port}", "https://127.0.0.1:{port}"])
def test_insecure_grpc_over_tls_is_refused(target: str) -> None:
    """grpcio has no switch to skip certificate checks, so `--insecure` with TLS gRPC cannot
    do what its help says: it is refused at start-up, naming the way that works, instead of
    a run whose every request fails the handshake as `connect`."""
    with loadtest_server() as server:  # a port that is listening, so nothing fails for want of one
        port = server.url.rsplit(":", 1)[1]
        result = CliRunner().invoke(
            app,
            ["run", "--target", target.format(port=port), "--model", "m", "--protocol",
             "v2-grpc", "--insecure", "--rate", "10", "--duration", "0.2", "--warmup", "0",
             "--timeout", "1", "--no-progress"],
        )  # fmt: skip
    message = " ".join(result.output.split())
    assert result.exit_code == 2, message
    assert "--insecure" in message and "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH" in message, message


def test_grpcs_with_a_self_signed_certificate_runs_the_way_the_refusal_names(
    tmp_path: Path,
) -> None:
    """What the `--insecure` refusal points to works: grpc core's roots file holding the
    server's self-signed certificate lets a grpcs:// run through (the tester in a process of
    its own, since grpc reads that variable once)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI (Debian's openssl) makes this test's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-c", GRPC_TLS_SERVER, str(cert), str(key)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        run = subprocess.run(
            [sys.executable, "-m", "async_load_tester.cli", "run", "--target",
             f"grpcs://127.0.0.1:{port}", "--model", "m", "--protocol", "v2-grpc",
             "--rate", "20", "--duration", "0.5", "--warmup", "0", "--check-every", "0",
             "--no-progress", "--json"],
            env={**os.environ, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.kill()
        server.wait(timeout=10)
    assert run.returncode == 0, run.stderr
    step = orjson.loads(run.stdout)["steps"][0]
    assert (step["sent"], step["ok"], step["errors"]) == (10, 10, {}), step
