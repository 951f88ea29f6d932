"""Seldon v1: what the rendered SeldonDeployment makes of a node's `timeoutMs`, read through
the operator and executor as their source has them (`tests.engines.seldon_v1`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infergraph.graph.plan import load_graph
from infergraph.render import render
from infergraph.render.seldon_v1 import NOTES_ANNOTATION
from tests.engines.seldon_v1 import REST_TIMEOUT, executor_rest_timeout_s
from tests.test_render_seldon import GRAPH_FILES, OPTIONS


@pytest.mark.parametrize("path", GRAPH_FILES, ids=[p.stem for p in GRAPH_FILES])
def test_the_render_claims_no_per_call_timeout_the_executor_does_not_hold(path: Path) -> None:
    """Either the executor's calls to the units time out at the slowest node's `timeoutMs`,
    or the SeldonDeployment says, in its render notes, that they do not."""
    graph = load_graph(path)
    slowest = int(max(n.timeout_ms for n in graph.spec.nodes))
    sdep = render(graph, "seldon-v1", OPTIONS)[0]
    # Ambassador's route timeout reads it from the SeldonDeployment (3000 ms without:
    # seldon-core v1.18.2 operator/controllers/ambassador/v1.go:176).
    assert sdep["spec"]["annotations"][REST_TIMEOUT] == str(slowest)
    timeout = executor_rest_timeout_s(sdep)
    if timeout is not None:
        assert timeout == slowest / 1000
        return
    notes = sdep["metadata"].get("annotations", {}).get(NOTES_ANNOTATION, "")
    assert "timeoutMs is not enforced" in notes, notes
    assert REST_TIMEOUT in notes and "own pod" in notes, notes


@pytest.mark.parametrize(("value", "expected"), [("0", None), ("-5", None), ("2500", 2.5)])
def test_a_rest_timeout_that_is_not_positive_means_no_timeout(
    value: str, expected: float | None
) -> None:
    """The executor takes `http.DefaultClient` (no timeout) unless `restTimeout > 0`
    (executor/api/rest/client.go:115-124): `"0"` is no limit, not a zero-second one (which
    `requests` would refuse), and a negative value is no limit either."""
    sdep = {"spec": {"annotations": {REST_TIMEOUT: value}, "predictors": [{}]}}
    assert executor_rest_timeout_s(sdep) == expected
