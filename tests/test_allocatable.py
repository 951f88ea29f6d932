"""A pod fits a class by the node's allocatable, not its capacity, and is charged its share of it.

The kubelet keeps part of every node back (`kubeReserved`, `systemReserved`, the hard eviction
threshold), by rules each managed Kubernetes sets; the scheduler fits pods into what is left,
`status.allocatable`. The expected figures come from `tests/engines/kubelet_reserved.py`,
written from EKS's nodeadm source and GKE's and AKS's documentation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infergraph.cost import CostError, load_catalog, node_cost
from infergraph.cost.pricing import InstanceClass
from infergraph.graph.model import Node, Resources
from tests.engines import kubelet_reserved as reserved

CATALOG = load_catalog()


def expected(name: str, instance: InstanceClass) -> reserved.Allocatable:
    """The provider's allocatable of the machine `name` is a slice of, sliced alike."""
    slices = instance.machine_slices
    vcpus, memory = round(instance.vcpus * slices), instance.memory_gib * slices
    machine = name.removesuffix("-per-gpu")
    if instance.provider == "aws":
        whole = reserved.eks(machine, vcpus, memory)
    elif instance.provider == "gcp":
        whole = reserved.gke(vcpus, memory)
    else:
        assert instance.provider == "azure"
        assert instance.max_pods is not None
        whole = reserved.aks(vcpus, memory, instance.max_pods)
    return reserved.Allocatable(whole.cpu_milli / slices, whole.memory_mib / slices)


@pytest.mark.parametrize("name", sorted(CATALOG.classes))
def test_every_shipped_class_has_its_providers_allocatable(name: str) -> None:
    instance = CATALOG.get(name)
    if instance.provider == "aws":
        assert instance.max_pods == reserved.eks_max_pods(name.removesuffix("-per-gpu"))
    want = expected(name, instance)
    assert instance.allocatable.vcpus * 1000 == pytest.approx(want.cpu_milli)
    assert instance.allocatable.memory_gib * 1024 == pytest.approx(want.memory_mib)


def test_c7i_large_as_eks_reports_it() -> None:
    """2 vCPU: 60m + 10m kept back; 4,096 MiB less what the VM keeps (Karpenter's 7.5 %,
    308 MiB), 11 x 29 + 255 MiB and 100Mi for eviction."""
    c7i = CATALOG.get("c7i.large").allocatable
    assert c7i.vcpus == pytest.approx(1.93)
    assert c7i.memory_gib * 1024 == pytest.approx(4096 - 308 - 574 - 100)


def node(cpu: str, memory: str, hardware: str = "c7i.large") -> Node:
    return Node(
        name="m",
        family="identity",
        hardware=hardware,
        resources=Resources(cpu=cpu, memory=memory),
    )


@pytest.mark.parametrize(
    ("cpu", "memory", "kind"), [("2", "1Gi", "cpu"), ("1", "4Gi", "memory"), ("2", "4Gi", "cpu")]
)
def test_a_pod_the_size_of_the_instance_does_not_fit(cpu: str, memory: str, kind: str) -> None:
    with pytest.raises(CostError) as caught:
        node_cost(node(cpu, memory), CATALOG)
    message = str(caught.value)
    assert f"one replica's {kind} request does not fit on one 'c7i.large'" in message
    assert "allocatable" in message


def test_a_pod_of_the_whole_allocatable_is_charged_the_instance() -> None:
    cost = node_cost(node("1930m", "3114Mi"), CATALOG)
    assert cost.usd_per_hour == pytest.approx(CATALOG.get("c7i.large").usd_per_hour)
    half = node_cost(node("965m", "1Gi"), CATALOG)
    assert half.usd_per_hour == pytest.approx(CATALOG.get("c7i.large").usd_per_hour / 2)


def test_a_catalog_may_give_the_nodes_own_allocatable(tmp_path: Path) -> None:
    """What `kubectl get node -o jsonpath='{.status.allocatable}'` says wins over a formula;
    a custom class keeps nothing back unless told."""
    override = tmp_path / "catalog.yaml"
    override.write_text(
        "classes:\n"
        "  c7i.large: {allocatable_vcpus: 1.5, allocatable_memory_gib: 3}\n"
        "  my-box: {vcpus: 16, memory_gib: 64, usd_per_hour: 0.5}\n"
    )
    catalog = load_catalog(override)
    c7i = catalog.get("c7i.large").allocatable
    assert (c7i.vcpus, c7i.memory_gib) == (1.5, 3)
    box = catalog.get("my-box").allocatable
    assert (box.vcpus, box.memory_gib) == (16, 64)
    assert catalog.get("c7i.large").allocatable_basis == "the catalog's figures"
    assert catalog.get("my-box").allocatable_basis == "nothing reserved (no provider rule)"
    assert CATALOG.get("n2-standard-8").allocatable_basis == "GKE's default reservation"
    with pytest.raises(CostError, match="allocatable"):
        node_cost(node("1600m", "1Gi"), catalog)


def test_an_allocatable_above_capacity_is_refused(tmp_path: Path) -> None:
    override = tmp_path / "catalog.yaml"
    override.write_text("classes:\n  c7i.large: {allocatable_vcpus: 3}\n")
    with pytest.raises(CostError) as caught:
        load_catalog(override)
    assert "c7i.large" in str(caught.value)
    assert "allocatable_vcpus" in str(caught.value)


def test_the_load_testers_catalog_listing_shows_what_pods_may_ask() -> None:
    from async_load_tester.cli import app
    from typer.testing import CliRunner

    listed = CliRunner().invoke(app, ["prices", "--json"])
    assert listed.exit_code == 0, listed.output
    c7i = json.loads(listed.output)["classes"]["c7i.large"]
    assert c7i["allocatable"]["vcpus"] == pytest.approx(1.93)
    assert c7i["allocatable"]["memory_gib"] == pytest.approx(3114 / 1024)
    table = CliRunner().invoke(app, ["prices"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "1.93 vCPU, 3.04 GiB" in " ".join(table.output.split())


def test_a_class_its_providers_rule_leaves_nothing_is_refused(tmp_path: Path) -> None:
    """1 GiB on EKS's rule: 11 x 110 + 255 MiB and 100 MiB for eviction is more than it has;
    a share of a negative allocatable would read as a fit."""
    override = tmp_path / "catalog.yaml"
    override.write_text(
        "classes:\n  tiny: {provider: aws, vcpus: 1, memory_gib: 1, usd_per_hour: 0.01}\n"
    )
    with pytest.raises(CostError) as caught:
        load_catalog(override)
    assert "hardware class 'tiny'" in str(caught.value)
    assert "leaves pods no memory" in str(caught.value)
