"""What each managed Kubernetes keeps back from a node before pods are scheduled on it, written
from the provider's source or documentation, kept to CPU and memory.

A node's `status.allocatable` is its capacity less the kubelet's `kubeReserved` and
`systemReserved` and, for memory, its hard eviction threshold; the scheduler places a pod
only where its requests fit the allocatable that other pods have left.

EKS (AL2023 nodes, nodeadm; awslabs/amazon-eks-ami at 81fec2e8, nodeadm/internal/kubelet/):

- config.go:274-288 `withDefaultReservedResources`: `kubeReserved` cpu and memory, no
  `systemReserved`; `maxPods` from `CalcMaxPods` on the instance type's ENI data;
- config.go:410-439 `getCPUMillicoresToReserve`: 6 % of the first core, 1 % of the second,
  0.5 % of the third and fourth, 0.25 % above, in integer millicores per range;
- config.go:442-444 `getMemoryMebibytesToReserve`: 11 MiB per max pod plus 255 MiB;
- config.go:110-114: `evictionHard` memory.available 100Mi;
- eni_max_pods.go:75-77 `calculateStandardMaxPods`: ENIs x (IPv4 per ENI - 1) + 2, the ENI
  figures from instance-info.jsonl (c7i.large :183, g6.xlarge :387, p4d.24xlarge :913,
  p5.48xlarge :915).

An EC2 Node's memory capacity is under its type's nominal MiB (the VM keeps some); Karpenter
estimates it, until it has seen a node of the type, as the nominal less
`ceil(nominal * vmMemoryOverheadPercent)` (aws/karpenter-provider-aws at 1d927085,
pkg/providers/instancetype/types.go:512-522), 0.075 by default (pkg/operator/options/
options.go:66).

GKE (https://cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes, "Node
allocatable resources"): CPU as EKS; memory 255 MiB under 1 GiB, else 25 % of the first
4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the next 112 and 2 % above 128 GiB;
eviction threshold 100 MiB.

AKS 1.29 and later (https://learn.microsoft.com/azure/aks/node-resource-reservations): CPU by
the table of cores (60m at 1 core ... 740m at 64); memory the lesser of 20 MiB per max pod
plus 50 MiB and 25 % of the memory; eviction threshold 100 MiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EVICTION_HARD_MIB = 100  # the same default on all three

# instance-info.jsonl: (defaultMaxENIs, ipv4AddressesPerInterface) of the catalog's AWS types.
EKS_ENIS = {
    "c7i.large": (3, 10),
    "c6i.2xlarge": (4, 15),
    "m6i.2xlarge": (4, 15),
    "c7i.2xlarge": (4, 15),
    "g4dn.xlarge": (3, 10),
    "g5.xlarge": (4, 15),
    "g5.2xlarge": (4, 15),
    "g6.xlarge": (4, 15),
    "g6.2xlarge": (4, 15),
    "p4d.24xlarge": (15, 50),
    "p5.48xlarge": (2, 50),
}

AKS_CPU_MILLI = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}


@dataclass(frozen=True)
class Allocatable:
    cpu_milli: float
    memory_mib: float


def eks_max_pods(instance_type: str) -> int:
    enis, ips = EKS_ENIS[instance_type]
    return enis * (ips - 1) + 2


def _tiered(total: float, bounds: list[float], rates: list[float]) -> float:
    """`rates[i]` of the part of `total` between `bounds[i]` and `bounds[i + 1]`."""
    edges = [*bounds, max(total, bounds[-1])]
    return sum(
        (min(total, edges[i + 1]) - edges[i]) * rate
        for i, rate in enumerate(rates)
        if total > edges[i]
    )


def eks_cpu_reserved_milli(cpu_milli: int) -> int:
    edges = [0, 1000, 2000, 4000, cpu_milli]
    parts = [600, 100, 50, 25]  # ten-thousandths, integer division per range as in Go
    return sum(
        (min(cpu_milli, edges[i + 1]) - edges[i]) * p // 10000
        for i, p in enumerate(parts)
        if cpu_milli > edges[i]
    )


def karpenter_memory_mib(memory_gib: float) -> float:
    """What Karpenter takes an EC2 type's Node to report as memory capacity."""
    nominal = memory_gib * 1024
    return nominal - math.ceil(nominal * 0.075)


def eks(instance_type: str, vcpus: int, memory_gib: float) -> Allocatable:
    reserved_mib = 11 * eks_max_pods(instance_type) + 255
    cpu = vcpus * 1000
    capacity_mib = karpenter_memory_mib(memory_gib)
    return Allocatable(
        cpu - eks_cpu_reserved_milli(cpu), capacity_mib - reserved_mib - EVICTION_HARD_MIB
    )


def gke(vcpus: int, memory_gib: float) -> Allocatable:
    cpu = vcpus * 1000
    if memory_gib < 1:
        reserved_mib = 255.0
    else:
        reserved_gib = _tiered(memory_gib, [0, 4, 8, 16, 128], [0.25, 0.2, 0.1, 0.06, 0.02])
        reserved_mib = reserved_gib * 1024
    return Allocatable(
        cpu - eks_cpu_reserved_milli(cpu), memory_gib * 1024 - reserved_mib - EVICTION_HARD_MIB
    )


def aks(vcpus: int, memory_gib: float, max_pods: int) -> Allocatable:
    reserved_mib = min(20 * max_pods + 50, 0.25 * memory_gib * 1024)
    return Allocatable(
        vcpus * 1000 - AKS_CPU_MILLI[vcpus], memory_gib * 1024 - reserved_mib - EVICTION_HARD_MIB
    )
