"""An IPv6 literal target: the Host header and the gRPC target name it in brackets
(RFC 3986's authority), as servers and gRPC's resolver read it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from async_load_tester.config import LoadConfig
from async_load_tester.runner import run_load


@contextmanager
def ipv6_server(hosts: list[str]) -> Iterator[int]:
    """An aiohttp V2 server on [::1] recording each request's Host header; yields its port."""

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        hosts.append(request.headers.get("Host", ""))
        return web.json_response({"model_name": "m", "outputs": []})

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "::1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_an_ipv6_target_sends_a_bracketed_host_header() -> None:
    hosts: list[str] = []
    with ipv6_server(hosts) as port:
        config = LoadConfig(
            target=f"http://[::1]:{port}", model="m", rate=20, duration=0.3, warmup=0.0,
            progress=False,
        )  # fmt: skip
        step = run_load(config).steps[0]
    assert step.ok == step.sent > 0, step.errors
    assert set(hosts) == {f"[::1]:{port}"}


def test_a_grpc_target_brackets_an_ipv6_literal() -> None:
    from async_load_tester.engine import grpc_target

    assert grpc_target("::1", 8081) == "[::1]:8081"
    assert grpc_target("127.0.0.1", 8081) == "127.0.0.1:8081"
    assert grpc_target("model.example", 443) == "model.example:443"
