"""The operator against kmock, an emulated Kubernetes API server (PyPI `kmock`, by kopf's author).

kmock stores objects and serves create, get, list, watch, patch, delete and discovery; it does not
run controllers. What it cannot show, and how these tests stand in for it:
- Server-side apply: kmock has no field management. `ApplyingEmulator` below adds what the
  operator relies on beyond a merge patch: an apply PATCH for a missing object creates it
  (Kubernetes API concepts, "Server-Side Apply"), and `FieldManagers` models field ownership:
  a forced apply owns exactly the fields it sends and takes them from every other manager, and
  fields it sent last time, sends no more and nobody else owns are removed
  (structured-merge-diff `merge/update.go` `Updater.Apply` and `prune`, commit 07aadf8); an
  update (any other write with `fieldManager`) owns the fields whose value it changed. An HPA's
  write through `/scale` is modelled as such an update of `spec.replicas` by
  `kube-controller-manager`: `ScaleHandler.ToParent` gives the scale writer the replicas path and
  "steals" it from every other manager (kubernetes
  `staging/src/k8s.io/apimachinery/pkg/util/managedfields/scalehandler.go:127-138`, commit
  025f283). Lists count as one field (atomic: CRD lists without `x-kubernetes-list-type`).
- Garbage collection: kmock deletes nothing by ownerReference. `collect_garbage` does what the
  kube-controller-manager's garbage collector does for background deletion (delete dependents
  whose owner uid is gone), so the delete test checks the ownerReferences the operator wrote.
- `metadata.generation` and `uid` are set by the tests (a real API server sets them).
- Seldon's controllers: the tests write the `Ready` conditions Seldon would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import kmock
import kopf
import pytest
import yaml

from infergraph.graph.crd import PRINTER_COLUMNS
from infergraph.operator.config import OperatorConfig
from infergraph.operator.handlers import run
from infergraph.operator.kube import APPLY_CONTENT_TYPE, KubeClient
from infergraph.operator.metrics import OperatorMetrics
from infergraph.operator.sweep import sweep_forever
from infergraph.ports import free_port

REPO = Path(__file__).resolve().parent.parent
NS = "ml"
GRAPHS = "infergraph.io/v1alpha1/inferencegraphs"
SERVER_CONFIGS = "mlops.seldon.io/v1alpha1/serverconfigs"
FIELD_MANAGER = "infergraph-operator"
# Resources the Seldon v2/v1 renderers emit, as discovery reports them.
CHILD_RESOURCES = {
    "mlops.seldon.io/v1alpha1/models": "Model",
    "mlops.seldon.io/v1alpha1/servers": "Server",
    "mlops.seldon.io/v1alpha1/serverconfigs": "ServerConfig",
    "mlops.seldon.io/v1alpha1/pipelines": "Pipeline",
    "machinelearning.seldon.io/v1/seldondeployments": "SeldonDeployment",
    "keda.sh/v1alpha1/scaledobjects": "ScaledObject",
    "autoscaling/v2/horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "monitoring.coreos.com/v1/podmonitors": "PodMonitor",
    "serving.kserve.io/v1beta1/inferenceservices": "InferenceService",
    "serving.kserve.io/v1alpha1/servingruntimes": "ServingRuntime",
    "serving.kserve.io/v1alpha1/inferencegraphs": "InferenceGraph",
}


@attrs.frozen
class PatchTestFailed(kmock.KubernetesError):
    """A JSON patch `test` op that does not hold: the API server answers 422, which kopf
    takes as "newer changes pending, patch again next cycle"."""

    status: int = 422
    reason: str = "Invalid"


class ApplyingEmulator(kmock.KubernetesEmulator):
    """kmock plus what a real API server does that the operator and kopf rely on: an apply
    PATCH for a missing object creates it, every write gets a new `metadata.resourceVersion`,
    `generateName` gives a name (kopf's Events), and a JSON patch whose `test` of it fails is
    refused with 422 (optimistic concurrency)."""

    _version: int = 0
    # A URL part whose PATCH is held until `release` is set (a slow API server mid-pass).
    hold: str | None = None
    held: asyncio.Event | None = None
    release: asyncio.Event | None = None

    async def _handle(self, request: kmock.Request) -> Any:
        if self.hold and self.hold in str(request.url) and request.method == kmock.method.PATCH:
            assert self.held is not None and self.release is not None
            self.held.set()
            await self.release.wait()
        if request.action == kmock.action.UPDATE and isinstance(request.data, list):
            self._check_tests(request)
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            changed = self._versioned(self._managed(self._create_on_apply(request)))
            # kmock matches reactions against the requests it recorded: record the changed one.
            index = next(i for i, r in enumerate(self._requests) if r is request)
            self._requests[index] = request = changed
        return await super()._handle(request)

    def _check_tests(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].get("metadata", {}).get("resourceVersion")
        for op in request.data:
            tests_version = op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion"
            if tests_version and op.get("value") != current:
                raise PatchTestFailed(
                    message=f"resourceVersion is {current}, not {op.get('value')}"
                )

    def _create_on_apply(self, request: kmock.Request) -> kmock.Request:
        applying = request.headers.get("Content-Type", "").startswith(APPLY_CONTENT_TYPE)
        if applying and request.action == kmock.action.UPDATE and request.name:
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return attrs.evolve(request, action=kmock.action.CREATE, method="POST")
        return request

    def _managed(self, request: kmock.Request) -> kmock.Request:
        """Field ownership for writes that name a field manager (the operator's applies, the
        tests' stand-in for an HPA); kopf's own patches name none and are left as they are."""
        manager = request.params.get("fieldManager")
        if not manager or request.subresource or not isinstance(request.data, dict):
            return request
        key = (request.resource, request.namespace, request.name)
        live = (
            self.objects[key].raw if key in self.objects and not self.objects[key].deleted else {}
        )
        applying = request.headers.get("Content-Type", "").startswith(APPLY_CONTENT_TYPE)
        data = FieldManagers.write(dict(live), copy.deepcopy(request.data), manager, applying)
        return attrs.evolve(request, data=data)

    def _versioned(self, request: kmock.Request) -> kmock.Request:
        type(self)._version += 1
        version = str(type(self)._version)
        data = copy.deepcopy(request.data)
        if isinstance(data, list):  # JSON patch
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        elif isinstance(data, dict):  # merge patch, apply, create
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = version
            if request.action == kmock.action.CREATE and "name" not in meta:
                meta["name"] = meta.get("generateName", "") + version

        return attrs.evolve(request, data=data)


FieldPath = tuple[str, ...]
# Set by the API server, never owned by a manager.
UNOWNED: set[FieldPath] = {
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "resourceVersion"),
    ("metadata", "managedFields"),
    ("metadata", "uid"),
    ("metadata", "generation"),
}


class FieldManagers:
    """The part of server-side apply's field management the operator depends on (see the module
    docstring for the source): who owns which leaf field, and what an apply removes."""

    @staticmethod
    def leaves(obj: Any, prefix: FieldPath = ()) -> dict[FieldPath, Any]:
        """Leaf field path -> value; a mapping is walked, anything else is one field."""
        if not isinstance(obj, dict) or (prefix and not obj):
            return {} if prefix in UNOWNED or prefix[:1] == ("status",) else {prefix: obj}
        out: dict[FieldPath, Any] = {}
        for key, value in obj.items():
            out.update(FieldManagers.leaves(value, (*prefix, key)))
        return out

    @staticmethod
    def owners(live: dict[str, Any]) -> dict[str, set[FieldPath]]:
        """Manager -> the field paths it owns, as `write` recorded them."""
        entries = (live.get("metadata") or {}).get("managedFields") or []
        return {e["manager"]: {tuple(p) for p in e["fields"]} for e in entries}

    @staticmethod
    def write(
        live: dict[str, Any], data: dict[str, Any], manager: str, applying: bool
    ) -> dict[str, Any]:
        """`data` as the API server would store it: ownership recorded in
        `metadata.managedFields` (this model's own encoding: manager -> list of paths) and, for
        an apply, the fields the manager gave up set to None (removed by the merge)."""
        owners = FieldManagers.owners(live)
        entries = (live.get("metadata") or {}).get("managedFields") or []
        operations = {e["manager"]: e["operation"] for e in entries}
        operations[manager] = "Apply" if applying else "Update"
        sent = FieldManagers.leaves(data)
        before = FieldManagers.leaves(live)
        if applying:  # forced: the applier owns exactly what it sent
            taken = set(sent)
            others = set().union(*(f for m, f in owners.items() if m != manager))
            for path in owners.get(manager, set()) - taken - others:
                FieldManagers.put(data, path, None)
            owners[manager] = set()
        else:  # an update owns what it changed
            taken = {p for p, v in sent.items() if before.get(p, object()) != v}
        owners = {m: f - taken for m, f in owners.items()}
        owners[manager] = owners.get(manager, set()) | taken
        data.setdefault("metadata", {})["managedFields"] = [
            {"manager": m, "operation": operations[m], "fields": sorted(list(p) for p in f)}
            for m, f in owners.items()
            if f
        ]
        return data

    @staticmethod
    def put(data: dict[str, Any], path: FieldPath, value: Any) -> None:
        for part in path[:-1]:
            data = data.setdefault(part, {})
        data[path[-1]] = value


def collect_garbage(server: kmock.KubernetesEmulator) -> list[tuple[Any, ...]]:
    """Delete every object whose controller owner no longer exists (background propagation)."""
    live_uids = {
        obj.get("metadata", {}).get("uid") for _, obj in server.objects.items() if not obj.deleted
    }
    doomed = []
    for key, obj in list(server.objects.items()):
        if obj.deleted:
            continue
        owners = obj.get("metadata", {}).get("ownerReferences") or []
        if owners and not any(o["uid"] in live_uids for o in owners):
            doomed.append(key)
    for key in doomed:
        server.objects[key].delete()
    return doomed


def graph_body(name: str = "cascade", uid: str = "uid-cascade", generation: int = 1) -> dict:
    doc = yaml.safe_load((REPO / "k8s/graphs/cascade.yaml").read_text())
    doc["metadata"].update(name=name, namespace=NS, uid=uid, generation=generation)
    return doc


GRAPH_PATH = f"/apis/infergraph.io/v1alpha1/namespaces/{NS}/inferencegraphs"


async def apply_graph(server: kmock.KubernetesEmulator, body: dict, update: bool = False) -> None:
    """Create (or with `update`, patch) the graph through the API, so watchers see the event."""
    if update:
        resp = await server.patch(f"{GRAPH_PATH}/{body['metadata']['name']}", json=body)
    else:
        resp = await server.post(GRAPH_PATH, json=body)
    assert resp.status in (200, 201), await resp.text()


def children_of(server: kmock.KubernetesEmulator, graph: str) -> dict[tuple[str, str], dict]:
    """(kind, name) -> live object, for every live object labelled with `graph`."""
    out = {}
    for (resource, _ns, name), obj in server.objects.items():
        if obj.deleted or str(resource) == str(kmock.resource(GRAPHS)):
            continue
        labels = obj.get("metadata", {}).get("labels") or {}
        if labels.get("infergraph.io/graph") == graph:
            out[(obj["kind"], name)] = dict(obj.raw)
    return out


def graph_status(server: kmock.KubernetesEmulator, name: str = "cascade") -> dict:
    return dict(server.objects[GRAPHS, NS, name].raw.get("status") or {})


def column_value(obj: dict, path: str) -> Any:
    """The two JSONPath forms the CRD's printer columns use: `.a.b` and
    `.status.conditions[?(@.type=="X")].field`."""
    if "[?(@.type==" in path:
        head, rest = path.split("[?(@.type==", 1)
        kind, field = rest.split(")].", 1)
        items = column_value(obj, head) or []
        match = [i for i in items if i.get("type") == kind.strip('"')]
        return match[0].get(field) if match else None
    value: Any = obj
    for part in path.strip(".").split("."):
        value = (value or {}).get(part)
    return value


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until `check()` is truthy; its last value is returned, a timeout fails the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {timeout}s; last value {value!r}")
        await asyncio.sleep(0.1)


async def settled(server: kmock.KubernetesEmulator, generation: int, name: str = "cascade") -> dict:
    """The graph's status once the operator has observed `generation`."""

    def observed() -> dict:
        status = graph_status(server, name)
        return status if status.get("observedGeneration") == generation else {}

    return await eventually(observed)


def requests(server: kmock.KubernetesEmulator) -> list[kmock.Request]:
    """Every request the emulator has served, in order."""
    return list(server)


def events(server: kmock.KubernetesEmulator, reason: str) -> list[dict]:
    return [
        dict(obj.raw)
        for (resource, _ns, _name), obj in server.objects.items()
        if not obj.deleted
        and str(resource) == str(kmock.resource("v1/events"))
        and obj.get("reason") == reason
    ]


class Operator:
    """The real operator (kopf + our handlers) in a thread of its own, as a Deployment runs it.

    A thread, not a task: on stopping, kopf cancels every task it did not start in its loop.
    """

    def __init__(self, server: kmock.KubernetesEmulator, **settings: Any) -> None:
        self.server = server
        self.url = str(server.url).rstrip("/")
        self.config = OperatorConfig(
            storage_uri="s3://team-bucket/graphs",
            drift_interval_s=settings.pop("drift_interval_s", 0.5),
            retry_base_s=settings.pop("retry_base_s", 0.2),
            retry_max_s=settings.pop("retry_max_s", 1.0),
            metrics_port=free_port(),
            health_port=free_port(),
            **settings,
        )
        self.metrics = OperatorMetrics()
        self.thread: threading.Thread | None = None
        self.stop_flag = threading.Event()

    def login(self, **_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=self.url, default_namespace=NS)

    async def start(self) -> None:
        self.stop_flag = threading.Event()
        ready = threading.Event()
        coro = run(self.config, self.login, stop=self.stop_flag, ready=ready, metrics=self.metrics)
        self.thread = threading.Thread(target=asyncio.run, args=(coro,), daemon=True)
        self.thread.start()
        await eventually(ready.is_set)

    async def stop(self) -> None:
        if self.thread is not None:
            self.stop_flag.set()
            await eventually(lambda: not self.thread.is_alive())
            self.thread = None


@pytest.fixture
def server(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.resources[GRAPHS] = kmock.ResourceInfo(
        kind="InferenceGraph",
        singular="inferencegraph",
        namespaced=True,
        subresources={"status"},
        verbs={"get", "list", "watch", "patch", "create", "delete"},
    )
    for plural, kind in CHILD_RESOURCES.items():
        kmock.resources[plural] = kmock.ResourceInfo(kind=kind, namespaced=True)
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True)
    # kopf starts its watchers once discovery shows namespaces (every real cluster serves them).
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch"}
    )
    return kmock


@contextlib.asynccontextmanager
async def running(server: kmock.KubernetesEmulator, **settings: Any) -> AsyncIterator[Operator]:
    """The operator with `settings` (OperatorConfig fields), stopped on leaving."""
    op = Operator(server, **settings)
    await op.start()
    try:
        yield op
    finally:
        await op.stop()


@pytest.fixture
async def operator(server: kmock.KubernetesEmulator) -> AsyncIterator[Operator]:
    async with running(server) as op:
        yield op


pytestmark = [pytest.mark.kmock(cls=ApplyingEmulator), pytest.mark.timeout(120)]


async def test_create_applies_owned_children_and_reports_status(server, operator) -> None:
    await apply_graph(server, graph_body())
    status = await settled(server, generation=1)
    kids = children_of(server, "cascade")
    kinds = sorted({kind for kind, _ in kids})
    assert kinds == ["Model", "Pipeline", "PodMonitor", "ScaledObject", "Server", "ServerConfig"], (
        kinds
    )
    for (kind, name), obj in kids.items():
        meta = obj["metadata"]
        assert meta["namespace"] == NS, (kind, name)
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "infergraph.io/v1alpha1",
                "kind": "InferenceGraph",
                "name": "cascade",
                "uid": "uid-cascade",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], (kind, name)
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "infergraph-operator"
    assert condition(status, "Valid")["status"] == "True"
    assert condition(status, "Rendered")["status"] == "True"
    # Nothing has reported yet (no Seldon controller here): Unknown, neither True nor False.
    assert condition(status, "Ready")["status"] == "Unknown"
    assert condition(status, "Ready")["reason"] == "NotReportedYet"
    assert status["engine"] == "seldon-v2"
    assert status["endpoint"] == f"http://seldon-mesh.{NS}/v2/models/cascade/infer"
    assert status["readyNodes"] == "0/2"
    assert float(status["pricePerHour"]) > 0
    assert sorted(c["name"] for c in status["children"]) == sorted(n for _, n in kids)
    # Every printer column `kubectl get inferencegraphs` shows has a value to show.
    graph = dict(server.objects[GRAPHS, NS, "cascade"].raw)
    for column in PRINTER_COLUMNS:
        if column["jsonPath"].startswith(".status"):  # creationTimestamp: the API server's
            assert column_value(graph, column["jsonPath"]) not in (None, ""), column


