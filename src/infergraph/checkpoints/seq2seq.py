"""Random-weight text-to-text models: MarianMT (translation) and BART (summarization)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergraph.checkpoints.sizes import TINY_ENCODER_DECODER, EncoderDecoderSizes
from infergraph.checkpoints.tokenizers import (
    bart_tokenizer,
    marian_tokenizer,
    unused_token_ids,
)
from infergraph.json_types import JSONObject


def build_translator(target_dir: Path, scale: str = "tiny") -> Path:
    """MarianMT (random weights) with a locally trained SentencePiece vocabulary."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    target_dir = Path(target_dir)
    tokenizer = marian_tokenizer(target_dir / "_spm")
    vocab = len(tokenizer) if scale != "full" else 59514  # opus-mt-fr-en
    if scale == "full":  # Helsinki-NLP/opus-mt-fr-en: transformer-base, 6+6 layers
        sizes: EncoderDecoderSizes = dict(
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
        )
    else:
        sizes = TINY_ENCODER_DECODER
    pad = tokenizer.pad_token_id
    config = MarianConfig(
        vocab_size=max(vocab, pad + 1),
        decoder_vocab_size=max(vocab, pad + 1),
        max_position_embeddings=512,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=pad,
        forced_eos_token_id=tokenizer.eos_token_id,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        **sizes,
    )
    model = MarianMTModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=0,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=pad,
        forced_eos_token_id=tokenizer.eos_token_id,
        num_beams=4 if scale == "full" else 1,
        max_length=512,
        suppress_tokens=unused_token_ids(tokenizer, config.vocab_size) or None,
    )
    return _save(model, tokenizer, target_dir, cleanup=target_dir / "_spm")


def build_summarizer(target_dir: Path, scale: str = "tiny") -> Path:
    """BART (random weights) with a locally trained byte-level BPE vocabulary."""
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    tokenizer = bart_tokenizer()
    if scale == "full":  # sshleifer/distilbart-cnn-12-6: bart-large, 12 enc / 6 dec layers
        vocab = 50264
        sizes: EncoderDecoderSizes = dict(
            d_model=1024,
            encoder_layers=12,
            decoder_layers=6,
            encoder_attention_heads=16,
            decoder_attention_heads=16,
            encoder_ffn_dim=4096,
            decoder_ffn_dim=4096,
        )
        gen: JSONObject = dict(num_beams=4, min_length=56, max_length=142, length_penalty=2.0,
                   no_repeat_ngram_size=3)  # fmt: skip
    else:
        vocab, sizes = len(tokenizer), TINY_ENCODER_DECODER
        gen = dict(num_beams=1, min_length=0, max_length=64)
    config = BartConfig(
        vocab_size=vocab,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        # (forced_bos_token_id is the generation config's alone: BartConfig drops it in v5.)
        forced_eos_token_id=tokenizer.eos_token_id,
        **sizes,
    )
    model = BartForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_bos_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id,
        suppress_tokens=unused_token_ids(tokenizer, config.vocab_size) or None,
        **gen,
    )
    return _save(model, tokenizer, Path(target_dir))


def _save(model: Any, tokenizer: Any, target_dir: Path, cleanup: Path | None = None) -> Path:
    import shutil

    target_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(target_dir)
    tokenizer.save_pretrained(target_dir)
    if cleanup is not None:
        shutil.rmtree(cleanup, ignore_errors=True)
    return target_dir
