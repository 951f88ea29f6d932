"""Validate rendered objects the way an API server would, with no cluster.

Custom resources: jsonschema against the CRD's `openAPIV3Schema` for the object's version,
after translating Kubernetes' structural-schema extensions. Objects in a structural schema
are closed (the API server prunes unknown fields silently, so here they are errors: a typo
would otherwise vanish on apply). Core kinds: the upstream schemas `kubernetes-validate` ships.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO.parent / "shared" / "crds"
K8S_VERSION = "1.33.0"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def crds_available() -> bool:
    return (CRDS / "seldon-v2" / "crds.yaml").is_file()


def _structural(schema: Any) -> Any:
    """Translate x-kubernetes-* and nullable into plain JSON Schema (draft 7)."""
    if isinstance(schema, list):
        return [_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    # `properties` maps names to schemas (translated once, below), not a schema itself:
    # translating it here too would redo every subtree twice per level of nesting.
    out = {
        k: _structural(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "properties")
    }
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _structural(v) for k, v in schema["properties"].items()}
        if (
            "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and schema.get("type") == "object"
        ):
            out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        out.pop("type", None)
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema, for every CRD under ../shared/crds."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    # 7 MB of CRDs: libyaml's parser reads them in seconds, pure Python's in about a minute.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(CRDS.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = _structural(version["schema"]["openAPIV3Schema"])
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def check_metadata(obj: dict[str, Any]) -> list[str]:
    """What the API server checks on metadata that CRD schemas leave to it."""
    problems = []
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if not DNS_LABEL.match(name) or len(name) > 63:
        problems.append(f"metadata.name '{name}' is not a DNS-1123 label")
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(f"label {key}={value!r} is not a valid label value")
    return problems


def validate(obj: dict[str, Any]) -> list[str]:
    """Every problem with one object; empty when the API server would accept it."""
    problems = check_metadata(obj)
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema = crd_schemas().get(key)
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in err.path) or "(root)"
            problems.append(f"{key[1]} {where}: {err.message[:300]}")
        return problems
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"{key[1]}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError:
        problems.append(
            f"no schema for {key[0]} {key[1]} (neither CRD nor Kubernetes {K8S_VERSION})"
        )
    return problems


# -- the validator itself: it must reject what an API server rejects ---------------------------
def _skip_without_crds() -> None:
    import pytest

    if not crds_available():
        pytest.skip(f"CRD schemas not found at {CRDS} (clone the repo with ../shared beside it)")


def test_validator_rejects_unknown_fields_and_wrong_types() -> None:
    _skip_without_crds()
    model = {
        "apiVersion": "mlops.seldon.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "m"},
        "spec": {"storageUri": "gs://b/m", "memory": "1Gi", "replicas": 1},
    }
    assert validate(model) == []
    bad = {**model, "spec": {**model["spec"], "replica": 2, "memory": ["x"]}}
    problems = validate(bad)
    assert any("replica" in p for p in problems), problems
    assert any("memory" in p for p in problems), problems


def test_validator_checks_core_kinds_with_kubernetes_validate() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 2,
        },
    }
    assert validate(hpa) == []
    assert validate({**hpa, "spec": {**hpa["spec"], "maxReplica": 2}})