async def test_update_follows_the_spec_and_removes_a_dropped_nodes_objects(server, operator):
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    before = children_of(server, "cascade")
    assert ("Model", "cascade-accurate") in before

    smaller = graph_body(generation=2)
    smaller["spec"]["nodes"] = [n for n in smaller["spec"]["nodes"] if n["name"] == "fast"]
    smaller["spec"]["nodes"][0]["batching"]["maxBatchSize"] = 8
    # A merge patch (what kmock applies): null removes the old topology's key.
    smaller["spec"]["graph"] = {"node": "fast", "sequence": None}
    await apply_graph(server, smaller, update=True)
    status = await settled(server, generation=2)

    after = children_of(server, "cascade")
    gone = set(before) - set(after)
    assert {("Model", "cascade-accurate"), ("Server", "cascade-accurate")} <= gone, gone
    assert not any("accurate" in name for _, name in after), sorted(after)
    assert ("Model", "cascade-fast") in after
    assert "removed" in condition(status, "Rendered")["message"]
    assert sorted(c["name"] for c in status["children"]) == sorted(n for _, n in after)
    assert status["readyNodes"] == "0/1"


async def test_invalid_graph_gets_condition_and_event_and_no_children(server, operator):
    bad = graph_body(name="broken", uid="uid-broken")
    bad["spec"]["graph"] = {"sequence": [{"node": "fast"}, {"node": "ghost"}]}
    await apply_graph(server, bad)
    status = await settled(server, generation=1, name="broken")

    valid = condition(status, "Valid")
    assert valid["status"] == "False" and valid["reason"] == "GraphInvalid"
    assert "ghost" in valid["message"]
    assert condition(status, "Rendered")["status"] == "False"
    warned = await eventually(lambda: events(server, "GraphInvalid"))
    assert warned[0]["type"] == "Warning" and "ghost" in warned[0]["message"]
    assert warned[0]["involvedObject"]["name"] == "broken"
    assert children_of(server, "broken") == {}

    # A valid graph that turns invalid keeps its children exactly as they were.
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    before = children_of(server, "cascade")
    broken = graph_body(generation=2)
    broken["spec"]["nodes"][0]["resources"]["gpu"] = -1
    await apply_graph(server, broken, update=True)
    status = await settled(server, generation=2)
    assert condition(status, "Valid")["status"] == "False"
    assert "gpu" in condition(status, "Valid")["message"]
    # The printer columns do not go on showing the last valid generation as if current.
    assert status.get("engine") is None and status.get("endpoint") is None
    assert status.get("readyNodes") is None and status.get("pricePerHour") is None
    assert condition(status, "Ready")["status"] == "Unknown"
    assert condition(status, "Ready")["reason"] == "GraphInvalid"
    assert status["children"], "still listed: a later valid generation prunes against them"
    served = len(requests(server))
    await asyncio.sleep(1.5)  # several drift-timer passes
    touched = [
        r
        for r in requests(server)[served:]
        if r.method != kmock.method.GET
        and "/status" not in str(r.url)
        and "inferencegraphs" not in str(r.url)
        and "events" not in str(r.url)
    ]
    assert touched == [], "an invalid generation touches no child"
    assert set(children_of(server, "cascade")) == set(before)


