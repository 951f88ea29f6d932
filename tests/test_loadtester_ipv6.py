"""An IPv6 literal target: the Host header and the gRPC target name it in brackets
(RFC 3986's authority), as servers and gRPC's resolver read it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from async_load_tester.config import LoadConfig
from async_load_tester.runner import run_load

from tests.servers import app_in_thread


@contextmanager
def ipv6_server(hosts: list[str]) -> Iterator[int]:
    """An aiohttp V2 server on [::1] recording each request's Host header; yields its port."""

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        hosts.append(request.headers.get("Host", ""))
        return web.json_response({"model_name": "m", "outputs": []})

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    with app_in_thread(app, "::1") as port:
        yield port


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
    from async_load_tester.protocols.encode import authority as grpc_target

    assert grpc_target("::1", 8081) == "[::1]:8081"
    assert grpc_target("127.0.0.1", 8081) == "127.0.0.1:8081"
    assert grpc_target("model.example", 443) == "model.example:443"
