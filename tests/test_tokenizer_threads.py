"""Request threads tokenise at once: each must get the encoding a lone request gets.

The runtimes run `prepare` for concurrent requests on a thread pool, and a fast
tokenizer's truncation and padding are backend state each call resets
(`components.text.SerialTokenizer`). Texts of mixed lengths, some over the limit,
make any interleaving visible: an untruncated or unpadded row differs in length.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infergraph.checkpoints.image_embedding import build_image_embedder
from infergraph.checkpoints.text_classification import build_text_classifier
from infergraph.components.base import Component, ComponentSettings
from infergraph.components.image_embedding import ImageEmbedder
from infergraph.components.text_classification import TextClassifier

pytestmark = pytest.mark.slow

SENTENCE = "the quick brown fox jumps over the lazy dog while rain falls on the river bank"
WORDS = SENTENCE.split()
TEXTS = [" ".join(WORDS[: 1 + (i * 5) % len(WORDS)]) for i in range(24)]
ROUNDS = 12


def _rows(component: Component, text: str) -> list[Any]:
    inputs = {"text": np.array([text.encode()], dtype=object)}
    return component.prepare(inputs, {"truncate": True}).rows


def _same_under_threads(component: Component, key: Callable[[Any], Any]) -> None:
    alone = {text: key(_rows(component, text)) for text in TEXTS}
    assert len({len(str(v)) for v in alone.values()}) > 1  # the texts really differ in length
    with ThreadPoolExecutor(max_workers=8) as pool:
        work = [t for _ in range(ROUNDS) for t in TEXTS]
        together = list(pool.map(lambda t: (t, key(_rows(component, t))), work))
    wrong = [text for text, value in together if value != alone[text]]
    assert not wrong, f"{len(wrong)} of {len(together)} concurrent encodings differ"


def test_text_classifier_truncates_every_row_under_concurrency(tmp_path: Path) -> None:
    checkpoint = build_text_classifier(tmp_path / "sst2")
    component = TextClassifier(
        ComponentSettings(model_uri=str(checkpoint), options={"max_length": 8})
    )
    component.start()
    _same_under_threads(component, lambda rows: [list(r) for r in rows])


def test_siglip_text_rows_keep_max_length_padding_under_concurrency(tmp_path: Path) -> None:
    checkpoint = build_image_embedder(tmp_path / "siglip", "tiny")
    component = ImageEmbedder(ComponentSettings(model_uri=str(checkpoint)))
    component.start()
    _same_under_threads(
        component, lambda rows: [(r[1].input_ids, r[1].attention_mask) for r in rows]
    )
