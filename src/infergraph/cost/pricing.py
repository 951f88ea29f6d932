"""Dollars per million inferences from a graph's resources and a price catalog.

A replica is charged the share of its hardware class it occupies: the largest of
its GPU, CPU and memory fractions of what one instance lets pods ask for (its
allocatable, `cost.allocatable`: the kubelet keeps the rest). The largest fraction is what
decides how many replicas fit on a node (a 1-GPU replica on a 1-GPU instance
blocks the whole instance however few CPUs it asks for), so charging less would
assume the scheduler packs the rest with other work, which inference fleets
rarely manage. Idle leftovers are therefore charged to the replica that strands them.

    $ per 1M inferences = graph $/hour / (throughput req/s * 3600) * 1e6
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infergraph import quantities
from infergraph.cost.allocatable import Allocatable, allocatable_of, basis
from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph, Node
from infergraph.json_types import JSONObject

ReplicaMode = Literal["spec", "min", "max"]
# What a cost row charges: a graph node's replicas, or pods the engine adds of its own.
CostPart = Literal["node", "engine"]
# The largest share of one instance a pod may take and still fit on it: a whole instance,
# give or take float rounding (3 x 1/3 of a class is exactly it).
FULL = 1.0 + 1e-9


class CostError(InfergraphError):
    """A cost cannot be computed; `subject` names the node, class or quantity at fault."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


class InstanceClass(BaseModel):
    """One purchasable machine shape, its hourly price, and what of it pods may ask for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = "custom"
    vcpus: float = Field(gt=0)
    memory_gib: float = Field(gt=0)
    gpus: int = Field(default=0, ge=0)
    gpu_model: str | None = None
    usd_per_hour: float = Field(ge=0)
    source: str = "user supplied"
    as_of: date | None = None
    max_pods: int | None = Field(
        default=None, gt=0, description="the kubelet's maxPods (EKS and AKS reserve by it)"
    )
    machine_slices: int = Field(
        default=1, ge=1, description="the class is this fraction of one machine (per-GPU slices)"
    )
    allocatable_vcpus: float | None = Field(
        default=None, gt=0, description="the nodes' status.allocatable cpu, over any rule"
    )
    allocatable_memory_gib: float | None = Field(
        default=None, gt=0, description="the nodes' status.allocatable memory, over any rule"
    )

    @model_validator(mode="after")
    def _allocatable_within_capacity(self) -> InstanceClass:
        if self.allocatable_vcpus is not None and self.allocatable_vcpus > self.vcpus:
            raise ValueError(f"allocatable_vcpus {self.allocatable_vcpus:g} > vcpus {self.vcpus:g}")
        memory = self.allocatable_memory_gib
        if memory is not None and memory > self.memory_gib:
            raise ValueError(f"allocatable_memory_gib {memory:g} > memory_gib {self.memory_gib:g}")
        room = self.allocatable
        for what, left in (("CPU", room.vcpus), ("memory", room.memory_gib)):
            if left <= 0:
                raise ValueError(
                    f"what {self.allocatable_basis} keeps back leaves pods no {what}; give "
                    "allocatable_vcpus and allocatable_memory_gib as its nodes report them"
                )
        return self

    @property
    def allocatable(self) -> Allocatable:
        """What pods may request of one instance: the node's own figures where the catalog
        gives them, else its provider's rule (`cost.allocatable`). Computed each time (a few
        operations): a cached figure would survive `model_copy` of another shape."""
        rule = allocatable_of(
            self.provider, self.vcpus, self.memory_gib, self.max_pods, self.machine_slices
        )
        return Allocatable(
            self.allocatable_vcpus or rule.vcpus, self.allocatable_memory_gib or rule.memory_gib
        )

    @property
    def allocatable_basis(self) -> str:
        """Where `allocatable` comes from: the catalog's own figures or a provider's rule."""
        given = self.allocatable_vcpus is not None and self.allocatable_memory_gib is not None
        return basis(self.provider, given)


class PriceCatalog(BaseModel):
    """Instance classes by name; `origin` lists where each layer of prices came from."""

    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    classes: dict[str, InstanceClass]
    origin: list[str] = Field(default_factory=list)

    def cheapest_fit(self, asked: Asked, what: str) -> str:
        """The class that charges `asked` least (by the share rule), a class without GPUs
        where one holds it: what a pod that asks for no accelerator lands on at best."""
        fits = [
            (name, max(_shares(asked, c)) * c.usd_per_hour)
            for name, c in self.classes.items()
            if c.gpus >= asked.gpus and max(_shares(asked, c)) <= FULL
        ]
        cpu_only = [f for f in fits if not self.classes[f[0]].gpus]
        best = sorted(cpu_only or fits, key=lambda fit: (fit[1], fit[0]))
        if not best:
            raise CostError(what, "no class in the price catalog holds one of its pods")
        return best[0][0]

    def get(self, name: str) -> InstanceClass:
        try:
            return self.classes[name]
        except KeyError:
            known = ", ".join(sorted(self.classes))
            raise CostError(
                f"hardware class '{name}'", f"not in the price catalog (known: {known})"
            ) from None


def parse_quantity(value: str | float | int, what: str = "quantity") -> float:
    """Parse a Kubernetes resource quantity ("500m", "4Gi", "1.5", "1e3") to a plain number."""
    try:
        return quantities.parse_quantity(value)
    except ValueError as exc:
        raise CostError(what, str(exc)) from None


def parse_cpu(value: str | float | int) -> float:
    """CPU cores from a quantity: "500m" -> 0.5."""
    return parse_quantity(value, "cpu")


def parse_memory_gib(value: str | float | int) -> float:
    """Memory in GiB from a quantity: "4Gi" -> 4.0, "1G" -> 0.931."""
    return parse_quantity(value, "memory") / 2**30


def default_catalog_path() -> Path:
    return Path(str(resources.files("infergraph.cost").joinpath("catalog.yaml")))


def parse_price_overrides(items: Iterable[str]) -> dict[str, float]:
    """`name=usd_per_hour` strings (from the command line) to a mapping."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, price = item.partition("=")
        if not sep or not name.strip():
            raise CostError(f"price override '{item}'", "expected name=usd_per_hour")
        try:
            value = float(price)
        except ValueError:
            raise CostError(f"price override '{item}'", f"'{price}' is not a number") from None
        if value < 0 or not math.isfinite(value):
            raise CostError(f"price override '{item}'", "price must be a finite number >= 0")
        out[name.strip()] = value
    return out


