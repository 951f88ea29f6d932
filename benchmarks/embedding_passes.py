"""A text-embedding forward pass on prepare's token ids against `SentenceTransformer.encode`.

The runtime tokenises each text once, when its request is prepared, and its forward thread
pads those ids into the batch (`TextEmbedder.from_token_ids`); `encode` tokenises the batch
again and sorts, moves and converts it on the way. Both paths run here in one process on the
same loaded all-MiniLM-L6-v2 (the real weights, traced encoder as served), interleaved round
by round, so the machine's drift falls on both alike. Printed per batch size: the median CPU
(one torch thread) or wall time (more threads) of a pass, per item.

    .venv/bin/python benchmarks/embedding_passes.py --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from rich.console import Console
from rich.table import Table

from infergraph.checkpoints.tokenizers import minilm_dir
from infergraph.components.base import ComponentSettings
from infergraph.components.text_embedding import TextEmbedder

TEXTS = [
    b"A man is playing a guitar.",
    b"The stock market fell sharply today.",
    b"Paris is the capital of France.",
]


def one_text(text: bytes) -> dict[str, np.ndarray]:
    """A one-text request's inputs, as the server decodes them."""
    return {"text": np.array([text], dtype=object)}


def pass_us_per_item(
    embedder: TextEmbedder, rows: list[tuple[str, list[int]]], from_ids: bool, threads: int
) -> float:
    """One round: a warm pass, then enough passes for about 96 items; microseconds an item."""
    embedder.from_token_ids = from_ids
    embedder.run_batch(rows, True)
    passes = max(3, 96 // len(rows))
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(passes):
        embedder.run_batch(rows, True)
    spent = time.thread_time() - cpu if threads == 1 else time.perf_counter() - wall
    return spent / passes / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    embedder = TextEmbedder(ComponentSettings(model_uri=str(minilm_dir()), max_batch_size=64))
    embedder.start()
    assert embedder.from_token_ids, "all-MiniLM-L6-v2 should run on prepare's token ids"
    table = Table(title="text-embedding pass, µs per item (median of interleaved rounds)")
    for column in ("torch threads", "batch", "encode", "token ids", "saved"):
        table.add_column(column, justify="right")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            requests = [
                {"text": np.array([TEXTS[i % len(TEXTS)]], dtype=object)} for i in range(batch)
            ]
            rows = [row for inputs in requests for row in embedder.prepare(inputs, {}).rows]
            rounds: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.rounds):
                for from_ids in (True, False):
                    rounds[from_ids].append(pass_us_per_item(embedder, rows, from_ids, threads))
            new, old = statistics.median(rounds[True]), statistics.median(rounds[False])
            table.add_row(
                str(threads), str(batch), f"{old:,.0f}", f"{new:,.0f}", f"{1 - new / old:.1%}"
            )
    Console().print(table)


if __name__ == "__main__":
    main()
