"""The executable engine models refuse what the engines refuse (audit 2026-12, section 2).

Unit-level: no servers, only the model code against inputs the engines' source rejects.
"""

from __future__ import annotations

import json

import pytest

from tests.engines.kserve_router import Post, Router
from tests.engines.seldon_v2 import _group, agent_rewrite


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
    return Router(spec, lambda url, _body, _headers, _timeout: (bodies[url], 200))


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


def _sequence_router(post: Post, propagate: tuple[str, ...] = ()) -> Router:
    spec = {
        "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://a"}]}},
        "routerTimeouts": {"serviceClient": 10},
    }
    return Router(spec, post, propagate=propagate)


def test_kserve_router_forwards_only_the_headers_propagate_headers_matches() -> None:
    """`callService` copies a request header only when a PROPAGATE_HEADERS pattern matches
    its name, as Go's net/http canonicalizes it (`X-Request-Id`), and defaults Content-Type
    (kserve cmd/router/main.go:130-147)."""
    seen: list[dict[str, str]] = []

    def post(
        _url: str, _body: bytes, headers: dict[str, str], _timeout: float | None
    ) -> tuple[bytes, int]:
        seen.append(headers)
        return b"{}", 200

    sent = {"traceparent": "00-abc-01", "x-request-id": "r1", "authorization": "secret"}
    _sequence_router(post).handle(b"{}", sent)
    assert seen[-1] == {"Content-Type": "application/json"}
    _sequence_router(post, ("Traceparent", "X-Request-Id")).handle(b"{}", sent)
    assert seen[-1] == {
        "Traceparent": "00-abc-01",
        "X-Request-Id": "r1",
        "Content-Type": "application/json",
    }
    _sequence_router(post, ("traceparent",)).handle(b"{}", sent)  # lower case: no match
    assert "Traceparent" not in seen[-1]


def test_kserve_router_step_past_its_service_client_timeout_is_a_500() -> None:
    """`routerTimeouts.serviceClient` is the http.Client timeout; a call past it is an error
    answered 500 with the router's error body (main.go:149-160)."""
    timeouts: list[float | None] = []

    def post(
        _url: str, _body: bytes, _headers: dict[str, str], timeout: float | None
    ) -> tuple[bytes, int]:
        timeouts.append(timeout)
        raise TimeoutError("context deadline exceeded")

    body, status = _sequence_router(post).handle(b"{}")
    assert status == 500 and timeouts == [10]
    assert json.loads(body)["error"] == "Failed to process request"


def test_kserve_ensemble_re_encodes_members_as_go_does() -> None:
    """Members are decoded into interface{} (every number a float64) and re-marshalled by
    encoding/json (kserve cmd/router/main.go:278-291, 315): `0.0` becomes `0`, integers past
    2^53 lose precision, small numbers print in Go's style and `<>&` are escaped."""
    member = b'{"a": 0.0, "b": 2.50, "c": 9007199254740993, "d": 1e-7, "e": 0.00001, "f": "<&>"}'
    body, status = _ensemble_router(member).handle(b"{}")
    assert status == 200
    expected = (
        b'{"a":{"outputs":[]},"b":{"a":0,"b":2.5,"c":9007199254740992,"d":1e-7,"e":0.00001,'
        b'"f":"\\u003c\\u0026\\u003e"}}'
    )
    assert body == expected


def test_seldon_v2_agent_loads_a_model_as_name_version_with_its_parameters_filtered() -> None:
    """The agent renames a Model to `<model>_<version>` (seldon-core v2.10.2
    scheduler/pkg/agent/agent_svc_manager.go:686, 711-716; repository/mlserver/
    mlserver.go:144-161), sets `parameters.version`, and writes `parameters` through a struct
    keeping only uri, version, format, content_type, extra and environment_tarball
    (mlserver.go:74-85)."""
    settings = {
        "name": "cascade-fast",
        "implementation": "x.Runtime",
        "max_batch_size": 8,
        "parameters": {"uri": "hub/id", "extra": {"family": "f"}, "threshold": 0.5},
    }
    written = agent_rewrite(settings)
    assert written["name"] == "cascade-fast_1"
    assert written["parameters"] == {"uri": "hub/id", "extra": {"family": "f"}, "version": "1"}
    assert "max_batch_size" not in written


def test_seldon_v2_join_waiting_on_a_cold_member_needs_the_rendered_window() -> None:
    """A join drops its first arrival when the partner comes more than the window later
    (60 s by default, data-flow local.properties:11; audit 16). The renderer widens the join
    behind a node scaled to zero: a member that takes 3 minutes to start still joins."""
    import copy as _copy

    from infergraph.graph.plan import parse_graph
    from infergraph.render import EXAMPLE_STORAGE, RenderOptions, render
    from tests.engines.seldon_v2 import Dataflow
    from tests.test_render_seldon import INLINE

    doc = _copy.deepcopy(INLINE["ensemble"])
    keda = {"engine": "keda", "minReplicas": 0, "maxReplicas": 2, "metric": "queue", "target": 4}
    doc["spec"]["nodes"][1]["autoscaling"] = keda
    objs = render(parse_graph(doc), "seldon-v2", RenderOptions(storage_uri=EXAMPLE_STORAGE))
    pipeline = next(o for o in objs if o["kind"] == "Pipeline")

    def infer(model: str, body: dict) -> dict:  # each Model answers one `scores` tensor
        del body
        return {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1], "data": [1.0]}]}

    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]}
    cold = {"ensemble-x-b": 180.0}  # scheduling, image pull and load
    answer, ran = Dataflow(pipeline, infer, cold).run(request)
    assert answer is not None and "ensemble-x-vote" in ran
    default_window = _copy.deepcopy(pipeline)
    for step in default_window["spec"]["steps"]:
        step.pop("joinWindowMs", None)
    lost, ran = Dataflow(default_window, infer, cold).run(request)
    assert lost is None and "ensemble-x-vote" not in ran
    warm, _ = Dataflow(default_window, infer, {"ensemble-x-b": 30.0}).run(request)
    assert warm is not None
