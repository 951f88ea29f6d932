"""Shipped mlserver/<family>/model-settings.json files are what MLServer and the registry expect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlserver.settings import ModelSettings

from infergraph.components.registry import component_class, family_names
from infergraph.serving.mlserver_runtime import ComponentRuntime

REPO = Path(__file__).resolve().parent.parent
FILES = sorted((REPO / "mlserver").glob("*/model-settings.json"))
PLUMBING = {"identity", "combiner", "crop-filter", "gate", "image-preprocessing"}


def test_every_model_family_ships_settings() -> None:
    shipped = {json.loads(f.read_text())["parameters"]["extra"]["family"] for f in FILES}
    assert set(family_names()) - PLUMBING <= shipped


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_settings_parse_and_name_a_real_checkpoint(path: Path) -> None:
    raw = json.loads(path.read_text())
    settings = ModelSettings.model_validate(raw)
    assert settings.implementation is ComponentRuntime
    extra = settings.parameters.extra
    cls = component_class(extra["family"])
    assert settings.parameters.uri, "the real checkpoint a user would deploy"
    assert settings.max_batch_size >= 1 and settings.max_batch_time >= 0
    assert extra.get("dtype", "fp32") in ("fp32", "fp16", "bf16")
    assert cls.uses_gpu
