"""Random-weight image classifiers (timm or transformers), saved like their hub checkpoints."""

from __future__ import annotations

from pathlib import Path

from infergraph.checkpoints.tokenizers import LabelMaps
from infergraph.components.image_classification import BACKENDS, imagenet_labels
from infergraph.json_types import JSONObject

_TINY_LABELS = ["cat", "dog", "bird", "fish", "frog", "horse", "ship", "truck"]


def choose(reference: str) -> dict[str, str]:
    """timm for `timm/...` ids, else transformers; the id also names the architecture."""
    backend = "timm" if reference.lower().startswith("timm/") else "transformers"
    return {"backend": backend, "reference": reference}


def build_image_classifier(
    target_dir: Path,
    scale: str = "tiny",
    backend: str = "timm",
    reference: str | None = None,
) -> Path:
    """Random-weight classifier saved the way its hub checkpoints are.

    timm: `full` is the architecture `reference` names (`timm/resnet18.a1_in1k`;
    resnet50.a1_in1k by default), saved with timm's own `save_for_hf` so `load()`
    takes the same `local-dir:` path as a `timm/...` hub id; `tiny` is timm's
    test_resnet at 64x64 over 8 classes. transformers: `full` is ResNet-50 when the
    reference names a ResNet (microsoft/resnet-50), else google/vit-base-patch16-224;
    `tiny` a two-layer ViT.
    """
    import torch

    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    ref = (reference or "").lower()
    if backend == "timm":
        _build_timm(target_dir, scale, ref.removeprefix("timm/") or "resnet50.a1_in1k")
    elif backend == "transformers" and scale == "full" and "resnet" in ref:
        _build_hf_resnet50(target_dir)
    elif backend == "transformers":
        _build_vit(target_dir, scale)
    else:
        raise ValueError(f"unknown backend '{backend}'; use one of {list(BACKENDS)}")
    return target_dir


def _build_timm(target_dir: Path, scale: str, model_name: str) -> None:
    import timm
    from timm.models import save_for_hf

    if scale == "full":
        model = timm.create_model(model_name, pretrained=False)
        names, descriptions = imagenet_labels()
        model_config: JSONObject = {"label_names": names, "label_descriptions": descriptions}
        data_config = None
    else:
        model = timm.create_model("test_resnet", pretrained=False, num_classes=len(_TINY_LABELS))
        model_config = {"label_names": list(_TINY_LABELS)}
        data_config = {"input_size": (3, 64, 64), "crop_pct": 1.0}
    save_for_hf(
        model.eval(),
        str(target_dir),
        model_config=model_config,
        data_config=data_config,
        safe_serialization=True,
    )


def _label_maps(labels: list[str]) -> LabelMaps:
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _build_hf_resnet50(target_dir: Path) -> None:
    """microsoft/resnet-50's architecture and preprocessing, random weights."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    names, descriptions = imagenet_labels()
    config = ResNetConfig(
        embedding_size=64,
        hidden_sizes=[256, 512, 1024, 2048],
        depths=[3, 4, 6, 3],
        layer_type="bottleneck",
        **_label_maps([descriptions[n] for n in names]),
    )
    ResNetForImageClassification(config).eval().save_pretrained(target_dir)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(target_dir)


def _build_vit(target_dir: Path, scale: str) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    if scale == "full":  # google/vit-base-patch16-224
        names, descriptions = imagenet_labels()
        labels = [descriptions[n] for n in names]
        config = ViTConfig(image_size=224, patch_size=16, **_label_maps(labels))
    else:
        labels = list(_TINY_LABELS)
        config = ViTConfig(
            **_label_maps(labels),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    size = config.image_size
    processor = ViTImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    ViTForImageClassification(config).eval().save_pretrained(target_dir)
    processor.save_pretrained(target_dir)
