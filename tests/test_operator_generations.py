"""Readiness after a spec change: a child's status counts only for the generation it describes.

The API server bumps a child's `metadata.generation` as soon as the operator applies a new spec;
its status stays what its controller wrote for the previous spec until that controller writes
again. A controller that says which spec its status describes does so in
`status.observedGeneration` (Kubernetes: k8s.io/api 10b39a3 apps/v1/types.go:527-530
DeploymentStatus; autoscaling/v2/types.go:407-410 HorizontalPodAutoscalerStatus). Of the kinds
whose readiness the operator reads, what their controllers write there (checked in their source):
- Seldon Core v2 Model/Server/Pipeline and Seldon Core v1 SeldonDeployment: the field is in the
  schema (knative duckv1.Status inline: seldon-core v2.10.2 operator/apis/mlops/v1alpha1/
  model_types.go:146, pipeline_types.go:153, server_types.go:70, CRD
  operator/config/crd/bases/mlops.seldon.io_models.yaml:236; v1.18.2
  operator/apis/machinelearning.seldon.io/v1/seldon_deployment_status.go:50) but no controller
  writes it (no Go code in either operator or the v2 scheduler sets ObservedGeneration). The v2
  operator drops scheduler events of another generation (operator/scheduler/model.go:243-250,
  pipeline.go:212-219, server.go:181-182) and leaves the last status standing meanwhile.
- KEDA ScaledObject: no such field, neither in the status nor in its conditions (keda 8b4f083
  apis/keda/v1alpha1/scaledobject_types.go:188-217, condition_types.go:81-97).
- KServe InferenceService/InferenceGraph: written, but copied from another object: the
  predictor Deployment's `status.observedGeneration` (kserve aaac4e2
  pkg/apis/serving/v1beta1/inference_service_status.go:455-457,
  pkg/controller/v1alpha1/inferencegraph/raw_ig.go:195) or the Knative Service's (same
  inference_service_status.go:635). Those count their own spec changes (an HPA's scaling bumps
  a Deployment's; an InferenceService edit that changes neither object bumps neither), so the
  number says nothing about the InferenceService's own generation.
"""

from __future__ import annotations

from pathlib import Path

from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import load_graph
from infergraph.json_types import JSONObject, Manifest
from infergraph.operator import objects
from infergraph.operator import status as st
from infergraph.operator.children import own, render_graph
from infergraph.operator.config import OperatorConfig
from tests.test_operator_units import _kserve_at_zero

REPO = Path(__file__).resolve().parent.parent
OWNER = {
    "apiVersion": "infergraph.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "cascade", "namespace": "ml", "uid": "u-1"},
}


def cascade() -> InferenceGraph:
    return load_graph(REPO / "k8s/graphs/cascade.yaml")


def live_children(engine: str, status: JSONObject, generation: int) -> list[Manifest]:
    """The rendered children as the API server returns them: each at `generation`, each with
    (a copy of) `status` as its controller wrote it."""
    config = OperatorConfig(storage_uri="s3://b/g")
    rendered = render_graph(cascade(), engine, config.render_options())
    live = []
    for obj in (own(o, OWNER) for o in rendered):
        meta = {**obj["metadata"], "generation": generation}
        live.append({**obj, "metadata": meta, "status": dict(status)})
    return live


def applied_again(live: list[Manifest], kind: str, name: str) -> list[Manifest]:
    """`live` after the operator applied a new spec of `kind`/`name`: the API server bumped its
    generation; its controller has not written its status since."""
    out = []
    for obj in live:
        if (obj["kind"], obj["metadata"]["name"]) == (kind, name):
            meta = obj["metadata"]
            obj = {**obj, "metadata": {**meta, "generation": meta["generation"] + 1}}
        out.append(obj)
    assert out != live, f"no {kind}/{name} among the children"
    return out


