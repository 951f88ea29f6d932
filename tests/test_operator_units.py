"""The operator's pure parts: settings from the chart's environment, the render call, owner
references, pruning, conditions, readiness and endpoints (no API server needed)."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from infergraph.errors import RenderError, SettingsError
from infergraph.graph.plan import load_graph
from infergraph.json_types import JSONShapeError
from infergraph.operator import pricing
from infergraph.operator import status as st
from infergraph.operator.applying import Refusal, owner_of
from infergraph.operator.children import (
    ENGINE_ANNOTATION,
    OMIT_ANNOTATION,
    children,
    engine_for,
    is_owned_by,
    omitted_kinds,
    own,
    render_graph,
    stale,
)
from infergraph.operator.config import OperatorConfig
from infergraph.operator.handlers import _retry_if_refused
from infergraph.operator.last_report import LastReports
from infergraph.operator.reconcile import PRUNE_FAILED, Applied, Outcome, Unpruned, _warnings
from infergraph.render.common import STORAGE_ANNOTATION
from infergraph.render.options import RenderOptions

REPO = Path(__file__).resolve().parent.parent
OWNER = {
    "apiVersion": "infergraph.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "cascade", "namespace": "ml", "uid": "u-1"},
}


def cascade():
    return load_graph(REPO / "k8s/graphs/cascade.yaml")


def test_settings_from_environment_name_the_bad_variable() -> None:
    with pytest.raises(SettingsError, match="INFERGRAPH_GPU_TOLERATIONS"):
        OperatorConfig.from_env({"INFERGRAPH_GPU_TOLERATIONS": '{"key": "x"}'})
    with pytest.raises(SettingsError, match="INFERGRAPH_METRICS_PORT"):
        OperatorConfig.from_env({"INFERGRAPH_METRICS_PORT": "eighty"})
    with pytest.raises(SettingsError, match="defaultEngine"):
        OperatorConfig.from_env({"INFERGRAPH_DEFAULT_ENGINE": "triton"})
    with pytest.raises(SettingsError, match=r"INFERGRAPH_OBSERVE_NODES.*true or false"):
        OperatorConfig.from_env({"INFERGRAPH_OBSERVE_NODES": "yes"})
    assert OperatorConfig.from_env({"INFERGRAPH_OBSERVE_NODES": "True"}).observe_nodes


def test_gpu_settings_of_the_wrong_json_shape_name_the_variable_and_the_entry() -> None:
    """The pod spec takes a node selector of strings and tolerations that are objects: another
    shape stops the operator at start, naming the variable, not at the first apply."""
    with pytest.raises(SettingsError, match=r"GPU_NODE_SELECTOR.*\$\.gpu: expected a string"):
        OperatorConfig.from_env({"INFERGRAPH_GPU_NODE_SELECTOR": '{"gpu": true}'})
    with pytest.raises(SettingsError, match=r"GPU_TOLERATIONS.*\$\[1\]: expected an object"):
        OperatorConfig.from_env({"INFERGRAPH_GPU_TOLERATIONS": '[{"key": "a"}, "b"]'})
    env = {
        "INFERGRAPH_GPU_NODE_SELECTOR": '{"gpu": "true"}',
        "INFERGRAPH_GPU_TOLERATIONS": '[{"key": "a"}]',
        "INFERGRAPH_GPU_AFFINITY": "",  # empty: the default
    }
    scheduling = OperatorConfig.from_env(env).gpu_scheduling
    assert scheduling.node_selector == {"gpu": "true"}
    assert (scheduling.tolerations, scheduling.affinity) == ([{"key": "a"}], None)


def test_flags_override_environment() -> None:
    env = {"INFERGRAPH_DEFAULT_ENGINE": "seldon-v2", "INFERGRAPH_WATCH_NAMESPACES": "a, b"}
    assert OperatorConfig.from_env(env).namespaces == ("a", "b")
    config = OperatorConfig.from_env(env, default_engine="seldon-v1", namespaces=("c",))
    assert (config.default_engine, config.namespaces) == ("seldon-v1", ("c",))


def test_engine_comes_from_the_graph_else_the_operator_default() -> None:
    graph = cascade()
    assert engine_for(graph, OperatorConfig(default_engine="seldon-v1")) == "seldon-v1"
    graph.metadata.annotations[ENGINE_ANNOTATION] = "seldon-v2"
    assert engine_for(graph, OperatorConfig(default_engine="seldon-v1")) == "seldon-v2"


def test_render_call_carries_the_storage_prefix_but_the_graph_annotation_wins() -> None:
    options = OperatorConfig(storage_uri="s3://team/graphs").render_options()
    objs = render_graph(cascade(), "seldon-v2", options)
    model = next(
        o for o in objs if o["kind"] == "Model" and o["metadata"]["name"] == "cascade-fast"
    )
    assert model["spec"]["storageUri"] == "s3://team/graphs/cascade/fast"
    own_prefix = cascade()
    own_prefix.metadata.annotations[STORAGE_ANNOTATION] = "gs://graph-own/prefix"
    objs = render_graph(own_prefix, "seldon-v2", options)
    model = next(
        o for o in objs if o["kind"] == "Model" and o["metadata"]["name"] == "cascade-fast"
    )
    assert model["spec"]["storageUri"].startswith("gs://graph-own/prefix/")


def test_unknown_engine_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="unknown engine"):
        render_graph(cascade(), "kserve-someday", OperatorConfig().render_options())


def test_owned_child_is_in_the_graph_namespace_with_a_controller_reference() -> None:
    child = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "c", "labels": {"a": "b"}}}
    owned = own(child, OWNER)
    assert owned["metadata"]["namespace"] == "ml"
    assert owned["metadata"]["labels"] == {
        "a": "b",
        "app.kubernetes.io/managed-by": "infergraph-operator",
    }
    ref = owned["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "u-1" and ref["controller"] and ref["blockOwnerDeletion"]
    assert (
        is_owned_by(owned, "u-1") and not is_owned_by(owned, "u-2") and not is_owned_by(None, "u-1")
    )
    assert "ownerReferences" not in child["metadata"]  # the rendered object is not changed


def test_omitted_kinds_leave_the_scalers_and_monitors_and_name_what_cannot_go() -> None:
    graph = cascade()
    graph.metadata.annotations[OMIT_ANNOTATION] = "PodMonitor, ScaledObject"
    config = OperatorConfig(storage_uri="s3://b/g")
    kinds = {o["kind"] for o in children(OWNER, graph, config)}
    assert kinds == {"ServerConfig", "Server", "Model", "Pipeline"}
    graph.metadata.annotations[OMIT_ANNOTATION] = "PodMonitor,Pipeline"
    with pytest.raises(RenderError, match=r"names Pipeline; only PodMonitor, .* can be omitted"):
        omitted_kinds(graph, "seldon-v2")


def test_a_wrong_shape_names_its_path_not_a_bare_key_error() -> None:
    """Children and their live copies are read through checked accessors: a missing or
    mistyped part is a JSONShapeError naming where, not a KeyError or AttributeError."""
    with pytest.raises(JSONShapeError, match=r"^metadata: expected an object, found null"):
        own({"apiVersion": "v1", "kind": "X"}, OWNER)
    with pytest.raises(JSONShapeError, match=r"^metadata\.name: expected a string, found null"):
        own(
            {"apiVersion": "v1", "kind": "X", "metadata": {}},
            {**OWNER, "metadata": {"namespace": "ml"}},
        )
    with pytest.raises(JSONShapeError, match=r"^metadata\.ownerReferences: expected a list"):
        is_owned_by({"metadata": {"ownerReferences": {"uid": "u-1"}}}, "u-1")
    with pytest.raises(JSONShapeError, match=r"^status\.conditions\[0\]: expected an object"):
        st.object_ready({"kind": "Model", "status": {"conditions": ["Ready"]}})
    # What a controller has not written yet is absent, not wrong: null reads as empty.
    assert st.object_ready({"kind": "Model", "status": None}) == (
        None,
        "Model has not reported readiness yet",
    )


def test_owner_of_names_the_controller_else_the_label_else_the_writers() -> None:
    refs = [
        {"kind": "Deployment", "name": "other"},
        {"kind": "InferenceGraph", "name": "g", "controller": True},
    ]
    assert owner_of({"metadata": {"ownerReferences": refs}}) == "InferenceGraph/g"
    helm = {"labels": {"app.kubernetes.io/managed-by": "Helm"}}
    assert owner_of({"metadata": helm}) == "managed by Helm"
    written = {"managedFields": [{"manager": "kubectl-client-side-apply"}]}
    assert owner_of({"metadata": written}) == "written by kubectl-client-side-apply"
    assert owner_of({"metadata": {}}) == "no owner recorded"


def test_retry_delay_doubles_up_to_the_max() -> None:
    config = OperatorConfig(retry_base_s=5, retry_max_s=60)
    assert [config.retry_delay(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    # A pass with refusals asks kopf to run it again after that delay; a clean one does not.
    refusal = Refusal(
        {"apiVersion": "v1", "kind": "X", "metadata": {"name": "x"}}, "ApplyFailed", ""
    )
    with pytest.raises(kopf.TemporaryError, match="X/x") as raised:
        _retry_if_refused(Outcome({}, refused=[refusal]), config, retry=2)
    assert raised.value.delay == 20
    _retry_if_refused(Outcome({}), config, retry=2)
    with pytest.raises(SettingsError, match="retry"):
        OperatorConfig(retry_base_s=0)


def test_server_configs_move_to_seldons_namespace_with_label_ownership() -> None:
    config = OperatorConfig(storage_uri="s3://b/g", seldon_namespace="seldon-mesh")
    objs = children(OWNER, cascade(), config)
    configs = [o for o in objs if o["kind"] == "ServerConfig"]
    assert {o["metadata"]["namespace"] for o in configs} == {"seldon-mesh"}
    assert all(is_owned_by(o, "u-1") and not is_owned_by(o, "u-2") for o in configs)
    assert all(o["metadata"]["namespace"] == "ml" for o in objs if o["kind"] != "ServerConfig")
    # A graph in Seldon's own namespace keeps its ServerConfigs as rendered, owner-referenced.
    graph = cascade()
    graph.metadata.namespace = "ml"  # as the operator reads it from the resource
    home = children(OWNER, graph, OperatorConfig(storage_uri="s3://b/g", seldon_namespace="ml"))
    assert all("ownerReferences" in o["metadata"] for o in home)
    # Named `<graph namespace>-<name>` in Seldon's, and each Server points at its own.
    graph.metadata.namespace = "ml"
    moved = children(OWNER, graph, config)
    names = {o["metadata"]["name"] for o in moved if o["kind"] == "ServerConfig"}
    assert names == {"ml-cascade-fast", "ml-cascade-accurate", "ml-cascade-plumbing"}
    assert {o["spec"]["serverConfig"] for o in moved if o["kind"] == "Server"} == names


def test_stale_lists_what_the_new_generation_no_longer_renders() -> None:
    a = {"apiVersion": "v1", "kind": "A", "name": "x"}
    b = {"apiVersion": "v1", "kind": "B", "name": "x"}
    assert stale([a, b], [a]) == [b]
    elsewhere = {**a, "namespace": "seldon-mesh"}  # same name, another namespace: another object
    assert stale([a, elsewhere], [a]) == [elsewhere]
    assert stale([a], [a, b]) == []


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    first = st.conditions([], [st.Condition("Ready", st.FALSE, "NodesNotReady", "waiting")])
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = st.conditions(first, [st.Condition("Ready", st.FALSE, "NodesNotReady", "still")])
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert same[0]["message"] == "still"
    flipped = st.conditions(first, [st.Condition("Ready", st.TRUE, "NodesReady", "")])
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    # Conditions not in the update are kept as they were.
    kept = st.conditions(flipped, [st.Condition("Valid", st.TRUE, "GraphValid", "")])
    assert [c["type"] for c in kept] == ["Valid", "Ready"]


def test_a_status_patch_merges_as_the_api_server_merges_it() -> None:
    """RFC 7386, as the API server applies kopf's status patch: objects merge key by key, null
    removes, a list is replaced whole; the status patched is left as it was."""
    before = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "Unknown"}],
        "endpoint": {"url": "http://old", "port": 80},
        "price": "1.0",
    }
    patch = {
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "True"}],
        "endpoint": {"url": "http://new"},
        "price": None,
    }
    assert st.patched(before, patch) == {
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "True"}],
        "endpoint": {"url": "http://new", "port": 80},
    }
    assert before["price"] == "1.0" and before["endpoint"] == {"url": "http://old", "port": 80}


def test_a_prune_failure_is_told_once_even_after_an_apply_refusal_said_the_same() -> None:
    """RBAC lost for a kind: the apply of its child is refused ("PodMonitor/m: ... 403"), then a
    new generation drops the kind and its prune fails with the very same text. That text in
    the previous Rendered message was taken for the prune failure told before: no PruneFailed
    Event. Only the message's "not removed" part tells prune failures."""
    failure = "PodMonitor/m: get PodMonitor m: HTTP 403: forbidden"
    unpruned = Applied([], [], unpruned=[Unpruned({"kind": "PodMonitor", "name": "m"}, failure)])
    refusal_said = [
        {
            "type": "Rendered",
            "reason": "ApplyFailed",
            "message": f"applied 3 of 4 object(s) for seldon-v2; not applied: {failure}",
        }
    ]
    assert _warnings(unpruned, {}, refusal_said) == [("Warning", PRUNE_FAILED, failure)]
    prune_said = [
        {
            "type": "Rendered",
            "reason": PRUNE_FAILED,
            "message": f"applied 3 object(s) for "
            f"seldon-v2; not removed: {failure}; not applied: Model/x: timeout",
        }
    ]
    assert _warnings(unpruned, {}, prune_said) == []


