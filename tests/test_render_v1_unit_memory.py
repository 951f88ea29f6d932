"""A Seldon v1 unit of the Seldon protocol is sized for every copy of the model it loads.

`seldon-core-microservice` (seldon-core 1.18.2, seldon_core/microservice.py) loads the
user object once per process: each gunicorn REST worker (`--workers`, default
GUNICORN_WORKERS, :265-270; `UserModelApplication` loads it per worker) and each gRPC
worker process (`--grpc-workers`, default GRPC_WORKERS=1, :346-350; `_make_grpc_server`
forks that many at :510-527, each running `_run_grpc_server`, which calls
`user_object.load()` at :478-481). The gRPC server is not optional for us: the executor
answers its own gRPC endpoint by calling the units over gRPC (executor/cmd/executor/main.go
:396-415, `clientGrpc` given to `runGrpcServer`). So a node of `instances: n` is n + 1
copies in one container, and its memory (requests = limits) must hold them all, or the
node that fits on MLServer is OOM-killed on Seldon v1. `tests/seldon/test_components.py`
checks the count against the real microservice.
"""

from __future__ import annotations

from typing import Any

import pytest

from infergraph.cost.pricing import parse_quantity
from infergraph.errors import RenderError
from infergraph.render import render
from infergraph.render.seldon_v1 import GRPC_ANNOTATION, NOTES_ANNOTATION
from tests.test_render_seldon import OPTIONS
from tests.test_render_threads import containers, env_of, graph

# seldon_core/microservice.py:346-350: `--grpc-workers` defaults to GRPC_WORKERS, else "1".
SELDON_GRPC_WORKERS_DEFAULT = 1


def loading_processes(env: dict[str, str]) -> int:
    """The processes that each load the model, by seldon-core's own defaults."""
    rest = int(env.get("GUNICORN_WORKERS", "1"))
    grpc = int(env.get("GRPC_WORKERS", str(SELDON_GRPC_WORKERS_DEFAULT)))
    return rest + grpc


def seldon_unit(instances: int, memory: str) -> dict[str, Any]:
    """The rendered container of node `emb` as a Seldon protocol unit."""
    manifests = render(graph("2", instances, chain=False, memory=memory), "seldon-v1", OPTIONS)
    units = [c for m in manifests for c in containers(m) if c.get("name") == "emb"]
    assert len(units) == 1, units
    return units[0]


@pytest.mark.parametrize(
    ("instances", "memory"), [(1, "2Gi"), (2, "2Gi"), (3, "1500Mi"), (2, "3G"), (1, "0.5Gi")]
)
def test_memory_holds_one_copy_per_loading_process(instances: int, memory: str) -> None:
    unit = seldon_unit(instances, memory)
    env = env_of(unit)
    per_copy = parse_quantity(memory) / instances  # what the node gives each of its copies
    wanted = per_copy * loading_processes(env)
    resources = unit["resources"]
    for side in ("requests", "limits"):
        rendered = parse_quantity(resources[side]["memory"])
        # Rounded up to whole MiB at most.
        assert wanted <= rendered < wanted + 2**20, (side, resources, env)


def test_the_grpc_workers_are_rendered_not_left_to_a_default() -> None:
    """The count the memory is sized for is the one the container runs with."""
    unit = seldon_unit(1, "2Gi")
    env = env_of(unit)
    assert env["GRPC_WORKERS"] == "1" and "grpc" in [p["name"] for p in unit["ports"]]
    assert env["GUNICORN_WORKERS"] == "1"


def test_the_chain_of_mlserver_units_loads_once_and_keeps_its_memory() -> None:
    """`protocol: v2` units are MLServer (parallel workers 0): one copy per instance."""
    manifests = render(graph("2", 2, chain=True, memory="2Gi"), "seldon-v1", OPTIONS)
    units = [c for m in manifests for c in containers(m) if c.get("name") == "emb"]
    assert units and all(u["resources"]["limits"]["memory"] == "2Gi" for u in units)
    assert all("GRPC_WORKERS" not in env_of(u) for u in units)


def test_a_graph_called_over_rest_only_can_turn_the_units_grpc_off() -> None:
    """`infergraph.io/seldon-v1-grpc: "false"`: no gRPC worker, so no copy for it, and no
    gRPC port named on the container."""
    emb = graph("2", 2, chain=False, memory="2Gi")
    emb.metadata.annotations[GRPC_ANNOTATION] = "false"
    manifests = render(emb, "seldon-v1", OPTIONS)
    unit = next(c for m in manifests for c in containers(m) if c.get("name") == "emb")
    env = env_of(unit)
    assert env["GRPC_WORKERS"] == "0" and loading_processes(env) == 2
    assert unit["resources"]["requests"]["memory"] == "2Gi"
    assert [p["name"] for p in unit["ports"]] == ["http", "metrics"]
    notes = manifests[0]["metadata"]["annotations"][NOTES_ANNOTATION]
    assert "REST only" in notes


def test_an_unreadable_grpc_annotation_is_refused_by_name() -> None:
    emb = graph("2", 1, chain=False)
    emb.metadata.annotations[GRPC_ANNOTATION] = "no"
    with pytest.raises(RenderError, match=r"infergraph.io/seldon-v1-grpc is 'no'"):
        render(emb, "seldon-v1", OPTIONS)
