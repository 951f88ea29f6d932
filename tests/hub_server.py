"""A local stand-in for the Hugging Face Hub: a cold-cache download whose weights the test holds.

`huggingface_hub` reads `HF_ENDPOINT` for every request, so a runtime started with it
pointing here downloads a checkpoint folder exactly as it would from huggingface.co: a HEAD
for the metadata (`X-Repo-Commit`, `ETag`, `Content-Length`: huggingface_hub
file_download.py `get_hf_file_metadata`), then a GET. A missing file answers 404 with
`X-Error-Code: EntryNotFound` (huggingface_hub utils/_http.py `hf_raise_for_status`), which
transformers reads as "this optional file does not exist". The GET of a `*.safetensors`
file waits until `release()`: the load is then blocked on the network as a large model's
download on a cold cache is, for as long as the test wants.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0" * 40


@dataclass
class HubServer:
    folder: Path
    port: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    weights_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let the held weights download finish."""
        self.released.set()


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            # /<org>/<repo>/resolve/<revision>/<file>
            parts = self.path.split("?")[0].split("/")
            path = hub.folder.joinpath(*parts[5:]) if len(parts) > 5 else None
            if parts[3:4] != ["resolve"] or path is None or not path.is_file():
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                if path.suffix == ".safetensors":
                    hub.weights_requested.set()
                    hub.released.wait(timeout=300)
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    return Handler


@contextmanager
def hub_server(folder: Path) -> Iterator[HubServer]:
    """Serve `folder` as every repository id; weights are held until `release()`."""
    hub = HubServer(folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.release()
        server.shutdown()
        server.server_close()