READY_AT_1 = {"conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 1}


def test_a_status_of_the_previous_generation_has_not_reported_the_new_one() -> None:
    """Every child Ready for generation 1; then the operator applies a new Model spec. The
    Model's Ready=True describes the spec it had: the node and the graph are Unknown until its
    controller reports generation 2, not Ready at once."""
    live = live_children("seldon-v2", READY_AT_1, generation=1)
    assert st.graph_readiness(cascade(), live)[1].status == st.TRUE
    live = applied_again(live, "Model", "cascade-fast")
    model = next(
        o for o in live if o["metadata"]["name"] == "cascade-fast" and o["kind"] == "Model"
    )
    assert st.object_ready(model) == (
        None,
        "Model has not reported for generation 2 yet (its status is of generation 1)",
    )
    nodes, ready = st.graph_readiness(cascade(), live)
    assert {n["name"]: n["state"] for n in nodes} == {"fast": "Unknown", "accurate": "Ready"}
    assert (ready.status, ready.reason) == (st.UNKNOWN, "NotReportedYet"), ready
    assert "Model/cascade-fast: Model has not reported for generation 2 yet" in ready.message
    assert "(its status is of generation 1)" in ready.message
    # Its controller reports the new spec: judged from its conditions again.
    reported = [
        {**o, "status": {**o["status"], "observedGeneration": o["metadata"]["generation"]}}
        for o in live
    ]
    assert st.graph_readiness(cascade(), reported)[1].status == st.TRUE


def test_a_seldon_deployment_state_of_the_previous_generation_is_not_reported_yet() -> None:
    """Seldon v1 reports a state, not a Ready condition; the same rule holds for it."""
    available = {"state": "Available", "observedGeneration": 1}
    live = applied_again(live_children("seldon-v1", available, 1), "SeldonDeployment", "cascade")
    sdep = next(o for o in live if o["kind"] == "SeldonDeployment")
    assert st.object_ready(sdep) == (
        None,
        "SeldonDeployment has not reported for generation 2 yet (its status is of generation 1)",
    )
    assert st.graph_readiness(cascade(), live)[1].status == st.UNKNOWN


def test_a_status_of_the_current_generation_is_judged_from_its_conditions() -> None:
    at_2 = {"kind": "Model", "metadata": {"name": "m", "generation": 2}}
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 2}
    assert st.object_ready({**at_2, "status": ready}) == (True, "Model Ready=True ")
    failed = {
        "conditions": [{"type": "Ready", "status": "False", "reason": "ModelFailed"}],
        "observedGeneration": 2,
    }
    assert st.object_ready({**at_2, "status": failed}) == (False, "Model Ready=False ModelFailed")
    # Not reported at all is still "not reported readiness", whatever the generation.
    assert st.object_ready({**at_2, "status": {"observedGeneration": 2}}) == (
        None,
        "Model has not reported readiness yet",
    )


def test_a_kind_that_publishes_no_observed_generation_is_judged_as_before() -> None:
    """Seldon v2 and KEDA write no `observedGeneration` (module docstring): a bumped generation
    alone says nothing, so their Ready condition is read as it stands."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    live = applied_again(live_children("seldon-v2", ready, 1), "Model", "cascade-fast")
    live = applied_again(live, "ScaledObject", "cascade-accurate-model")
    assert st.graph_readiness(cascade(), live)[1].status == st.TRUE
    # Children that report nothing about readiness still say nothing.
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"generation": 3}}
    assert st.object_ready({**hpa, "status": {"observedGeneration": 1}}) is None


def test_kserve_observed_generation_is_another_objects_and_is_not_compared() -> None:
    """KServe copies its Deployment's or Knative Service's observedGeneration (module
    docstring): an InferenceService at generation 3 whose Deployment is at 1 (edits that did
    not change the Deployment) is current and Ready, not waiting forever for generation 3."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 1}
    live = live_children("kserve", ready, generation=3)
    isvc = next(o for o in live if o["kind"] == "InferenceService")
    assert st.object_ready(isvc) == (True, "InferenceService Ready=True ")
    assert st.graph_readiness(cascade(), live)[1].status == st.TRUE


# What a pass applied anew: the generation each child had before its apply (the operator reads
# every child before applying it, `applying.apply_child`), against the one the apply returned.
WAITING = "applied generation 2; waiting for its controller to report on it"


