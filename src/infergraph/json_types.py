"""Names for the JSON documents the kit passes around as plain dicts, and checked reads of them.

Kubernetes objects, V2 inference bodies and model-settings.json are free-form JSON. Their shapes
are checked where they enter or leave: the CRD schema and pydantic models for graphs,
kubernetes-validate and the engine models in the tests for rendered manifests, the V2 codecs
(`serving.protocol`, `tensors`) for request bodies.

The aliases say which document a signature carries; their values are `object`, so the type
checker makes every read say what it expects. A read by key path goes through the functions
below, which narrow a value or raise `JSONShapeError` naming the path and what was found, where
an unchecked `obj["spec"]["template"]` would fail later with a bare KeyError or TypeError.
Where a shape is fixed and small, it gets a TypedDict instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from infergraph.errors import InfergraphError

type Manifest = dict[str, object]
"""One Kubernetes object as JSON: apiVersion, kind, metadata, spec, status."""

type JSONObject = dict[str, object]
"""A JSON object that is not a whole Kubernetes object: a V2 request or response body, a
model-settings.json document, a part of a manifest (a pod template, a container, a trigger)."""


class JSONShapeError(InfergraphError, TypeError):
    """A JSON value is not of the kind the code reading it needs; `where` names its path."""

    def __init__(self, where: str, expected: str, found: object) -> None:
        self.where = where
        self.expected = expected
        super().__init__(f"{where}: expected {expected}, found {_kind(found)}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def as_object(value: object, where: str) -> JSONObject:
    """`value` as a JSON object (the same dict, so writes reach the document)."""
    if not isinstance(value, dict):
        raise JSONShapeError(where, "an object", value)
    return value


def as_list(value: object, where: str) -> list[object]:
    """`value` as a JSON list (the same list)."""
    if not isinstance(value, list):
        raise JSONShapeError(where, "a list", value)
    return value


def as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise JSONShapeError(where, "a string", value)
    return value


def as_int(value: object, where: str) -> int:
    """`value` as an integer; a boolean is not one, though Python counts it as one."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise JSONShapeError(where, "an integer", value)
    return value


def as_objects(value: object, where: str) -> list[JSONObject]:
    """A JSON list whose every item is an object (containers, env entries, conditions)."""
    return [as_object(item, f"{where}[{i}]") for i, item in enumerate(as_list(value, where))]


def as_str_map(value: object, where: str) -> dict[str, str]:
    """A JSON object of strings (labels, annotations, selectors), copied."""
    return {key: as_str(item, f"{where}.{key}") for key, item in as_object(value, where).items()}


def at(document: Mapping[str, object], *path: str) -> JSONObject:
    """The object at `path` under `document`: each step must be present and an object."""
    value: object = document
    for depth, key in enumerate(path):
        parent = as_object(value, ".".join(path[:depth]) or "the document")
        if key not in parent:
            raise JSONShapeError(".".join(path[: depth + 1]), "an object", None)
        value = parent[key]
    return as_object(value, ".".join(path) or "the document")


def object_or_empty(document: Mapping[str, object], key: str, *more: str) -> JSONObject:
    """The object at `key` (then `more`) under `document`, where an absent or null step reads
    as an empty object (not stored): a status its controller has not written yet, a KServe
    `modelStatus` with no copies counted. A step of another kind is a JSONShapeError naming
    the path."""
    path = (key, *more)
    current: Mapping[str, object] = document
    found: JSONObject = {}
    for depth, step in enumerate(path):
        value = current.get(step)
        found = {} if value is None else as_object(value, ".".join(path[: depth + 1]))
        current = found
    return found
