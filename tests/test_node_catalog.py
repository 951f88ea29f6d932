"""`infergraph node-catalog`: what a cluster's own Nodes leave a new pod, as a catalog override.

The Nodes and pods here are what `kubectl get nodes -o json` / `kubectl get pods -A -o json`
return (each checked against the Kubernetes schema): two c7i.large Nodes whose allocatable
differs a little, each running EKS's kube-proxy (100m) and aws-node (25m) DaemonSet pods, one
p4d.24xlarge, a Node of a type the catalog lacks, and pods that do not count (a Deployment's,
a finished DaemonSet pod).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infergraph.cli import app
from infergraph.cost import load_catalog
from infergraph.cost.observed import node_rooms, overrides, pod_requests

REPO = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.31"


def node(
    name: str, kind: str, cpu: str, memory: str, capacity: tuple[str, str] = ("2", "3943008Ki")
) -> dict[str, Any]:
    """A Node as `kubectl get nodes -o json` lists it: its type label, capacity, allocatable."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": kind}},
        "status": {
            "capacity": {"cpu": capacity[0], "memory": capacity[1], "pods": "29"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "29"},
        },
    }


def pod(
    name: str,
    on: str,
    owner: str,
    requests: dict[str, str],
    phase: str = "Running",
    init: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": on,
        "containers": [{"name": "main", "image": "x", "resources": {"requests": requests}}],
    }
    if init:
        spec["initContainers"] = [{"name": "init", "image": "x", "resources": {"requests": init}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": owner,
                    "name": name,
                    "uid": "u",
                    "controller": True,
                }
            ],
        },
        "spec": spec,
        "status": {"phase": phase},
    }


NODES = [
    node("ip-10-0-1-1", "c7i.large", "1930m", "3364Mi"),
    node("ip-10-0-1-2", "c7i.large", "1930m", "3400Mi"),
    node("ip-10-0-2-1", "p4d.24xlarge", "95690m", "1176000Mi"),
    node("ip-10-0-3-1", "m7g.large", "1930m", "7000Mi"),
]
PODS = (
    [
        pod(f"kube-proxy-{i}", n, "DaemonSet", {"cpu": "100m"})
        for i, n in enumerate(["ip-10-0-1-1", "ip-10-0-1-2", "ip-10-0-2-1"])
    ]
    + [
        pod(f"aws-node-{i}", n, "DaemonSet", {"cpu": "25m"}, init={"cpu": "60m", "memory": "64Mi"})
        for i, n in enumerate(["ip-10-0-1-1", "ip-10-0-1-2", "ip-10-0-2-1"])
    ]
    + [
        pod("web-1", "ip-10-0-1-1", "ReplicaSet", {"cpu": "1", "memory": "1Gi"}),
        pod("old-agent", "ip-10-0-1-2", "DaemonSet", {"cpu": "1"}, phase="Succeeded"),
    ]
)


def test_the_fixtures_are_kubernetes_objects() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in [*NODES, *PODS]:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_a_pod_asks_the_larger_of_its_containers_and_its_init_container() -> None:
    cpu, memory = pod_requests(PODS[3])  # aws-node: 25m main, 60m / 64Mi init
    assert (cpu, memory * 1024) == (pytest.approx(0.06), pytest.approx(64))


def test_each_type_gets_the_room_its_tightest_node_leaves() -> None:
    rooms = node_rooms(NODES, PODS)
    by_node = {r.node: r for r in rooms}
    # kube-proxy 100m + aws-node 60m (its init container); the Deployment's and the finished
    # pod's requests are not per-node and do not count.
    assert by_node["ip-10-0-1-1"].cpu == pytest.approx(1.93 - 0.16)
    assert by_node["ip-10-0-1-1"].memory_gib * 1024 == pytest.approx(3364 - 64)
    classes, unknown = overrides(rooms, load_catalog())
    assert classes["c7i.large"] == {"allocatable_vcpus": 1.77, "allocatable_memory_gib": 3.2226}
    p4d = classes["p4d.24xlarge-per-gpu"]  # the machine's room over its eight GPU slices
    assert p4d["allocatable_vcpus"] == pytest.approx((95.69 - 0.16) / 8, abs=1e-4)
    assert unknown == ["m7g.large"]


def test_the_command_writes_a_catalog_every_fit_check_then_uses(tmp_path: Path) -> None:
    """cpu 1.9 on c7i.large fits EKS's rule (1.93) but not these Nodes after their DaemonSets
    (1.77): `validate --catalog` with the written file says so."""
    nodes, pods, out = tmp_path / "nodes.json", tmp_path / "pods.json", tmp_path / "nodes.yaml"
    nodes.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": NODES}))
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": PODS}))
    made = CliRunner().invoke(
        app, ["node-catalog", str(nodes), "--pods", str(pods), "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    assert "m7g.large" in made.output
    written = yaml.safe_load(out.read_text())
    assert written["classes"]["c7i.large"]["allocatable_vcpus"] == 1.77
    assert load_catalog(out).get("c7i.large").allocatable.vcpus == 1.77

    graph: dict[str, Any] = yaml.safe_load((REPO / "k8s/graphs/embed-image.yaml").read_text())
    graph["spec"]["nodes"][0].update(hardware="c7i.large", resources={"cpu": "1900m"})
    graph["spec"]["nodes"][0]["resources"]["memory"] = "1Gi"
    graph_file = tmp_path / "graph.yaml"
    graph_file.write_text(yaml.safe_dump(graph))
    by_rule = CliRunner().invoke(app, ["validate", str(graph_file)])
    assert by_rule.exit_code == 0, by_rule.output
    by_nodes = CliRunner().invoke(app, ["validate", str(graph_file), "--catalog", str(out)])
    assert by_nodes.exit_code == 1
    assert "does not fit on one 'c7i.large'" in " ".join(by_nodes.output.split())


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"kind": "Node"}, "not a Kubernetes List"),
        ({"kind": "List", "items": [node("n", "c7i.large", "lots", "1Gi")]}, "node 'n'"),
        ({"kind": "List", "items": [node("n", "t9.huge", "1", "1Gi")]}, "t9.huge"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(
    tmp_path: Path, document: dict[str, Any], said: str
) -> None:
    nodes, out = tmp_path / "nodes.json", tmp_path / "nodes.yaml"
    nodes.write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["node-catalog", str(nodes), "--out", str(out)])
    assert result.exit_code == 1
    assert said in " ".join(result.output.split())
    assert not out.exists()


def test_nodes_larger_than_their_class_are_named() -> None:
    """A catalog that says c7i.large has 2 vCPUs, and a Node of that type allocating 3."""
    from infergraph.cost import CostError
    from infergraph.cost.observed import with_rooms

    rooms = node_rooms([node("big", "c7i.large", "3", "3Gi")], [])
    with pytest.raises(CostError, match=r"hardware class 'c7i.large': its observed Nodes"):
        with_rooms(load_catalog(), rooms)
    sized, names = with_rooms(load_catalog(), node_rooms(NODES[:2], PODS))
    assert names == ["c7i.large"] and sized.get("c7i.large").allocatable.vcpus == 1.77
    assert load_catalog().get("c7i.large").allocatable.vcpus == 1.93  # the catalog is not changed
