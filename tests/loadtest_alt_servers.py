"""Servers the V2 test server (`tests.loadtest_servers`) is not: the standard library's
HTTP/1.0 `http.server`, which closes after each answer as quick custom model servers do (in a
thread of the test process: its tests count resets, not time), and a gRPC server over TLS with
a self-signed certificate (`GRPC_TLS_SERVER`, a script run in its own process).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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