def test_a_queued_pass_reads_the_last_report_whole_not_merged_over_its_own() -> None:
    """The last pass cleared `refused` (a clean apply); a pass that copied its body while the
    refusal stood must not see it again, or a refusal that comes back is taken as told and
    gets no Warning (review of bf58f31: the status was merged over, and a merge cannot remove
    a field)."""
    reports = LastReports()
    stale = {"metadata": {"uid": "u"}, "status": {"refused": [{"kind": "Model"}], "x": 1}}
    reports.remember("u", stale, stale, {"refused": None, "x": 2})
    assert reports.lay_over("u", stale)["status"] == {"x": 2}
    assert reports.lay_over("other", stale) is stale


def test_passes_queued_in_a_row_each_start_from_the_one_before() -> None:
    """Three passes copy the same body while the first runs: the third must start from the
    second's report, not from what the first was handed (review of fd2e2cd)."""
    reports = LastReports()
    s0 = {"metadata": {"uid": "u"}, "status": {"x": 0}}
    reports.remember("u", s0, s0, {"x": 1})
    second = reports.lay_over("u", s0)
    assert second["status"] == {"x": 1}
    reports.remember("u", s0, second, {"x": 2})
    assert reports.lay_over("u", s0)["status"] == {"x": 2}
    shows_first = {"metadata": {"uid": "u"}, "status": {"x": 1}}  # the first patch, seen
    assert reports.lay_over("u", shows_first)["status"] == {"x": 2}


