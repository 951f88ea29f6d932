"""What a graph costs on each engine: the pods the engine runs for it, priced.

The pod shapes follow each engine's source (cited in `infergraph.cost.pods`): a Seldon v2
Server's pods are its ServerConfig's template, so a node pays for the agent and rclone beside
its MLServer; Seldon v1 runs the executor in a pod of its own and each helper step as a unit;
KServe patches the predictor's `model` over its ServingRuntime's container and runs the
router as a Deployment sized by the InferenceGraph's `resources`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infergraph.cost import CostError, GraphCost, engine_cost, graph_cost, load_catalog
from infergraph.cost.pods import PodShape
from infergraph.engines import engine as engine_named
from infergraph.errors import RenderError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph, parse_graph
from infergraph.json_types import Manifest
from infergraph.render import ENGINES, render
from infergraph.render.options import RenderOptions
from tests.test_render_seldon import OPTIONS

REPO = Path(__file__).resolve().parent.parent
GRAPHS = sorted((REPO / "k8s" / "graphs").glob("*.yaml"))
CATALOG = load_catalog()
CPU_CLASS = "c6i.2xlarge"  # 8 vCPUs, 16 GiB
# Seldon 2.10.2's mlserver ServerConfig as we render it: the sidecars' requests.
AGENT = (0.2, 1.0)
RCLONE = (0.05, 0.125)


def cascade_on_cpu() -> InferenceGraph:
    """The shipped cascade (renamed `gated`) with both nodes on one CPU class, `slow` at two
    fixed replicas: the sidecars show in the share."""
    doc = yaml.safe_load((REPO / "k8s" / "graphs" / "cascade.yaml").read_text())
    doc["metadata"]["name"] = "gated"
    fast, slow = doc["spec"]["nodes"]
    fast["resources"] = {"cpu": "2", "memory": "4Gi"}
    slow.update(name="slow", resources={"cpu": "4", "memory": "4Gi"}, replicas=2)
    slow.pop("autoscaling")
    fast.pop("autoscaling", None)
    for node in (fast, slow):
        node["hardware"] = CPU_CLASS
    doc["spec"]["graph"]["sequence"][1]["then"]["node"] = "slow"
    return parse_graph(doc)


def pods_of(engine: str, objs: list[Manifest]) -> list[PodShape]:
    """The pods `engine` creates from `objs`, by its entry in the engine table."""
    return engine_named(engine).pods_of(objs)


def priced(graph: InferenceGraph, engine: str, objs: list[Manifest], **how: Any) -> GraphCost:
    return engine_cost(graph, engine, pods_of(engine, objs), CATALOG, **how)


def shapes(engine: str) -> dict[str | None, list[PodShape]]:
    by_node: dict[str | None, list[PodShape]] = {}
    for shape in pods_of(engine, render(cascade_on_cpu(), engine, OPTIONS)):
        by_node.setdefault(shape.node, []).append(shape)
    return by_node


def test_seldon_v2_node_pods_carry_the_agent_and_rclone() -> None:
    pods = shapes("seldon-v2")
    (fast,) = pods["fast"]
    assert fast.cpu == pytest.approx(2 + AGENT[0] + RCLONE[0])
    assert fast.memory_gib == pytest.approx(4 + AGENT[1] + RCLONE[1])
    # The gate runs on the plumbing Server: the engine's own pod, not a graph node's.
    (plumbing,) = pods["plumbing"]
    assert plumbing.source == "Server/gated-plumbing" and plumbing.replicas == 1


def test_seldon_v1_runs_the_executor_and_each_helper_in_pods_of_their_own() -> None:
    pods = shapes("seldon-v1")
    (executor,) = pods[None]
    assert executor.source == "SeldonDeployment/gated/executor"
    assert (executor.cpu, executor.memory_gib, executor.replicas) == (0.5, 0.5, 1)
    helpers = {
        s.source
        for name, found in pods.items()
        if name not in (None, "fast", "slow")
        for s in found
    }
    assert helpers, "the gate's unit is a pod of the engine's own"
    (fast,) = pods["fast"]
    assert fast.cpu == 2


def test_kserve_patches_the_model_over_its_runtime_and_runs_the_router() -> None:
    pods = shapes("kserve")
    (fast,) = pods["fast"]
    assert (fast.cpu, fast.memory_gib, fast.gpus) == (2, 4, 0)
    (router,) = pods[None]
    assert router.source == "InferenceGraph/gated"
    assert (router.cpu, router.memory_gib, router.replicas) == (0.5, 0.5, 1)


def share(cpu: float, memory_gib: float) -> float:
    """The largest share of one CPU_CLASS node's allocatable a pod of that size takes."""
    room = CATALOG.get(CPU_CLASS).allocatable
    return max(cpu / room.vcpus, memory_gib / room.memory_gib)


