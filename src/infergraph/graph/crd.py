"""The InferenceGraph CustomResourceDefinition, generated from the pydantic model.

Kubernetes wants a structural schema: no $ref, no recursion, a type on every
node. The topology (`spec.graph`) is recursive, so it is published as an object
with `x-kubernetes-preserve-unknown-fields` and validated by the operator and
the CLI with the full model; every other field is checked by the API server.
"""

from __future__ import annotations

from infergraph.graph.model import API_VERSION, InferenceGraph
from infergraph.json_types import (
    JSONObject,
    JSONShapeError,
    Manifest,
    as_list,
    as_object,
    as_objects,
    as_str,
    at,
    object_or_empty,
)

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "inferencegraphs"
_DROP = {"title", "default", "discriminator", "examples"}


def _structural(schema: JSONObject, defs: JSONObject, stack: tuple[str, ...]) -> JSONObject:
    """One pydantic JSON-schema node as a structural OpenAPI v3.0 node: refs inlined (a
    recursive ref becomes an open object), unions collapsed, every node typed."""
    if "$ref" in schema:
        name = as_str(schema["$ref"], "$ref").split("/")[-1]
        if name in stack:  # recursion: leave the rest to the operator's validation
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        definition = as_object(defs.get(name), f"$defs.{name}")
        merged = {**definition, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _structural(merged, defs, (*stack, name))
    union = "anyOf" if schema.get("anyOf") else "oneOf"
    if schema.get(union):
        return _structural_union(schema, as_objects(schema[union], union), defs, stack)
    out = _structural_fields(schema, defs, stack)
    _fill_type(out)
    if out.get("type") == "integer" and "minimum" in out:
        out["minimum"] = int(_number(out["minimum"], "minimum"))
    return out


def _number(value: object, where: str) -> float:
    """A JSON number (a bound in the schema); a boolean is not one."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise JSONShapeError(where, "a number", value)
    return value


def _structural_union(
    schema: JSONObject,
    variants: list[JSONObject],
    defs: JSONObject,
    stack: tuple[str, ...],
) -> JSONObject:
    """An `anyOf`/`oneOf`: structural schemas allow no unions, so a single non-null variant
    stands for the whole (nullable when null was one), objects stay open, and scalars mixed
    with each other become int-or-string."""
    non_null = [v for v in variants if v.get("type") != "null"]
    nullable = len(non_null) < len(variants)
    if len(non_null) == 1:
        out: JSONObject = _structural(non_null[0], defs, stack)
    else:
        out = {"x-kubernetes-preserve-unknown-fields": True}
        types = {v.get("type") for v in non_null}
        if types <= {"object"} or any("$ref" in v for v in non_null):
            out["type"] = "object"
        else:  # controller-gen's form of resource.Quantity, the string's pattern kept
            out = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
            out["x-kubernetes-int-or-string"] = True
            if "pattern" in schema:
                out["pattern"] = schema["pattern"]
    if "description" in schema:
        out["description"] = schema["description"]
    if nullable:
        out["nullable"] = True
    return out


def _structural_fields(schema: JSONObject, defs: JSONObject, stack: tuple[str, ...]) -> JSONObject:
    """The keys of a non-union node, translated one by one into what OpenAPI v3.0 and the API
    server accept (consts as enums, exclusive bounds as flags, open maps as preserved fields)."""
    out: JSONObject = {}
    for key, value in schema.items():
        if key in _DROP or key in ("$defs", "anyOf", "oneOf"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            fields = as_object(value, "properties").items()
            out["properties"] = {
                k: _structural(as_object(v, f"properties.{k}"), defs, stack) for k, v in fields
            }
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # OpenAPI v3.0 (what Kubernetes speaks) takes a bound plus a boolean flag.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "items":
            out["items"] = _structural(as_object(value, "items"), defs, stack)
        elif key == "additionalProperties":
            if value is False:
                continue
            if value in (True, {}):
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                values = as_object(value, "additionalProperties")
                out["additionalProperties"] = _structural(values, defs, stack)
        else:
            out[key] = value
    return out


def _fill_type(out: JSONObject) -> None:
    """A structural schema needs a type on every node: infer one where pydantic gave none."""
    if "type" in out:
        return
    if "properties" in out:
        out["type"] = "object"
    elif "enum" in out:
        strings = all(isinstance(v, str) for v in as_list(out["enum"], "enum"))
        out["type"] = "string" if strings else "number"
    else:
        out["type"] = "object"
        out["x-kubernetes-preserve-unknown-fields"] = True


def openapi_schema() -> JSONObject:
    raw = InferenceGraph.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs, ("InferenceGraph",))
    # The API server owns apiVersion/kind/metadata; keep only what it lets CRDs declare.
    props = at(schema, "properties")
    props["metadata"] = {"type": "object"}
    props["status"] = status_schema()
    schema["required"] = ["spec"]
    return schema


def _strings(*names: str) -> JSONObject:
    return {name: {"type": "string"} for name in names}


def status_schema() -> JSONObject:
    """What the operator writes through the status subresource (see docs/operator.md)."""
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            **_strings("type", "reason", "message"),
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    node = {
        "type": "object",
        "properties": {
            **_strings("name", "message"),
            "ready": {"type": "boolean"},
            "state": {"type": "string", "enum": ["Ready", "Idle", "NotReady", "Unknown"]},
        },
    }
    child = {"type": "object", "properties": _strings("apiVersion", "kind", "name", "namespace")}
    refused = {
        "type": "object",
        "properties": _strings("apiVersion", "kind", "name", "namespace", "reason", "message"),
    }
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            **_strings("engine", "endpoint", "readyNodes", "pricePerHour", "priceMessage"),
            "nodes": {"type": "array", "items": node},
            "children": {"type": "array", "items": child},
            "refused": {"type": "array", "items": refused},
        },
    }


def _condition(kind: str, field: str) -> str:
    return f'.status.conditions[?(@.type=="{kind}")].{field}'


PRINTER_COLUMNS = [
    {"name": "Engine", "type": "string", "jsonPath": ".status.engine"},
    {"name": "Ready", "type": "string", "jsonPath": _condition("Ready", "status")},
    {"name": "Nodes", "type": "string", "jsonPath": ".status.readyNodes"},
    {"name": "USD/h", "type": "string", "jsonPath": ".status.pricePerHour"},
    {"name": "Valid", "type": "string", "jsonPath": _condition("Valid", "status"), "priority": 1},
    {
        "name": "Schedulable",
        "type": "string",
        "jsonPath": _condition("Schedulable", "status"),
        "priority": 1,
    },
    {"name": "Reason", "type": "string", "jsonPath": _condition("Ready", "reason"), "priority": 1},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> Manifest:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "infergraph"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "inferencegraph",
                "kind": "InferenceGraph",
                # Not `ig`: KServe's InferenceGraph (same kind and plural) has it.
                "shortNames": ["igraph"],
                "categories": ["infergraph"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def helm_owned(manifest: Manifest, release: str, namespace: str) -> Manifest:
    """`manifest` with the metadata Helm checks before adopting an existing object: the label
    `app.kubernetes.io/managed-by: Helm` and the release's name and namespace as annotations
    (helm pkg/action/validate.go, checkOwnership)."""
    meta = dict(at(manifest, "metadata"))
    meta["labels"] = {**object_or_empty(meta, "labels"), "app.kubernetes.io/managed-by": "Helm"}
    meta["annotations"] = {
        **object_or_empty(meta, "annotations"),
        "meta.helm.sh/release-name": release,
        "meta.helm.sh/release-namespace": namespace,
    }
    return {**manifest, "metadata": meta}
