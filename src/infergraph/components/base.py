"""The framework-neutral component contract every model family implements.

A component knows its model and nothing about servers: adapters (MLServer,
Seldon v1, the embedded runner) translate protocols and call these four steps.
Splitting `prepare` (per request) from `run_batch` (per forward pass) is what
lets an adapter merge rows from many requests into one forward pass while a
bad request fails alone, before it ever reaches the batch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from infergraph.arrays import Array
from infergraph.errors import InfergraphError, InputError, ModelLoadError
from infergraph.json_types import JSONObject
from infergraph.tensors.datatypes import empty
from infergraph.timing import StageTimings

log = logging.getLogger(__name__)

# Where a storage initializer (KServe, Seldon) mounts a model.
MOUNTED_MODEL_DIR = Path("/mnt/models")


@contextmanager
def loading_from(source: str) -> Iterator[None]:
    """Wrap a checkpoint load: `from_pretrained` and the libraries under it raise whatever
    their format raises for a missing or broken checkpoint (OSError, ValueError, safetensors'
    SafetensorError from an interrupted copy, ...), each meaning "cannot load from `source`".
    Our own errors (a bad setting) pass through as they are."""
    try:
        yield
    except InfergraphError:
        raise
    except Exception as exc:
        raise ModelLoadError.wrap(source, exc) from exc


class ComponentSettings(BaseModel):
    """Settings shared by every family; family-specific knobs go in `options`."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = Field(
        default=None,
        description="Hub id, local directory, or file:// URI; defaults to /mnt/models "
        "when mounted, else the family's default checkpoint.",
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    dtype: str = Field(default="fp32", description="fp32, fp16 or bf16")
    warmup: bool = Field(default=True, description="run one synthetic batch at load")
    max_batch_size: int = Field(default=1, ge=1, description="rows per forward pass")
    max_batch_time: float = Field(
        default=0.0, ge=0.0, description="seconds to wait for a batch to fill"
    )
    instances: int = Field(
        default=1,
        ge=1,
        description="copies of the model, each with its own forward thread, taking turns at "
        "the batch queue (Triton's instance_group count); on a CPU they share its threads",
    )
    options: JSONObject = Field(default_factory=dict)


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a component's interface (Open Inference Protocol datatypes)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    description: str = ""
    optional: bool = False


@dataclass
class Prepared:
    """One request after validation and preprocessing, ready to join a batch.

    `rows` holds one element per batch row; `batch_key` keeps requests whose
    settings differ (e.g. generation length) out of each other's forward pass;
    `notes` become response parameters (e.g. which rows were truncated).
    """

    rows: list[Any]
    batch_key: Hashable = None
    notes: JSONObject = field(default_factory=dict)
    context: Any = None


@dataclass
class ComponentResult:
    """What a component returns for one request: named output tensors plus parameters."""

    outputs: dict[str, Array]
    parameters: JSONObject = field(default_factory=dict)


