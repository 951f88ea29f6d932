"""The operator against kmock (the harness of tests/test_operator.py) across a graph's life:
deleted and recreated under the same name, a kind uninstalled between generations, a prune
the API server refuses, and edits that change only annotations."""

from __future__ import annotations

import asyncio

import aiohttp
import kmock
import pytest

from infergraph.ports import free_port
from tests.test_operator import (
    GRAPH_PATH,
    GRAPHS,
    NS,
    ApplyingEmulator,
    Operator,
    apply_graph,
    children_of,
    collect_garbage,
    condition,
    events,
    eventually,
    graph_body,
    graph_status,
    requests,
    running,
    server,
    settled,
)

__all__ = ["server"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.kmock(cls=ApplyingEmulator), pytest.mark.timeout(120)]
KEDA = "keda.sh/v1alpha1/scaledobjects"
PODMONITORS = "monitoring.coreos.com/v1/podmonitors"


def _errors(op: Operator, stage: str) -> float:
    """`infergraph_operator_reconcile_errors_total{stage}` as the operator counted it."""
    value = op.metrics.registry.get_sample_value(
        "infergraph_operator_reconcile_errors_total", {"stage": stage}
    )
    return value or 0.0


async def _settings_codes(url: str, polls: int) -> dict[int, int]:
    """HTTP status -> how often, over `polls` GETs of `url` 50 ms apart."""
    codes: list[int] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(polls):
            async with session.get(url) as resp:
                codes.append(resp.status)
            await asyncio.sleep(0.05)
    return {code: codes.count(code) for code in set(codes)}


async def _quiet(server: kmock.KubernetesEmulator, quiet_s: float = 1.0) -> None:
    """Return once the emulator has served no request for `quiet_s` (two drift intervals), or
    after 15 s: a pass that was running when its graph went has then finished, however long
    a loaded machine made it take. A timer still reading the graph keeps it from going quiet,
    and is then seen by what the caller watches next."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    seen, since = len(requests(server)), loop.time()
    while loop.time() - since < quiet_s and loop.time() < deadline:
        await asyncio.sleep(0.05)
        if (now := len(requests(server))) != seen:
            seen, since = now, loop.time()


async def test_a_deleted_graphs_timer_leaves_a_recreated_namesake_alone(server) -> None:
    """kopf stops a timer only when its object shows a deletionTimestamp (kopf 1.45.2
    `_core/reactor/processing.py:407-412`), which a graph without a finalizer never shows: the
    deleted graph's drift timer keeps firing on its last body. It must touch nothing: no API
    call, no error counted, and above all not the settings the recreated graph of the same
    name serves to Seldon's agents (`kubectl delete -f g.yaml && kubectl apply -f g.yaml`)."""
    port = free_port()
    async with running(server, settings_url=f"http://127.0.0.1:{port}", settings_port=port) as op:
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        assert (await server.delete(f"{GRAPH_PATH}/cascade")).status == 200
        await eventually(lambda: server.objects[GRAPHS, NS, "cascade"].deleted)
        await _quiet(server)  # a pass already running when the graph went may finish
        collect_garbage(server)
        served, errors = len(requests(server)), _errors(op, "gone")
        await asyncio.sleep(2)  # four drift intervals
        asked = [r for r in requests(server)[served:] if "inferencegraphs/cascade" in str(r.url)]
        assert asked == [], "the deleted graph's timer still reads it"

        await apply_graph(server, graph_body(uid="uid-cascade-2"))
        status = await settled(server, generation=1)
        assert condition(status, "Rendered")["status"] == "True", status
        kids = children_of(server, "cascade")
        folder = kids[("Model", "cascade-fast")]["spec"]["storageUri"].rpartition(":")[2]
        url = f"http://127.0.0.1:{port}/{folder}/model-settings.json"
        assert await _settings_codes(url, 60) == {200: 60}
        assert _errors(op, "gone") == errors, "a deleted graph counts no error per interval"


def _opted_out(generation: int, kinds: str) -> dict:
    body = graph_body(generation=generation)
    body["metadata"]["annotations"] = {"infergraph.io/omit-kinds": kinds}
    return body