def test_a_caught_up_or_foreign_status_is_read_from_the_body() -> None:
    """Once a body shows the last report the memory goes; a status neither reported nor
    predating a report (someone else's edit, or a patch that failed) is not hidden."""
    reports = LastReports()
    s0 = {"metadata": {"uid": "u"}, "status": {"x": 0}}
    reports.remember("u", s0, s0, {"x": 1})
    caught_up = {"metadata": {"uid": "u"}, "status": {"x": 1}}
    assert reports.lay_over("u", caught_up) is caught_up
    assert reports.lay_over("u", s0) is s0  # forgotten: the body's own from here
    reports.remember("u", s0, s0, {"x": 1})
    edited = {"metadata": {"uid": "u"}, "status": {"x": 3}}
    assert reports.lay_over("u", edited) is edited


def test_readiness_reads_each_engines_own_status() -> None:
    assert st.object_ready({"kind": "SeldonDeployment", "status": {"state": "Available"}})[0]
    assert not st.object_ready({"kind": "SeldonDeployment", "status": {"state": "Creating"}})[0]
    ready = {"kind": "Model", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert st.object_ready(ready)[0]
    # Not reported yet is unknown, not "not ready" (and never ready).
    assert st.object_ready({"kind": "Model", "status": {}}) == (
        None,
        "Model has not reported readiness yet",
    )
    assert st.object_ready({"kind": "SeldonDeployment"})[0] is None
    assert st.object_ready({"kind": "ServerConfig"}) is None
    assert st.object_ready({"kind": "HorizontalPodAutoscaler", "status": {}}) is None


def test_v1_graph_wide_readiness_applies_to_every_node() -> None:
    graph = cascade()
    sdep = {
        "kind": "SeldonDeployment",
        "metadata": {"name": "cascade", "labels": {"infergraph.io/graph": "cascade"}},
        "status": {"state": "Creating"},
    }
    nodes = st.node_readiness(graph, [sdep])
    assert [n["ready"] for n in nodes] == [False, False]
    sdep["status"]["state"] = "Available"
    assert all(n["ready"] for n in st.node_readiness(graph, [sdep]))


def _rendered(engine: str) -> list[dict]:
    config = OperatorConfig(storage_uri="s3://b/g")
    return [own(o, OWNER) for o in render_graph(cascade(), engine, config.render_options())]


def _report(obj: dict, status: str, reason: str = "", **conditions: str) -> dict:
    conds = [{"type": "Ready", "status": status, "reason": reason}]
    conds += [{"type": k, "status": v} for k, v in conditions.items()]
    return {**obj, "status": {"conditions": conds}}


def test_kserve_children_without_status_are_unknown_not_ready() -> None:
    """No KServe controller: no InferenceService has a status, so the graph is not Ready=True."""
    live = _rendered("kserve")
    nodes, ready = st.graph_readiness(cascade(), live)
    assert ready.status == st.UNKNOWN, ready
    assert {n["state"] for n in nodes} == {"Unknown"}
    assert "InferenceService/cascade-fast" in ready.message
    reported = [_report(o, "True") for o in live]
    assert st.graph_readiness(cascade(), reported)[1].status == st.TRUE


def test_v2_plumbing_server_and_gate_models_count_for_the_graph() -> None:
    live = [_report(o, "True") for o in _rendered("seldon-v2")]
    assert st.graph_readiness(cascade(), live)[1].status == st.TRUE
    for name in ("cascade-plumbing", "cascade-gate-0"):
        broken = [
            _report(o, "False", "ModelFailed") if o["metadata"]["name"] == name else o for o in live
        ]
        _, ready = st.graph_readiness(cascade(), broken)
        assert ready.status == st.FALSE and name in ready.message, (name, ready)


def test_a_node_scaled_to_zero_is_idle_not_failed() -> None:
    """KEDA scaled `accurate` (minReplicas 0) to zero: Seldon reports its Model/Server not ready
    and the Pipeline's ModelsReady False (sc2 pipeline_types.go:280-284, scheduler
    memory_status.go:89-92 ModelScaledDown); the graph is ready, the node idle."""
    live = []
    for obj in _rendered("seldon-v2"):
        name = obj["metadata"]["name"]
        if name == "cascade-accurate" and obj["kind"] in ("Model", "Server"):
            obj = {**obj, "spec": {**obj["spec"], "replicas": 0}}
            obj = _report(obj, "False", "ScaledDown")
        elif obj["kind"] == "Pipeline":
            obj = _report(obj, "False", "ModelsNotReady", PipelineReady="True", ModelsReady="False")
        else:
            obj = _report(obj, "True")
        live.append(obj)
    nodes, ready = st.graph_readiness(cascade(), live)
    assert {n["name"]: n["state"] for n in nodes} == {"fast": "Ready", "accurate": "Idle"}
    assert ready.status == st.TRUE and "accurate" in ready.message
    # A node that may not scale to zero is not idle at zero: it is not ready.
    graph = cascade()
    graph.spec.nodes[1].autoscaling.min_replicas = 1
    assert st.graph_readiness(graph, live)[1].status == st.FALSE


def test_endpoints_per_engine() -> None:
    graph = cascade()
    assert st.endpoint(graph, "seldon-v2", "ml", []) == (
        "http://seldon-mesh.ml/v2/models/cascade/infer"
    )
    # The v1 executor calls every unit with the URL's model name (seldon-core v1.18.2
    # executor/api/rest/server.go:315-318), and each unit's MLServer is named after its
    # container: `/v2/models/<graph>/infer` is a 404, `/v2/models/infer` reaches every unit.
    v1 = [{"kind": "SeldonDeployment", "spec": {"protocol": "v2"}}]
    assert st.endpoint(graph, "seldon-v1", "ml", v1) == (
        "http://cascade-default.ml:8000/v2/models/infer"
    )
    seldon = [{"kind": "SeldonDeployment", "spec": {"protocol": "seldon"}}]
    assert st.endpoint(graph, "seldon-v1", "ml", seldon).endswith("/api/v1.0/predictions")


def test_price_needs_hardware_and_says_which_node_lacks_it() -> None:
    objs = render_graph(cascade(), "kserve", RenderOptions())
    both = pricing.priced(cascade(), None, "kserve", objs)
    assert both.price is not None and float(both.price) > 0 and both.problem == ""
    assert (both.fit.status, both.fit.reason) == (st.TRUE, "PodsFitClasses")
    graph = cascade()
    graph.spec.nodes[0].hardware = None
    one = pricing.priced(graph, None, "kserve", objs)
    assert one.price is None and "fast" in one.problem
    assert one.fit.status == st.TRUE and "accurate" in one.fit.message  # the one it can check
    for node in graph.spec.nodes:
        node.hardware = None
    none = pricing.priced(graph, None, "kserve", objs)
    assert (none.fit.status, none.fit.reason) == (st.UNKNOWN, "NoHardwareClass")


def test_a_catalog_that_cannot_be_read_leaves_fit_unknown(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text("classes:\n  g6.xlarge: {usd_per_hour: -1}\n")
    objs = render_graph(cascade(), "kserve", RenderOptions())
    got = pricing.priced(cascade(), str(bad), "kserve", objs)
    assert got.price is None and "g6.xlarge" in got.problem
    assert (got.fit.status, got.fit.reason) == (st.UNKNOWN, "CatalogUnavailable")


def test_price_is_what_the_engine_runs_for_the_graph() -> None:
    """The status prices the pods the engine runs (`infergraph.cost.pods`): KServe's router
    and the gate's InferenceService on top of the nodes' own replicas."""
    from infergraph.cost import engine_cost, graph_cost, load_catalog
    from infergraph.cost.pods import kserve_pods

    catalog = load_catalog()
    objs = render_graph(cascade(), "kserve", RenderOptions())
    price = pricing.priced(cascade(), None, "kserve", objs).price
    expected = engine_cost(cascade(), "kserve", kserve_pods(objs), catalog).usd_per_hour
    assert price == f"{expected:.4f}"
    assert float(price or 0) > graph_cost(cascade(), catalog).usd_per_hour


async def test_unreachable_api_server_is_a_kube_error_not_a_crash() -> None:
    import socket

    import kopf

    from infergraph.operator.kube import KubeClient, KubeError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    client = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), "m")
    try:
        with pytest.raises(KubeError) as caught:
            await client.get("v1", "ConfigMap", "ns", "x")
        assert caught.value.status == 0
        assert "GET /api/v1: no answer: ClientConnectorError" in str(caught.value)
    finally:
        await client.close()