def test_engine_cost_charges_a_node_its_pod_and_the_engine_its_own_pods() -> None:
    graph = cascade_on_cpu()
    price = CATALOG.get(CPU_CLASS).usd_per_hour
    plain = graph_cost(graph, CATALOG)
    assert plain.usd_per_hour == pytest.approx(price * (share(2, 4) + 2 * share(4, 4)))
    on_v2 = priced(graph, "seldon-v2", render(graph, "seldon-v2", OPTIONS))
    nodes = {n.node: n for n in on_v2.nodes if n.part == "node"}
    # fast: 2.25 cores and 5.125 GiB with the sidecars; memory bounds it.
    assert nodes["fast"].usd_per_hour == pytest.approx(price * share(2.25, 5.125))
    assert nodes["fast"].bound_by == "memory"
    assert nodes["slow"].replicas == 2
    assert nodes["slow"].usd_per_hour == pytest.approx(2 * price * share(4.25, 5.125))
    assert nodes["slow"].bound_by == "cpu"
    own = [n for n in on_v2.nodes if n.part == "engine"]
    assert [n.node for n in own] == ["Server/gated-plumbing"]
    assert on_v2.usd_per_hour == pytest.approx(sum(n.usd_per_hour for n in on_v2.nodes))
    # The graph's replica overrides still count a node's pods.
    objs = render(graph, "seldon-v2", OPTIONS)
    pinned = priced(graph, "seldon-v2", objs, replica_overrides={"slow": 1})
    assert {n.node: n.replicas for n in pinned.nodes}["slow"] == 1


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.stem)
def test_every_shipped_graph_fits_its_hardware_on_every_engine(engine: str, path: Path) -> None:
    """What the engine adds goes in the same pod: a node that asks for every vCPU of its
    class leaves no room for Seldon v2's sidecars, and the pod would never schedule."""
    graph = load_graph(path)
    objs = render(graph, engine, RenderOptions(storage_uri="s3://bucket/infergraph"))
    cost = priced(graph, engine, objs)
    assert cost.usd_per_hour >= graph_cost(graph, CATALOG).usd_per_hour


def test_a_pod_that_outgrows_its_class_names_the_node_and_the_engine() -> None:
    graph = cascade_on_cpu()
    graph.spec.nodes[1].resources.cpu = "7.8"  # c6i.2xlarge leaves pods 7.91 of its 8 cores
    assert graph_cost(graph, CATALOG).usd_per_hour > 0
    objs = render(graph, "seldon-v2", OPTIONS)
    with pytest.raises(CostError, match=r"node 'slow'.*with what seldon-v2 adds"):
        priced(graph, "seldon-v2", objs)


def test_an_executor_inside_a_unit_pod_is_refused_by_name() -> None:
    objs = render(cascade_on_cpu(), "seldon-v1", OPTIONS)
    objs[0]["spec"]["annotations"].pop("seldon.io/engine-separate-pod")
    with pytest.raises(CostError, match="SeldonDeployment/gated"):
        priced(cascade_on_cpu(), "seldon-v1", objs)


def test_an_engine_that_renders_nothing_runs_no_pods() -> None:
    with pytest.raises(RenderError, match="runs no pods"):
        engine_named("local").pods_of([])
