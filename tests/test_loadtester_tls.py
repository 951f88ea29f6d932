"""The load tester over HTTPS: asyncio's TLS transport, beside the timestamped plain path.

Plain HTTP reads with the kernel's receive stamps (`async_load_tester.stamped`); an https
target goes through asyncio's TLS transport instead. This runs that branch against a real
TLS server (a self-signed certificate made with the openssl CLI, so `--insecure`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvloop
from async_load_tester.config import LoadConfig
from async_load_tester.engine import StepPlan
from async_load_tester.recorder import Recorder
from async_load_tester.runner import Prepared
from async_load_tester.schedule import Segment

from tests.servers import free_port, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI (Debian's openssl) makes this test's certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    script = Path(__file__).with_name("tls_echo_server.py")
    server = subprocess.Popen(
        [sys.executable, str(script), str(port), str(cert), str(key)], start_new_session=True
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url, verify=False, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline and server.poll() is None, "no TLS server"
            time.sleep(0.2)
    try:
        yield url
    finally:
        stop(server)


def test_an_https_target_is_served_through_asyncios_tls_transport(tls_url: str) -> None:
    config = LoadConfig(
        target=tls_url, model="m", payload="synthetic:tensor:1x4", input_name="input",
        rate=50.0, duration=1.0, warmup=0.0, progress=False, insecure=True,
    )  # fmt: skip
    recorder = Recorder()
    transports: list[str] = []

    async def run() -> None:
        driver = Prepared(config).driver(recorder)
        close = driver.close

        async def note_then_close() -> None:  # the pool as it served, before it is closed
            transports.extend(type(conn.transport).__name__ for conn in driver.conns)
            await close()

        driver.close = note_then_close  # type: ignore[method-assign]
        await driver.run(StepPlan("open", 0.0, 1.0, segments=(Segment(0.0, 1.0, 50.0, 50.0),)))

    uvloop.run(run())
    recorder.drain()
    assert dict(recorder.errors) == {}
    assert recorder.ok == recorder.sent >= 45
    assert recorder.hist.get_value_at_percentile(50) > 0
    assert transports and "StampedTransport" not in transports, transports
