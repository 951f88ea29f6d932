"""Image captioning with BLIP (unconditional, or continuing a text prompt).

Generation settings change the decoding loop itself, so requests that differ in
`max_new_tokens`, `num_beams` or `prompt` get different batch keys and never
share a `generate` call; requests that agree are merged into one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, ClassVar, cast

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.image_decoding import decode_images, max_image_pixels, synthetic_png
from infergraph.components.parameters import as_int, parameter
from infergraph.components.text import SerialTokenizer, decode_texts
from infergraph.errors import InputError

if TYPE_CHECKING:
    import torch

MAX_NEW_TOKENS_LIMIT = 128
NUM_BEAMS_LIMIT = 8
MAX_PROMPT_CHARS = 500


class ImageCaptioner(Component):
    """BLIP captions: one string per image."""

    family: ClassVar[str] = "image-captioning"
    default_model: ClassVar[str] = "Salesforce/blip-image-captioning-base"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("image", "BYTES", (-1,), "encoded images (JPEG, PNG, ...)"),
        TensorSpec("prompt", "BYTES", (1,), "text the caption continues", optional=True),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("caption", "BYTES", (-1,), "one caption per image"),
    )

    def load(self) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        source = self.model_source()
        with loading_from(source):
            self.processor = BlipProcessor.from_pretrained(source)
            model = BlipForConditionalGeneration.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.tokenizer = SerialTokenizer(self.processor.tokenizer)
        self.max_pixels = max_image_pixels(self.options)
        # The text decoder cannot place a token past its position table: derive the limit from
        # the loaded checkpoint (as the seq2seq families do), never above the configured one.
        positions = getattr(self.model.config.text_config, "max_position_embeddings", None)
        configured = int(self.option("max_new_tokens_limit", MAX_NEW_TOKENS_LIMIT))
        self.positions = int(positions) if positions else configured + 1
        self.max_new_tokens_limit = max(1, min(configured, self.positions - 1))
        self.num_beams_limit = int(self.option("num_beams_limit", NUM_BEAMS_LIMIT))

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        images = [synthetic_png(seed=i) for i in range(batch_size)]
        return {"image": np.array(images, dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        max_new_tokens = as_int(
            parameter(parameters, self.options, "max_new_tokens", 30),
            "max_new_tokens",
            1,
            self.max_new_tokens_limit,
        )
        num_beams = as_int(
            parameter(parameters, self.options, "num_beams", 1),
            "num_beams",
            1,
            self.num_beams_limit,
        )
        prompt = self._prompt(inputs, parameters)
        if prompt:
            prompt_tokens = len(self.tokenizer(prompt)["input_ids"])
            if prompt_tokens + max_new_tokens > self.positions:
                raise InputError(
                    "max_new_tokens",
                    f"{max_new_tokens} new tokens after a {prompt_tokens}-token prompt exceed "
                    f"the decoder's {self.positions} positions; at most "
                    f"{self.positions - prompt_tokens}",
                )
        images = decode_images(self.require(inputs, "image"), "image", self.max_pixels)
        pixels = self.processor.image_processor(images=images, return_tensors="pt")
        rows = list(pixels["pixel_values"])
        return Prepared(rows=rows, batch_key=(max_new_tokens, num_beams, prompt))

    def _prompt(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]) -> str:
        """One prompt per request, from the `prompt` input or parameter (or option)."""
        if "prompt" in inputs:
            texts = decode_texts("prompt", inputs["prompt"])
            if len(set(texts)) > 1:
                raise InputError("prompt", "one prompt per request: all rows must be equal")
            prompt = texts[0]
        else:
            prompt = parameter(parameters, self.options, "prompt", "") or ""
            if not isinstance(prompt, str):
                raise InputError("prompt", f"expected text, got {type(prompt).__name__}")
        prompt = prompt.strip()
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError("prompt", f"longer than {MAX_PROMPT_CHARS} characters")
        return prompt

    def run_batch(self, rows: list[torch.Tensor], batch_key: Hashable) -> list[str]:
        import torch

        max_new_tokens, num_beams, prompt = cast(tuple[int, int, str], batch_key)
        pixels = torch.stack(rows).to(self.device, self.dtype)
        kwargs: dict[str, torch.Tensor] = {}
        if prompt:
            encoded = self.tokenizer(
                [prompt] * len(rows), return_tensors="pt", add_special_tokens=True
            )
            # generate() overwrites the first token in place: give it its own tensor.
            kwargs["input_ids"] = encoded["input_ids"].clone().to(self.device)
            kwargs["attention_mask"] = encoded["attention_mask"].to(self.device)
        with torch.inference_mode():
            tokens = self.model.generate(
                pixel_values=pixels,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
                **kwargs,
            )
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def finish(self, results: list[str], prepared: Prepared) -> dict[str, np.ndarray]:
        return {"caption": np.array(results, dtype=object)}
