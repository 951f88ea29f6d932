"""Graph tooling (validation, rendering, cost) must run where torch is not installed.

The load tester's image and the renderer carry no model frameworks, so component modules
keep torch, transformers, timm and PIL imports inside their methods. This runs the graph
tooling in a fresh interpreter where importing any of them fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
for name in ("torch", "torchvision", "transformers", "timm", "PIL", "sentence_transformers",
             "mlserver"):
    sys.modules[name] = None  # any import of it now raises ImportError
from pathlib import Path
from infergraph.render import EXAMPLE_STORAGE, RenderOptions
from infergraph.cost.pricing import graph_cost, load_catalog
from infergraph.graph.plan import load_graph
from infergraph.render import render
catalog = load_catalog()
OPTIONS = RenderOptions(storage_uri=EXAMPLE_STORAGE)
for path in sorted(Path("k8s/graphs").glob("*.yaml")):
    graph = load_graph(path)
    for engine in ("seldon-v2", "seldon-v1"):
        assert render(graph, engine, OPTIONS), (path, engine)
    assert graph_cost(graph, catalog).usd_per_hour > 0
print("ok")
"""


def test_validate_render_and_cost_without_model_frameworks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
