"""Random-weight DETR and YOLOS detectors with their image processors."""

from __future__ import annotations

from pathlib import Path

from infergraph.checkpoints.tokenizers import LabelMaps

# facebook/detr-resnet-50's id2label: COCO's 91 category ids, unused ids named "N/A".
COCO_91_LABELS: tuple[str, ...] = (
    "N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
_TINY_LABELS = ("N/A", "person", "bicycle", "car", "dog")


def choose(reference: str) -> dict[str, str]:
    """YOLOS when the id names it, else DETR."""
    return {"architecture": "yolos" if "yolos" in reference.lower() else "detr"}


def build_object_detector(
    target_dir: Path, scale: str = "tiny", architecture: str = "detr"
) -> Path:
    """Random-weight DETR (or YOLOS) with its image processor, saved like a hub checkpoint.

    `full` DETR is facebook/detr-resnet-50 (ResNet-50 backbone, 6+6 layers,
    100 queries, COCO's 91 ids); `tiny` is a one-layer DETR over a small ResNet.
    """
    import torch

    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if architecture == "detr":
        _build_detr(target_dir, scale)
    elif architecture == "yolos":
        _build_yolos(target_dir, scale)
    else:
        raise ValueError(f"unknown architecture '{architecture}'; use detr or yolos")
    return target_dir


def _label_maps(labels: tuple[str, ...]) -> LabelMaps:
    return {
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels) if label != "N/A"},
    }


def _build_detr(target_dir: Path, scale: str) -> None:
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    if scale == "full":
        # DetrConfig's defaults are detr-resnet-50: ResNet-50, d_model 256, 6+6 layers, 8 heads.
        config = DetrConfig(num_queries=100, **_label_maps(COCO_91_LABELS))
        processor = DetrImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})
    else:
        backbone = ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16, 32, 64],
            depths=[1, 1, 1, 1],
            layer_type="basic",
            # A backbone option (BackboneConfigMixin) that ResNetConfig's typed signature omits.
            out_features=["stage4"],  # type: ignore[call-arg]
        )
        config = DetrConfig(
            backbone_config=backbone,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_queries=10,
            **_label_maps(_TINY_LABELS),
        )
        processor = DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    DetrForObjectDetection(config).eval().save_pretrained(target_dir)
    processor.save_pretrained(target_dir)


def _build_yolos(target_dir: Path, scale: str) -> None:
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    if scale == "full":  # hustvl/yolos-small
        config = YolosConfig(
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            intermediate_size=1536,
            image_size=[800, 1333],
            num_detection_tokens=100,
            **_label_maps(COCO_91_LABELS),
        )
        processor = YolosImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})
    else:
        config = YolosConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=[64, 96],
            patch_size=16,
            num_detection_tokens=10,
            **_label_maps(_TINY_LABELS),
        )
        processor = YolosImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    YolosForObjectDetection(config).eval().save_pretrained(target_dir)
    processor.save_pretrained(target_dir)