async def test_a_pod_that_outgrows_its_class_is_a_condition_and_one_event(server, operator):
    """The graph is valid and applied, but a node's Server pod (MLServer's 3.9 cores with the
    agent and rclone beside it) outgrows a g6.xlarge's 3.92 allocatable cores: no node could
    ever hold it. `Schedulable` says so, by node and class, and one Warning is posted."""
    await apply_graph(server, graph_body())
    status = await settled(server, generation=1)
    fits = condition(status, "Schedulable")
    assert (fits["status"], fits["reason"]) == ("True", "PodsFitClasses"), fits

    big = graph_body(generation=2)
    big["spec"]["nodes"][1]["resources"]["cpu"] = "3900m"
    await apply_graph(server, big, update=True)
    status = await settled(server, generation=2)
    assert condition(status, "Rendered")["status"] == "True"
    fits = condition(status, "Schedulable")
    assert (fits["status"], fits["reason"]) == ("False", "PodOutgrowsClass"), fits
    assert "node 'accurate'" in fits["message"] and "'g6.xlarge'" in fits["message"]
    assert "with what seldon-v2 adds" in fits["message"]
    warned = await eventually(lambda: events(server, "PodOutgrowsClass"))
    assert warned[0]["type"] == "Warning" and "accurate" in warned[0]["message"]
    await asyncio.sleep(1.5)  # several drift-timer passes
    assert len(events(server, "PodOutgrowsClass")) == 1

    await apply_graph(server, graph_body(generation=3), update=True)
    status = await settled(server, generation=3)
    assert condition(status, "Schedulable")["status"] == "True"