class Component(ABC):
    """Base of every model family."""

    family: ClassVar[str]
    default_model: ClassVar[str]
    inputs: ClassVar[tuple[TensorSpec, ...]]
    outputs: ClassVar[tuple[TensorSpec, ...]]
    uses_gpu: ClassVar[bool] = True
    # Plumbing that forwards whatever it is given: graph validation skips type checks.
    passthrough: ClassVar[bool] = False
    # Microsecond-cheap plumbing runs on the event loop: a thread hop would cost more.
    inline: ClassVar[bool] = False
    # `finish` costs microseconds per row whatever the request asks (stacking vectors): the
    # engine runs it on the event loop for a small request instead of hopping to a thread.
    light_finish: ClassVar[bool] = False

    def __init__(self, settings: ComponentSettings | None = None) -> None:
        self.settings = settings or ComponentSettings()
        self.options = dict(self.settings.options)
        self.device: Any = None
        self.dtype: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def model_source(self) -> str:
        """Where to load from: explicit URI, else a mounted model dir, else the family default."""
        uri = self.settings.model_uri
        if uri:
            if uri.startswith("file://"):
                uri = uri[len("file://") :]
            path = Path(uri).expanduser()  # `~/ckpt` in model-settings.json: no shell expands it
            if path.is_absolute() or uri.startswith((".", "~")):
                if not path.exists():
                    raise ModelLoadError(uri, "no such directory")
                return str(path)
            return uri
        if MOUNTED_MODEL_DIR.is_dir() and any(MOUNTED_MODEL_DIR.iterdir()):
            return str(MOUNTED_MODEL_DIR)
        return self.default_model

    def setup_device(self) -> None:
        from infergraph.device import select_device, select_dtype

        self.device = select_device(self.settings.device)
        self.dtype = select_dtype(self.settings.dtype, self.device)

    @abstractmethod
    def load(self) -> None:
        """Load weights onto the selected device."""

    def warmup(self) -> None:
        """Run one synthetic batch so the first real request pays no lazy-init cost."""
        example = self.example_inputs(1)
        prepared = self.prepare(example, {})
        self.finish(self.run_batch(prepared.rows, prepared.batch_key), prepared)

    def start(self) -> None:
        """Device selection, load, and warm-up when enabled."""
        self.setup_device()
        self.load()
        if self.settings.warmup:
            self.warmup()
        log.info("%s loaded from %s on %s", self.family, self.model_source(), self.device)

    # -- inference -------------------------------------------------------------------------
    @abstractmethod
    def example_inputs(self, batch_size: int) -> dict[str, Array]:
        """Valid synthetic inputs (warm-up, benchmarks, offline demos)."""

    @abstractmethod
    def prepare(self, inputs: Mapping[str, Array], parameters: Mapping[str, object]) -> Prepared:
        """Validate and preprocess one request; raise InputError naming the bad input."""

    @abstractmethod
    def run_batch(self, rows: list[Any], batch_key: Hashable) -> list[Any]:
        """One forward pass over rows that may come from many requests; one result per row."""

    @abstractmethod
    def finish(self, results: list[Any], prepared: Prepared) -> dict[str, Array]:
        """Assemble one request's per-row results into its output tensors."""

    def predict(
        self, inputs: Mapping[str, Array], parameters: Mapping[str, object] | None = None
    ) -> ComponentResult:
        """Unbatched path for synchronous adapters (Seldon v1) and tests."""
        empty = self.zero_row_outputs(inputs)
        if empty is not None:
            return ComponentResult(outputs=empty, parameters={"batch_size": 0, "skipped": 1})
        timings = StageTimings()
        with timings.stage("preprocess"):
            prepared = self.prepare(inputs, parameters or {})
        with timings.stage("inference"):
            results = run_in_chunks(self, prepared.rows, prepared.batch_key)
        with timings.stage("postprocess"):
            outputs = self.finish(results, prepared)
        params = {**prepared.notes, **timings.as_parameters(), "batch_size": len(prepared.rows)}
        return ComponentResult(outputs=outputs, parameters=params)

    @classmethod
    def zero_row_outputs(cls, inputs: Mapping[str, Array]) -> dict[str, Array] | None:
        """Zero rows in, well-formed zero-row outputs out, without touching the model.

        A video frame with no detection reaches the classifier as a `[0]` tensor on every
        engine (Seldon v2 forwards zero-row tensors, v1 passes them on); the answer is an
        empty result, never an error. Pass-through plumbing (gates) keeps its own rule.
        """
        if cls.passthrough or not any(_zero_rows(v) for v in inputs.values()):
            return None
        return {spec.name: empty_tensor(spec) for spec in cls.outputs if not spec.optional}

    # -- helpers for subclasses ------------------------------------------------------------
    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    @classmethod
    def require(cls, inputs: Mapping[str, Array], name: str) -> Array:
        """Fetch a required input with a clear error when absent or empty."""
        if name not in inputs:
            expected = ", ".join(s.name for s in cls.inputs)
            raise InputError(name, f"missing; {cls.family} expects inputs: {expected}")
        value = inputs[name]
        if value.size == 0 or (value.ndim > 0 and value.shape[0] == 0):
            raise InputError(name, "empty batch: at least one row is required")
        return value


def _zero_rows(value: Array) -> bool:
    return value.ndim > 0 and value.shape[0] == 0


def empty_tensor(spec: TensorSpec) -> Array:
    """A zero-row array of a declared output: `[0, d1, ...]` with unknown dims as 0."""
    return empty(spec.datatype, spec.shape)


def run_in_chunks(component: Component, rows: list[Any], key: Hashable) -> list[Any]:
    """Run rows through the model in forward passes of at most max_batch_size rows."""
    size = max(component.settings.max_batch_size, 1)
    results: list[Any] = []
    for start in range(0, len(rows), size):
        results.extend(component.run_batch(rows[start : start + size], key))
    return results
