"""Names for the JSON documents the kit passes around as plain dicts.

Kubernetes objects, V2 inference bodies and model-settings.json are free-form JSON. Their shapes
are checked where they enter or leave, not by the type checker: the CRD schema and pydantic
models for graphs, kubernetes-validate and the engine models in the tests for rendered
manifests, the V2 codecs (`serving.protocol`, `tensors`) for request bodies.

These aliases say which document a signature carries. Their values stay `Any` on purpose: code
reads them by key path (`obj["spec"]["template"]["spec"]`), and a recursive JSON type would need
a cast or an isinstance at every step of every path. Where a function only builds or forwards
JSON, it says `object` instead; where a shape is fixed and small, it gets a TypedDict.
"""

from __future__ import annotations

from typing import Any

type Manifest = dict[str, Any]
"""One Kubernetes object as JSON: apiVersion, kind, metadata, spec, status."""

type JSONObject = dict[str, Any]
"""A JSON object that is not a whole Kubernetes object: a V2 request or response body, a
model-settings.json document, a part of a manifest (a pod template, a container, a trigger)."""
