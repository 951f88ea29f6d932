"""Weightless components that graphs need: a pass-through and an ensemble combiner."""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from typing import ClassVar

import numpy as np

from infergraph.components.base import Component, Prepared, TensorSpec
from infergraph.components.conditions import evaluate
from infergraph.errors import InputError, SettingsError
from infergraph.json_types import JSONObject


class _Weightless(Component):
    """Plumbing with no weights: nothing to load, runs on the CPU, on the event loop."""

    default_model: ClassVar[str] = ""
    uses_gpu: ClassVar[bool] = False
    inline: ClassVar[bool] = True

    def load(self) -> None:
        return None

    def model_source(self) -> str:
        return "(no weights)"

    def setup_device(self) -> None:
        self.device = "cpu"


class Identity(_Weightless):
    """Returns its inputs unchanged: a no-op hop for benchmarks and a graph's plumbing."""

    family: ClassVar[str] = "identity"
    passthrough: ClassVar[bool] = True
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("input", "FP32", (-1, -1)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("input", "FP32", (-1, -1)),)

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"input": np.zeros((batch_size, 4), dtype=np.float32)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        if not inputs:
            raise InputError("inputs", "no input tensors given")
        return Prepared(rows=[dict(inputs)])

    def run_batch(
        self, rows: list[dict[str, np.ndarray]], batch_key: Hashable
    ) -> list[dict[str, np.ndarray]]:
        return rows

    def finish(
        self, results: list[dict[str, np.ndarray]], prepared: Prepared
    ) -> dict[str, np.ndarray]:
        return dict(results[0])


