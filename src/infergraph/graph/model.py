"""Pydantic model of the `InferenceGraph` custom resource (infergraph.io/v1alpha1).

Topology is a tree of four step kinds that both Seldon engines can express:
`node` (a model or transformer), `sequence` (a chain), `ensemble` (fan-out plus
a combiner) and `when` (a condition on an upstream tensor: routes and cascades).
Tensors are referenced as `<node>.<tensor>`, or `request.<tensor>` for the
graph's own inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict

from infergraph import quantities
from infergraph.errors import GraphValidationError
from infergraph.json_types import JSONObject, Manifest

API_VERSION: Final = "infergraph.io/v1alpha1"
KIND: Final = "InferenceGraph"
REQUEST = "request"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Spec(BaseModel):
    """Kubernetes style: camelCase in YAML, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False
    )


class TensorDecl(_Spec):
    name: str
    datatype: str = Field(description="Open Inference Protocol datatype, e.g. FP32, BYTES")
    shape: list[int] = Field(default_factory=lambda: [-1], description="-1 for any size")


class Batching(_Spec):
    """Adaptive batching: MLServer's max_batch_size / max_batch_time."""

    max_batch_size: int = Field(default=1, ge=1)
    max_batch_time_ms: float = Field(default=0.0, ge=0.0)
    max_queue_rows: int | None = Field(
        default=None,
        ge=1,
        description="rows that may wait for a forward pass; a request that would pass it is "
        "refused at once (HTTP 503 / gRPC UNAVAILABLE), as Triton's max_queue_size. Unset: "
        "no limit",
    )

    @model_validator(mode="after")
    def _queue_holds_a_batch(self) -> Batching:
        # The rows a forming batch gathers still count as waiting (the batcher releases them
        # when their pass starts): a shorter queue would cap every batch below its size.
        if self.max_queue_rows is not None and self.max_queue_rows < self.max_batch_size:
            raise ValueError(
                f"maxQueueRows {self.max_queue_rows} is below maxBatchSize "
                f"{self.max_batch_size}: no batch could fill"
            )
        return self


def _int_or_string_quantity(schema: JsonDict) -> None:
    """A quantity's schema as Kubernetes writes resource.Quantity: an integer or a string
    of the quantity grammar (the CRD's pattern, for the API server)."""
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    schema["pattern"] = quantities.PATTERN


class Resources(_Spec):
    """Per-replica requests; limits equal requests (GPUs cannot be overcommitted)."""

    # The CRD carries the pattern for the API server; here `_quantity` checks, in words.
    cpu: str = Field(
        default="1", description="Kubernetes quantity", json_schema_extra=_int_or_string_quantity
    )
    memory: str = Field(
        default="2Gi", description="Kubernetes quantity", json_schema_extra=_int_or_string_quantity
    )
    gpu: int = Field(default=0, ge=0, description="nvidia.com/gpu count")

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> str:
        return quantities.positive_quantity(quantities.quantity_text(value))


class Autoscaling(_Spec):
    engine: Literal["hpa", "keda"] = "hpa"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    metric: Literal["cpu", "inflight", "rps", "gpu", "queue"] = Field(
        default="cpu",
        description="cpu utilisation (HPA), in-flight requests, request rate, GPU utilisation "
        "or batch queue length (Prometheus)",
    )
    target: float = Field(default=70.0, gt=0, description="per-replica target of the metric")
    cooldown_seconds: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas ({self.max_replicas}) is below minReplicas ({self.min_replicas})"
            )
        if self.min_replicas == 0 and self.engine != "keda":
            raise ValueError("minReplicas 0 (scale to zero) needs engine: keda")
        return self


class Node(_Spec):
    """One deployable model: a component family, its checkpoint and how it runs."""

    name: str = Field(pattern=NAME_PATTERN)
    family: str = Field(description="component family, e.g. image-classification")
    model_uri: str | None = Field(default=None, description="hub id, local dir or storage URI")
    device: str = "auto"
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    options: JSONObject = Field(default_factory=dict)
    batching: Batching = Field(default_factory=Batching)
    instances: int = Field(
        default=1,
        ge=1,
        description="copies of the model per replica, each with its own forward thread "
        "(Triton's instance_group count); on a CPU they split its threads",
    )
    resources: Resources = Field(default_factory=Resources)
    replicas: int = Field(default=1, ge=0)
    autoscaling: Autoscaling | None = None
    hardware: str | None = Field(default=None, description="price-catalog class for cost")
    timeout_ms: float = Field(default=30_000.0, gt=0)


