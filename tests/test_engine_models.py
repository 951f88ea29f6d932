"""The executable engine models refuse what the engines refuse (audit 2026-12, section 2).

Unit-level: no servers, only the model code against inputs the engines' source rejects.
"""

from __future__ import annotations

import json

import pytest

from tests.engines.kserve_router import Router
from tests.engines.seldon_v2 import _group


def _ensemble_router(member_body: bytes) -> Router:
    spec = {
        "nodes": {
            "root": {
                "routerType": "Ensemble",
                "steps": [
                    {"name": "a", "serviceUrl": "http://a"},
                    {"name": "b", "serviceUrl": "http://b"},
                ],
            }
        }
    }
    bodies = {"http://a": b'{"outputs": []}', "http://b": member_body}
    return Router(spec, lambda url, _body: (bodies[url], 200))


@pytest.mark.parametrize("member", [b"[1, 2]", b'"text"', b"3"])
def test_kserve_ensemble_member_that_is_not_an_object_is_a_500(member: bytes) -> None:
    """The router unmarshals each member's answer into `map[string]interface{}` and answers
    500 when it is not a JSON object (kserve cmd/router/main.go:278-291)."""
    body, status = _ensemble_router(member).handle(b"{}")
    assert status == 500, body
    assert "error" in json.loads(body)


def test_kserve_ensemble_of_objects_is_merged_by_step_name() -> None:
    body, status = _ensemble_router(b'{"outputs": [1]}').handle(b"{}")
    assert status == 200
    assert json.loads(body) == {"a": {"outputs": []}, "b": {"outputs": [1]}}


def test_seldon_v2_one_part_step_reference_is_refused() -> None:
    """The scheduler rejects a step input that is a bare step name (seldon-core v2.10.2
    scheduler/pkg/store/pipeline/validate.go:177-205): a reference names `<step>.outputs`
    or `<step>.outputs.<tensor>` (or the pipeline's `inputs`)."""
    with pytest.raises(ValueError, match="'a'"):
        _group(["a"], "p")
    assert _group(["a.outputs", "p.inputs.x"], "p") == {"a.outputs": set(), "p.inputs": {"x"}}
