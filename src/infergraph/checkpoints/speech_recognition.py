"""Random-weight speech recognisers: Speech2Text, Whisper and wav2vec2 CTC with processors."""

from __future__ import annotations

from pathlib import Path

from infergraph.checkpoints.sizes import (
    TINY_ENCODER_DECODER,
    EncoderDecoderSizes,
    Wav2Vec2Sizes,
    decoder_token_ids,
)
from infergraph.checkpoints.tokenizers import (
    ctc_character_vocab,
    speech2text_tokenizer,
    unused_token_ids,
    whisper_tokenizer,
)


def choose(reference: str) -> dict[str, str]:
    """Whisper or wav2vec2 when the id names it, else Speech2Text (s2t)."""
    lowered = reference.lower()
    if "whisper" in lowered:
        return {"architecture": "whisper"}
    if "wav2vec2" in lowered:
        return {"architecture": "wav2vec2"}
    return {"architecture": "speech2text"}


def build_speech_recognizer(
    target_dir: Path, scale: str = "tiny", architecture: str = "speech2text"
) -> Path:
    """Random-weight checkpoint with processor: speech2text (default), whisper or wav2vec2."""
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    builders = {
        "speech2text": _build_speech2text,
        "whisper": _build_whisper,
        "wav2vec2": _build_wav2vec2,
    }
    if architecture not in builders:
        raise ValueError(f"architecture must be one of {sorted(builders)}")
    builders[architecture](target_dir, scale == "full")
    return target_dir


def _build_speech2text(target_dir: Path, full: bool) -> None:
    from transformers import (
        GenerationConfig,
        Speech2TextConfig,
        Speech2TextFeatureExtractor,
        Speech2TextForConditionalGeneration,
        Speech2TextProcessor,
    )

    tokenizer = speech2text_tokenizer(target_dir / "_spm")
    if full:  # facebook/s2t-small-librispeech-asr
        vocab, channels = 10000, 1024
        sizes: EncoderDecoderSizes = dict(
            d_model=256,
            encoder_layers=12,
            decoder_layers=6,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
        )
    else:
        vocab, channels, sizes = len(tokenizer), 32, TINY_ENCODER_DECODER
    ids = decoder_token_ids(
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id,
        tokenizer.eos_token_id,
    )  # fmt: skip
    config = Speech2TextConfig(
        vocab_size=vocab,
        conv_channels=channels,
        conv_kernel_sizes=[5, 5],
        num_conv_layers=2,
        input_feat_per_channel=80,
        input_channels=1,
        max_source_positions=6000,
        max_target_positions=1024,
        scale_embedding=True,
        **ids,
        **sizes,
    )
    model = Speech2TextForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        max_length=200,
        num_beams=1,
        suppress_tokens=unused_token_ids(tokenizer, config.vocab_size) or None,
        **ids,
    )
    model.eval().save_pretrained(target_dir)
    extractor = Speech2TextFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000)
    Speech2TextProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(
        target_dir
    )
    _remove(target_dir / "_spm")


def _build_whisper(target_dir: Path, full: bool) -> None:
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    tokenizer = whisper_tokenizer()
    token = tokenizer.convert_tokens_to_ids
    eot, sot = token("<|endoftext|>"), token("<|startoftranscript|>")
    if full:  # openai/whisper-tiny
        sizes: EncoderDecoderSizes = dict(
            d_model=384,
            encoder_layers=4,
            decoder_layers=4,
            encoder_attention_heads=6,
            decoder_attention_heads=6,
            encoder_ffn_dim=1536,
            decoder_ffn_dim=1536,
        )
    else:
        sizes = TINY_ENCODER_DECODER
    ids = decoder_token_ids(eot, eot, eot, sot)
    # Tiny: a 4 s window (400 mel frames) instead of 30 s keeps tests fast; same code path.
    chunk_seconds = 30 if full else 4
    config = WhisperConfig(
        vocab_size=51865 if full else len(tokenizer),
        num_mel_bins=80,
        max_source_positions=chunk_seconds * 50,
        max_target_positions=448,
        **ids,
        **sizes,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        max_length=448,
        no_timestamps_token_id=token("<|notimestamps|>"),
        is_multilingual=False,
        begin_suppress_tokens=[eot],
        suppress_tokens=unused_token_ids(tokenizer, config.vocab_size),
        forced_decoder_ids=None,
        **ids,
    )
    model.eval().save_pretrained(target_dir)
    extractor = WhisperFeatureExtractor(
        feature_size=80, sampling_rate=16000, chunk_length=chunk_seconds
    )
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(target_dir)


def _build_wav2vec2(target_dir: Path, full: bool) -> None:
    import json

    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    vocab = ctc_character_vocab()
    vocab_file = target_dir / "vocab.json"
    vocab_file.write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), word_delimiter_token="|")
    if full:  # facebook/wav2vec2-base-960h (the config defaults are the base model)
        sizes: Wav2Vec2Sizes = {}
    else:
        sizes = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(32, 32, 32),
            conv_stride=(5, 4, 4),
            conv_kernel=(10, 8, 4),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            initializer_range=0.2,
        )
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        pad_token_id=tokenizer.pad_token_id,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        **sizes,
    )
    Wav2Vec2ForCTC(config).eval().save_pretrained(target_dir)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    )  # fmt: skip
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(target_dir)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