async def test_an_answer_that_is_not_an_object_is_a_shape_error_naming_the_call() -> None:
    """A 200 whose body is not a JSON object is not handed on as a live object."""
    from aiohttp import web

    from infergraph.operator.kube import KubeClient

    discovery = {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]}

    async def discover(_: web.Request) -> web.Response:
        return web.json_response(discovery)

    async def a_list(_: web.Request) -> web.Response:
        return web.json_response(["not", "an object"])

    app = web.Application()
    app.router.add_get("/api/v1", discover)
    app.router.add_get("/api/v1/namespaces/ns/configmaps/x", a_list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # aiohttp names no public accessor
    client = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), "m")
    try:
        with pytest.raises(JSONShapeError, match="answer to get ConfigMap x: expected an object"):
            await client.get("v1", "ConfigMap", "ns", "x")
    finally:
        await client.close()
        await runner.cleanup()


def _kserve_at_zero(isvc: dict) -> dict:
    """An InferenceService as KServe's Standard (raw) mode reports it with its predictor
    Deployment at zero replicas. The Deployment controller sets Available=True when
    availableReplicas >= replicas - maxUnavailable, 0 >= 0 at zero replicas (kubernetes
    pkg/controller/deployment/sync.go calculateStatus), which KServe copies to PredictorReady
    and so Ready (kserve aaac4e2 pkg/apis/serving/v1beta1/inference_service_status.go:360-400,
    PropagateRawStatus); with no pod, PropagateModelStatus sets `copies.totalCopies` to the
    ready pods (0, omitted) and the model state Pending (same file, 721-745)."""
    reported = _report(isvc, "True", "MinimumReplicasAvailable", PredictorReady="True")
    reported["status"]["modelStatus"] = {
        "transitionStatus": "UpToDate",
        "states": {"activeModelState": "Pending", "targetModelState": ""},
        "copies": {"failedCopies": 0},
    }
    return reported