async def test_the_operators_catalog_says_what_its_nodes_leave(server, tmp_path) -> None:
    """INFERGRAPH_PRICE_CATALOG (the chart's priceCatalog) with what `infergraph node-catalog`
    wrote: g6.xlarge Nodes whose DaemonSets leave 3.5 cores. A 3.3-core node's Server pod
    (3.55 with the agent and rclone) fits EKS's default 3.92, not these Nodes."""
    from infergraph.graph.plan import parse_graph
    from infergraph.operator import pricing
    from infergraph.operator.reconcile import graph_document
    from infergraph.render import render
    from infergraph.render.options import RenderOptions

    body = graph_body()
    body["spec"]["nodes"][1]["resources"]["cpu"] = "3300m"
    graph = parse_graph(graph_document(body), "cascade")
    objs = render(graph, "seldon-v2", RenderOptions(storage_uri="s3://team-bucket/graphs"))
    by_rule = pricing.priced(graph, None, "seldon-v2", objs)
    assert by_rule.fit.status == "True", by_rule.fit
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(
        "classes:\n  g6.xlarge: {allocatable_vcpus: 3.5, allocatable_memory_gib: 14.5}\n"
    )
    async with running(server, price_catalog=str(nodes)):
        await apply_graph(server, body)
        status = await settled(server, generation=1)
    fits = condition(status, "Schedulable")
    assert (fits["status"], fits["reason"]) == ("False", "PodOutgrowsClass"), fits
    assert "node 'accurate'" in fits["message"] and "1.01x its allocatable" in fits["message"]


async def test_observed_nodes_decide_what_a_class_leaves(server, tmp_path) -> None:
    """With `observe_nodes` (the chart's observeNodes) the operator reads the Nodes and their
    per-node pods itself: a g6.xlarge Node allocating 3920m whose DaemonSet pods ask 420m
    leaves 3.5 cores, so the 3.3-core node's Server pod (3.55) is not Schedulable there; a
    Deployment's pod on the same Node does not count."""
    server.resources["v1/nodes"] = kmock.ResourceInfo(kind="Node", namespaced=False)
    server.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
    from tests.test_node_catalog import node, pod

    gpu = node("gpu-1", "g6.xlarge", "3920m", "15000Mi", capacity=("4", "16029820Ki"))
    assert (await server.post("/api/v1/nodes", json=gpu)).status in (200, 201)
    for name, owner, cpu in (
        ("dcgm", "DaemonSet", "320m"),
        ("proxy", "DaemonSet", "100m"),
        ("web", "ReplicaSet", "2"),
    ):
        created = await server.post(
            "/api/v1/namespaces/kube-system/pods", json=pod(name, "gpu-1", owner, {"cpu": cpu})
        )
        assert created.status in (200, 201)
    body = graph_body()
    body["spec"]["nodes"][1]["resources"]["cpu"] = "3300m"
    async with running(server, observe_nodes=True):
        await apply_graph(server, body)
        status = await settled(server, generation=1)
    fits = condition(status, "Schedulable")
    assert (fits["status"], fits["reason"]) == ("False", "PodOutgrowsClass"), fits
    assert "node 'accurate'" in fits["message"]
    assert "g6.xlarge as the cluster's Nodes leave it" in fits["message"]


async def test_nodes_it_may_not_read_leave_the_catalogs_figures(server) -> None:
    """Observation on, but the cluster serves no Node list to the operator (no RBAC here,
    no such resource): the catalog's rule stands and the graph reconciles as before."""
    async with running(server, observe_nodes=True):
        await apply_graph(server, graph_body())
        status = await settled(server, generation=1)
    fits = condition(status, "Schedulable")
    assert (fits["status"], fits["reason"]) == ("True", "PodsFitClasses"), fits
    assert "observed" not in fits["message"] and "Nodes leave" not in fits["message"]
    assert condition(status, "Rendered")["status"] == "True"


async def test_operator_keeps_serving_after_an_invalid_graph(server, operator):
    bad = graph_body(name="broken", uid="uid-broken")
    bad["spec"]["nodes"] = []
    await apply_graph(server, bad)
    await settled(server, generation=1, name="broken")
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    assert children_of(server, "cascade")


async def test_delete_leaves_children_to_the_garbage_collector(server, operator):
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    kids = children_of(server, "cascade")
    resp = await server.delete(f"{GRAPH_PATH}/cascade")
    assert resp.status == 200
    # No finalizer of ours holds it: the API server deletes the graph at once.
    await eventually(lambda: server.objects[GRAPHS, NS, "cascade"].deleted)
    # kmock has no garbage collector: run the model of it over what the operator wrote.
    collected = collect_garbage(server)
    assert {(k[2]) for k in collected} == {name for _, name in kids}
    assert children_of(server, "cascade") == {}