async def test_a_kind_uninstalled_since_the_last_generation_is_absent_to_the_prune(server):
    """KEDA uninstalled while the operator was down (its CRD and objects gone); the graph then
    opts out of ScaledObject, as the refusal tells its owner to. The prune of the ScaledObjects
    listed in `status.children` meets a discovery 404: no such kind, so no such object. It
    used to abandon the pass, leaving generation 2 stuck on `ApplyFailed` with generation 1's
    refusals, children and Ready."""
    async with running(server) as op:
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        await op.stop()
        del server.resources[KEDA]
        for key, obj in list(server.objects.items()):
            if str(key[0]) == str(kmock.resource(KEDA)) and not obj.deleted:
                obj.delete()
        await op.start()
        await eventually(lambda: graph_status(server).get("refused"))  # the restart's refusals
        await apply_graph(server, _opted_out(2, "ScaledObject"), update=True)
        status = await settled(server, generation=2)
        await asyncio.sleep(1)  # drift passes: still so
        status = graph_status(server)
    rendered, ready = condition(status, "Rendered"), condition(status, "Ready")
    assert (rendered["status"], rendered["reason"]) == ("True", "Applied"), rendered
    assert not status.get("refused"), status["refused"]
    assert "ScaledObject" not in {c["kind"] for c in status["children"]}
    assert "ScaledObject" not in ready["message"] and ready["reason"] == "NotReportedYet", ready


async def test_a_prune_the_api_server_refuses_keeps_the_child_and_reports_the_rest(server):
    """The GET of one stale child is forbidden (RBAC lost for its kind): that child stays in
    `status.children` for the next pass and `Rendered=False` names it, with one Warning Event;
    the other stale children are removed and the status describes generation 2's apply. Once
    the child can be read again a drift pass removes it."""
    monitor = f"/apis/{PODMONITORS.rsplit('/', 1)[0]}/namespaces/{NS}/podmonitors/cascade-metrics"
    forbidden = [True]
    async with running(server):
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        (
            server[f"get {monitor}"]
            << 403
            << (  # until `forbidden` is cleared
                lambda: (
                    {"kind": "Status", "message": "forbidden"} if forbidden[0] else NotImplemented
                )
            )
        )
        await apply_graph(server, _opted_out(2, "ScaledObject,PodMonitor"), update=True)
        status = await settled(server, generation=2)
        await asyncio.sleep(1.5)  # drift passes fail the same way: no second Event
        status = graph_status(server)
        kinds = {c["kind"] for c in status["children"]}
        assert "PodMonitor" in kinds and "ScaledObject" not in kinds, kinds
        assert not [k for k, _ in children_of(server, "cascade") if k == "ScaledObject"]
        rendered = condition(status, "Rendered")
        assert (rendered["status"], rendered["reason"]) == ("False", "PruneFailed"), rendered
        assert "PodMonitor/cascade-metrics" in rendered["message"]
        assert len(events(server, "PruneFailed")) == 1
        forbidden[0] = False
        await eventually(lambda: condition(graph_status(server), "Rendered")["status"] == "True")
        assert ("PodMonitor", "cascade-metrics") not in children_of(server, "cascade")
        assert "PodMonitor" not in {c["kind"] for c in graph_status(server)["children"]}


async def test_an_annotation_only_edit_that_breaks_rendering_posts_its_event(server) -> None:
    """The API server leaves `metadata.generation` alone on a metadata-only edit of a custom
    resource with a status subresource (Kubernetes API docs, CustomResourceDefinition status
    subresource), yet the `infergraph.io/omit-kinds` and `infergraph.io/engine` annotations
    drive rendering. A typo there is `RenderFailed` with one Warning Event, as the same typo
    in a spec edit is; the drift passes after it post no second one."""
    async with running(server):
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        await apply_graph(server, _opted_out(1, "ScaledObjects"), update=True)  # generation 1
        await eventually(
            lambda: condition(graph_status(server), "Rendered").get("reason") == "RenderFailed"
        )
        posted = await eventually(lambda: events(server, "RenderFailed"), timeout=5)
        assert "ScaledObjects" in posted[0]["message"]
        await asyncio.sleep(1)  # two drift passes
        assert len(events(server, "RenderFailed")) == 1
