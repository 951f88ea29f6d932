"""Real servers on loopback for the load tester's tests, each in a thread of the test process.

`v2_server` is an aiohttp Open Inference Protocol server that records every path it was asked
for and answers after `delay_s` (so a test can tell a latency tail from a window). `http10_server`
is the standard library's `http.server`, which answers HTTP/1.0 and closes after each answer,
as quick custom model servers do. Threads, not processes: these tests check counts and paths,
and a server that sleeps its delay on its own loop needs no core of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web

V2_ANSWER = {
    "model_name": "m",
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [1], "data": [0.5]}],
}


@dataclass
class V2Server:
    """What a running `v2_server` saw: the request paths, in arrival order."""

    url: str
    paths: list[str] = field(default_factory=list)


def _v2_app(server: V2Server, delay_s: float) -> web.Application:
    """Answer V2 infer paths (with or without a version) after `delay_s`; 404 anything else."""

    async def infer(request: web.Request) -> web.Response:
        await request.read()
        server.paths.append(request.path)
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.json_response(V2_ANSWER)

    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_post("/v2/models/{model}/versions/{version}/infer", infer)
    return app


@contextmanager
def v2_server(delay_s: float = 0.0) -> Iterator[V2Server]:
    """An aiohttp V2 server on a free loopback port, served from its own thread and loop."""
    loop = asyncio.new_event_loop()
    server = V2Server(url="")
    runner = web.AppRunner(_v2_app(server, delay_s), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


class _Http10Handler(BaseHTTPRequestHandler):
    """`BaseHTTPRequestHandler` speaks HTTP/1.0 by default and closes after every answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"model_name": "m", "outputs": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a test's output is its assertions."""


@contextmanager
def http10_server() -> Iterator[str]:
    """The standard library's HTTP/1.0 server on a free loopback port; yields its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Http10Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


GRPC_TLS_SERVER = """
import asyncio, sys, grpc
from async_load_tester.protocols import grpc_predict_v2_pb2 as pb

async def infer(request: bytes, context: object) -> bytes:
    return pb.ModelInferResponse(model_name="m").SerializeToString()

async def main(cert: str, key: str) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    )
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
