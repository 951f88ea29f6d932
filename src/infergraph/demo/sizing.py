"""The graphs the demo serves, prices and plans, derived from the user's graph file.

The demo runs on the machine it is started on (a laptop or a 2-core VM, no GPU), so it
serves smaller real architectures where the graph names large ones, and prices what it
ran: one instance of a CPU class standing for this machine, shared by every node (on a
machine with more cores than the class has vCPUs the server is pinned to that many, see
`infergraph.demo.cores`). The
planned graph gives each replica all an instance of that class lets a pod ask for (its
allocatable), since each node's profile timed its passes with the whole machine to itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from infergraph.cost.pricing import InstanceClass, PriceCatalog
from infergraph.graph.model import InferenceGraph, Node, Resources

Scale = Literal["demo", "full", "tiny"]

# Checkpoints the shipped graphs name, and the smaller real architecture of the same family
# the demo serves instead at `--scale demo` (each about 1/10 of the forward cost on a CPU).
DEMO_CHECKPOINTS = {
    "timm/resnet18.a1_in1k": "timm/mobilenetv3_small_100.lamb_in1k",
    "google/vit-base-patch16-224": "timm/deit_tiny_patch16_224.fb_in1k",
}

# A 2-vCPU class: what a 2-core VM stands for in the price catalog; on a larger machine the
# graph server is pinned to 2 of its CPUs (`infergraph.demo.cores`).
DEFAULT_HARDWARE = "c7i.large"


@dataclass(frozen=True)
class Swap:
    """One node served with another checkpoint than its graph file names."""

    node: str
    named: str
    served: str


def offline_scale(scale: Scale) -> Literal["full", "tiny"]:
    """How `infergraph serve --offline` builds the random-weight checkpoints."""
    return "tiny" if scale == "tiny" else "full"


def demo_sized(graph: InferenceGraph, scale: Scale) -> tuple[InferenceGraph, list[Swap]]:
    """The graph with the demo's smaller checkpoints (only at `demo` scale)."""
    sized = graph.model_copy(deep=True)
    swaps: list[Swap] = []
    if scale != "demo":
        return sized, swaps
    for node in sized.spec.nodes:
        smaller = DEMO_CHECKPOINTS.get(node.model_uri or "")
        if smaller is not None:
            swaps.append(Swap(node.name, node.model_uri or "", smaller))
            node.model_uri = smaller
    return sized, swaps


def _on_class(node: Node, hardware: str, resources: Resources) -> Node:
    return node.model_copy(
        update={"hardware": hardware, "resources": resources, "device": "cpu", "dtype": "fp32"}
    )


def as_run(graph: InferenceGraph, hardware: str, catalog: PriceCatalog) -> InferenceGraph:
    """The graph as the demo runs it: every node shares one instance of `hardware`.

    Each node asks for an equal slice of the instance's allocatable, so the cost model
    charges the graph exactly one instance per hour, which is what this machine stands for.
    """
    instance = catalog.get(hardware)
    count = len(graph.spec.nodes)
    ran = graph.model_copy(deep=True)
    ran.spec.nodes = [
        _on_class(node, hardware, _slice(instance, count)).model_copy(update={"replicas": 1})
        for node in ran.spec.nodes
    ]
    return ran


def for_planning(graph: InferenceGraph, hardware: str, catalog: PriceCatalog) -> InferenceGraph:
    """The served graph as the planner sizes it: one replica takes one whole instance (all
    of its allocatable)."""
    instance = catalog.get(hardware)
    planned = graph.model_copy(deep=True)
    planned.spec.nodes = [_on_class(n, hardware, _slice(instance, 1)) for n in planned.spec.nodes]
    return planned


def _slice(instance: InstanceClass, parts: int) -> Resources:
    room = instance.allocatable
    cpu_milli = int(room.vcpus * 1000 // parts)
    memory_mib = int(room.memory_gib * 1024 // parts)
    return Resources(cpu=f"{cpu_milli}m", memory=f"{memory_mib}Mi", gpu=0)


def machine_cores() -> int:
    """CPUs this process may run on (the VM's, or a container's cpuset)."""
    return len(os.sched_getaffinity(0))
