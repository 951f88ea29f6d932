"""Image classification through timm or transformers.

`scores` are softmax probabilities over every class because graph ensembles
average them across members and cascades route on `confidence` (the top-1
probability); `label` and the top-k tensors are for people and dashboards.
Preprocessing (timm's data config transforms, or the transformers image
processor) runs per request in `prepare`, off the forward thread.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.image_decoding import (
    image_or_pixels,
    max_image_pixels,
    processor_input_size,
    synthetic_png,
)
from infergraph.components.parameters import as_int, parameter
from infergraph.errors import InputError, SettingsError

if TYPE_CHECKING:
    import torch

BACKENDS = ("timm", "transformers")


class ImageClassifier(Component):
    """Softmax scores over all classes, top-1 label/confidence and top-k."""

    family: ClassVar[str] = "image-classification"
    default_model: ClassVar[str] = "timm/resnet50.a1_in1k"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("image", "BYTES", (-1,), "encoded images (JPEG, PNG, ...)", optional=True),
        TensorSpec("pixel_values", "FP32", (-1, 3, -1, -1), "preprocessed pixels", optional=True),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("scores", "FP32", (-1, -1), "softmax probabilities over all classes"),
        TensorSpec("label", "BYTES", (-1,), "top-1 label"),
        TensorSpec("confidence", "FP32", (-1,), "top-1 probability"),
        TensorSpec("top_k_labels", "BYTES", (-1, -1), "k most likely labels"),
        TensorSpec("top_k_scores", "FP32", (-1, -1), "their probabilities"),
    )
    model: torch.nn.Module  # timm's or transformers', set by load()

    # -- lifecycle -------------------------------------------------------------------------
    def backend(self) -> str:
        """timm for `timm/...` ids and timm-format folders, else transformers."""
        chosen = self.option("backend", None)
        if chosen:
            if chosen not in BACKENDS:
                raise SettingsError("backend", f"'{chosen}' is not one of {list(BACKENDS)}")
            return str(chosen)
        source = self.model_source()
        if source.startswith(("timm/", "hf-hub:timm/", "local-dir:")):
            return "timm"
        config_file = Path(source) / "config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text())
            if "architecture" in config and "model_type" not in config:
                return "timm"
        return "transformers"

    def load(self) -> None:
        source = self.model_source()
        self.backend_name = self.backend()
        with loading_from(source):
            if self.backend_name == "timm":
                self._load_timm(source)
            else:
                self._load_transformers(source)
        self.model = self.model.to(self.device, self.dtype).eval()
        self.max_pixels = max_image_pixels(self.options)

    def _load_timm(self, source: str) -> None:
        import timm
        from timm.data import create_transform, resolve_model_data_config

        if source.startswith(("hf-hub:", "local-dir:")):
            name = source
        elif Path(source).is_dir():
            name = f"local-dir:{source}"
        else:
            name = f"hf-hub:{source}"
        self.model = timm.create_model(name, pretrained=True)
        data_config = resolve_model_data_config(
            self.model, use_test_size=bool(self.option("use_test_size", False))
        )
        self.transform = create_transform(**data_config, is_training=False)
        self.input_hw: tuple[int, int] | None = tuple(data_config["input_size"][1:])
        self.labels = _timm_labels(self.model)

    def _load_transformers(self, source: str) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.image_processor = AutoImageProcessor.from_pretrained(source)
        model = AutoModelForImageClassification.from_pretrained(source, dtype=self.dtype)
        self.model = model
        self.input_hw = processor_input_size(self.image_processor)
        id2label = model.config.id2label or {}
        self.labels = [
            str(id2label.get(i, id2label.get(str(i), i))) for i in range(model.config.num_labels)
        ]

    # -- inference -------------------------------------------------------------------------
    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        images = [synthetic_png(seed=i) for i in range(batch_size)]
        return {"image": np.array(images, dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        import torch

        top_k = as_int(parameter(parameters, self.options, "top_k", 5), "top_k", 1, 1_000_000)
        picked = image_or_pixels(inputs, "image", "pixel_values", self.input_hw, self.max_pixels)
        if picked is None:
            raise InputError("image", "missing; send 'image' (encoded) or 'pixel_values' (FP32)")
        kind, value = picked
        if kind == "pixels":
            rows = list(torch.from_numpy(np.ascontiguousarray(value)))
        elif self.backend_name == "timm":
            rows = [self.transform(image) for image in value]
        else:
            rows = list(self.image_processor(images=value, return_tensors="pt")["pixel_values"])
        # Rows of one size share a batch: a processor sized by its shortest edge has no fixed
        # size to refuse another against, and one odd tensor failed its batchmates' stack.
        shape = tuple(rows[0].shape) if rows else ()
        return Prepared(rows=rows, batch_key=shape, context=min(top_k, len(self.labels)))

    def run_batch(self, rows: list[torch.Tensor], batch_key: Hashable) -> list[np.ndarray]:
        import torch

        pixels = torch.stack(rows).to(self.device, self.dtype)
        with torch.inference_mode():
            output = self.model(pixels)
            logits = getattr(output, "logits", output)
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return list(probs)

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        scores = np.stack(results).astype(np.float32)
        k: int = prepared.context
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        labels = np.array(self.labels, dtype=object)
        return {
            "scores": scores,
            "label": labels[order[:, 0]],
            "confidence": np.take_along_axis(scores, order[:, :1], axis=1)[:, 0],
            "top_k_labels": labels[order],
            "top_k_scores": np.take_along_axis(scores, order, axis=1),
        }


def imagenet_labels() -> tuple[list[str], dict[str, str]]:
    """ImageNet-1k synsets and their descriptions, shipped inside timm (no download)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    names = [info.index_to_label_name(i) for i in range(info.num_classes())]
    return names, {name: info.label_name_to_description(name) for name in names}


def _timm_labels(model: Any) -> list[str]:
    """Readable labels: the checkpoint's descriptions or names, else ImageNet's, else indices."""
    cfg = model.pretrained_cfg
    count = int(model.num_classes)
    names = cfg.get("label_names")
    descriptions = cfg.get("label_descriptions") or {}
    if isinstance(names, Mapping):
        names = [names.get(i, names.get(str(i), str(i))) for i in range(count)]
    if names and len(names) == count:
        return [str(descriptions.get(n, n)) for n in names]
    from timm.data import infer_imagenet_subset

    if count == 1000 and infer_imagenet_subset(model) == "imagenet-1k":
        synsets, described = imagenet_labels()
        return [described[s] for s in synsets]
    return [str(i) for i in range(count)]
