"""Ray Serve peer: one deployment, requests batched with @serve.batch (max 32, 2 ms)."""

from __future__ import annotations

import os
import sys

from ray import serve
from starlette.requests import Request

sys.path.insert(0, os.path.dirname(__file__))
from common import embed, load

MODEL_DIR = os.environ["PEER_MODEL_DIR"]


@serve.deployment(max_ongoing_requests=256)
class Embedder:
    def __init__(self) -> None:
        self.model = load(MODEL_DIR)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def batch(self, texts: list[str]) -> list[list[float]]:
        return embed(self.model, texts)

    async def __call__(self, request: Request) -> dict[str, list[list[float]]]:
        """One text per request (as every peer is driven); @serve.batch merges requests."""
        body = await request.json()
        return {"embedding": [await self.batch(body["text"][0])]}


def main() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["PEER_PORT"])})
    serve.run(Embedder.bind(), route_prefix="/embed", blocking=True)


if __name__ == "__main__":
    main()
