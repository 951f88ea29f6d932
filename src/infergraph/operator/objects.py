"""Checked reads of the Kubernetes objects the operator renders, applies and reads back.

Rendered children and the API server's answers are `Manifest`s (object-valued JSON). Their
identity (apiVersion, kind, metadata.name and namespace) is required: a missing or mistyped one
is a `JSONShapeError` naming the field. What an object may not have yet (a status its
controller has not written, labels, owner references) reads as empty. No aiohttp or kopf here,
so `status` and the tests read objects without the operator's extra.
"""

from __future__ import annotations

from infergraph.json_types import (
    JSONObject,
    Manifest,
    as_int,
    as_objects,
    as_str,
    as_str_map,
    at,
    object_or_empty,
)


def api_version_of(obj: Manifest) -> str:
    return as_str(obj.get("apiVersion"), "apiVersion")


def kind_of(obj: Manifest) -> str:
    return as_str(obj.get("kind"), "kind")


def meta_str(obj: Manifest, key: str) -> str:
    """A required string of `metadata` (name, uid, a namespaced object's namespace)."""
    return as_str(at(obj, "metadata").get(key), f"metadata.{key}")


def name_of(obj: Manifest) -> str:
    return meta_str(obj, "name")


def namespace_of(obj: Manifest) -> str | None:
    """None for an object that names no namespace (cluster-scoped, or not yet owned)."""
    namespace = at(obj, "metadata").get("namespace")
    return None if namespace is None else as_str(namespace, "metadata.namespace")


def labels_of(obj: Manifest | None) -> dict[str, str]:
    """`metadata.labels` (a copy); none for an object without them, or no object."""
    labels = object_or_empty(obj or {}, "metadata").get("labels")
    return {} if labels is None else as_str_map(labels, "metadata.labels")


def owner_references(obj: Manifest | None) -> list[JSONObject]:
    refs = object_or_empty(obj or {}, "metadata").get("ownerReferences")
    return [] if refs is None else as_objects(refs, "metadata.ownerReferences")


# A child's identity among one pass's children: (kind, namespace, name).
ChildKey = tuple[str, str | None, str]


def child_key(obj: Manifest) -> ChildKey:
    """Which child an object is, to match a child's read before its apply with the apply's
    answer (both are the API server's, so both name the namespace)."""
    return kind_of(obj), namespace_of(obj), name_of(obj)


def generation_of(obj: Manifest) -> int | None:
    """`metadata.generation`: the API server counts every change of the spec there; None for an
    object that has none (not read from an API server)."""
    value = object_or_empty(obj, "metadata").get("generation")
    return None if value is None else as_int(value, "metadata.generation")