async def test_a_graph_left_at_uninstall_is_not_stranded_on_a_finalizer(server, operator):
    """`helm uninstall` removes the operator (and with `crds.keep: false` the CRD) while graphs
    remain: nothing may be left waiting for an operator that is gone. The graph carries no
    finalizer of ours, so it goes like any object and the garbage collector takes its children."""
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    served = len(requests(server))
    await eventually(  # a few drift passes, each a chance to add a finalizer
        lambda: sum("models/cascade-fast" in str(r.url) for r in requests(server)[served:]) >= 6
    )
    graph = server.objects[GRAPHS, NS, "cascade"]
    assert not graph.get("metadata", {}).get("finalizers"), graph["metadata"]
    await operator.stop()  # helm uninstall
    assert (await server.delete(f"{GRAPH_PATH}/cascade")).status == 200
    await eventually(lambda: server.objects[GRAPHS, NS, "cascade"].deleted, timeout=5)
    collect_garbage(server)
    assert children_of(server, "cascade") == {}


async def test_the_finalizer_an_older_operator_left_is_removed(server, operator):
    body = graph_body()
    body["metadata"]["finalizers"] = ["operator.infergraph.io/finalizer"]
    await apply_graph(server, body)
    await settled(server, generation=1)
    await eventually(
        lambda: not server.objects[GRAPHS, NS, "cascade"].get("metadata", {}).get("finalizers")
    )


async def test_restart_reapplies_the_same_objects_without_duplicates(server, operator):
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    before = children_of(server, "cascade")
    await operator.stop()
    served = len(requests(server))
    await operator.start()
    # The resume handler and the timer apply again: same names, no object created anew.
    await eventually(
        lambda: (
            graph_status(server).get("conditions")
            and len([r for r in requests(server) if r.method == kmock.method.PATCH]) > 0
        )
    )
    await asyncio.sleep(1.5)
    after = children_of(server, "cascade")
    assert set(after) == set(before)
    new_posts = [r for r in requests(server)[served:] if r.method == kmock.method.POST]
    assert not [r for r in new_posts if "events" not in str(r.url)], new_posts
    for (resource, _ns, name), obj in server.objects.items():
        if str(resource) != str(kmock.resource("v1/events")):
            assert None not in list(obj.history), f"{name} was deleted and created again"


async def test_drift_timer_restores_deleted_and_edited_children(server, operator):
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    model = f"/apis/mlops.seldon.io/v1alpha1/namespaces/{NS}/models/cascade-fast"
    rendered_memory = children_of(server, "cascade")[("Model", "cascade-fast")]["spec"]["memory"]
    resp = await server.delete(model)
    assert resp.status == 200
    edited = f"/apis/mlops.seldon.io/v1alpha1/namespaces/{NS}/servers/cascade-accurate"
    resp = await server.patch(edited, json={"spec": {"serverConfig": "hand-edited"}})
    assert resp.status == 200

    restored = await eventually(
        lambda: children_of(server, "cascade").get(("Model", "cascade-fast"))
    )
    history = list(
        server.objects[
            kmock.resource("mlops.seldon.io/v1alpha1/models"), NS, "cascade-fast"
        ].history
    )
    assert None in history, "the hand deletion is in the object's history"
    assert restored["spec"]["memory"] == rendered_memory
    assert restored["metadata"]["ownerReferences"][0]["uid"] == "uid-cascade"
    await eventually(
        lambda: (
            children_of(server, "cascade")[("Server", "cascade-accurate")]["spec"]["serverConfig"]
            == "cascade-accurate"
        )
    )


SCALER = "kube-controller-manager"  # the HPA controller's field manager (KEDA's HPAs too)


async def test_autoscaled_replicas_belong_to_the_autoscaler(server, operator):
    """An HPA scales a Model/Server through `/scale`; no operator pass may take it back, and
    the operator's apply never owns `spec.replicas` of an object a scaler targets."""
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    kids = children_of(server, "cascade")
    targets = {
        (o["spec"]["scaleTargetRef"]["kind"], o["spec"]["scaleTargetRef"]["name"])
        for (kind, _), o in kids.items()
        if kind == "ScaledObject"
    }
    assert ("Model", "cascade-accurate") in targets and ("Server", "cascade-fast") in targets
    for kind, name in targets:  # the HPA's scale-up, as ScaleHandler.ToParent records it
        url = f"/apis/mlops.seldon.io/v1alpha1/namespaces/{NS}/{kind.lower()}s/{name}"
        resp = await server.patch(
            url, json={"spec": {"replicas": 3}}, params={"fieldManager": SCALER}
        )
        assert resp.status == 200, await resp.text()
    served = len(requests(server))

    def applied_again() -> bool:
        later = [r for r in requests(server)[served:] if r.method == kmock.method.PATCH]
        return sum("models/cascade-accurate" in str(r.url) for r in later) >= 3

    await eventually(applied_again)  # three drift passes
    kids = children_of(server, "cascade")
    assert {t: kids[t]["spec"].get("replicas") for t in targets} == dict.fromkeys(targets, 3)
    applies = [
        r.data
        for r in requests(server)
        if r.headers.get("Content-Type", "") == APPLY_CONTENT_TYPE
        and (r.data["kind"], r.data["metadata"]["name"]) in targets
    ]
    assert applies and not [a for a in applies if "replicas" in a["spec"]]
    for target in targets:
        owners = FieldManagers.owners(kids[target])
        assert ("spec", "replicas") in owners[SCALER], target
        assert ("spec", "replicas") not in owners[FIELD_MANAGER], target


async def test_readiness_comes_from_the_engine_objects(server, operator):
    await apply_graph(server, graph_body())
    status = await settled(server, generation=1)
    assert condition(status, "Ready")["reason"] == "NotReportedYet"
    # Play Seldon's and KEDA's controllers: every object reports Ready (the plumbing Server and
    # the gate/pass Models too: they count for every node).
    for kind, name in children_of(server, "cascade"):
        if kind in ("ServerConfig", "PodMonitor"):  # neither reports readiness
            continue
        plural = {"ScaledObject": "scaledobjects"}.get(kind, kind.lower() + "s")
        group = "keda.sh" if kind == "ScaledObject" else "mlops.seldon.io"
        url = f"/apis/{group}/v1alpha1/namespaces/{NS}/{plural}/{name}/status"
        ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        assert (await server.patch(url, json=ready)).status == 200
    status = await eventually(
        lambda: (
            condition(graph_status(server), "Ready").get("status") == "True"
            and graph_status(server)
        )
    )
    assert status["readyNodes"] == "2/2"
    assert all(n["ready"] and n["state"] == "Ready" for n in status["nodes"])


async def test_apply_requests_carry_field_manager_and_force(server, operator):
    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    applies = [
        r for r in requests(server) if r.headers.get("Content-Type", "") == APPLY_CONTENT_TYPE
    ]
    assert applies
    assert all(r.params == {"fieldManager": FIELD_MANAGER, "force": "true"} for r in applies)


