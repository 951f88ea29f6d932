"""Sequence classification (sentiment, topics) and language identification.

Both run an `AutoModelForSequenceClassification`; language identification adds a
`language` output holding the ISO code so graphs can route on it (the nlp graph
translates only when the language is not English).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.parameters import flag
from infergraph.components.text import (
    SerialTokenizer,
    decode_texts,
    encode_texts,
    pad_ids,
    token_limit,
    truncation_notes,
)


class TextClassifier(Component):
    """Labels each text with the model's classes; `scores` is the softmax over all of them."""

    family: ClassVar[str] = "text-classification"
    default_model: ClassVar[str] = "distilbert-base-uncased-finetuned-sst-2-english"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("text", "BYTES", (-1,), "utf-8 text, one row per item"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("label", "BYTES", (-1,), "most likely class name"),
        TensorSpec("confidence", "FP32", (-1,), "probability of that class"),
        TensorSpec("scores", "FP32", (-1, -1), "probability of every class, in id order"),
    )

    def load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        source = self.model_source()
        with loading_from(source):
            self.tokenizer = SerialTokenizer(AutoTokenizer.from_pretrained(source))
            model = AutoModelForSequenceClassification.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.limit = token_limit(self.tokenizer, config, self.option("max_length", None))
        self._torch = torch

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        texts = [b"I love this movie.", b"Le chat dort sur le canape."]
        return {"text": np.array([texts[i % 2] for i in range(batch_size)], dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        texts = decode_texts("text", self.require(inputs, "text"))
        truncate = flag(parameters, self.options, "truncate", False)
        encoded = encode_texts(self.tokenizer, "text", texts, self.limit, truncate)
        return Prepared(rows=encoded.ids, notes=truncation_notes(encoded))

    def run_batch(self, rows: list[list[int]], batch_key: Hashable) -> list[np.ndarray]:
        torch = self._torch
        batch = pad_ids(self.tokenizer, rows, self.device)
        with torch.inference_mode():
            logits = self.model(**batch).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return list(probs)

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        scores = np.stack(results).astype(np.float32)
        best = scores.argmax(axis=1)
        return {
            "label": np.array([self.labels[i] for i in best], dtype=object),
            "confidence": scores[np.arange(len(best)), best].astype(np.float32),
            "scores": scores,
        }


class LanguageIdentifier(TextClassifier):
    """Which language each text is in; `language` is the ISO 639-1 code graphs route on."""

    family: ClassVar[str] = "language-identification"
    default_model: ClassVar[str] = "papluca/xlm-roberta-base-language-detection"
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("language", "BYTES", (-1,), "ISO 639-1 code, e.g. en, fr"),
        *TextClassifier.outputs,
    )

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        texts = [b"Hello, how are you?", b"Bonjour, comment allez-vous ?"]
        return {"text": np.array([texts[i % 2] for i in range(batch_size)], dtype=object)}

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        outputs = super().finish(results, prepared)
        codes = [_iso_code(str(label)) for label in outputs["label"]]
        return {"language": np.array(codes, dtype=object), **outputs}


def _iso_code(label: str) -> str:
    """Labels such as 'en', 'EN', 'en-US', '__label__en' or 'eng_Latn' -> a lower-case code."""
    code = label.removeprefix("__label__").strip().lower()
    return code.replace("_", "-").split("-")[0]
