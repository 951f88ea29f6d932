"""Triton's model configuration and statistics, as the runtime and the router describe models.

Clients of Triton (tritonclient's `get_model_config` / `get_inference_statistics`,
perf_analyzer) ask for these besides the Open Inference Protocol's metadata. perf_analyzer
needs from the configuration: `max_batch_size` (0: `--shape` gives the whole shape), and one
`input` entry per tensor with `data_type` (`TYPE_FP32`, `TYPE_STRING` for BYTES, ...), `dims`
and `optional` (inputs it may leave out; without it every input needs data). Statistics are
kept per model instance from the same timings the response parameters carry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, Protocol, TypedDict


class Tensor(Protocol):
    """A tensor's interface as these entries read it (TensorSpec, frozen, is one): read-only."""

    @property
    def name(self) -> str: ...

    @property
    def datatype(self) -> str: ...

    @property
    def shape(self) -> Sequence[int]: ...


# Triton's JSON shapes (model_config.proto, grpc_service.proto), as these functions write
# them and `triton_grpc` encodes them to protobuf.
class TensorEntry(TypedDict):
    """ModelInput / ModelOutput."""

    name: str
    data_type: str
    dims: list[int]
    optional: NotRequired[bool]  # inputs only


class InstanceGroup(TypedDict):
    count: int
    kind: str  # KIND_CPU, KIND_GPU


class StringParameter(TypedDict):
    string_value: str


class TritonConfig(TypedDict):
    """ModelConfig, the fields written here."""

    name: str
    platform: str
    backend: NotRequired[str]
    max_batch_size: int
    input: list[TensorEntry]
    output: list[TensorEntry]
    instance_group: NotRequired[list[InstanceGroup]]
    parameters: NotRequired[dict[str, StringParameter]]


class DurationEntry(TypedDict):
    count: int
    ns: int


class TritonStatistics(TypedDict):
    """One ModelStatistics entry; `inference_stats` by InferStatistics field name."""

    name: str
    version: str
    last_inference: int
    inference_count: int
    execution_count: int
    inference_stats: dict[str, DurationEntry]
    batch_stats: list[dict[str, object]]  # left empty (see ModelStats)


def data_type(datatype: str) -> str:
    """Triton's enum name for a V2 datatype (BYTES is TYPE_STRING there)."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def tensor_entry(tensor: Tensor, is_input: bool) -> TensorEntry:
    """ModelInput / ModelOutput; only inputs have `optional` in Triton's schema."""
    entry: TensorEntry = {
        "name": tensor.name,
        "data_type": data_type(tensor.datatype),
        "dims": list(tensor.shape),
    }
    if is_input and getattr(tensor, "optional", False):
        entry["optional"] = True
    return entry


def model_config(
    name: str,
    platform: str,
    inputs: Iterable[Tensor],
    outputs: Iterable[Tensor],
    backend: str = "",
    parameters: Mapping[str, str] | None = None,
    instances: tuple[int, str] | None = None,
) -> TritonConfig:
    """The JSON form of Triton's `ModelConfig` (what `GET /v2/models/<m>/config` answers).

    `instances` is (copies, "KIND_CPU" or "KIND_GPU"): Triton's `instance_group`, where a
    client sees how many forward passes a model runs at once (our `instances` setting).
    """
    config: TritonConfig = {
        "name": name,
        "platform": platform,
        "max_batch_size": 0,
        "input": [tensor_entry(t, is_input=True) for t in inputs],
        "output": [tensor_entry(t, is_input=False) for t in outputs],
    }
    if backend:
        config["backend"] = backend
    if instances is not None:
        config["instance_group"] = [{"count": instances[0], "kind": instances[1]}]
    if parameters:
        config["parameters"] = {k: {"string_value": v} for k, v in parameters.items()}
    return config


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


# Response parameter (milliseconds) -> Triton's InferStatistics duration it feeds.
_STAGES = {
    "queue_ms": "queue",
    "preprocess_ms": "compute_input",
    "inference_ms": "compute_infer",
    "postprocess_ms": "compute_output",
}


@dataclass
class ModelStats:
    """Triton's `ModelStatistics` for one model: counts and summed durations since start.

    A request is one inference and one execution: its rows may share a forward pass with
    other requests' rows (the `batch_size` response parameter says how many), so Triton's
    per-batch-size table (`batch_stats`) is left empty.
    """

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    stages: dict[str, Duration] = field(
        default_factory=lambda: {stage: Duration() for stage in _STAGES.values()}
    )
    last_inference_ms: int = 0

    def record(self, ok: bool, wall_ns: int, parameters: Mapping[str, object]) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        if not ok:
            self.fail.add(wall_ns)
            return
        self.success.add(wall_ns)
        for key, stage in _STAGES.items():  # every stage counted once: perf_analyzer checks
            value = parameters.get(key)
            self.stages[stage].add(int(value * 1e6) if isinstance(value, int | float) else 0)

    def as_json(self, name: str, version: str | None) -> TritonStatistics:
        """One entry of `model_stats`, Triton's JSON statistics shape."""

        def duration(d: Duration) -> DurationEntry:
            return {"count": d.count, "ns": d.ns}

        return {
            "name": name,
            "version": version or "",
            "last_inference": self.last_inference_ms,
            "inference_count": self.success.count,
            "execution_count": self.success.count,
            "inference_stats": {
                "success": duration(self.success),
                "fail": duration(self.fail),
                **{stage: duration(d) for stage, d in self.stages.items()},
            },
            "batch_stats": [],
        }
