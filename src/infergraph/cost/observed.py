"""What a cluster's own Nodes leave a new pod, per instance type, as a price-catalog override.

The provider rules in `cost.allocatable` say what a node keeps back by default. A cluster's
Nodes say what they actually keep (`status.allocatable`), and the pods every node runs before
any of ours (DaemonSet pods: kube-proxy, the CNI, the GPU device plugin, log and metrics
agents; and the kubelet's mirror pods) take their requests out of that. `kubectl get nodes -o
json` and `kubectl get pods -A -o json` hold both; `overrides` turns them into
`allocatable_vcpus` / `allocatable_memory_gib` per class, for `--catalog` and the operator's
INFERGRAPH_PRICE_CATALOG, so every fit check and share uses what a node of the type really has
room for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from infergraph import quantities
from infergraph.cost.pods import container_requests
from infergraph.cost.pricing import CostError, InstanceClass, PriceCatalog
from infergraph.json_types import JSONObject, Manifest, as_objects, object_or_empty

# The well-known label (and its deprecated beta form) the cloud provider sets on each Node.
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
MIRROR_POD = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class NodeRoom:
    """One Node: what it lets pods ask for, and what its per-node pods already ask."""

    node: str
    instance_type: str
    allocatable_cpu: float  # cores
    allocatable_memory_gib: float
    per_node_cpu: float
    per_node_memory_gib: float

    @property
    def cpu(self) -> float:
        return self.allocatable_cpu - self.per_node_cpu

    @property
    def memory_gib(self) -> float:
        return self.allocatable_memory_gib - self.per_node_memory_gib


def _quantity(resources: JSONObject, key: str, what: str) -> float:
    value = resources.get(key, 0)
    if not isinstance(value, str | int | float):
        raise CostError(what, f"{key} is not a quantity: {value!r}")
    try:
        return quantities.parse_quantity(value)
    except ValueError as exc:
        raise CostError(what, str(exc)) from None


def _requests(containers: Iterable[JSONObject], what: str) -> list[tuple[float, float]]:
    """(cores, GiB) each container requests, read as the engines' pods are (`cost.pods`)."""
    try:
        return [container_requests(c)[:2] for c in containers]
    except ValueError as exc:
        raise CostError(what, str(exc)) from None


def pod_requests(pod: Manifest) -> tuple[float, float]:
    """(cores, GiB) the scheduler counts for a pod: the larger of its containers' sum and its
    largest init container, plus its RuntimeClass overhead."""
    spec = object_or_empty(pod, "spec")
    what = f"pod '{object_or_empty(pod, 'metadata').get('name')}'"
    main = _requests(as_objects(spec.get("containers") or [], what), what)
    init = _requests(as_objects(spec.get("initContainers") or [], what), what)
    overhead = object_or_empty(spec, "overhead")
    cpu = max(sum(c for c, _ in main), max((c for c, _ in init), default=0.0))
    memory = max(sum(m for _, m in main), max((m for _, m in init), default=0.0))
    return (
        cpu + _quantity(overhead, "cpu", what),
        memory + _quantity(overhead, "memory", what) / 2**30,
    )


def per_node(pod: Manifest) -> bool:
    """A pod every node of its pool runs: a DaemonSet's, or the kubelet's mirror of a static
    pod; one that has finished holds nothing."""
    meta = object_or_empty(pod, "metadata")
    if object_or_empty(pod, "status").get("phase") in ("Succeeded", "Failed"):
        return False
    owners = as_objects(meta.get("ownerReferences") or [], "ownerReferences")
    return MIRROR_POD in object_or_empty(meta, "annotations") or any(
        o.get("kind") == "DaemonSet" for o in owners
    )


def _instance_type(node: Manifest) -> str | None:
    labels = object_or_empty(object_or_empty(node, "metadata"), "labels")
    found = next((labels[k] for k in INSTANCE_TYPE_LABELS if k in labels), None)
    return str(found) if found is not None else None


def node_rooms(nodes: list[Manifest], pods: list[Manifest]) -> list[NodeRoom]:
    """Each labelled Node's allocatable and what its per-node pods ask of it."""
    taken: dict[str, tuple[float, float]] = {}
    for pod in filter(per_node, pods):
        where = str(object_or_empty(pod, "spec").get("nodeName") or "")
        cpu, memory = pod_requests(pod)
        before = taken.get(where, (0.0, 0.0))
        taken[where] = (before[0] + cpu, before[1] + memory)
    rooms = []
    for node in nodes:
        kind = _instance_type(node)
        name = str(object_or_empty(node, "metadata").get("name"))
        if kind is None:
            continue
        allocatable = object_or_empty(object_or_empty(node, "status"), "allocatable")
        what = f"node '{name}'"
        cpu, memory = taken.get(name, (0.0, 0.0))
        rooms.append(
            NodeRoom(
                name,
                kind,
                _quantity(allocatable, "cpu", what),
                _quantity(allocatable, "memory", what) / 2**30,
                cpu,
                memory,
            )
        )
    return rooms


def _down(value: float) -> float:
    """Four decimals, rounded down: a figure written out must not claim room there is not."""
    return math.floor(value * 10_000) / 10_000


def overrides(
    rooms: list[NodeRoom], catalog: PriceCatalog
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """(catalog classes with the room the tightest Node of their type leaves, instance types
    the catalog has no class for). A per-GPU class gets its machine's room over its slices."""
    by_type: dict[str, tuple[float, float]] = {}
    for room in rooms:
        cpu, memory = by_type.get(room.instance_type, (room.cpu, room.memory_gib))
        by_type[room.instance_type] = (min(cpu, room.cpu), min(memory, room.memory_gib))
    classes: dict[str, dict[str, float]] = {}
    matched: set[str] = set()
    for name, instance in catalog.classes.items():
        machine = name.removesuffix("-per-gpu") if instance.machine_slices > 1 else name
        if machine not in by_type:
            continue
        matched.add(machine)
        cpu, memory = (v / instance.machine_slices for v in by_type[machine])
        if cpu <= 0 or memory <= 0:
            raise CostError(f"instance type '{machine}'", "its per-node pods take all it has")
        classes[name] = {"allocatable_vcpus": _down(cpu), "allocatable_memory_gib": _down(memory)}
    return classes, sorted(set(by_type) - matched)


def with_rooms(catalog: PriceCatalog, rooms: list[NodeRoom]) -> tuple[PriceCatalog, list[str]]:
    """`catalog` with each class whose instance type `rooms` has nodes of sized by them (the
    classes are rebuilt: a class caches its allocatable), and the classes so sized."""
    classes, _ = overrides(rooms, catalog)
    if not classes:
        return catalog, []
    rebuilt = dict(catalog.classes)
    for name, room in classes.items():
        try:
            rebuilt[name] = InstanceClass.model_validate(
                {**catalog.classes[name].model_dump(), **room}
            )
        except ValidationError as exc:  # Nodes larger than the class the catalog describes
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise CostError(f"hardware class '{name}'", f"its observed Nodes: {problems}") from None
    origin = [*catalog.origin, f"{len(rooms)} observed Node(s)"]
    return PriceCatalog(currency=catalog.currency, classes=rebuilt, origin=origin), sorted(classes)
