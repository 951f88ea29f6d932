"""What every peer server shares: the same model folder, tokenisation, pooling and output.

Each peer loads all-MiniLM-L6-v2 with sentence-transformers (the checkpoint's own modules:
WordPiece tokenizer, BERT, mean pooling, L2 normalisation), exactly as the kit's
text-embedding runtime does, and answers one request of texts with one vector per text.
"""

from __future__ import annotations

import os

import torch


def load(model_dir: str):
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(int(os.environ.get("PEER_THREADS", "2")))
    return SentenceTransformer(model_dir, device="cpu")


def embed(model, texts: list[str]) -> list[list[float]]:
    with torch.inference_mode():
        vectors = model.encode(texts, batch_size=64, normalize_embeddings=True)
    return vectors.tolist()
