"""The architecture sizes a checkpoint builder passes to a transformers config, by family.

Typed so that the type checker holds each size against the config's own parameter (a width
must be an int, an init spread a float) when a builder splats them as keyword arguments.
"""

from __future__ import annotations

from typing import TypedDict


class EncoderDecoderSizes(TypedDict, total=False):
    """Marian, BART, Speech2Text and Whisper (each passes its vocabulary size itself)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    init_std: float


class DistilBertSizes(TypedDict, total=False):
    dim: int
    n_layers: int
    n_heads: int
    hidden_dim: int
    initializer_range: float


class BertSizes(TypedDict, total=False):
    """BERT, XLM-R and wav2vec 2.0's transformer."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    initializer_range: float


class Wav2Vec2Sizes(BertSizes, total=False):
    conv_dim: tuple[int, ...]
    conv_stride: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    num_conv_pos_embeddings: int
    num_conv_pos_embedding_groups: int


class DecoderTokenIds(TypedDict):
    """The special token ids an encoder-decoder's config and generation config share."""

    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    decoder_start_token_id: int


def decoder_token_ids(pad: object, bos: object, eos: object, start: object) -> DecoderTokenIds:
    """The ids a tokenizer reports (an id, None when it lacks the token, a list for a string
    that is several tokens), each required to be one id: a config without them generates
    nothing sensible, so a tokenizer that lacks one fails the build here, by name."""
    return {
        "pad_token_id": _one_id("pad", pad),
        "bos_token_id": _one_id("bos", bos),
        "eos_token_id": _one_id("eos", eos),
        "decoder_start_token_id": _one_id("decoder start", start),
    }


def _one_id(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"the tokenizer has no single {name} token id (found {value!r})")
    return value


# The test-size encoder-decoder every generative family builds (Marian, BART, Speech2Text,
# Whisper): two layers of width 32, initialised wide enough that random outputs vary.
TINY_ENCODER_DECODER: EncoderDecoderSizes = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "init_std": 0.2,
}