def test_a_child_this_pass_applied_anew_has_not_reported_on_it_yet() -> None:
    """Seldon v2 writes no observedGeneration (module docstring), so `_stale` cannot see that its
    Ready=True is the previous spec's: the v2 operator drops the scheduler's events of another
    generation and leaves that status standing (seldon-core v2.10.2 operator/scheduler/model.go
    :243-250). A child whose generation the pass's own apply advanced is Unknown, whatever its
    conditions say, until a later pass reads what its controller has written since."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    before = live_children("seldon-v2", ready, generation=1)
    live = applied_again(before, "Model", "cascade-fast")
    generations = {objects.child_key(o): 1 for o in before}
    model = next(o for o in live if (o["kind"], o["metadata"]["name"]) == ("Model", "cascade-fast"))
    assert st.object_ready(model, generation_before=1) == (None, WAITING)
    nodes, verdict = st.graph_readiness(cascade(), live, generations_before=generations)
    assert {n["name"]: n["state"] for n in nodes} == {"fast": "Unknown", "accurate": "Ready"}
    assert (verdict.status, verdict.reason) == (st.UNKNOWN, "NotReportedYet"), verdict
    assert f"fast: Model/cascade-fast: {WAITING}" in verdict.message
    # A Ready=False of the previous spec says nothing about the new one either.
    failed = {"conditions": [{"type": "Ready", "status": "False", "reason": "ModelFailed"}]}
    assert st.object_ready({**model, "status": failed}, generation_before=1) == (None, WAITING)


def test_a_child_at_the_generation_it_had_is_judged_from_its_conditions() -> None:
    """The same generation before and after the apply (the spec did not change): its status is
    read as it stands, Ready or not."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    live = applied_again(live_children("seldon-v2", ready, generation=1), "Model", "cascade-fast")
    generations = {objects.child_key(o): o["metadata"]["generation"] for o in live}
    assert st.graph_readiness(cascade(), live, generations_before=generations)[1].status == st.TRUE
    model = next(o for o in live if (o["kind"], o["metadata"]["name"]) == ("Model", "cascade-fast"))
    failed = {"conditions": [{"type": "Ready", "status": "False", "reason": "ModelFailed"}]}
    assert st.object_ready({**model, "status": failed}, generation_before=2) == (
        False,
        "Model Ready=False ModelFailed",
    )


def test_a_child_with_no_generation_before_is_judged_as_before() -> None:
    """No generation before the apply (a child the pass created: it has no status yet anyway)
    or none known: nothing says the pass advanced it, so its status is read as it stands."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    live = applied_again(live_children("seldon-v2", ready, generation=1), "Model", "cascade-fast")
    assert st.graph_readiness(cascade(), live, generations_before={})[1].status == st.TRUE
    created = live_children("seldon-v2", {}, generation=1)
    _, verdict = st.graph_readiness(cascade(), created, generations_before={})
    assert (verdict.status, verdict.reason) == (st.UNKNOWN, "NotReportedYet")
    assert "applied generation" not in verdict.message
    # Children that report nothing about readiness still say nothing, advanced or not.
    config = {"kind": "ServerConfig", "metadata": {"name": "c", "generation": 2}}
    assert st.object_ready(config, generation_before=1) is None


ACCURATE = ("InferenceService", "cascade-accurate")


def test_a_kserve_node_at_zero_whose_spec_this_pass_changed_is_not_idle() -> None:
    """KServe keeps an InferenceService at zero replicas Ready=True with no copies, which makes
    its node Idle (tests/test_operator_units.py `_kserve_at_zero`). After the pass changed its
    spec that status is the previous spec's: the node is Unknown like any child applied anew,
    not Idle, and the graph is not Ready."""
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    live = [
        _kserve_at_zero(o) if (o["kind"], o["metadata"]["name"]) == ACCURATE else o
        for o in live_children("kserve", ready, generation=1)
    ]
    assert st.graph_readiness(cascade(), live)[1].status == st.TRUE  # idle, as before
    changed = applied_again(live, "InferenceService", "cascade-accurate")
    generations = {objects.child_key(o): 1 for o in changed}
    nodes, verdict = st.graph_readiness(cascade(), changed, generations_before=generations)
    assert {n["name"]: n["state"] for n in nodes} == {"fast": "Ready", "accurate": "Unknown"}
    assert (verdict.status, verdict.reason) == (st.UNKNOWN, "NotReportedYet"), verdict
    assert f"InferenceService/cascade-accurate: {WAITING}" in verdict.message