def test_a_kserve_node_scaled_to_zero_is_idle_not_ready() -> None:
    """KEDA scaled the `accurate` predictor (minReplicas 0) to zero: KServe keeps its
    InferenceService Ready=True with no pod, so the node is reported Idle (requests to it fail
    until it wakes), not Ready; the graph stays Ready."""
    live = []
    for obj in _rendered("kserve"):
        name = obj["metadata"]["name"]
        at_zero = obj["kind"] == "InferenceService" and name == "cascade-accurate"
        live.append(_kserve_at_zero(obj) if at_zero else _report(obj, "True"))
    nodes, ready = st.graph_readiness(cascade(), live)
    assert {n["name"]: n["state"] for n in nodes} == {"fast": "Ready", "accurate": "Idle"}
    assert ready.status == st.TRUE and "accurate idle" in ready.message
    # Once a pod is ready KServe counts it: the node is Ready again.
    for obj in live:
        if obj["metadata"]["name"] == "cascade-accurate" and obj["kind"] == "InferenceService":
            obj["status"]["modelStatus"]["copies"]["totalCopies"] = 1
            obj["status"]["modelStatus"]["states"]["activeModelState"] = "Loaded"
    assert {n["state"] for n in st.node_readiness(cascade(), live)} == {"Ready"}
    # A node that may not scale to zero is never idle: zero ready copies there is not idle.
    for obj in live:
        if obj["metadata"]["name"] == "cascade-accurate" and obj["kind"] == "InferenceService":
            obj.update(_kserve_at_zero(obj))
    graph = cascade()
    graph.spec.nodes[1].autoscaling.min_replicas = 1
    assert "Idle" not in {n["state"] for n in st.node_readiness(graph, live)}