async def test_operator_exports_prometheus_metrics(server, operator):
    import aiohttp

    await apply_graph(server, graph_body())
    await settled(server, generation=1)
    url = f"http://127.0.0.1:{operator.config.metrics_port}/metrics"

    async def scrape() -> str:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert resp.status == 200
            return await resp.text()

    created = 'infergraph_operator_reconciles_total{result="ok",trigger="create"} 1.0'
    text = ""
    for _ in range(100):
        text = await scrape()
        if created in text:
            break
        await asyncio.sleep(0.1)
    assert created in text, text
    assert 'infergraph_operator_reconcile_duration_seconds_count{trigger="create"} 1.0' in text
    assert "# TYPE infergraph_operator_reconcile_errors_total counter" in text


async def test_cli_operator_stops_cleanly_on_sigterm(server, tmp_path) -> None:
    """`infergraph operator` as the chart's Deployment runs it: kubeconfig login, SIGTERM."""
    import os
    import signal
    import sys

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(server.url).rstrip("/")}}],
                "users": [{"name": "test", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": "kmock",
                        "context": {"cluster": "kmock", "user": "test", "namespace": NS},
                    }
                ],
                "current-context": "kmock",
            }
        )
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "INFERGRAPH_STORAGE_URI": "s3://team-bucket/graphs",
        "INFERGRAPH_METRICS_PORT": str(free_port()),
        "INFERGRAPH_HEALTH_PORT": str(free_port()),
    }
    cli = str(Path(sys.executable).with_name("infergraph"))
    proc = await asyncio.create_subprocess_exec(
        # Cluster-wide: with --namespace, kopf lists /api/v1/namespaces, a path kmock 0.8
        # cannot parse (its path parser expects a namespace after "namespaces").
        cli,
        "operator",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await apply_graph(server, graph_body())
        reached = await settled(server, generation=1, name="cascade")
    except AssertionError:
        reached = {}
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert reached, output.decode()[-3000:]
    assert proc.returncode == 0, output.decode()[-2000:]
    assert b"operator stopped cleanly" in output


async def test_apply_failure_is_reported_and_retried(server, operator) -> None:
    v1 = "machinelearning.seldon.io/v1/seldondeployments"
    del server.resources[v1]  # the cluster has no Seldon Core v1 installed
    body = graph_body()
    body["metadata"]["annotations"] = {"infergraph.io/engine": "seldon-v1"}
    await apply_graph(server, body)
    status = await settled(server, generation=1)
    rendered = condition(status, "Rendered")
    assert rendered["status"] == "False" and rendered["reason"] == "ApplyFailed"
    assert "SeldonDeployment" in rendered["message"]
    assert await eventually(lambda: events(server, "ApplyFailed"))
    await asyncio.sleep(2)  # the drift timer fails again about four times
    assert len(events(server, "ApplyFailed")) == 1, "one Event per failure, not per retry"
    server.resources[v1] = kmock.ResourceInfo(kind="SeldonDeployment", namespaced=True)
    # The drift timer (and kopf's retry) apply again once the kind is served.
    await eventually(lambda: condition(graph_status(server), "Rendered").get("status") == "True")
    assert ("SeldonDeployment", "cascade") in children_of(server, "cascade")
    # The v1 cascade routes with a Seldon-protocol ROUTER unit: the executor's Seldon path.
    sdep = children_of(server, "cascade")[("SeldonDeployment", "cascade")]
    assert sdep["spec"]["protocol"] == "seldon"
    assert graph_status(server)["endpoint"] == (
        f"http://cascade-default.{NS}:8000/api/v1.0/predictions"
    )


async def test_an_object_of_someone_elses_is_not_taken_over(server, operator) -> None:
    """A Model named like a child but owned by another object stays as it is: the graph says
    which object and whose, posts an Event, and applies every other child."""
    theirs = {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "cascade-fast",
            "namespace": NS,
            "uid": "uid-theirs",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "team-a-rollout",
                    "uid": "uid-team-a",
                    "controller": True,
                }
            ],
        },
        "spec": {"storageUri": "s3://team-a/model", "requirements": ["sklearn"]},
    }
    # Its owner exists (the garbage collector deletes dependents of a missing owner).
    server.resources["apps/v1/deployments"] = kmock.ResourceInfo(kind="Deployment", namespaced=True)
    owner = {"apiVersion": "apps/v1", "kind": "Deployment"}
    owner["metadata"] = {"name": "team-a-rollout", "namespace": NS, "uid": "uid-team-a"}
    deployments = f"/apis/apps/v1/namespaces/{NS}/deployments"
    assert (await server.post(deployments, json=owner)).status in (200, 201)
    models = f"/apis/mlops.seldon.io/v1alpha1/namespaces/{NS}/models"
    assert (await server.post(models, json=theirs)).status in (200, 201)
    await apply_graph(server, graph_body())
    status = await settled(server, generation=1)

    live = dict(
        server.objects[kmock.resource("mlops.seldon.io/v1alpha1/models"), NS, "cascade-fast"]
    )
    assert live["spec"] == theirs["spec"], "the other owner's spec is untouched"
    assert live["metadata"]["ownerReferences"] == theirs["metadata"]["ownerReferences"]
    rendered = condition(status, "Rendered")
    assert rendered["status"] == "False" and rendered["reason"] == "TakeoverRefused"
    assert "Model/cascade-fast" in rendered["message"]
    assert "Deployment/team-a-rollout" in rendered["message"]
    assert [(r["kind"], r["name"], r["reason"]) for r in status["refused"]] == [
        ("Model", "cascade-fast", "TakeoverRefused")
    ]
    warned = await eventually(lambda: events(server, "TakeoverRefused"))
    assert "Model/cascade-fast" in warned[0]["message"]
    assert "Deployment/team-a-rollout" in warned[0]["message"]
    # Everything else is applied and listed; the refused object is not ours to list or prune.
    kids = children_of(server, "cascade")
    assert ("Model", "cascade-accurate") in kids and ("Pipeline", "cascade") in kids
    assert "cascade-fast" not in [c["name"] for c in status["children"] if c["kind"] == "Model"]
    fast = condition(status, "Ready")["message"]
    assert "fast" in fast and "TakeoverRefused" in fast

    # Deleting the graph leaves the other owner's object to its owner.
    assert (await server.delete(f"{GRAPH_PATH}/cascade")).status == 200
    await eventually(lambda: server.objects[GRAPHS, NS, "cascade"].deleted)
    collect_garbage(server)
    key = (kmock.resource("mlops.seldon.io/v1alpha1/models"), NS, "cascade-fast")
    assert not server.objects[key].deleted


