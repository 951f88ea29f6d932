"""The operator against API-server behaviour kmock does not serve: chunked lists, and a 403
for a graph of another release.

It reads large lists a page at a time, as the API server serves them in chunks.

kmock serves a list whole, so this stand-in models what `observeNodes` meets on a real
cluster: `limit` and `continue` (Kubernetes API concepts, "Retrieving large results sets in
chunks": each page's `metadata.continue` names the next, the last has none) and
`fieldSelector` on a Pod's `status.phase`. A cluster's every Pod in one body (thousands, with
their managedFields) took the operator past its 512Mi (chart review of 2026-12-07).
"""

from __future__ import annotations

from aiohttp import web
from kopf import ConnectionInfo

from infergraph.operator.kube import LIST_PAGE, KubeClient
from infergraph.operator.observed_nodes import per_node_pods
from tests.test_node_catalog import pod
from tests.test_runner_lifecycle import served


def _pods(count: int) -> list[dict]:
    out = []
    for i in range(count):
        owner = "DaemonSet" if i % 100 == 0 else "ReplicaSet"
        made = pod(f"p{i}", f"node-{i % 7}", owner, {"cpu": "100m"})
        made["status"] = {"phase": "Succeeded" if i % 10 == 5 else "Running"}
        out.append(made)
    return out


async def test_pods_are_read_in_pages_and_only_per_node_ones_kept() -> None:
    pods = _pods(2 * LIST_PAGE + 17)
    asked: list[dict[str, str]] = []

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(
            {"resources": [{"name": "pods", "kind": "Pod", "namespaced": True}]}
        )

    async def pod_list(request: web.Request) -> web.Response:
        query = dict(request.query)
        asked.append(query)
        chosen = [
            p
            for p in pods
            if query.get("fieldSelector") != "status.phase!=Succeeded,status.phase!=Failed"
            or p["status"]["phase"] not in ("Succeeded", "Failed")
        ]
        start = int(query.get("continue") or 0)
        end = start + int(query["limit"])
        meta = {"continue": str(end)} if end < len(chosen) else {}
        return web.json_response({"metadata": meta, "items": chosen[start:end]})

    app = web.Application()
    app.router.add_get("/api/v1", discovery)
    app.router.add_get("/api/v1/pods", pod_list)
    async with served(app) as base:
        client = KubeClient(ConnectionInfo(server=base), "test")
        try:
            kept = await per_node_pods(client)
        finally:
            await client.close()
    running = [p for p in pods if p["status"]["phase"] == "Running"]
    assert len(asked) == -(-len(running) // LIST_PAGE)  # pages of at most LIST_PAGE
    assert all(q["limit"] == str(LIST_PAGE) for q in asked)
    assert [q.get("continue") for q in asked][1:] == [
        str(LIST_PAGE * k) for k in range(1, len(asked))
    ]
    daemon = [
        p["metadata"]["name"]
        for p in running
        if p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
    ]
    assert [p["metadata"]["name"] for p in kept] == daemon


async def test_a_sweep_skips_graphs_it_may_not_read_and_deletes_its_own_orphans() -> None:
    """Two namespaced releases sharing Seldon's namespace see each other's ServerConfigs; a
    GET of the other release's graph is a 403. The sweep skips that one and still deletes its
    own orphan (it used to stop at the first 403, every interval)."""
    from infergraph.operator.children import (
        MANAGED_BY,
        OWNER_NAMESPACE_LABEL,
        OWNER_UID_LABEL,
        SERVER_CONFIG_API,
    )
    from infergraph.operator.sweep import sweep
    from infergraph.render.common import GRAPH_LABEL

    def config(name: str, namespace: str) -> dict:
        labels = {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            GRAPH_LABEL: name,
            OWNER_UID_LABEL: f"uid-{name}",
            OWNER_NAMESPACE_LABEL: namespace,
        }
        return {"metadata": {"name": name, "namespace": "seldon-mesh", "labels": labels}}

    deleted: list[str] = []
    group, version = SERVER_CONFIG_API.split("/")

    async def discovery(request: web.Request) -> web.Response:
        if request.path == f"/apis/{SERVER_CONFIG_API}":
            resources = [{"name": "serverconfigs", "kind": "ServerConfig", "namespaced": True}]
        else:
            resources = [{"name": "inferencegraphs", "kind": "InferenceGraph", "namespaced": True}]
        return web.json_response({"resources": resources})

    async def configs(_: web.Request) -> web.Response:
        items = [config("theirs", "team-b"), config("mine", "team-a")]
        return web.json_response({"metadata": {}, "items": items})

    async def graph(request: web.Request) -> web.Response:
        if request.match_info["ns"] == "team-b":
            return web.json_response({"message": "forbidden"}, status=403)
        return web.json_response({"message": "not found"}, status=404)

    async def delete(request: web.Request) -> web.Response:
        deleted.append(request.match_info["name"])
        return web.json_response({}, status=200)

    base_path = f"/apis/{group}/{version}/namespaces/seldon-mesh/serverconfigs"
    app = web.Application()
    app.router.add_get(f"/apis/{SERVER_CONFIG_API}", discovery)
    app.router.add_get("/apis/infergraph.io/v1alpha1", discovery)
    app.router.add_get(base_path, configs)
    app.router.add_delete(base_path + "/{name}", delete)
    app.router.add_get("/apis/infergraph.io/v1alpha1/namespaces/{ns}/inferencegraphs/{g}", graph)
    async with served(app) as base:
        client = KubeClient(ConnectionInfo(server=base), "test")
        try:
            removed = await sweep(client, "seldon-mesh")
        finally:
            await client.close()
    assert removed == deleted == ["mine"]


async def test_passes_that_ask_for_the_nodes_at_once_all_get_what_one_read_found() -> None:
    """At start every graph's resume pass asks for the Nodes at once. The first read takes a
    while on a real cluster (a Node list, then every Pod a page at a time); the passes that
    asked meanwhile used to get an empty list, pricing and judging `Schedulable` by the
    catalog until the next drift pass flipped them. They wait for that one read instead."""
    import asyncio

    from infergraph.operator.observed_nodes import ObservedNodes
    from tests.test_node_catalog import node

    reads: list[str] = []

    async def discovery(_: web.Request) -> web.Response:
        resources = [
            {"name": "nodes", "kind": "Node", "namespaced": False},
            {"name": "pods", "kind": "Pod", "namespaced": True},
        ]
        return web.json_response({"resources": resources})

    async def nodes(_: web.Request) -> web.Response:
        reads.append("nodes")
        await asyncio.sleep(0.3)  # a large cluster's list
        gpu = node("gpu-1", "g6.xlarge", "3920m", "15000Mi", capacity=("4", "16029820Ki"))
        return web.json_response({"metadata": {}, "items": [gpu]})

    async def pods(_: web.Request) -> web.Response:
        daemon = pod("dcgm", "gpu-1", "DaemonSet", {"cpu": "320m"})
        return web.json_response({"metadata": {}, "items": [daemon]})

    app = web.Application()
    app.router.add_get("/api/v1", discovery)
    app.router.add_get("/api/v1/nodes", nodes)
    app.router.add_get("/api/v1/pods", pods)
    observed = ObservedNodes(refresh_s=300)
    async with served(app) as base:
        client = KubeClient(ConnectionInfo(server=base), "test")
        try:
            found = await asyncio.gather(*(observed.rooms(client) for _ in range(3)))
        finally:
            await client.close()
    assert found[0] and found[0] == found[1] == found[2], found
    assert reads == ["nodes"], "one read for the passes that asked at once"
