"""`infergraph validate`: a graph that passes its schema can still never run, because a pod
of it outgrows the hardware class it names: the node's own resources, or, with `--engine`,
the pods that engine runs for it (Seldon v2's agent and rclone beside MLServer, Seldon v1's
gRPC copy of the model, the engines' own routers and helper steps). Validation says so, by
node and class, before anything is deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from infergraph.cli import app

REPO = Path(__file__).resolve().parent.parent
GRAPHS = sorted(str(p) for p in (REPO / "k8s/graphs").glob("*.yaml"))
ENGINES = ("seldon-v2", "seldon-v1", "kserve")


def _validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    return result.exit_code, " ".join(result.output.split())  # the consoles wrap long lines


def _graph_file(tmp_path: Path, cpu: str | int, memory: str, hardware: str) -> str:
    graph: dict[str, Any] = yaml.safe_load((REPO / "k8s/graphs/embed-image.yaml").read_text())
    node = graph["spec"]["nodes"][0]
    node["hardware"] = hardware
    node["resources"].update({"cpu": cpu, "memory": memory})
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return str(path)


def test_every_shipped_graph_fits_its_classes_on_every_engine() -> None:
    code, output = _validate(*GRAPHS, *(a for e in ENGINES for a in ("--engine", e)))
    assert code == 0, output
    assert output.count("valid") >= len(GRAPHS) and "does not fit" not in output


def test_a_node_larger_than_its_class_is_named(tmp_path: Path) -> None:
    path = _graph_file(tmp_path, "16", "8Gi", "g6.xlarge")  # 4 vCPUs
    code, output = _validate(path)
    assert code == 1
    assert "node 'siglip': one replica's cpu request does not fit on one 'g6.xlarge'" in output


def test_a_node_of_the_whole_instance_is_refused_by_what_pods_may_ask(tmp_path: Path) -> None:
    """cpu 4 on a 4-vCPU g6.xlarge: EKS keeps 80m of it back (tests/test_allocatable.py), so
    the pod would stay Pending."""
    code, output = _validate(_graph_file(tmp_path, 4, "6Gi", "g6.xlarge"))
    assert code == 1
    assert "does not fit on one 'g6.xlarge' instance (1.02x its allocatable)" in output


def test_a_pod_only_the_engine_makes_too_large_is_named_per_engine(tmp_path: Path) -> None:
    """cpu 3.8 on a g6.xlarge (3.92 of its 4 vCPUs allocatable): the node fits, its Seldon v2
    Server pod (4.05 cores) does not; KServe adds nothing to the predictor's pod."""
    path = _graph_file(tmp_path, "3800m", "6Gi", "g6.xlarge")
    assert _validate(path)[0] == 0
    code, output = _validate(path, "--engine", "seldon-v2", "--engine", "kserve")
    assert code == 1
    assert "with what seldon-v2 adds" in output
    assert "seldon-v2" in output and "kserve adds" not in output


def test_an_engine_that_deploys_nothing_is_refused() -> None:
    code, output = _validate(GRAPHS[0], "--engine", "local")
    assert code == 1 and "seldon-v2, seldon-v1, kserve" in output


def test_an_error_naming_brackets_prints_them(tmp_path: Path) -> None:
    """Error messages quote paths and server logs (`[mlserver]`, `[/x]`): printed as text,
    never read as rich markup (which dropped them, or raised on a closing tag)."""
    catalog = tmp_path / "[/prices].yaml"
    result = CliRunner().invoke(app, ["validate", "g.yaml", "--catalog", str(catalog)])
    assert result.exit_code == 1, result.output
    assert "[/prices].yaml" in "".join(result.output.split()), result.output  # rich wraps