async def test_kinds_the_cluster_lacks_do_not_stop_the_other_children(server) -> None:
    """No KEDA and no prometheus-operator: every Model, Server and the Pipeline are applied,
    each refused object is in `status.refused` with an Event, and a graph that opts out of
    those kinds applies cleanly."""
    del server.resources["keda.sh/v1alpha1/scaledobjects"]
    del server.resources["monitoring.coreos.com/v1/podmonitors"]
    op = Operator(server, retry_base_s=0.2)
    await op.start()
    try:
        await apply_graph(server, graph_body())
        status = await settled(server, generation=1)
        kids = children_of(server, "cascade")
        assert {k for k, _ in kids} == {"ServerConfig", "Server", "Model", "Pipeline"}, kids
        # Two nodes' and the plumbing's ServerConfig/Server, four Models, the Pipeline.
        assert len(kids) == 11, sorted(kids)
        refused = {(r["kind"], r["name"]): r for r in status["refused"]}
        assert {k for k, _ in refused} == {"ScaledObject", "PodMonitor"}
        assert all(r["reason"] == "ApplyFailed" for r in refused.values())
        rendered = condition(status, "Rendered")
        assert rendered["status"] == "False" and "ScaledObject" in rendered["message"]
        assert sorted(c["name"] for c in status["children"]) == sorted(n for _, n in kids)
        posted = await eventually(
            lambda: (
                len(events(server, "ApplyFailed")) >= len(refused) and events(server, "ApplyFailed")
            )
        )
        await asyncio.sleep(1.5)  # retries with backoff: no new Event for the same refusal
        assert len(events(server, "ApplyFailed")) == len(posted) == len(refused)
        # kopf's own per-retry error line stays in the log, not in the Events.
        assert not [e for e in events(server, "Logging") if "retrying" in e["message"]]

        opted = graph_body(generation=2)
        opted["metadata"]["annotations"] = {"infergraph.io/omit-kinds": "ScaledObject,PodMonitor"}
        await apply_graph(server, opted, update=True)
        status = await settled(server, generation=2)
        assert condition(status, "Rendered")["status"] == "True", status
        assert not status.get("refused")
    finally:
        await op.stop()


async def test_sigterm_during_a_pass_stops_without_a_spurious_apply_failure(server, operator):
    """The operator is stopped (SIGTERM sets kopf's stop flag the same way) while a pass waits
    on the API server: it must exit, and what it reports must not be an ApplyFailed caused by
    its own shutdown."""
    server.hold, server.held, server.release = "pipelines/cascade", asyncio.Event(), asyncio.Event()
    await apply_graph(server, graph_body())
    await asyncio.wait_for(server.held.wait(), 30)
    stopping = asyncio.create_task(operator.stop())
    await asyncio.sleep(1.0)
    server.release.set()
    await asyncio.wait_for(stopping, 30)
    await asyncio.sleep(0.5)
    assert events(server, "ApplyFailed") == []
    rendered = condition(graph_status(server), "Rendered")
    assert rendered.get("reason") != "ApplyFailed", rendered
    assert not graph_status(server).get("refused")


async def test_a_kserve_graph_is_not_ready_before_kserve_reports(server, operator):
    """No KServe controller runs here, so no InferenceService has a status: Ready is Unknown."""
    body = graph_body()
    body["metadata"]["annotations"] = {"infergraph.io/engine": "kserve"}
    await apply_graph(server, body)
    status = await settled(server, generation=1)
    assert condition(status, "Rendered")["status"] == "True", condition(status, "Rendered")
    ready = condition(status, "Ready")
    assert ready["status"] == "Unknown", ready
    assert "InferenceService/cascade-fast" in ready["message"]
    assert status["readyNodes"] == "0/2"

    # Play KServe's controller: Ready only once every InferenceService and the InferenceGraph
    # say so; one InferenceService reporting not ready keeps the graph Ready=False.
    versions = {"InferenceService": "v1beta1", "InferenceGraph": "v1alpha1"}
    reporting = [(k, n) for k, n in children_of(server, "cascade") if k in versions]
    assert ("InferenceService", "cascade-fast") in reporting

    async def report(kind: str, name: str, value: str) -> None:
        url = (
            f"/apis/serving.kserve.io/{versions[kind]}/namespaces/{NS}/{kind.lower()}s/{name}"
            "/status"
        )
        cond = {"type": "Ready", "status": value, "reason": "" if value == "True" else "Waiting"}
        assert (await server.patch(url, json={"status": {"conditions": [cond]}})).status == 200

    for kind, name in reporting:
        await report(kind, name, "False" if name == "cascade-fast" else "True")
    not_ready = await eventually(
        lambda: (
            condition(graph_status(server), "Ready").get("status") == "False"
            and condition(graph_status(server), "Ready")
        )
    )
    assert "cascade-fast" in not_ready["message"], not_ready
    await report("InferenceService", "cascade-fast", "True")
    status = await eventually(
        lambda: (
            condition(graph_status(server), "Ready").get("status") == "True"
            and graph_status(server)
        )
    )
    assert status["readyNodes"] == "2/2"


SELDON_NS = "seldon-mesh"


async def test_server_configs_go_to_seldons_namespace_and_go_with_the_graph(server) -> None:
    """Seldon v2's controller reads a Server's ServerConfig only from its own namespace
    (seldon-core v2.10.2 serverconfig_types.go:75-87): with `seldon_namespace` set the
    ServerConfigs are there, named per graph namespace, without a cross-namespace
    ownerReference, each Server names its own, and they are deleted once the graph is gone."""
    op = Operator(server, seldon_namespace=SELDON_NS)
    await op.start()
    try:
        await apply_graph(server, graph_body())
        status = await settled(server, generation=1)
        kids = children_of(server, "cascade")
        configs = {n: o for (k, n), o in kids.items() if k == "ServerConfig"}
        assert set(configs) == {"ml-cascade-fast", "ml-cascade-accurate", "ml-cascade-plumbing"}
        for obj in configs.values():
            meta = obj["metadata"]
            assert meta["namespace"] == SELDON_NS and "ownerReferences" not in meta, meta
            assert meta["labels"]["infergraph.io/owner-uid"] == "uid-cascade"
            assert meta["labels"]["infergraph.io/owner-namespace"] == NS
        servers = {n: o["spec"]["serverConfig"] for (k, n), o in kids.items() if k == "Server"}
        assert servers == {n: f"ml-{n}" for n in servers}
        assert {(c.get("namespace"), c["name"]) for c in status["children"]} >= {
            (SELDON_NS, n) for n in configs
        }
        assert all(
            o["metadata"]["namespace"] == NS for (k, _), o in kids.items() if k != "ServerConfig"
        )
        assert condition(status, "Rendered")["status"] == "True"

        assert (await server.delete(f"{GRAPH_PATH}/cascade")).status == 200

        def collected() -> bool:
            collect_garbage(server)  # runs all the time on a cluster: the namespaced children
            return children_of(server, "cascade") == {}  # the ServerConfigs: the sweep

        await eventually(collected)
    finally:
        await op.stop()


