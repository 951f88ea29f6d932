"""What every engine proof shares: the shipped graphs, the tiny variant of each, the routed
cases' checkpoints, and the comparison of an engine's answer with the local run's.

Kept free of MLServer and aiohttp imports: the Seldon Core v1 proof runs in `.venv-seldon`,
which has neither, and must use the same case list and the same comparison as the others.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import parse_graph

REPO = Path(__file__).resolve().parent.parent
GRAPHS = sorted((REPO / "k8s" / "graphs").glob("*.yaml"))
# `make test` runs these graphs on every engine (the defects they once showed); the other
# shipped graphs are the `sweep` that `make engine-test` adds, to keep `make test` short.
IN_EVERY_RUN = {"preprocess", "video-monitoring"}


def sweep(paths: list[Path]) -> list[Any]:
    return [
        p if p.stem in IN_EVERY_RUN else pytest.param(p, marks=pytest.mark.sweep) for p in paths
    ]


def tiny(data: dict[str, Any]) -> InferenceGraph:
    data = copy.deepcopy(data)
    for node in data["spec"]["nodes"]:
        if node["family"] == "image-preprocessing":
            node["options"]["size"] = 32  # the tiny classifiers take 32 x 32 pixels
    return parse_graph(data)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "k8s" / "graphs" / f"{name}.yaml").read_text())


def forced_langid(tmp: Path, language: str) -> str:
    """A tiny language-ID checkpoint whose head always answers `language`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from infergraph.checkpoints.text_classification import build_language_identifier

    target = tmp / f"langid-{language}"
    build_language_identifier(target, scale="tiny")
    model = AutoModelForSequenceClassification.from_pretrained(target)
    label_to_id = {v: int(k) for k, v in model.config.id2label.items()}
    assert language in label_to_id, f"tiny checkpoint labels: {sorted(label_to_id)}"
    head = model.classifier.out_proj if hasattr(model.classifier, "out_proj") else model.classifier
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[label_to_id[language]] = 10.0
    model.save_pretrained(target)
    return str(target)


def values(tensor: dict[str, Any]) -> np.ndarray:
    data = tensor["data"]
    if data is None:
        # Seldon v2's gateway writes an empty tensor's data as `null` (a nil Go slice,
        # seldon-core v2.10.2 scheduler/pkg/kafka/pipeline/v2.go:82-160): only for no elements.
        assert 0 in tensor["shape"], f"{tensor['name']}: data null with shape {tensor['shape']}"
        data = []
    if tensor["datatype"] == "BYTES":
        return np.array([str(x) for x in np.asarray(data, dtype=object).reshape(-1)], dtype=object)
    return np.asarray(data, dtype=np.float64).reshape(-1)


def assert_same(graph: InferenceGraph, local: dict[str, Any], cluster: dict[str, Any] | None):
    """Same output names, datatypes and shapes; same values (floats within tolerance)."""
    assert cluster is not None, "the engine never produced an output"
    mine = {t["name"]: t for t in local["outputs"]}
    theirs = {t["name"]: t for t in cluster["outputs"]}
    assert sorted(mine) == sorted(theirs)
    for name, tensor in mine.items():
        other = theirs[name]
        assert (tensor["datatype"], list(tensor["shape"])) == (
            other["datatype"],
            list(other["shape"]),
        ), name
        a, b = values(tensor), values(other)
        if a.dtype == object:
            assert list(a) == list(b), name
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
