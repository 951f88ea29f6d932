"""What of an instance its pods may ask for: the node's allocatable, by the provider's rule.

The kubelet keeps part of every node back for itself and the system (`kubeReserved`,
`systemReserved`) and, for memory, its hard eviction threshold; the scheduler places a pod only
where its requests fit what is left, the Node's `status.allocatable`. A pod sized to an
instance's capacity therefore stays Pending on every managed Kubernetes, and a class's price
buys only its allocatable. Each provider sets the reservation by its own rule:

- EKS (AL2023, nodeadm): 6 % of the first core, 1 % of the second, 0.5 % of the third and
  fourth, 0.25 % above; 11 MiB per pod the node may hold (`maxPods`, from its ENIs) plus
  255 MiB; 100 MiB eviction threshold; and, before any of that, the memory the VM itself
  keeps (a Node's capacity is under the type's nominal MiB), estimated as Karpenter does
  until it has seen a node of the type: 7.5 % of it.
- GKE: CPU as EKS; memory 25 % of the first 4 GiB, 20 % of the next 4, 10 % of the next 8,
  6 % of the next 112, 2 % above (255 MiB under 1 GiB); 100 MiB eviction threshold.
- AKS (1.29 and later): CPU from its table by core count; memory the lesser of 20 MiB per max
  pod plus 50 MiB and a quarter of it; 100 MiB eviction threshold.

A class the catalog calls `custom` keeps nothing back unless it says what its nodes report
(`allocatable_vcpus`, `allocatable_memory_gib`), which wins over any rule. The sources of each
rule are cited in tests/engines/kubelet_reserved.py, which the catalog is checked against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EVICTION_HARD_MIB = 100.0
# Karpenter's estimate of an EC2 type's memory a Node does not report (vmMemoryOverheadPercent).
AWS_VM_MEMORY_OVERHEAD = 0.075
# nodeadm's fallback when it cannot find the instance type's ENI figures (the kubelet's own).
DEFAULT_MAX_PODS = 110
# Azure CNI Overlay's default maxPods; kubenet's is 110 and Azure CNI's (node subnet) 30.
AKS_DEFAULT_MAX_PODS = 250
# (from, to: millicores; ten-thousandths of the range reserved)
_CORE_RANGES = ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, None, 25))
# (from, to: GiB; share of the tier reserved)
_GKE_MEMORY_TIERS = (
    (0.0, 4.0, 0.25),
    (4.0, 8.0, 0.20),
    (8.0, 16.0, 0.10),
    (16.0, 128.0, 0.06),
    (128.0, None, 0.02),
)
_AKS_CPU_MILLI = ((1, 60), (2, 100), (4, 140), (8, 180), (16, 260), (32, 420), (64, 740))


@dataclass(frozen=True)
class Allocatable:
    """What pods may request of one instance of a class."""

    vcpus: float
    memory_gib: float


def _by_core_ranges(vcpus: float) -> float:
    """Millicores EKS and GKE reserve: each range's share of the cores in it, in whole
    millicores per range as nodeadm computes it."""
    total = round(vcpus * 1000)
    reserved = 0
    for start, end, ten_thousandths in _CORE_RANGES:
        top = total if end is None else min(total, end)
        if top > start:
            reserved += (top - start) * ten_thousandths // 10000
    return float(reserved)


def _gke_memory_mib(memory_gib: float) -> float:
    if memory_gib < 1:
        return 255.0
    reserved = 0.0
    for start, end, share in _GKE_MEMORY_TIERS:
        top = memory_gib if end is None else min(memory_gib, end)
        if top > start:
            reserved += (top - start) * share
    return reserved * 1024


def _aks_cpu_milli(vcpus: float) -> float:
    """AKS's table by core count; a count between two rows takes the lower row's figure."""
    fitting = [milli for cores, milli in _AKS_CPU_MILLI if cores <= vcpus]
    return float(fitting[-1] if fitting else _AKS_CPU_MILLI[0][1])


def reserved(provider: str, vcpus: float, memory_gib: float, max_pods: int | None) -> Allocatable:
    """CPU (cores) and memory (GiB) one machine keeps back from pods, eviction included."""
    if provider == "aws":
        vm_mib = math.ceil(memory_gib * 1024 * AWS_VM_MEMORY_OVERHEAD)
        memory_mib = vm_mib + 11 * (max_pods or DEFAULT_MAX_PODS) + 255 + EVICTION_HARD_MIB
        return Allocatable(_by_core_ranges(vcpus) / 1000, memory_mib / 1024)
    if provider == "gcp":
        memory_mib = _gke_memory_mib(memory_gib) + EVICTION_HARD_MIB
        return Allocatable(_by_core_ranges(vcpus) / 1000, memory_mib / 1024)
    if provider == "azure":
        pods = max_pods or AKS_DEFAULT_MAX_PODS
        kept = min(20 * pods + 50, 0.25 * memory_gib * 1024)
        return Allocatable(_aks_cpu_milli(vcpus) / 1000, (kept + EVICTION_HARD_MIB) / 1024)
    return Allocatable(0.0, 0.0)


# Whose default reservation each provider's classes get, as the plan's assumptions name it.
RULE_NAMES = {"aws": "EKS's", "gcp": "GKE's", "azure": "AKS's"}


def basis(provider: str, given: bool) -> str:
    """Where a class's allocatable comes from, in words."""
    if given:
        return "the catalog's figures"
    rule = RULE_NAMES.get(provider)
    return f"{rule} default reservation" if rule else "nothing reserved (no provider rule)"


def allocatable_of(
    provider: str, vcpus: float, memory_gib: float, max_pods: int | None, machine_slices: int
) -> Allocatable:
    """One class's allocatable: the machine's (a per-GPU class is 1/`machine_slices` of one)
    less what its provider keeps back, shared among the slices alike."""
    kept = reserved(provider, vcpus * machine_slices, memory_gib * machine_slices, max_pods)
    return Allocatable(
        vcpus - kept.vcpus / machine_slices, memory_gib - kept.memory_gib / machine_slices
    )
