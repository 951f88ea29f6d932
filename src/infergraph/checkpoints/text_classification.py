"""Random-weight sequence classifiers: DistilBERT sentiment and XLM-R language id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergraph.checkpoints.sizes import BertSizes, DistilBertSizes
from infergraph.checkpoints.tokenizers import wordpiece_tokenizer, xlm_roberta_tokenizer

# papluca/xlm-roberta-base-language-detection's 20 labels, in its id order.
PAPLUCA_LANGUAGES: tuple[str, ...] = (
    "ja", "nl", "ar", "pl", "de", "it", "pt", "tr", "es", "hi",
    "el", "ur", "bg", "en", "fr", "zh", "ru", "th", "sw", "vi",
)  # fmt: skip


def build_text_classifier(target_dir: Path, scale: str = "tiny") -> Path:
    """DistilBERT classifier (random weights) with the real uncased WordPiece vocabulary."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = wordpiece_tokenizer("DistilBertTokenizer")
    labels = {0: "NEGATIVE", 1: "POSITIVE"}
    if scale == "full":  # distilbert-base-uncased-finetuned-sst-2-english
        sizes: DistilBertSizes = dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
    else:
        # A wide init spreads random outputs apart, so tests can tell rows apart.
        sizes = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, initializer_range=0.2)
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        max_position_embeddings=512,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )
    return _save(DistilBertForSequenceClassification(config), tokenizer, target_dir)


def build_language_identifier(target_dir: Path, scale: str = "tiny") -> Path:
    """XLM-R classifier (random weights) over papluca's 20 language labels."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = xlm_roberta_tokenizer()
    labels = dict(enumerate(PAPLUCA_LANGUAGES))
    if scale == "full":  # xlm-roberta-base
        vocab = 250002
        sizes: BertSizes = dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
        )
    else:
        vocab = len(tokenizer)
        sizes = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            initializer_range=0.2,
        )
    config = XLMRobertaConfig(
        vocab_size=vocab,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        **sizes,
    )
    return _save(XLMRobertaForSequenceClassification(config), tokenizer, target_dir)


def _save(model: Any, tokenizer: Any, target_dir: Path) -> Path:
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(target_dir)
    tokenizer.save_pretrained(target_dir)
    return target_dir
