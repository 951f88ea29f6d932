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


def _assert_trace_headers_pass(propagate: list[str]) -> None:
    """The router model, given `headers.propagate` as the controller hands it over (joined
    into PROPAGATE_HEADERS, raw_ig.go:94-95), forwards every trace header to a step."""
    seen: list[dict[str, str]] = []

    def post(
        _url: str, _body: bytes, headers: dict[str, str], _timeout: float | None
    ) -> tuple[bytes, int]:
        seen.append(headers)
        return b"{}", 200

    sent = {"traceparent": "00-4bf9-00f0-01", "tracestate": "k=v", "x-request-id": "r29"}
    _sequence_router(post, tuple(",".join(propagate).split(","))).handle(b"{}", sent)
    assert {k.lower(): v for k, v in seen[-1].items() if k != "Content-Type"} == sent


def test_documented_kserve_router_config_passes_every_trace_header() -> None:
    """docs/rendering.md tells the cluster admin what to put in the `inferenceservice-config`
    ConfigMap's `router` JSON. The controller joins `headers.propagate` with commas into the
    router's `PROPAGATE_HEADERS` (kserve v0.20.0 pkg/controller/v1alpha1/inferencegraph/
    raw_ig.go:89-97, knative_reconciler.go:252), which the router splits on commas
    (cmd/router/main.go:492-496): with the documented value, the headers a client sends in
    lower case reach the step."""
    import re as _re
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "rendering.md").read_text()
    found = _re.search(r'`("headers": \{"propagate": \[[^`]*\]\})`', doc)
    assert found, "docs/rendering.md no longer shows the router's headers.propagate"
    config = json.loads("{" + found[1] + "}")
    _assert_trace_headers_pass(config["headers"]["propagate"])


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
    from tests.engines.seldon_v2 import Dataflow, pb
    from tests.test_render_seldon import INLINE

    doc = _copy.deepcopy(INLINE["ensemble"])
    keda = {"engine": "keda", "minReplicas": 0, "maxReplicas": 2, "metric": "queue", "target": 4}
    doc["spec"]["nodes"][1]["autoscaling"] = keda
    objs = render(parse_graph(doc), "seldon-v2", RenderOptions(storage_uri=EXAMPLE_STORAGE))
    pipeline = next(o for o in objs if o["kind"] == "Pipeline")

    def infer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        del request  # each Model answers one `scores` tensor
        scores = pb.ModelInferResponse.InferOutputTensor(
            name="scores",
            datatype="FP32",
            shape=[1],
            contents=pb.InferTensorContents(fp32_contents=[1.0]),
        )
        return pb.ModelInferResponse(outputs=[scores])

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


def test_kserve_router_config_command_output_passes_every_trace_header() -> None:
    """What `infergraph kserve-router-config` prints for KServe's shipped `router` value, read
    as the controller reads it (`RouterConfig.Headers`, kserve v0.20.0
    pkg/controller/v1alpha1/inferencegraph/controller.go:75-96, 106-113) and joined into
    PROPAGATE_HEADERS (raw_ig.go:89-97), lets every trace header a client sends in lower case
    reach the step through the router model."""
    from typer.testing import CliRunner

    from infergraph.cli import app
    from tests.test_render_kserve import KSERVE_DEFAULT_ROUTER

    printed = CliRunner().invoke(app, ["kserve-router-config"], input=KSERVE_DEFAULT_ROUTER)
    assert printed.exit_code == 0, printed.output
    router = json.loads(json.loads(printed.stdout)["data"]["router"])
    _assert_trace_headers_pass(router["headers"]["propagate"])


