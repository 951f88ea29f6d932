"""Apply one graph's children one by one: nothing of anyone else's is taken over, and one
refused object does not stop the others.

Server-side apply with `force=true` would silently take over any object that happens to have a
child's name (an object applied with `kubectl apply -f k8s/rendered/...`, another team's
Model): its fields would become ours and the garbage collector would delete it with the graph.
So each child is read first and applied only when it is absent or already names this graph
as owner. A child the API server refuses (a kind the cluster does not serve, a webhook's
denial) is reported and the rest are still applied, as `kubectl apply` of the same manifests
would.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergraph.json_types import Manifest, as_objects, object_or_empty
from infergraph.operator.children import is_owned_by
from infergraph.operator.kube import KubeClient, KubeError, ref
from infergraph.operator.objects import (
    ChildKey,
    api_version_of,
    child_key,
    generation_of,
    kind_of,
    labels_of,
    name_of,
    namespace_of,
    owner_references,
)
from infergraph.render.common import NODE_LABEL

TAKEOVER_REFUSED = "TakeoverRefused"
APPLY_FAILED = "ApplyFailed"


@dataclass(frozen=True)
class Refusal:
    """A rendered child that was not applied, and why."""

    obj: Manifest  # as rendered
    reason: str  # TAKEOVER_REFUSED or APPLY_FAILED
    message: str
    home: str | None = None  # the graph's namespace

    @property
    def child(self) -> dict[str, str]:
        return ref(self.obj, self.home)

    @property
    def node(self) -> str | None:
        """The node the child belongs to; None for a graph-wide one (Pipeline, monitor)."""
        return labels_of(self.obj).get(NODE_LABEL)

    def status(self) -> dict[str, str]:
        """The entry in the graph's `status.refused`."""
        return {**self.child, "reason": self.reason, "message": self.message}


def owner_of(obj: Manifest) -> str:
    """Who an object belongs to, as a person would look it up: its controller (or first)
    ownerReference, else its `app.kubernetes.io/managed-by` label, else its field managers."""
    refs = owner_references(obj)
    if refs:
        owner = next((r for r in refs if r.get("controller")), refs[0])
        return f"{owner.get('kind')}/{owner.get('name')}"
    managed_by = labels_of(obj).get("app.kubernetes.io/managed-by")
    if managed_by:
        return f"managed by {managed_by}"
    fields = object_or_empty(obj, "metadata").get("managedFields") or []
    managers = sorted({str(m.get("manager")) for m in as_objects(fields, "metadata.managedFields")})
    return f"written by {', '.join(managers)}" if managers else "no owner recorded"


@dataclass(frozen=True)
class AppliedChild:
    """A child as the apply returned it, and its generation before (None: it did not exist):
    a higher one now means this apply changed its spec (`status._applied_anew`)."""

    live: Manifest
    generation_before: int | None


async def apply_child(
    client: KubeClient, obj: Manifest, uid: str, home: str | None = None
) -> AppliedChild | Refusal:
    """The live object after applying `obj`, or why it was not applied. The read that guards
    against a takeover also gives the generation before the apply, at no extra call."""
    kind = kind_of(obj)
    name = f"{kind}/{name_of(obj)}"
    try:
        existing = await client.get(api_version_of(obj), kind, namespace_of(obj), name_of(obj))
        if existing is not None and not is_owned_by(existing, uid):
            why = (
                f"{name} already exists and is not this graph's (owner: {owner_of(existing)}); "
                "left as it is. Rename or delete it, or give the graph another name."
            )
            return Refusal(obj, TAKEOVER_REFUSED, why, home)
        live = await client.apply(obj)
    except KubeError as exc:
        return Refusal(obj, APPLY_FAILED, f"{name}: {exc}", home)
    return AppliedChild(live, None if existing is None else generation_of(existing))


async def apply_all(
    client: KubeClient, objs: list[Manifest], uid: str, home: str | None = None
) -> tuple[list[Manifest], list[Refusal], dict[ChildKey, int]]:
    """Every child in render order, each on its own: (live objects, refusals, the generation
    each applied child had before, where it existed and had one)."""
    live: list[Manifest] = []
    refused: list[Refusal] = []
    generations_before: dict[ChildKey, int] = {}
    for obj in objs:
        result = await apply_child(client, obj, uid, home)
        if isinstance(result, Refusal):
            refused.append(result)
            continue
        live.append(result.live)
        if result.generation_before is not None:
            generations_before[child_key(result.live)] = result.generation_before
    return live, refused, generations_before
