"""A V2/Seldon test server that can be made slow, flaky or wrong on purpose.

Runs aiohttp in its own process (so it never shares a GIL with the tester
under test) on a free loopback port. Each model name gets a `Behaviour`, set
through `/_control/behave/{model}`; the server counts what it did per model
(`/_control/counts`) so tests can check the tester's error counts exactly
against what was injected.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from aiohttp import web

from tests.servers import REPO, free_port, stop, wait_ready

V2_OK = {
    "model_name": "m",
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.25]}],
}


@dataclass
class Behaviour:
    """What a model does. `*_every=N` hits requests N, 2N, 3N, ... (1-based) of that model."""

    delay_ms: float = 0.0
    fail_every: int = 0
    fail_status: int = 503
    malformed_every: int = 0
    reset_every: int = 0
    hang: bool = False
    stages: dict[str, float] = field(default_factory=dict)


@dataclass
class Counts:
    requests: int = 0
    failed: int = 0
    malformed: int = 0
    reset: int = 0
    paths: list[str] = field(default_factory=list)  # each request's path, in arrival order


class LoadTestApp:
    """The server side: runs inside the child process."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = defaultdict(Behaviour)
        self.counts: dict[str, Counts] = defaultdict(Counts)

    async def _handle(self, request: web.Request, model: str, seldon: bool) -> web.StreamResponse:
        await request.read()
        b = self.behaviours[model]
        c = self.counts[model]
        c.requests += 1
        c.paths.append(request.path)
        n = c.requests
        if b.hang:
            await asyncio.sleep(3600)
        if b.delay_ms:
            await asyncio.sleep(b.delay_ms / 1000.0)
        if b.reset_every and n % b.reset_every == 0:
            c.reset += 1
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if b.fail_every and n % b.fail_every == 0:
            c.failed += 1
            return web.json_response({"error": "injected failure"}, status=b.fail_status)
        if b.malformed_every and n % b.malformed_every == 0:
            c.malformed += 1
            return web.Response(body=b'{"outputs": [', content_type="application/json")
        if seldon:
            return web.json_response(
                {"data": {"ndarray": [[0.5, 0.25]]}, "meta": {"tags": b.stages}}
            )
        body: dict[str, object] = dict(V2_OK, model_name=model)
        if b.stages:
            body["parameters"] = b.stages
        return web.json_response(body)

    async def _v2(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, request.match_info["model"], seldon=False)

    async def _seldon(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, request.headers.get("Seldon-Model", "seldon"), True)

    async def _behave(self, request: web.Request) -> web.Response:
        self.behaviours[request.match_info["model"]] = Behaviour(**(await request.json()))
        self.counts.pop(request.match_info["model"], None)
        return web.json_response({})

    async def _counts(self, request: web.Request) -> web.Response:
        return web.json_response({k: asdict(v) for k, v in self.counts.items()})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", self._v2)
        app.router.add_post("/v2/models/{model}/versions/{version}/infer", self._v2)
        app.router.add_post("/seldon/{namespace}/{graph}/v2/models/{model}/infer", self._v2)
        app.router.add_post("/api/v1.0/predictions", self._seldon)
        app.router.add_post("/_control/behave/{model}", self._behave)
        app.router.add_get("/_control/counts", self._counts)
        return app


@dataclass
class LoadTestServer:
    """Handle on the child process."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def behave(self, model: str, **kw: Any) -> None:
        httpx.post(f"{self.url}/_control/behave/{model}", json=kw, timeout=10).raise_for_status()

    def counts(self, model: str) -> Counts:
        data = httpx.get(f"{self.url}/_control/counts", timeout=10).json()
        return Counts(**data.get(model, {}))


@contextmanager
def loadtest_server() -> Iterator[LoadTestServer]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.loadtest_servers", str(port)],
        cwd=REPO,
        start_new_session=True,
    )
    server = LoadTestServer(port, proc)
    try:
        wait_ready(server.url, proc, lambda: "", 30, "load-test server", "/_control/counts")
        yield server
    finally:
        stop(proc)


if __name__ == "__main__":
    web.run_app(
        LoadTestApp().app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None
    )
