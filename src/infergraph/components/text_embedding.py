"""Sentence embeddings with sentence-transformers (all-MiniLM-L6-v2 by default).

The model's pipeline (transformer, pooling, optional normalize module) comes
from the checkpoint's modules.json, so any sentence-transformers model works.
`normalize` (option, overridable per request; default true) L2-normalises the
output so a dot product is the cosine similarity; a checkpoint that ends in its
own Normalize module (all-MiniLM-L6-v2 does) stays normalised either way.

Rows of a batch are padded to the longest, so on a CPU, where a forward pass costs
about its padded tokens, a batch of mixed lengths is split by length where the
padding saved is worth more than another pass (`length_chunks`). `pass_cost_tokens`
(option) is that price in tokens: 32 by default on CPU (all-MiniLM-L6-v2 on one
core: a pass costs about 8 ms fixed plus 0.25 ms per padded token); on a GPU, where
padded tokens are nearly free, the default is never to split. Splitting changes no
vector beyond float rounding: each row attends only to its own tokens.

A text is tokenised once, when its request is prepared (to check the model's limit): the
forward thread pads the rows' token ids into the batch, where `SentenceTransformer.encode`
would tokenise every batch again, then sort, move and convert it: 2.4 to 2.7 ms of every
pass on one core (`benchmarks/embedding_passes.py`: 19 % of a one-text pass, 5 % of 32).
That stands in for the checkpoint's own preprocessing only where it is proved the same at
load: no default prompt, no cut to fewer dimensions, and the padded ids equal to what
`preprocess` gives on a few texts; any other checkpoint runs `encode` as it is, and the
log says why.

`torchscript` (option; default true on CPU) runs the checkpoint's encoder traced, so a
forward pass does not wait on the GIL behind the server's event loop (`torchscript.py`
says why and what it measured). The traced encoder is checked against the eager one at
load, end to end through the checkpoint's pooling; on any difference the model stays eager
and the log says why.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.parameters import flag
from infergraph.components.text import (
    SerialTokenizer,
    decode_texts,
    encode_texts,
    length_chunks,
    pad_ids,
    truncation_notes,
)
from infergraph.errors import SettingsError

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

# A forward pass's fixed cost in padded tokens, measured with all-MiniLM-L6-v2 on one core.
CPU_PASS_COST_TOKENS = 32.0
# What the traced encoder is traced on and checked with: other batch sizes and lengths.
TRACE_EXAMPLE = ("A man is playing a guitar.", "ok", "The stock market fell sharply today.")
TRACE_CHECKS = (
    ("Paris is the capital of France.",),
    ("Le chat dort.", "Someone plays the guitar while the crowd sings along, loudly.") * 3,
)


class TextEmbedder(Component):
    """One FP32 vector per text; rows from many requests share one forward pass."""

    family: ClassVar[str] = "text-embedding"
    default_model: ClassVar[str] = "sentence-transformers/all-MiniLM-L6-v2"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("text", "BYTES", (-1,), "utf-8 text, one row per item"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("embedding", "FP32", (-1, -1), "one vector per row"),
    )
    light_finish: ClassVar[bool] = True  # stacks the rows' vectors

    def load(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        source = self.model_source()
        with loading_from(source):
            self.model = SentenceTransformer(source, device=str(self.device))
        if self.dtype != torch.float32:
            self.model = self.model.to(self.dtype)
        self.model.eval()
        if self.option("max_length", None) is not None:
            self.model.max_seq_length = min(
                int(self.option("max_length", 0)), self.model.max_seq_length or 512
            )
        # model.encode (a checkpoint that needs it) tokenises in the forward thread with its
        # own padding settings: the request threads get their own copy (SerialTokenizer says
        # why), taken in turn.
        self.tokenizer = SerialTokenizer(copy.deepcopy(self.model.tokenizer))
        # max_seq_length counts specials ([CLS] ... [SEP]), like encode_texts does.
        self.limit = int(self.model.max_seq_length or 512)
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.pass_cost = self._pass_cost()
        self._torch = torch
        why_not = self._check_token_ids()
        self.from_token_ids = why_not is None
        if why_not is not None:
            log.info("text-embedding: %s tokenises each batch again: %s", source, why_not)
        self._trace()

    def _check_token_ids(self) -> str | None:
        """Why prepare's token ids cannot stand in for the checkpoint's own preprocessing
        (None: they can). Besides the ids' tensors, `preprocess` gives constants (the input's
        modality) that the modules read; they are kept for every batch."""
        torch = self._torch
        if self.model.truncate_dim is not None:
            return f"its vectors are cut to {self.model.truncate_dim} dimensions"
        prompt_name = self.model.default_prompt_name
        if prompt_name and self.model.prompts.get(prompt_name):
            return f"its default prompt {prompt_name!r} goes before every text"
        preprocess = getattr(self.model, "preprocess", None)
        if preprocess is None:
            return "this sentence-transformers has no preprocess to check against"
        for texts in (TRACE_EXAMPLE, *TRACE_CHECKS):
            want = preprocess(list(texts))
            tensors = {k: v for k, v in want.items() if isinstance(v, torch.Tensor)}
            ids = encode_texts(self.tokenizer, "text", texts, self.limit, False).ids
            got = pad_ids(self.tokenizer, ids, "cpu", tuple(tensors))
            same = got.keys() == tensors.keys() and all(
                torch.equal(got[k], tensors[k]) for k in tensors
            )
            if not same:
                return f"padded token ids differ from its preprocessing of {list(texts)}"
        self._id_keys = tuple(tensors)
        self._constants = {k: v for k, v in want.items() if not isinstance(v, torch.Tensor)}
        return None

    def _trace(self) -> None:
        """Swap the checkpoint's encoder for its traced twin when both give the same vectors."""
        from infergraph.components import torchscript  # torch: imported on load only

        if not torchscript.wanted(self.options, self.device):
            return
        transformer = self.model[0]
        encoder = getattr(transformer, "auto_model", None)
        if not isinstance(encoder, self._torch.nn.Module) or not hasattr(encoder, "config"):
            log.info("text-embedding: %s has no transformer encoder to trace", self.model_source())
            return
        traced, why = torchscript.trace_encoder(
            encoder, self._features(TRACE_EXAMPLE), [self._features(t) for t in TRACE_CHECKS]
        )
        texts = [text for check in TRACE_CHECKS for text in check]
        if traced is not None:
            expected = self._encode(texts, True)
            transformer.model = traced
            difference = float(np.abs(self._encode(texts, True) - expected).max())
            if difference <= torchscript.TOLERANCE:
                return
            transformer.model = encoder
            why = f"traced vectors differ from eager by {difference:.2g}"
        log.warning("text-embedding: %s stays eager: %s", self.model_source(), why)

    def _features(self, texts: tuple[str, ...]) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.limit, return_tensors="pt"
        )
        return {key: value.to(self.device) for key, value in encoded.items()}

    def _embed_ids(self, ids: list[list[int]], normalize: bool) -> np.ndarray:
        """What `encode` does after tokenising: the modules' forward pass, then normalise."""
        torch = self._torch
        features = {**self._constants, **pad_ids(self.tokenizer, ids, self.device, self._id_keys)}
        with torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"]
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().cpu().numpy()

    def _pass_cost(self) -> float | None:
        default = CPU_PASS_COST_TOKENS if self.device.type == "cpu" else None
        value = self.option("pass_cost_tokens", default)
        if value is None:
            return None
        try:
            cost = float(value)
        except (TypeError, ValueError):
            cost = math.nan
        if not math.isfinite(cost) or cost < 0:
            raise SettingsError("pass_cost_tokens", f"{value!r} is not a number of tokens >= 0")
        return cost

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        texts = [b"A man is playing a guitar.", b"The stock market fell sharply today."]
        return {"text": np.array([texts[i % 2] for i in range(batch_size)], dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        texts = decode_texts("text", self.require(inputs, "text"))
        truncate = flag(parameters, self.options, "truncate", False)
        # Checks the limit, truncating where allowed: the ids the forward pass runs.
        encoded = encode_texts(self.tokenizer, "text", texts, self.limit, truncate)
        normalize = flag(parameters, self.options, "normalize", True)
        rows = list(zip(texts, encoded.ids, strict=True))
        return Prepared(rows=rows, batch_key=normalize, notes=truncation_notes(encoded))

    def run_batch(self, rows: list[tuple[str, list[int]]], batch_key: Hashable) -> list[np.ndarray]:
        """Rows are (text, its token ids); one vector each, in the order given."""
        normalize = bool(batch_key)
        vectors: list[np.ndarray] = [np.empty(0, np.float32)] * len(rows)
        for chunk in length_chunks([len(ids) for _, ids in rows], self.pass_cost):
            if self.from_token_ids:
                out = self._embed_ids([rows[i][1] for i in chunk], normalize)
            else:
                out = self._encode([rows[i][0] for i in chunk], normalize)
            for i, vector in zip(chunk, out, strict=True):
                vectors[i] = vector
        return vectors

    def _encode(self, texts: list[str], normalize: bool) -> np.ndarray:
        with self._torch.inference_mode():
            vectors = self.model.encode(
                texts,
                batch_size=len(texts),
                convert_to_numpy=True,
                normalize_embeddings=normalize,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        return {"embedding": np.stack(results).astype(np.float32)}