def test_seldon_v1_never_leaves_a_node_at_zero_so_nothing_is_idle() -> None:
    """Seldon v1's executor readiness dials every unit, so the renderer keeps a minReplicas-0
    node at one replica (its componentSpec's `kedaSpec.minReplicaCount` 1): no v1 node is ever
    at zero, and the SeldonDeployment's state is the truth for every node."""
    sdep = next(o for o in _rendered("seldon-v1") if o["kind"] == "SeldonDeployment")
    specs = sdep["spec"]["predictors"][0]["componentSpecs"]
    keda = [c["kedaSpec"] for c in specs if "kedaSpec" in c]
    assert len(keda) == 2 and all(k["minReplicaCount"] >= 1 for k in keda)
    live = [{**sdep, "status": {"state": "Available"}}]
    assert {n["state"] for n in st.node_readiness(cascade(), live)} == {"Ready"}


def test_the_settings_store_is_ready_once_every_listed_graph_had_a_pass() -> None:
    from infergraph.operator.settings_server import READY_DEADLINE_S, SettingsStore

    now = [0.0]
    store = SettingsStore(clock=lambda: now[0])
    assert store.owed() == [("", "the list of graphs")]  # not listed yet: not ready
    store.passed("ml", "early")  # a resume pass that beat the list
    store.expect([("ml", "early"), ("ml", "cascade"), ("ml", "video")])
    assert store.owed() == [("ml", "cascade"), ("ml", "video")]
    store.passed("ml", "cascade")
    store.forget("ml", "video")  # deleted meanwhile: owed nothing
    assert store.owed() == []
    stuck = SettingsStore(clock=lambda: now[0])
    stuck.expect([("ml", "failing")])
    now[0] = READY_DEADLINE_S + 1  # a pass that keeps failing holds no one back for good
    assert stuck.owed() == []


def test_a_deleted_uid_cannot_take_the_settings_of_a_graph_recreated_under_its_name() -> None:
    """The settings store keys a graph's folders by its uid too: the deleted graph's late
    DELETED event or pass forgets nothing of the new one's, whose folders start afresh."""
    from infergraph.operator.settings_server import SettingsStore
    from infergraph.render.seldon_v2 import ServedSettings

    store = SettingsStore()
    old = {"m": ServedSettings(path="ml/cascade/m/aaa", body=b"old")}
    new = {"m": ServedSettings(path="ml/cascade/m/bbb", body=b"new")}
    store.replace("ml", "cascade", old, "uid-1")
    store.replace("ml", "cascade", new, "uid-2")  # recreated: uid-1's folder is not its own
    assert store.file("ml/cascade/m/aaa") is None
    store.forget("ml", "cascade", "uid-1")
    assert store.file("ml/cascade/m/bbb") == b"new"
    store.forget("ml", "cascade", "uid-2")
    assert store.file("ml/cascade/m/bbb") is None
