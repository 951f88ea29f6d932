"""Rendered model containers size torch's threads from their CPU limit, split by instances.

torch sizes its pool from the CPUs the process may run on (all of a node's, in a pod
without the static CPU manager), not from the container's limit, so every model
container carries OMP_NUM_THREADS; Seldon v1 runs a node's instances as gunicorn worker
processes (seldon-core 1.18.2 seldon_core/microservice.py:265-270: `--workers` defaults to
GUNICORN_WORKERS), each given its share of the threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from infergraph.graph.plan import parse_graph
from infergraph.render import ENGINES, render
from tests.test_render_seldon import OPTIONS, graph_doc


def containers(obj: Any) -> Iterator[dict[str, Any]]:
    """Every container-like mapping (one with `env`) anywhere in a manifest."""
    if isinstance(obj, dict):
        if isinstance(obj.get("env"), list):
            yield obj
        for value in obj.values():
            yield from containers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from containers(value)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"] if "name" in e}


def graph(cpu: str, instances: int, chain: bool, memory: str = "2Gi") -> Any:
    node = {
        "name": "emb",
        "family": "text-embedding",
        "modelUri": "org/emb",
        "resources": {"cpu": cpu, "memory": memory},
        "instances": instances,
    }
    nodes = [node, {"name": "post", "family": "identity"}]
    if chain:  # Seldon v1 runs it as MLServer units (`protocol: v2`)
        flow: dict[str, Any] = {"sequence": [{"node": "emb"}, {"node": "post"}]}
    else:  # an input renamed: Seldon protocol units, each an InfergraphComponent
        post = {"node": "post", "inputs": {"vector": "emb.embedding"}}
        flow = {"sequence": [{"node": "emb"}, post]}
    return parse_graph(graph_doc("threads", nodes, flow))


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize(("cpu", "instances"), [("4", 1), ("4", 2), ("500m", 2), ("3", 2)])
def test_the_model_container_gets_its_whole_cores_split_by_worker_processes(
    engine: str, cpu: str, instances: int
) -> None:
    for chain in (True, False):
        manifests = render(graph(cpu, instances, chain), engine, OPTIONS)
        emb = [c for m in manifests for c in containers(m) if _serves_emb(m, c)]
        assert emb, f"{engine}: no container of node emb sets OMP_NUM_THREADS"
        cores = max(1, int(float(cpu.removesuffix("m")) / (1000 if cpu.endswith("m") else 1)))
        for container in emb:
            env = env_of(container)
            workers = int(env.get("GUNICORN_WORKERS") or 1)
            if "GUNICORN_WORKERS" in env:  # a Seldon v1 unit: a process per instance
                assert workers == instances
            assert env["OMP_NUM_THREADS"] == str(max(1, cores // workers)), (engine, env)


def _serves_emb(manifest: dict[str, Any], container: dict[str, Any]) -> bool:
    """A container of node emb that sets the threads: named for it (Seldon v1's units), in
    the object named for it (Seldon v2's ServerConfig), or holding its model (KServe's
    InferenceService model spec)."""
    env = env_of(container)
    if "OMP_NUM_THREADS" not in env:
        return False
    return (
        "emb" in str(container.get("name", ""))
        or manifest["metadata"]["name"].endswith("-emb")
        or "emb" in env.get("MLSERVER_MODEL_NAME", "")
    )


def test_a_node_of_one_instance_renders_as_before_without_the_key() -> None:
    """instances 1 is the default: model-settings say nothing of it (no drift for graphs
    that never set it), and the Seldon v1 unit runs one worker."""
    for engine in sorted(ENGINES):
        text = str(render(graph("2", 1, False), engine, OPTIONS))
        assert "'instances'" not in text and '"instances"' not in text
