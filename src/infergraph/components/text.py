"""Shared text handling: BYTES rows -> str, and tokenisation under the model's length limit.

Every text family follows one rule: a row longer than the model accepts is a
client error that names the input and row, unless the deployment (option
`truncate: true`) or the request (parameter `truncate`) allows truncation, in
which case the truncated rows are reported in the response's `truncated` note.
Silent truncation would hand back a confident answer about text the model never saw.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from infergraph.errors import InputError, PayloadTooLargeError
from infergraph.json_types import JSONObject

if TYPE_CHECKING:
    import torch
    from transformers import BatchEncoding, PreTrainedTokenizerBase

# Larger than any model's context by far; stops a giant body before tokenisation.
DEFAULT_MAX_CHARS = 200_000
# Tokenizers report this (or larger) when a checkpoint sets no model_max_length.
_UNSET_LIMIT = 1_000_000


class SerialTokenizer:
    """A tokenizer shared by request threads, encoding for one thread at a time.

    A fast (Rust) tokenizer keeps truncation and padding as state of its backend, and
    each call first sets that state to its own arguments
    (`set_truncation_and_padding`). Two threads encoding at once can each run with
    the other's settings: a row left untruncated past the model's positions, or
    unpadded where the model needs max-length padding. Encoding calls hold a lock;
    attributes and the other methods (decode, pad: no backend settings) pass through.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.wrapped = tokenizer
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> BatchEncoding:
        with self._lock:
            return self.wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def decode_texts(name: str, array: np.ndarray, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Decode a BYTES tensor of shape [N] (or [N, 1], or a scalar) into N strings."""
    if array.dtype != object:
        raise InputError(name, f"datatype {array.dtype} not accepted; expected BYTES (utf-8 text)")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 0:
        array = array.reshape(1)
    elif array.ndim != 1:
        raise InputError(name, f"expected shape [N] of strings, got {list(array.shape)}")
    if array.shape[0] == 0:
        raise InputError(name, "empty batch: at least one row is required")
    texts: list[str] = []
    for i, item in enumerate(array):
        if isinstance(item, str):
            text = item
        elif isinstance(item, (bytes, bytearray)):
            try:
                text = bytes(item).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    name, f"is not valid utf-8 (byte {exc.start}: {exc.reason})", index=i
                ) from exc
        else:
            raise InputError(name, f"expected bytes, got {type(item).__name__}", index=i)
        if len(text) > max_chars:
            raise PayloadTooLargeError(
                name, f"has {len(text)} characters; the limit is {max_chars}", index=i
            )
        texts.append(text)
    return texts


def token_limit(
    tokenizer: PreTrainedTokenizerBase | SerialTokenizer,
    config: object,
    option: int | str | None = None,
) -> int:
    """The longest input (in tokens, specials included) the model can take.

    The smallest of the tokenizer's `model_max_length`, the config's position
    table (less RoBERTa's padding offset) and the deployment's `max_length` option.
    """
    candidates: list[int] = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < _UNSET_LIMIT:
        candidates.append(tok_max)
    positions = None
    for attr in ("max_position_embeddings", "max_source_positions", "n_positions"):
        positions = getattr(config, attr, None)
        if isinstance(positions, int) and positions > 0:
            break
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (getattr(config, "pad_token_id", 1) or 1) + 1
        candidates.append(positions)
    if option is not None:
        candidates.append(int(option))
    return min(candidates) if candidates else 512


@dataclass
class Encoded:
    """Token ids per row plus the rows that had to be cut to fit."""

    ids: list[list[int]]
    truncated: list[int] = field(default_factory=list)


def encode_texts(
    tokenizer: SerialTokenizer,
    name: str,
    texts: Sequence[str],
    limit: int,
    truncate: bool,
) -> Encoded:
    """Tokenise each row; over-long rows are an error unless truncation is allowed."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)[
        "input_ids"
    ]
    out = Encoded(ids=[])
    for i, row in enumerate(ids):
        if len(row) > limit:
            if not truncate:
                raise InputError(
                    name,
                    f"row {i} has {len(row)} tokens; the model's limit is {limit}; "
                    "set option truncate: true to truncate",
                    index=i,
                )
            row = tokenizer(texts[i], add_special_tokens=True, truncation=True, max_length=limit)[
                "input_ids"
            ]
            out.truncated.append(i)
        out.ids.append(list(row))
    return out


def length_chunks(lengths: Sequence[int], pass_cost: float | None) -> list[list[int]]:
    """Row indices split into forward passes that cost least, counting padding as work.

    A pass pads every row to its longest, so it costs about rows x longest tokens, plus a
    fixed `pass_cost` in the same unit (dispatch, kernel launches). Over rows sorted by
    length the cheapest split into runs is found exactly by dynamic programming (n is one
    batch, so n**2 steps is nothing); ties keep fewer passes. `pass_cost` None: one pass.
    """
    if pass_cost is None or len(lengths) < 2:
        return [list(range(len(lengths)))]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0.0] + [math.inf] * len(order)
    start_of = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + (end - start) * longest + pass_cost
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    chunks: list[list[int]] = []
    end = len(order)
    while end > 0:
        chunks.append(order[start_of[end] : end])
        end = start_of[end]
    return chunks[::-1]


PADDED_KEYS = ("input_ids", "attention_mask")


def pad_ids(
    tokenizer: PreTrainedTokenizerBase | SerialTokenizer,
    rows: Sequence[Sequence[int]],
    device: torch.device | str,
    keys: Sequence[str] = PADDED_KEYS,
) -> dict[str, torch.Tensor]:
    """Pad token-id rows from many requests into one batch of tensors on `device`.

    `keys` are the tensors the model takes; `token_type_ids` among them are zeros, as a
    tokenizer gives them for one sequence per row (and for its padding).
    """
    batch = tokenizer.pad({"input_ids": [list(r) for r in rows]}, padding=True, return_tensors="pt")
    if "token_type_ids" in keys and "token_type_ids" not in batch:
        batch["token_type_ids"] = batch["input_ids"].new_zeros(batch["input_ids"].shape)
    return {k: batch[k].to(device) for k in keys if k in batch}


def truncation_notes(encoded: Encoded) -> JSONObject:
    return {"truncated": encoded.truncated} if encoded.truncated else {}
