"""Image preprocessing as its own graph step (a Seldon TRANSFORMER).

Decoding and resizing on CPU pods lets the GPU classifier spend its time on
forward passes: the classifier then takes `pixel_values` directly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec
from infergraph.components.image_decoding import decode_images, max_image_pixels, synthetic_png
from infergraph.errors import SettingsError

if TYPE_CHECKING:
    import PIL.Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePreprocessor(Component):
    """Encoded images -> FP32 `[N, 3, size, size]`: shorter side resize, centre crop, normalise."""

    family: ClassVar[str] = "image-preprocessing"
    default_model: ClassVar[str] = ""
    uses_gpu: ClassVar[bool] = False
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("image", "BYTES", (-1,)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("pixel_values", "FP32", (-1, 3, -1, -1)),
    )

    def model_source(self) -> str:
        return "(no weights)"

    def setup_device(self) -> None:
        self.device = "cpu"

    def load(self) -> None:
        self.size = int(self.option("size", 224))
        self.crop_pct = float(self.option("crop_pct", 0.875))
        mean = self.option("mean", IMAGENET_MEAN)
        std = self.option("std", IMAGENET_STD)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise SettingsError("options.mean/std", "need three values each, std > 0")
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.max_pixels = max_image_pixels(self.options)

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"image": np.array([synthetic_png(seed=i) for i in range(batch_size)], dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        images = decode_images(self.require(inputs, "image"), "image", self.max_pixels)
        return Prepared(rows=[self._to_pixels(img) for img in images])

    def _to_pixels(self, image: PIL.Image.Image) -> np.ndarray:
        from PIL import Image

        resize_to = round(self.size / self.crop_pct)
        w, h = image.size
        scale = resize_to / min(w, h)
        image = image.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC
        )
        w, h = image.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (pixels - self.mean) / self.std

    def run_batch(self, rows: list[np.ndarray], batch_key: Hashable) -> list[np.ndarray]:
        return rows  # the work is per image, done in prepare

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        return {"pixel_values": np.stack(results).astype(np.float32)}
