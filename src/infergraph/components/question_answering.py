"""Extractive question answering: the span of the context that answers each question.

Long contexts are not an error: they are split into overlapping windows
(`truncation="only_second"` with `doc_stride` tokens of overlap), every window is
a batch row, and the best-scoring span over a question's windows wins. Only a
question that leaves no room for context is rejected. The context is either an
input row per question, or one text (request parameter / option `context`)
shared by every question.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.text import SerialTokenizer, decode_texts, token_limit
from infergraph.errors import InputError

# Fewest context tokens a window must hold for the question to be answerable.
_MIN_CONTEXT_TOKENS = 16


@dataclass
class Window:
    """One tokenised (question, context slice) pair: a row of the forward pass."""

    question: int
    input_ids: list[int]
    offsets: list[tuple[int, int] | None]  # char span in the context, None outside it


@dataclass
class Span:
    score: float
    start: int
    end: int


class QuestionAnswerer(Component):
    """Finds each question's answer span in its context (char offsets into the context)."""

    family: ClassVar[str] = "question-answering"
    default_model: ClassVar[str] = "distilbert-base-cased-distilled-squad"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("question", "BYTES", (-1,), "utf-8 question, one per row"),
        TensorSpec(
            "context",
            "BYTES",
            (-1,),
            "utf-8 passage per question; or one shared `context` request parameter/option",
            optional=True,
        ),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("answer", "BYTES", (-1,), "answer text, a substring of the context"),
        TensorSpec("score", "FP32", (-1,), "p(start) * p(end) of the chosen span"),
        TensorSpec("start", "INT64", (-1,), "answer's first char offset in the context"),
        TensorSpec("end", "INT64", (-1,), "answer's end char offset (exclusive)"),
    )

    def load(self) -> None:
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        source = self.model_source()
        with loading_from(source):
            self.tokenizer = SerialTokenizer(AutoTokenizer.from_pretrained(source))
            model = AutoModelForQuestionAnswering.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.limit = token_limit(self.tokenizer, self.model.config, self.option("max_length", None))
        self.stride = min(int(self.option("doc_stride", 128)), self.limit // 4)
        self.max_answer_tokens = int(self.option("max_answer_length", 30))
        self.max_windows = int(self.option("max_windows", 64))
        self._torch = torch

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        return {
            "question": np.array([b"What is the capital of France?"] * batch_size, dtype=object),
            "context": np.array(
                [b"The capital of France is Paris, a city on the Seine."] * batch_size,
                dtype=object,
            ),
        }

    def _contexts(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object], n: int
    ) -> list[str]:
        if "context" in inputs:
            contexts = decode_texts("context", inputs["context"])
            if len(contexts) == 1 and n > 1:
                contexts = contexts * n
            if len(contexts) != n:
                raise InputError(
                    "context", f"has {len(contexts)} rows but 'question' has {n}; give one each"
                )
        else:
            shared = parameters.get("context", self.option("context", None))
            if shared is None:
                raise InputError(
                    "context", "missing: give a context input, or a `context` request parameter"
                )
            if not isinstance(shared, str):
                raise InputError("context", f"parameter must be a string, got {type(shared)}")
            contexts = [shared] * n
        for i, text in enumerate(contexts):
            if not text.strip():
                raise InputError("context", "is empty", index=i)
        return contexts

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        questions = decode_texts("question", self.require(inputs, "question"))
        contexts = self._contexts(inputs, parameters, len(questions))
        windows: list[Window] = []
        for i, (question, context) in enumerate(zip(questions, contexts, strict=True)):
            q_len = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
            room = self.limit - q_len - 3  # [CLS] q [SEP] c [SEP]
            if room < _MIN_CONTEXT_TOKENS:
                raise InputError(
                    "question",
                    f"row {i} has {q_len} tokens; with the model's limit of {self.limit} that "
                    f"leaves under {_MIN_CONTEXT_TOKENS} tokens for the context",
                    index=i,
                )
            enc = self.tokenizer(
                question,
                context,
                truncation="only_second",
                max_length=self.limit,
                stride=min(self.stride, room // 2),
                return_overflowing_tokens=True,
                return_offsets_mapping=True,
            )
            if len(enc["input_ids"]) > self.max_windows:
                raise InputError(
                    "context",
                    f"row {i} needs {len(enc['input_ids'])} windows of {self.limit} tokens; "
                    f"the limit is {self.max_windows} (option max_windows)",
                    index=i,
                )
            for w in range(len(enc["input_ids"])):
                seq_ids = enc.sequence_ids(w)
                offsets = [
                    tuple(off) if sid == 1 else None
                    for off, sid in zip(enc["offset_mapping"][w], seq_ids, strict=True)
                ]
                windows.append(Window(i, list(enc["input_ids"][w]), offsets))
        return Prepared(rows=windows, context=(questions, contexts))

    def run_batch(self, rows: list[Window], batch_key: Hashable) -> list[Span]:
        torch = self._torch
        batch = self.tokenizer.pad(
            {"input_ids": [w.input_ids for w in rows]}, padding=True, return_tensors="pt"
        )
        feed = {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")
        }
        with torch.inference_mode():
            out = self.model(**feed)
        start_p = torch.softmax(out.start_logits.float(), dim=-1).cpu().numpy()
        end_p = torch.softmax(out.end_logits.float(), dim=-1).cpu().numpy()
        return [self._best_span(w, start_p[j], end_p[j]) for j, w in enumerate(rows)]

    def _best_span(self, window: Window, start_p: np.ndarray, end_p: np.ndarray) -> Span:
        """Highest p(start)*p(end) over context tokens with start <= end < start + max length."""
        n = len(window.offsets)
        valid = np.array([o is not None for o in window.offsets] + [False] * (len(start_p) - n))
        if not valid.any():
            return Span(0.0, 0, 0)
        s = np.where(valid, start_p, 0.0)
        e = np.where(valid, end_p, 0.0)
        scores = np.triu(np.outer(s, e))
        scores = np.tril(scores, self.max_answer_tokens - 1)
        flat = int(scores.argmax())
        i, j = divmod(flat, scores.shape[1])
        start_off, end_off = window.offsets[i], window.offsets[j]
        if start_off is None or end_off is None:
            return Span(0.0, 0, 0)
        return Span(float(scores[i, j]), int(start_off[0]), int(end_off[1]))

    def finish(self, results: list[Span], prepared: Prepared) -> dict[str, np.ndarray]:
        questions, contexts = prepared.context
        best: list[Span] = [Span(-1.0, 0, 0) for _ in questions]
        for window, span in zip(prepared.rows, results, strict=True):
            if span.score > best[window.question].score:
                best[window.question] = span
        return {
            "answer": np.array(
                [contexts[i][b.start : b.end] for i, b in enumerate(best)], dtype=object
            ),
            "score": np.array([max(b.score, 0.0) for b in best], dtype=np.float32),
            "start": np.array([b.start for b in best], dtype=np.int64),
            "end": np.array([b.end for b in best], dtype=np.int64),
        }