async def test_a_settings_edit_reaches_seldons_agent(server, tmp_path) -> None:
    """Issue 26 item 2: a Seldon v2 graph's settings (batching, options, `when` thresholds)
    live only in model-settings.json, which Seldon's agent copies from `Model.spec.storageUri`
    with rclone. The operator serves it (settings server on `settings_port`) and every Model it
    serves names its folder by content hash, so an edit changes the Model and Seldon reloads
    it. The copy is the real rclone's, as the agent runs it (tests/test_model_settings_served.py
    `agent_copy`); the settings server is the operator's own, started by kopf's startup."""
    from tests.test_model_settings_served import RCLONE, agent_copy

    if RCLONE is None:
        pytest.skip("rclone not installed: `make rclone` apt-installs Debian's (make unit does)")
    port = free_port()
    op = Operator(server, settings_url=f"http://127.0.0.1:{port}", settings_port=port)
    await op.start()
    try:
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        first = {
            n: o["spec"]["storageUri"]
            for (k, n), o in children_of(server, "cascade").items()
            if k == "Model"
        }
        copied = await agent_copy(first["cascade-fast"], tmp_path / "gen1")
        assert copied.read_bytes() == rendered_settings(graph_body(), op, "cascade-fast")

        edited = graph_body(generation=2)
        edited["spec"]["nodes"][0]["batching"]["maxBatchSize"] = 8
        await apply_graph(server, edited, update=True)
        await settled(server, generation=2)
        second = {
            n: o["spec"]["storageUri"]
            for (k, n), o in children_of(server, "cascade").items()
            if k == "Model"
        }
        # Only the edited node's Model changes: Seldon reloads it and nothing else.
        assert {n for n in first if first[n] != second[n]} == {"cascade-fast"}
        copied = await agent_copy(second["cascade-fast"], tmp_path / "gen2")
        assert copied.read_bytes() == rendered_settings(edited, op, "cascade-fast")
        assert json.loads(copied.read_text())["parameters"]["extra"]["max_batch_size"] == 8

        # A deleted graph's folders go with it (kopf's deletion handler, no finalizer needed).
        folder = second["cascade-fast"].rpartition(":")[2]
        url = f"http://127.0.0.1:{port}/{folder}/model-settings.json"
        assert await http_status(url) == 200
        assert (await server.delete(f"{GRAPH_PATH}/cascade")).status == 200

        async def gone() -> bool:
            return await http_status(url) == 404

        deadline = asyncio.get_running_loop().time() + 30
        while not await gone():
            assert asyncio.get_running_loop().time() < deadline, "still served after deletion"
            await asyncio.sleep(0.2)
    finally:
        await op.stop()


async def http_status(url: str) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status


def rendered_settings(body: dict, op: Operator, model: str) -> bytes:
    """model-settings.json for `model` as `infergraph render` writes it, from the same options."""
    from infergraph.graph.plan import parse_graph
    from infergraph.operator.reconcile import graph_document
    from infergraph.render.common import dumps
    from infergraph.render.seldon_v2 import model_settings

    graph = parse_graph(graph_document(body), body["metadata"]["name"])
    return dumps(model_settings(graph, op.config.render_options())[model]).encode()


def _server_config(name: str, labels: object) -> dict:
    return {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "ServerConfig",
        "metadata": {"name": name, "namespace": SELDON_NS, "labels": labels},
        "spec": {"podSpec": {"containers": []}},
    }


async def test_a_sweep_that_meets_an_unreadable_object_logs_it_and_sweeps_on(server, caplog):
    """A ServerConfig whose labels are not an object (written by hand, or by another tool)
    must not end the sweep: it is logged and skipped, the orphan beside it is deleted, and
    the sweep runs again at its next interval. It used to end the background task for good,
    and no relocated child was ever deleted again until the operator restarted."""
    path = f"/apis/mlops.seldon.io/v1alpha1/namespaces/{SELDON_NS}/serverconfigs"
    orphan_labels = {
        "app.kubernetes.io/managed-by": "infergraph-operator",
        "infergraph.io/graph": "gone",
        "infergraph.io/owner-uid": "uid-gone",
        "infergraph.io/owner-namespace": NS,
    }
    for body in (_server_config("hand-written", "not-an-object"), _server_config("orphan", {})):
        resp = await server.post(path, json=body)
        assert resp.status in (200, 201), await resp.text()
    info = kopf.ConnectionInfo(server=str(server.url))
    client = KubeClient(info, "test")

    async def session() -> KubeClient:
        return client

    sweeper = asyncio.create_task(sweep_forever(session, SELDON_NS, 0.05))
    try:
        await asyncio.sleep(0.3)  # several sweeps meet the unreadable object
        assert not sweeper.done(), sweeper
        # An orphan appears later: the sweep is still running and deletes it.
        resp = await server.patch(f"{path}/orphan", json={"metadata": {"labels": orphan_labels}})
        assert resp.status == 200, await resp.text()
        await eventually(lambda: server.objects[SERVER_CONFIGS, SELDON_NS, "orphan"].deleted)
        assert not server.objects[SERVER_CONFIGS, SELDON_NS, "hand-written"].deleted
        assert "hand-written" in caplog.text and "labels" in caplog.text
    finally:
        sweeper.cancel()
        await client.close()


async def test_the_operator_is_ready_once_every_graphs_settings_are_served(server) -> None:
    """After a restart the settings store is empty until each graph's resume pass has run;
    Seldon's agents that copy a Model's folder meanwhile get a 404 and the load fails. The
    chart's readinessProbe (the settings port's /readyz, test_chart) answers 503 until every
    graph that existed at the start has had its pass, so the Service sends agents nowhere
    until then; kopf's /healthz answered 200 from the start."""
    import aiohttp

    await apply_graph(server, graph_body())  # before the operator starts: a restart
    port = free_port()
    op = Operator(server, settings_url=f"http://127.0.0.1:{port}", settings_port=port)
    seen: list[int] = []
    await op.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        seen.append(resp.status)
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = asyncio.get_running_loop().time() + 60
            while not await ready():
                assert asyncio.get_running_loop().time() < deadline, seen[-5:]
                await asyncio.sleep(0.1)
            models = {
                n: o["spec"]["storageUri"]
                for (k, n), o in children_of(server, "cascade").items()
                if k == "Model"
            }
            # Ready means served: every Model's folder is there.
            for uri in models.values():
                folder = uri.rpartition(":")[2]
                url = f"http://127.0.0.1:{port}/{folder}/model-settings.json"
                async with session.get(url) as resp:
                    assert resp.status == 200, (uri, resp.status)
    finally:
        await op.stop()
    assert seen[-1] == 200 and set(seen) <= {200, 503}, seen
