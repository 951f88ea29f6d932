"""Fixtures of the Seldon Core v1 proof (run from `.venv-seldon` by `make seldon-test`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seldon.test_components import VOCAB, Pool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A test file's unit processes, keyed by unit and parameters and started once: graphs
    that differ only in a router's threshold (the cascade's two cases) share their model
    units, as two SeldonDeployments would not, but each unit is started as its container is."""
    pool = Pool(tmp_path_factory.mktemp("v1-units"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight DistilBERT sentiment checkpoint, saved the way the hub ships them."""
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizer,
    )

    target = tmp_path_factory.mktemp("tiny-distilbert")
    vocab = target / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    tokenizer = DistilBertTokenizer(vocab_file=str(vocab), model_max_length=64)
    config = DistilBertConfig(
        vocab_size=len(VOCAB),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=64,
        initializer_range=0.2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=0,
    )
    import torch

    torch.manual_seed(0)
    DistilBertForSequenceClassification(config).eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
