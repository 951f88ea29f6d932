"""Object detection with DETR, RT-DETR or YOLOS (any `AutoModelForObjectDetection`).

Each image yields a variable number of detections, so outputs are flat lists
over the whole request (`boxes [M, 4]`, `scores [M]`, `labels [M]`) with
`image_index [M]` saying which input row each belongs to. Post-processing runs
at threshold 0 inside the batch and each request applies its own `threshold`
in `finish`, so requests with different thresholds still share a forward pass.
Crops of selected classes travel as PNG bytes (base64 on the wire) for a
downstream node such as a classifier.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.image_decoding import (
    decode_images,
    encode_png,
    max_image_pixels,
    synthetic_png,
)
from infergraph.components.parameters import as_float, as_int, parameter
from infergraph.errors import InputError

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_CROPS = 100


@dataclass
class _Row:
    pixel_values: torch.Tensor  # [3, h, w], this image's own resized size
    pixel_mask: torch.Tensor  # [h, w]
    original_hw: tuple[int, int]


# One image's detections before the threshold: boxes [n, 4], scores [n], label ids [n].
type _Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


class ObjectDetector(Component):
    """Boxes, scores and labels per image, plus optional PNG crops of chosen classes."""

    family: ClassVar[str] = "object-detection"
    default_model: ClassVar[str] = "facebook/detr-resnet-50"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("image", "BYTES", (-1,), "encoded images (JPEG, PNG, ...)"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("boxes", "FP32", (-1, 4), "x0, y0, x1, y1 in input-image pixels"),
        TensorSpec("scores", "FP32", (-1,), "detection confidence"),
        TensorSpec("labels", "BYTES", (-1,), "class name per detection"),
        TensorSpec("image_index", "INT64", (-1,), "input row of each detection"),
        TensorSpec("crops", "BYTES", (-1,), "PNG crops of crop_classes", optional=True),
        TensorSpec("crop_index", "INT64", (-1,), "detection of each crop", optional=True),
    )

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        source = self.model_source()
        with loading_from(source):
            self.image_processor = AutoImageProcessor.from_pretrained(source)
            model = AutoModelForObjectDetection.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.takes_mask = "pixel_mask" in inspect.signature(self.model.forward).parameters
        id2label = model.config.id2label or {}
        self.id2label = {int(k): str(v) for k, v in id2label.items()}
        self.max_pixels = max_image_pixels(self.options)

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        images = [synthetic_png(seed=i) for i in range(batch_size)]
        return {"image": np.array(images, dtype=object)}

    # -- inference -------------------------------------------------------------------------
    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        import torch

        threshold = as_float(
            parameter(parameters, self.options, "threshold", 0.5), "threshold", 0.0, 1.0
        )
        crop_classes = _crop_classes(parameter(parameters, self.options, "crop_classes", None))
        max_crops = as_int(
            parameter(parameters, self.options, "max_crops", DEFAULT_MAX_CROPS),
            "max_crops",
            0,
            10_000,
        )
        images = decode_images(self.require(inputs, "image"), "image", self.max_pixels)
        rows = []
        for image in images:
            # One image per call: no padding yet; run_batch pads to the batch's largest.
            encoded = self.image_processor(images=[image], return_tensors="pt")
            pixels = encoded["pixel_values"][0]
            mask = encoded.get("pixel_mask")
            mask = mask[0] if mask is not None else torch.ones(pixels.shape[1:], dtype=torch.long)
            rows.append(_Row(pixels, mask, (image.height, image.width)))
        context = {
            "threshold": threshold,
            "crop_classes": crop_classes,
            "max_crops": max_crops,
            "images": images if crop_classes else None,
        }
        return Prepared(rows=rows, context=context)

    def run_batch(self, rows: list[_Row], batch_key: Hashable) -> list[_Detections]:
        import torch

        height = max(r.pixel_values.shape[1] for r in rows)
        width = max(r.pixel_values.shape[2] for r in rows)
        pixels = torch.zeros((len(rows), 3, height, width), dtype=torch.float32)
        mask = torch.zeros((len(rows), height, width), dtype=torch.long)
        for i, row in enumerate(rows):
            _, h, w = row.pixel_values.shape
            pixels[i, :, :h, :w] = row.pixel_values
            mask[i, :h, :w] = row.pixel_mask
        kwargs: dict[str, torch.Tensor] = {"pixel_values": pixels.to(self.device, self.dtype)}
        if self.takes_mask:
            kwargs["pixel_mask"] = mask.to(self.device)
        with torch.inference_mode():
            outputs = self.model(**kwargs)
            for name in ("logits", "pred_boxes"):
                value = getattr(outputs, name, None)
                if value is not None:
                    setattr(outputs, name, value.float())
            detections = self.image_processor.post_process_object_detection(
                outputs, threshold=0.0, target_sizes=[r.original_hw for r in rows]
            )
        return [
            (
                d["boxes"].float().cpu().numpy().reshape(-1, 4),
                d["scores"].float().cpu().numpy().reshape(-1),
                d["labels"].cpu().numpy().reshape(-1).astype(np.int64),
            )
            for d in detections
        ]

    def finish(self, results: list[_Detections], prepared: Prepared) -> dict[str, np.ndarray]:
        threshold: float = prepared.context["threshold"]
        boxes: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        labels: list[str] = []
        index: list[np.ndarray] = []
        for row, (row_boxes, row_scores, row_labels) in enumerate(results):
            keep = row_scores > threshold
            order = np.argsort(-row_scores[keep], kind="stable")
            boxes.append(row_boxes[keep][order])
            scores.append(row_scores[keep][order])
            labels.extend(self.id2label.get(int(c), str(int(c))) for c in row_labels[keep][order])
            index.append(np.full(int(keep.sum()), row, dtype=np.int64))
        outputs: dict[str, np.ndarray] = {
            "boxes": np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
            "scores": np.concatenate(scores).astype(np.float32),
            "labels": np.array(labels, dtype=object).reshape(-1),
            "image_index": np.concatenate(index).astype(np.int64),
        }
        crop_classes = prepared.context["crop_classes"]
        if crop_classes:
            crops, crop_index = self._crops(outputs, prepared, set(crop_classes))
            outputs["crops"] = crops
            outputs["crop_index"] = crop_index
        return outputs

    def _crops(
        self, outputs: dict[str, np.ndarray], prepared: Prepared, wanted: set[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        images = prepared.context["images"]
        limit: int = prepared.context["max_crops"]
        chosen = [i for i, label in enumerate(outputs["labels"]) if label in wanted][:limit]
        if len(chosen) == limit and limit < sum(label in wanted for label in outputs["labels"]):
            prepared.notes["crops_truncated_to"] = limit
        crops = np.empty(len(chosen), dtype=object)
        for j, det in enumerate(chosen):
            image = images[int(outputs["image_index"][det])]
            crops[j] = encode_png(image.crop(_pixel_box(outputs["boxes"][det], image.size)))
        return crops, np.array(chosen, dtype=np.int64)


def _crop_classes(value: object) -> list[str]:
    """`crop_classes` as a list of label names: a JSON list, that list JSON-encoded as text, or
    comma-separated text. Seldon v2's REST pipeline gateway refuses list parameters, so text is
    the form that reaches the detector on every engine (docs/protocols.md)."""
    if value is None or value == "":
        return []
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise InputError("crop_classes", f"not a JSON list of names: {value!r}") from None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputError("crop_classes", f"expected a list of label names, got {value!r}")


def _pixel_box(box: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A float xyxy box clamped to the image, at least one pixel wide and high."""
    width, height = size
    x0 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y0 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x1 = int(np.clip(np.ceil(box[2]), x0 + 1, width))
    y1 = int(np.clip(np.ceil(box[3]), y0 + 1, height))
    return x0, y0, x1, y1
