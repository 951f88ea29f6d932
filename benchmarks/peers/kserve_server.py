"""KServe Python model server peer: a `kserve.Model` answering V2 JSON (no batching: KServe
batches in its cluster agent, which this single process does not have)."""

from __future__ import annotations

import os
import sys
import uuid

import kserve
from kserve import InferOutput, InferRequest, InferResponse

sys.path.insert(0, os.path.dirname(__file__))
from common import embed, load


class Embedder(kserve.Model):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.model = load(os.environ["PEER_MODEL_DIR"])
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None):
        texts = [t.decode() if isinstance(t, bytes) else t for t in payload.inputs[0].data]
        vectors = embed(self.model, texts)
        out = InferOutput("embedding", [len(vectors), len(vectors[0])], "FP32")
        out.data = [x for v in vectors for x in v]
        return InferResponse(payload.id or str(uuid.uuid4()), self.name, [out])


if __name__ == "__main__":
    kserve.ModelServer(
        http_port=int(os.environ["PEER_PORT"]),
        grpc_port=int(os.environ["PEER_GRPC_PORT"]),
        workers=1,
    ).start([Embedder("minilm")])