class NodeStep(_Spec):
    """Run one node. `inputs` maps its input names to tensor references."""

    node: str
    role: Literal["model", "transformer", "output-transformer"] = "model"
    inputs: dict[str, str] = Field(default_factory=dict)


class SequenceStep(_Spec):
    sequence: list[Step] = Field(min_length=1)


class Combine(_Spec):
    """How ensemble members are merged: a built-in method or a combiner node."""

    method: Literal["average", "vote", "merge"] | None = "average"
    node: str | None = None
    tensor: str = Field(default="scores", description="member tensor averaged or voted on")

    @model_validator(mode="after")
    def _one(self) -> Combine:
        if self.node is not None:
            self.method = None
        return self


class EnsembleStep(_Spec):
    ensemble: list[Step] = Field(min_length=2)
    combine: Combine = Field(default_factory=Combine)


class Condition(_Spec):
    """`tensor op value`, reduced over a request's rows by `reduce` (any/all)."""

    tensor: str
    op: Literal["lt", "le", "gt", "ge", "eq", "ne", "in", "not_in"]
    value: float | str | list[float | str]
    reduce: Literal["any", "all"] = "any"


class WhenStep(_Spec):
    """Run `then` when the condition holds, else `otherwise` (or pass tensors through).

    At the end of a sequence a `when` without `otherwise` is a cascade: the graph
    returns early with what it has when the condition does not hold.
    """

    when: Condition
    then: Step
    otherwise: Step | None = None


Step = Annotated[Union[NodeStep, SequenceStep, EnsembleStep, WhenStep], Field(union_mode="smart")]  # noqa: UP007


class Slo(_Spec):
    """What `infergraph plan` plans for, field by field unless an option of its overrides it."""

    latency_ms: float = Field(gt=0)
    percentile: float = Field(default=95.0, gt=0, le=100)
    max_refused_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="the most a plan may refuse through the nodes' batching.maxQueueRows, in "
        "percent of all requests; unset: a refusal only counts as one of the percentile's misses",
    )

    @property
    def max_refused_fraction(self) -> float | None:
        """maxRefusedPercent as the share of all requests the planner's search reads."""
        return None if self.max_refused_percent is None else self.max_refused_percent / 100.0


class GraphSpec(_Spec):
    description: str = ""
    inputs: list[TensorDecl] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    graph: Step
    outputs: dict[str, str] | None = Field(
        default=None,
        description="what the graph returns: output name -> tensor reference (`node.tensor`, "
        "`a.x | b.x`); default: the last step's outputs",
    )
    slo: Slo | None = None

    @field_validator("nodes")
    @classmethod
    def _unique(cls, nodes: list[Node]) -> list[Node]:
        seen: set[str] = set()
        for node in nodes:
            if node.name in seen:
                raise ValueError(f"node name '{node.name}' is used twice")
            if node.name == REQUEST:
                raise ValueError(f"node name '{REQUEST}' is reserved for the graph's inputs")
            seen.add(node.name)
        return nodes


class Metadata(_Spec):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class InferenceGraph(_Spec):
    api_version: Literal["infergraph.io/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["InferenceGraph"] = KIND
    metadata: Metadata
    spec: GraphSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def node(self, name: str) -> Node:
        for node in self.spec.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_manifest(self) -> Manifest:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


SequenceStep.model_rebuild()
EnsembleStep.model_rebuild()
WhenStep.model_rebuild()
GraphSpec.model_rebuild()


def validate_schema(data: Manifest, source: str = "<memory>") -> InferenceGraph:
    """The document as an InferenceGraph, schema-checked only: `graph.plan` checks the rest."""
    try:
        return InferenceGraph.model_validate(data)
    except ValidationError as exc:
        metadata = data.get("metadata") if isinstance(data, dict) else None
        name = str(metadata.get("name", source)) if isinstance(metadata, dict) else source
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise GraphValidationError(name, problems) from None


def read_document(path: str | Path) -> Manifest:
    """A graph file's YAML mapping; GraphValidationError when unreadable or not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GraphValidationError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:  # PowerShell 5 redirects as UTF-16
        raise GraphValidationError(str(path), [f"not UTF-8 text ({exc.reason})"]) from None
    except yaml.YAMLError as exc:
        raise GraphValidationError(str(path), [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise GraphValidationError(str(path), ["file does not hold a YAML mapping"])
    return data
