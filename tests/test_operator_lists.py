"""The operator reads large lists a page at a time, as the API server serves them in chunks.

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
