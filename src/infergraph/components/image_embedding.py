"""Image (and zero-shot text) embeddings with SigLIP or CLIP.

Both are dual encoders loaded through `AutoModel` + `AutoProcessor`, so any
SigLIP or CLIP checkpoint works. Image rows and text rows of one request are
separate batch rows: the batcher merges image rows from many requests into one
vision forward pass and text rows into one text forward pass. Normalisation and
`logits_per_image` are per-request and cheap, so they happen in `finish` and
requests with different settings still share forward passes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec, loading_from
from infergraph.components.image_decoding import (
    image_or_pixels,
    max_image_pixels,
    processor_input_size,
    synthetic_png,
)
from infergraph.components.parameters import as_bool, parameter
from infergraph.components.text import SerialTokenizer, decode_texts
from infergraph.errors import InputError
from infergraph.json_types import JSONObject

if TYPE_CHECKING:
    import torch

# SigLIP pools the last token, so its text tower must see max_length padding as in training.
_PAD_TO_MAX_LENGTH = {"siglip"}


@dataclass(frozen=True)
class _TextRow:
    input_ids: list[int]
    attention_mask: list[int]


class ImageEmbedder(Component):
    """SigLIP/CLIP image embeddings, optional text embeddings and image-text logits."""

    family: ClassVar[str] = "image-embedding"
    default_model: ClassVar[str] = "google/siglip-so400m-patch14-384"
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("image", "BYTES", (-1,), "encoded images (JPEG, PNG, ...)", optional=True),
        TensorSpec("pixel_values", "FP32", (-1, 3, -1, -1), "preprocessed pixels", optional=True),
        TensorSpec("text", "BYTES", (-1,), "texts for zero-shot embeddings", optional=True),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("embedding", "FP32", (-1, -1), "one embedding per image", optional=True),
        TensorSpec("text_embedding", "FP32", (-1, -1), "one per text", optional=True),
        TensorSpec("logits_per_image", "FP32", (-1, -1), "image x text logits", optional=True),
    )

    # -- lifecycle -------------------------------------------------------------------------
    def load(self) -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        source = self.model_source()
        with loading_from(source):
            self.processor = AutoProcessor.from_pretrained(source)
            model = AutoModel.from_pretrained(source, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        config = model.config
        self.model_type: str = config.model_type
        self.image_processor = self.processor.image_processor
        self.tokenizer = SerialTokenizer(self.processor.tokenizer)
        self.input_hw = processor_input_size(self.image_processor)
        text_limit = int(config.text_config.max_position_embeddings)
        tokenizer_limit = int(getattr(self.tokenizer, "model_max_length", text_limit) or text_limit)
        self.max_text_tokens = min(text_limit, tokenizer_limit)
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        with torch.inference_mode():
            self.logit_scale = float(model.logit_scale.exp().float().item())
            bias = getattr(model, "logit_bias", None)
            self.logit_bias = float(bias.float().item()) if bias is not None else 0.0
        self.max_pixels = max_image_pixels(self.options)

    # -- inference -------------------------------------------------------------------------
    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        images = np.array([synthetic_png(seed=i) for i in range(batch_size)], dtype=object)
        return {"image": images, "text": np.array([b"a photo of a cat"], dtype=object)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        normalize = as_bool(parameter(parameters, self.options, "normalize", True), "normalize")
        truncate = as_bool(parameter(parameters, self.options, "truncate", False), "truncate")
        rows: list[Any] = []
        notes: JSONObject = {}
        picked = image_or_pixels(inputs, "image", "pixel_values", self.input_hw, self.max_pixels)
        n_images = 0
        if picked is not None:
            kind, value = picked
            if kind == "image":
                pixels = self.image_processor(images=value, return_tensors="pt")["pixel_values"]
            else:
                import torch

                pixels = torch.from_numpy(np.ascontiguousarray(value))
            rows.extend(("image", p) for p in pixels)
            n_images = len(pixels)
        n_texts = 0
        if "text" in inputs:
            texts = decode_texts("text", inputs["text"])
            text_rows, truncated = self._tokenize(texts, truncate)
            rows.extend(("text", r) for r in text_rows)
            n_texts = len(text_rows)
            if truncated:
                notes["truncated_rows"] = truncated
                notes["truncated_to_tokens"] = self.max_text_tokens
        if not rows:
            raise InputError("image", "send at least one of 'image', 'pixel_values' or 'text'")
        return Prepared(
            rows=rows,
            batch_key=None,
            notes=notes,
            context={"images": n_images, "texts": n_texts, "normalize": normalize},
        )

    def _tokenize(self, texts: list[str], truncate: bool) -> tuple[list[_TextRow], list[int]]:
        limit = self.max_text_tokens
        rows: list[_TextRow] = []
        truncated: list[int] = []
        for i, text in enumerate(texts):
            ids = self.tokenizer(text)["input_ids"]
            if len(ids) > limit:
                if not truncate:
                    raise InputError(
                        "text",
                        f"{len(ids)} tokens exceeds the model's maximum of {limit}; shorten it "
                        "or set option/parameter truncate: true",
                        i,
                    )
                truncated.append(i)
            encoded = self.tokenizer(
                text,
                truncation=True,
                max_length=limit,
                padding="max_length" if self.model_type in _PAD_TO_MAX_LENGTH else False,
            )
            mask = encoded.get("attention_mask") or [1] * len(encoded["input_ids"])
            rows.append(_TextRow(list(encoded["input_ids"]), list(mask)))
        return rows, truncated

    def run_batch(self, rows: list[Any], batch_key: Hashable) -> list[Any]:
        import torch

        results: list[Any] = [None] * len(rows)
        image_at = [i for i, (kind, _) in enumerate(rows) if kind == "image"]
        text_at = [i for i, (kind, _) in enumerate(rows) if kind == "text"]
        with torch.inference_mode():
            if image_at:
                pixels = torch.stack([rows[i][1] for i in image_at])
                pixels = pixels.to(self.device, self.dtype)
                features = _pooled(self.model.get_image_features(pixel_values=pixels))
                for i, vector in zip(image_at, features, strict=True):
                    results[i] = vector
            if text_at:
                ids, mask = self._pad([rows[i][1] for i in text_at])
                kwargs: dict[str, torch.Tensor] = {"input_ids": ids.to(self.device)}
                if "attention_mask" in self.tokenizer.model_input_names:
                    kwargs["attention_mask"] = mask.to(self.device)
                features = _pooled(self.model.get_text_features(**kwargs))
                for i, vector in zip(text_at, features, strict=True):
                    results[i] = vector
        return results

    def _pad(self, text_rows: list[_TextRow]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(r.input_ids) for r in text_rows)
        ids = torch.full((len(text_rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(text_rows), width), dtype=torch.long)
        for j, row in enumerate(text_rows):
            ids[j, : len(row.input_ids)] = torch.tensor(row.input_ids)
            mask[j, : len(row.attention_mask)] = torch.tensor(row.attention_mask)
        return ids, mask

    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, np.ndarray]:
        n_images = prepared.context["images"]
        normalize = prepared.context["normalize"]
        vectors = [np.asarray(r, dtype=np.float32) for r in results]
        outputs: dict[str, np.ndarray] = {}
        image = np.stack(vectors[:n_images]) if n_images else None
        text = np.stack(vectors[n_images:]) if prepared.context["texts"] else None
        if image is not None:
            outputs["embedding"] = _l2(image) if normalize else image
        if text is not None:
            outputs["text_embedding"] = _l2(text) if normalize else text
        if image is not None and text is not None:
            logits = self.logit_scale * (_l2(image) @ _l2(text).T) + self.logit_bias
            outputs["logits_per_image"] = logits.astype(np.float32)
        return outputs


def _pooled(output: Any) -> Any:
    """transformers 5 returns a model output from get_*_features; older versions a tensor."""
    pooled = getattr(output, "pooler_output", output)
    return pooled.float().cpu().numpy()


def _l2(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