class Combiner(_Weightless):
    """Merges ensemble members' score tensors into one answer.

    Every input is a member's FP32 `[N, C]` scores over the same classes.
    `method: average` (default) averages them; `method: vote` gives each member
    one vote for its argmax and reports the vote share. Outputs `scores` and
    `label_index` (`labels` too when the `labels` option lists class names).
    """

    family: ClassVar[str] = "combiner"
    passthrough: ClassVar[bool] = False
    inputs: ClassVar[tuple[TensorSpec, ...]] = (TensorSpec("scores", "FP32", (-1, -1)),)
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("scores", "FP32", (-1, -1)),
        TensorSpec("label_index", "INT64", (-1,)),
    )

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        return {f"scores_{i}": rng.random((batch_size, 3), dtype=np.float32) for i in range(2)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        if not inputs:
            raise InputError("scores", "a combiner needs at least one member's scores")
        arrays = []
        shape = None
        for name, value in sorted(inputs.items()):
            if value.dtype.kind != "f":
                raise InputError(name, f"expected FP32 scores, got {value.dtype}")
            if value.ndim != 2:
                raise InputError(name, f"expected shape [N, C], got {list(value.shape)}")
            if shape is not None and value.shape != shape:
                raise InputError(name, f"shape {list(value.shape)} differs from {list(shape)}")
            shape = value.shape
            arrays.append(value.astype(np.float32))
        method = str(parameters.get("method", self.option("method", "average")))
        if method not in ("average", "vote"):
            raise InputError("method", f"unknown combiner method '{method}'; use average or vote")
        return Prepared(rows=[np.stack(arrays)], batch_key=method)

    def run_batch(self, rows: list[np.ndarray], batch_key: Hashable) -> list[np.ndarray]:
        out = []
        for stacked in rows:  # [members, N, C]
            if batch_key == "vote":
                votes = stacked.argmax(axis=2)  # [members, N]
                counts = np.zeros(stacked.shape[1:], dtype=np.float32)
                for member_votes in votes:
                    counts[np.arange(len(member_votes)), member_votes] += 1.0
                out.append(counts / stacked.shape[0])
            else:
                out.append(stacked.mean(axis=0))
        return out

    def finish(self, results: list[np.ndarray], prepared: Prepared) -> dict[str, np.ndarray]:
        scores = results[0].astype(np.float32)
        outputs: dict[str, np.ndarray] = {
            "scores": scores,
            "label_index": scores.argmax(axis=1).astype(np.int64),
        }
        labels = self.option("labels", None)
        if labels:
            outputs["labels"] = np.array(
                [labels[i] if i < len(labels) else str(i) for i in outputs["label_index"]],
                dtype=object,
            )
        return outputs


class CropFilter(Component):
    """Keeps the detector crops of one class, so a per-class classifier sees only its own.

    Inputs are the object-detection outputs `crops` [K], `crop_index` [K] (which
    detection each crop came from) and `labels` [M]; option `label` picks the class.
    Output `image` [k] feeds an image classifier directly; `detection_index` [k]
    says which detection each kept crop belongs to.
    """

    family: ClassVar[str] = "crop-filter"
    default_model: ClassVar[str] = ""
    inline: ClassVar[bool] = True
    uses_gpu: ClassVar[bool] = False
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("crops", "BYTES", (-1,)),
        TensorSpec("crop_index", "INT64", (-1,)),
        TensorSpec("labels", "BYTES", (-1,)),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("image", "BYTES", (-1,)),
        TensorSpec("detection_index", "INT64", (-1,)),
    )

    def load(self) -> None:
        if not self.option("label", None):
            from infergraph.errors import SettingsError

            raise SettingsError("options.label", "crop-filter needs the class label to keep")

    def model_source(self) -> str:
        return "(no weights)"

    def setup_device(self) -> None:
        self.device = "cpu"

    def warmup(self) -> None:
        return None

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        label = self.option("label", "person")
        return {
            "crops": np.array([b"\x89PNG"] * batch_size, dtype=object),
            "crop_index": np.arange(batch_size, dtype=np.int64),
            "labels": np.array([label.encode()] * batch_size, dtype=object),
        }

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        for spec in self.inputs:
            if spec.name not in inputs:
                raise InputError(spec.name, "missing; crop-filter takes crops, crop_index, labels")
        crops, index, labels = inputs["crops"], inputs["crop_index"], inputs["labels"]
        if len(crops) != len(index):
            raise InputError("crop_index", f"has {len(index)} rows but crops has {len(crops)}")
        if len(index) and (index.min() < 0 or index.max() >= len(labels)):
            raise InputError("crop_index", f"points outside the {len(labels)} detections")
        return Prepared(rows=[(crops.reshape(-1), index.reshape(-1), labels.reshape(-1))])

    def run_batch(
        self, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], batch_key: Hashable
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        wanted = str(self.option("label", "")).encode()
        out = []
        for crops, index, labels in rows:
            keep = [i for i, det in enumerate(index) if _as_bytes(labels[det]) == wanted]
            out.append((crops[keep] if keep else np.empty(0, dtype=object), index[keep]))
        return out

    def finish(
        self, results: list[tuple[np.ndarray, np.ndarray]], prepared: Prepared
    ) -> dict[str, np.ndarray]:
        crops, index = results[0]
        return {"image": crops.astype(object), "detection_index": index.astype(np.int64)}


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class ConditionGate(Component):
    """Emits `then` when the condition holds on its input, else `otherwise` (never both).

    Seldon Core v2 pipeline steps trigger on the presence of a tensor, so the branch after
    the gate runs only when its tensor exists: how a cascade skips the big model.
    `options.condition` is `{"op", "value", "reduce"}` as in the graph's `when`.
    """

    family: ClassVar[str] = "gate"
    default_model: ClassVar[str] = ""
    uses_gpu: ClassVar[bool] = False
    passthrough: ClassVar[bool] = True
    inputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("value", "FP32", (-1,), "tensor to test"),
    )
    outputs: ClassVar[tuple[TensorSpec, ...]] = (
        TensorSpec("then", "BOOL", (1,), "present when the condition holds", optional=True),
        TensorSpec("otherwise", "BOOL", (1,), "present when it does not", optional=True),
    )

    def condition(self) -> JSONObject:
        cond = self.option("condition", None)
        if isinstance(cond, str):
            cond = json.loads(cond)
        if not isinstance(cond, dict) or "op" not in cond:
            raise SettingsError("options.condition", "required: {op, value, reduce}")
        return cond

    def load(self) -> None:
        self.condition()

    def model_source(self) -> str:
        return "(no weights)"

    def setup_device(self) -> None:
        self.device = "cpu"

    def example_inputs(self, batch_size: int) -> dict[str, np.ndarray]:
        """A tensor of the kind the condition compares: text for `eq "en"`, else numbers."""
        value = self.condition().get("value")
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, str):
            return {"value": np.array([first.encode()] * batch_size, dtype=object)}
        return {"value": np.full((batch_size,), 0.5, dtype=np.float32)}

    def prepare(
        self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, object]
    ) -> Prepared:
        if not inputs:
            raise InputError("value", "the gate needs the tensor its condition tests")
        name = "value" if "value" in inputs else sorted(inputs)[0]
        return Prepared(rows=[evaluate(self.condition(), inputs[name], name)])

    def run_batch(self, rows: list[bool], batch_key: Hashable) -> list[bool]:
        return rows

    def finish(self, results: list[bool], prepared: Prepared) -> dict[str, np.ndarray]:
        return {"then" if results[0] else "otherwise": np.array([True])}