def _read_classes(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CostError(f"catalog '{path}'", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CostError(f"catalog '{path}'", f"not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise CostError(f"catalog '{path}'", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise CostError(f"catalog '{path}'", "needs a top-level 'classes' mapping")
    return data["classes"]


def load_catalog(
    override_file: str | Path | None = None,
    overrides: Mapping[str, float] | None = None,
    base_file: str | Path | None = None,
) -> PriceCatalog:
    """The shipped catalog, then entries from `override_file`, then `name=price` overrides.

    An override file may give only `usd_per_hour` for a class already known; new
    classes need their full shape (vcpus, memory_gib, gpus).
    """
    base_path = Path(base_file) if base_file else default_catalog_path()
    merged: dict[str, dict[str, object]] = {k: dict(v) for k, v in _read_classes(base_path).items()}
    origin = [str(base_path)]
    if override_file is not None:
        for name, entry in _read_classes(Path(override_file)).items():
            if not isinstance(entry, dict):
                raise CostError(f"catalog '{override_file}'", f"class '{name}' is not a mapping")
            merged[name] = {**merged.get(name, {}), "source": "user supplied", **entry}
        origin.append(str(override_file))
    for name, price in (overrides or {}).items():
        if name not in merged:
            raise CostError(
                f"price override '{name}'",
                "unknown class; define its shape in a --catalog file first",
            )
        merged[name] = {**merged[name], "usd_per_hour": price, "source": "command line"}
        origin.append(f"{name}={price}")
    classes: dict[str, InstanceClass] = {}
    for name, entry in merged.items():
        try:
            classes[name] = InstanceClass.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise CostError(f"hardware class '{name}'", problems) from None
    return PriceCatalog(classes=classes, origin=origin)


@dataclass(frozen=True)
class NodeCost:
    """What one node costs: its share of an instance per replica, times replicas."""

    node: str
    hardware: str
    replicas: int
    gpu_share: float
    cpu_share: float
    memory_share: float
    usd_per_replica_hour: float
    usd_per_hour: float
    part: CostPart = "node"

    @property
    def share(self) -> float:
        return max(self.gpu_share, self.cpu_share, self.memory_share)

    @property
    def bound_by(self) -> str:
        shares = {"gpu": self.gpu_share, "cpu": self.cpu_share, "memory": self.memory_share}
        return max(shares, key=lambda k: shares[k])


@dataclass(frozen=True)
class GraphCost:
    """Hourly cost of a whole graph deployment, node by node."""

    graph: str
    nodes: list[NodeCost] = field(default_factory=list)

    @property
    def usd_per_hour(self) -> float:
        return sum(n.usd_per_hour for n in self.nodes)

    def usd_per_million(self, throughput_rps: float) -> float:
        return usd_per_million(self.usd_per_hour, throughput_rps)

    def to_dict(self) -> JSONObject:
        return {
            "graph": self.graph,
            "usd_per_hour": self.usd_per_hour,
            "nodes": [{**asdict(n), "share": n.share, "bound_by": n.bound_by} for n in self.nodes],
        }


def node_cost(
    node: Node,
    catalog: PriceCatalog,
    default_hardware: str | None = None,
    replicas: int | None = None,
) -> NodeCost:
    """Hourly cost of one node's replicas; see the module docstring for the share rule."""
    hardware = _hardware(node, default_hardware)
    count = node.replicas if replicas is None else replicas
    asked = Asked(
        parse_cpu(node.resources.cpu), parse_memory_gib(node.resources.memory), node.resources.gpu
    )
    return priced(node.name, hardware, catalog.get(hardware), asked, count)


@dataclass(frozen=True)
class Asked:
    """What one replica requests: cores, GiB, GPUs."""

    cpu: float
    memory_gib: float
    gpus: int


def _shares(asked: Asked, instance: InstanceClass) -> tuple[float, float, float]:
    """(GPU, CPU, memory) share of one instance's allocatable that `asked` takes; its largest
    is charged (what the kubelet keeps back is paid for, and no pod can use it)."""
    gpu_share = asked.gpus / instance.gpus if instance.gpus else 0.0
    room = instance.allocatable
    return gpu_share, asked.cpu / room.vcpus, asked.memory_gib / room.memory_gib


def _hardware(node: Node, default_hardware: str | None) -> str:
    hardware = node.hardware or default_hardware
    if hardware is None:
        raise CostError(
            f"node '{node.name}'",
            "has no `hardware` class; set one in the graph or pass a default hardware class",
        )
    return hardware


def priced(
    name: str,
    hardware: str,
    instance: InstanceClass,
    asked: Asked,
    count: int,
    part: CostPart = "node",
    added_by: str = "",
) -> NodeCost:
    """`count` replicas of `asked`, each charged its largest share of one `hardware`
    (`added_by`: the engine whose additions `asked` includes, for the error)."""
    if asked.gpus and not instance.gpus:
        raise CostError(
            f"node '{name}'", f"asks for {asked.gpus} GPU(s) but class '{hardware}' has none"
        )
    gpu_share, cpu_share, memory_share = _shares(asked, instance)
    for kind, share in (("gpu", gpu_share), ("cpu", cpu_share), ("memory", memory_share)):
        if share > FULL:
            raise CostError(
                f"node '{name}'",
                f"one replica's {kind} request does not fit on one '{hardware}' instance "
                f"({share:.2f}x its allocatable{added_by and f' with what {added_by} adds'}); "
                "pick a larger class",
            )
    if count < 0:
        raise CostError(f"node '{name}'", f"replicas must be >= 0, got {count}")
    per_replica = max(gpu_share, cpu_share, memory_share) * instance.usd_per_hour
    return NodeCost(
        node=name,
        hardware=hardware,
        replicas=count,
        gpu_share=gpu_share,
        cpu_share=cpu_share,
        memory_share=memory_share,
        usd_per_replica_hour=per_replica,
        usd_per_hour=per_replica * count,
        part=part,
    )


def _replicas(node: Node, mode: ReplicaMode) -> int:
    if node.autoscaling is None or mode == "spec":
        return node.replicas
    return node.autoscaling.min_replicas if mode == "min" else node.autoscaling.max_replicas


def graph_cost(
    graph: InferenceGraph,
    catalog: PriceCatalog,
    default_hardware: str | None = None,
    replica_mode: ReplicaMode = "spec",
    replica_overrides: Mapping[str, int] | None = None,
) -> GraphCost:
    """Sum of node costs over a graph.

    `replica_mode` picks the replica count of autoscaled nodes: `spec` (the node's
    `replicas`), `min` or `max` (the autoscaler's bounds); `replica_overrides`
    pins a node's count (e.g. what the cluster actually ran during the test).
    """
    overrides = dict(replica_overrides or {})
    unknown = set(overrides) - {n.name for n in graph.spec.nodes}
    if unknown:
        raise CostError(f"graph '{graph.name}'", f"replica overrides name unknown nodes {unknown}")
    nodes = [
        node_cost(
            node, catalog, default_hardware, overrides.get(node.name, _replicas(node, replica_mode))
        )
        for node in graph.spec.nodes
    ]
    return GraphCost(graph=graph.name, nodes=nodes)


def usd_per_million(usd_per_hour: float, throughput_rps: float) -> float:
    """$ per 1M inferences; infinite when nothing succeeded (no throughput to pay for)."""
    if usd_per_hour < 0 or throughput_rps < 0:
        raise CostError("cost", "hourly cost and throughput must be >= 0")
    if throughput_rps == 0:
        return math.inf
    return usd_per_hour / (throughput_rps * 3600.0) * 1e6
