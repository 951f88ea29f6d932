"""The operator against kmock (the harness of tests/test_operator.py) when a graph's spec changes
under children that already report Ready: the pass that applies their new specs must not call
the graph Ready from the status their controllers wrote for the previous ones.

kmock keeps `metadata.generation` as a request sends it; `GenerationsEmulator` sets it as the API
server does for a custom resource (kubernetes f9cfc9d
staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/strategy.go):
PrepareForCreate sets 1 (:107-117); PrepareForUpdate keeps the stored status where the /status
subresource is installed (:128-138, as Seldon's and KEDA's CRDs install it) and adds 1 when
anything but `metadata` changed (:140-148). A write through `/status` changes no generation.
The graph's own generation is left to the tests, as in tests/test_operator.py.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
import kmock
import pytest

from tests.test_operator import (
    GRAPHS,
    NS,
    ApplyingEmulator,
    apply_graph,
    children_of,
    condition,
    eventually,
    graph_body,
    graph_status,
    running,
    server,
    settled,
)

__all__ = ["server"]  # the fixture, imported for pytest


def merged(live: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`live` after a merge patch (what kmock stores): dicts merge, None removes a key."""
    out = dict(live)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What PrepareForUpdate compares: everything but `metadata` (and `status`, which it keeps
    from the stored object)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class GenerationsEmulator(ApplyingEmulator):
    """`ApplyingEmulator` plus `metadata.generation` on the children (see the module docstring)."""

    def _versioned(self, request: kmock.Request) -> kmock.Request:
        skip = str(request.resource) in (str(kmock.resource(GRAPHS)), "v1/events")
        if skip or request.subresource or not isinstance(request.data, dict):
            return super()._versioned(request)
        data = copy.deepcopy(request.data)
        meta = data.setdefault("metadata", {})
        key = (request.resource, request.namespace, request.name)
        if request.action == kmock.action.CREATE or key not in self.objects:
            meta["generation"] = 1
        elif request.action == kmock.action.UPDATE and not self.objects[key].deleted:
            live = dict(self.objects[key].raw)
            generation = live.get("metadata", {}).get("generation", 1)
            changed = _content(merged(live, data)) != _content(live)
            meta["generation"] = generation + 1 if changed else generation
        return super()._versioned(attrs.evolve(request, data=data))


pytestmark = [pytest.mark.kmock(cls=GenerationsEmulator), pytest.mark.timeout(120)]


def _report_ready(server: kmock.KubernetesEmulator) -> None:
    """Play Seldon's and KEDA's controllers: every readiness-reporting child says Ready=True."""
    for (kind, name), obj in children_of(server, "cascade").items():
        if kind in ("ServerConfig", "PodMonitor"):  # neither reports readiness
            continue
        group, version = obj["apiVersion"].split("/")
        resource = kmock.resource(f"{group}/{version}/{kind.lower()}s")
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        server.objects[resource, NS, name].patch({"status": ready})


async def _nudge(server: kmock.KubernetesEmulator, body: dict[str, Any], mark: str) -> None:
    """An annotation-only edit of the graph `body`: kopf runs the update handler; the spec, and
    so the generation, stay."""
    body = copy.deepcopy(body)
    body["metadata"]["annotations"] = {"example.com/nudge": mark}
    await apply_graph(server, body, update=True)


def _generation(server: kmock.KubernetesEmulator, kind: str, name: str) -> int:
    return children_of(server, "cascade")[(kind, name)]["metadata"]["generation"]


async def test_a_changed_spec_is_not_ready_until_its_children_report_on_it(server) -> None:
    """Ready children, then a new memory for node `fast`: its Model's spec changes. The pass that
    applies it reports Ready=Unknown at the new observedGeneration (Seldon v2 leaves the old
    Ready=True standing until the scheduler reports on the new generation: seldon-core v2.10.2
    operator/scheduler/model.go:243-250); a later pass judges the status as written by then."""
    async with running(server, drift_interval_s=3600):  # passes here come from edits only
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        _report_ready(server)
        await _nudge(server, graph_body(), "ready")
        await eventually(lambda: condition(graph_status(server), "Ready").get("status") == "True")

        bigger = graph_body(generation=2)
        bigger["spec"]["nodes"][0]["resources"]["memory"] = "5Gi"
        await apply_graph(server, bigger, update=True)
        status = await settled(server, generation=2)
        assert _generation(server, "Model", "cascade-fast") == 2
        assert _generation(server, "Model", "cascade-accurate") == 1  # unchanged: not bumped
        ready = condition(status, "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", "NotReportedYet"), ready
        waiting = "Model/cascade-fast: applied generation 2; waiting for its controller"
        assert waiting in ready["message"], ready
        assert {n["name"]: n["state"] for n in status["nodes"]} == {
            "fast": "Unknown",
            "accurate": "Ready",
        }

        _report_ready(server)  # the controllers report on the new specs
        await _nudge(server, bigger, "reported")
        status = await eventually(
            lambda: (
                condition(graph_status(server), "Ready").get("status") == "True"
                and graph_status(server)
            )
        )
        assert status["observedGeneration"] == 2
        assert status["readyNodes"] == "2/2"