def test_a_combine_step_reads_an_ensemble_merge_the_same_after_gos_re_encoding() -> None:
    """KServe's Ensemble hands the next step Go's re-encoding of its members (`0.0` -> `0`,
    `1.0` -> `1`; cmd/router/main.go:278-291, 315). The graph step reads carried tensors by
    their `datatype`, not their JSON form, and request knobs through `as_float`, so the
    graph's combiner node gets the same arrays, dtypes and parameters as from Python's
    encoding. (A node: the built-in `combine-N` step takes no request parameters.)"""
    import asyncio

    import numpy as np

    from infergraph.components.parameters import as_float
    from infergraph.serving import graph_step
    from infergraph.tensors.v2json import decode_json
    from tests.engines.kserve_router import go_decode, go_marshal

    def member(step: str, probs: list[float]) -> dict:
        tensors = [
            {"name": f"{step}.probs", "datatype": "FP32", "shape": [1, 3], "data": probs},
            {"name": f"{step}.label", "datatype": "INT64", "shape": [1], "data": [2]},
        ]
        carry = {"parameters": {"threshold": 1.0, "b.scale": 0.0}, "path": [step], "when": {}}
        return {"model_name": step, "outputs": [], "inputs": tensors, "carry": carry}

    merge = {"a": member("a", [0.0, 1.0, 0.0]), "b": member("b", [0.25, 0.75, 0.0])}
    wiring = graph_step.StepWiring(
        step="joiner",
        kind="node",
        inputs={"probs_0": ["a.probs"], "probs_1": ["b.probs"]},
        outputs={},
        passes={},
        output_specs=[],
        nodes=["a", "b", "joiner"],
    )

    def fed(body: dict) -> tuple[dict[str, np.ndarray], dict]:
        seen: list[tuple[dict, dict]] = []

        async def call(feed: dict, params: dict) -> dict:
            seen.append((feed, params))
            return {}

        asyncio.run(graph_step.run_step(wiring, body, call))
        feed, params = seen[0]
        return {
            k: decode_json(t["name"], t["datatype"], t["shape"], t["data"]) for k, t in feed.items()
        }, params

    python_feed, python_params = fed(json.loads(json.dumps(merge)))
    go_body = go_marshal(go_decode(json.dumps(merge).encode()))
    assert b'"data":[0,1,0]' in go_body  # the re-encoding this is about
    go_feed, go_params = fed(json.loads(go_body))
    for name, array in python_feed.items():
        assert go_feed[name].dtype == array.dtype == np.float32
        assert np.array_equal(go_feed[name], array)
    assert as_float(go_params["threshold"], "threshold", 0, 1) == 1.0
    assert go_params == python_params


def test_seldon_v1_chains_a_v2_response_through_go_as_chain_kfserving_does() -> None:
    """Between `protocol: v2` units the executor decodes the response into interface{},
    renames `outputs` to `inputs` and re-marshals it (seldon-core v1.18.2
    executor/api/rest/kfserving.go:10-35): numbers pass through float64 (`0.0` -> `0`), every
    other field (`parameters` too) is kept, a body that already has `inputs` goes on as it
    is, and one with neither is an error."""
    from tests.engines.seldon_v1 import ChainError, chain_kfserving

    response = (
        b'{"model_name": "m", "parameters": {"top_k": 2.0, "note": "<a&b>"},'
        b' "outputs": [{"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.0, 0.5]}]}'
    )
    chained = chain_kfserving(response)
    assert chained == (
        b'{"inputs":[{"data":[0,0.5],"datatype":"FP32","name":"p","shape":[1,2]}],'
        b'"model_name":"m","parameters":{"note":"\\u003ca\\u0026b\\u003e","top_k":2}}'
    )
    request = b'{"inputs": [{"name": "x", "data": [1.0]}]}'
    assert chain_kfserving(request) == request
    with pytest.raises(ChainError, match="chained"):
        chain_kfserving(b'{"error": "x"}')


@pytest.mark.parametrize("root", ["Sequence", "Ensemble"])
def test_kserve_nested_nodes_error_is_a_500_whatever_its_own_status(root: str) -> None:
    """A Switch without a match is a 404 only at the root (graphHandler keeps the root
    step's status, main.go:407-411); a node nested in a Sequence or an Ensemble turns its
    error into 500 (`return nil, 500, err`, main.go:357-358, 279-291 and 310-311). Rendered
    Switches are always nested (`root` -> `when` Sequence -> `switch`)."""
    switch = {
        "routerType": "Switch",
        "steps": [{"serviceUrl": "http://a", "condition": "carry.when.gate-0.then"}],
    }
    spec = {
        "nodes": {
            "root": {"routerType": root, "steps": [{"name": "sw", "nodeName": "sw"}]},
            "sw": switch,
        }
    }
    router = Router(spec, lambda *_: (b"{}", 200))
    body, status = router.handle(b'{"carry": {}}')
    assert status == 500, body
    assert "None of the routes matched" in json.loads(body)["cause"]
    # At the root, the Switch's own 404.
    body, status = Router({"nodes": {"root": switch}}, lambda *_: (b"{}", 200)).handle(b"{}")
    assert status == 404, body
