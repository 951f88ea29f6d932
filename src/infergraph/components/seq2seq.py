"""Text-to-text generation: translation (Marian) and summarization (BART).

Generation settings (`max_new_tokens`, `num_beams`, `min_length`) may come with
each request; they are bounded so one request cannot pin the GPU, and they form
the batch key, so only requests with identical settings share a `generate` call.
Defaults: request parameter, else deployment option, else the checkpoint's own
generation config (distilbart-cnn ships beams 4 / min length 56), else the family's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import ClassVar, cast

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.parameters import bounded_int, flag
from infergraph.components.text import (
    SerialTokenizer,
    decode_texts,
    encode_texts,
    pad_ids,
    token_limit,
    truncation_notes,
)

MAX_NEW_TOKENS_LIMIT = 1024
MAX_BEAMS = 8


class _Seq2Seq(Component):
    """Shared load / batch / generate logic; subclasses name their tensors and checkpoints."""

    input_name: ClassVar[str] = "text"
    output_name: ClassVar[str]
    default_max_new_tokens: ClassVar[int] = 256

    def load(self) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        source = self.model_source()
        with loading_from(source):
            self.tokenizer = SerialTokenizer(AutoTokenizer.from_pretrained(source))
            model = AutoModelForSeq2SeqLM.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.limit = token_limit(self.tokenizer, self.model.config, self.option("max_length", None))
        gen = self.model.generation_config
        self.max_new_tokens_limit = int(
            self.option("max_new_tokens_limit", min(MAX_NEW_TOKENS_LIMIT, _decoder_positions(self)))
        )
        self.defaults = {
            "max_new_tokens": int(
                self.option(
                    "max_new_tokens", min(self.default_max_new_tokens, self.max_new_tokens_limit)
                )
            ),
            "num_beams": int(self.option("num_beams", getattr(gen, "num_beams", None) or 1)),
            "min_length": int(self.option("min_length", getattr(gen, "min_length", None) or 0)),
        }
        self._torch = torch

    def generation_key(self, parameters: Mapping[str, object]) -> tuple[int, int, int]:
        """(max_new_tokens, num_beams, min_length) for one request, each bounded."""
        max_new = bounded_int(
            parameters,
            "max_new_tokens",
            self.defaults["max_new_tokens"],
            1,
            self.max_new_tokens_limit,
        )
        beams = bounded_int(
            parameters, "num_beams", min(self.defaults["num_beams"], MAX_BEAMS), 1, MAX_BEAMS
        )
        min_length = bounded_int(
            parameters, "min_length", min(self.defaults["min_length"], max_new), 0, max_new
        )
        return max_new, beams, min_length

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        texts = decode_texts(self.input_name, self.require(inputs, self.input_name))
        prefix = str(self.option("prefix", ""))  # e.g. ">>fra<<" for multi-target Marian
        if prefix:
            texts = [f"{prefix} {t}" for t in texts]
        key = self.generation_key(parameters)
        truncate = flag(parameters, self.options, "truncate", False)
        encoded = encode_texts(self.tokenizer, self.input_name, texts, self.limit, truncate)
        return Prepared(rows=encoded.ids, batch_key=key, notes=truncation_notes(encoded))

    def run_batch(self, rows: list[list[int]], batch_key: Hashable) -> list[str]:
        max_new, beams, min_length = cast(tuple[int, int, int], batch_key)
        batch = pad_ids(self.tokenizer, rows, self.device)
        with self._torch.inference_mode():
            generated = self.model.generate(
                **batch,
                max_new_tokens=max_new,
                num_beams=beams,
                min_length=min_length,
                max_length=None,
                early_stopping=beams > 1,
            )
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def finish(self, results: list[str], prepared: Prepared) -> dict[str, np.ndarray]:
        return {self.output_name: np.array(results, dtype=object)}

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        text = b"Le chat dort sur le canape pendant que la pluie tombe."
        return {self.input_name: np.array([text] * batch_size, dtype=object)}

    def warmup(self) -> None:
        """Warm up with a short generation: a random-weight model would otherwise run to the cap."""
        prepared = self.prepare(self.example_inputs(1), {"max_new_tokens": 4, "min_length": 0})
        self.finish(self.run_batch(prepared.rows, prepared.batch_key), prepared)


def _decoder_positions(component: Component) -> int:
    config = component.model.config  # type: ignore[attr-defined]
    for attr in ("max_target_positions", "max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return MAX_NEW_TOKENS_LIMIT


class Translator(_Seq2Seq):
    """Translates each text with a Marian (or any seq2seq) model; direction is the checkpoint's."""

    family: ClassVar[str] = "translation"
    default_model: ClassVar[str] = "Helsinki-NLP/opus-mt-fr-en"
    output_name: ClassVar[str] = "translation"
    default_max_new_tokens: ClassVar[int] = 256
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("text", "BYTES", (-1,), "utf-8 text in the source language"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("translation", "BYTES", (-1,), "text in the target language"),
    )


class Summarizer(_Seq2Seq):
    """Abstractive summaries with BART (distilbart-cnn by default)."""

    family: ClassVar[str] = "summarization"
    default_model: ClassVar[str] = "sshleifer/distilbart-cnn-12-6"
    output_name: ClassVar[str] = "summary"
    default_max_new_tokens: ClassVar[int] = 142
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("text", "BYTES", (-1,), "utf-8 document to summarize"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("summary", "BYTES", (-1,), "the summary"),
    )

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        text = (
            b"The stock market fell sharply today after the announcement. Analysts expect "
            b"the central bank to respond next week, while investors moved into bonds."
        )
        return {"text": np.array([text] * batch_size, dtype=object)}
