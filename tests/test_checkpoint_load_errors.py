"""A checkpoint that cannot load is a ModelLoadError naming where it was read from.

An interrupted copy into `/mnt/models` leaves a truncated `model.safetensors`; safetensors then
raises its own `SafetensorError`, which five text and speech families let escape bare (no
path, no "cannot load") while the image families wrapped it. And a `model_uri` written as
`~/folder` in model-settings.json went to the hub as a repo id.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infergraph.checkpoints.registry import checkpoint_builder
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
from infergraph.errors import ModelLoadError

pytestmark = pytest.mark.slow  # builds tiny checkpoints

FAMILIES = [
    "text-classification",
    "text-embedding",
    "translation",
    "question-answering",
    "speech-recognition",
    "image-classification",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for family in FAMILIES:
        builder = checkpoint_builder(family)
        assert builder is not None
        default = component_class(family).default_model
        out[family] = builder.build_for(default, root / family, "tiny")
    return out


def _load(family: str, uri: str) -> None:
    component = component_class(family)(ComponentSettings(model_uri=uri, warmup=False))
    component.setup_device()
    component.load()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_truncated_checkpoint_is_a_load_error_naming_its_folder(
    family: str, built: dict[str, Path], tmp_path: Path
) -> None:
    broken = tmp_path / "copied"
    shutil.copytree(built[family], broken)
    weights = sorted(broken.rglob("*.safetensors"))
    assert weights, f"{family}: the builder wrote no safetensors file"
    for path in weights:
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=rf"cannot load model from '{broken}'"):
        _load(family, str(broken))


def test_a_home_relative_uri_is_the_folder_not_a_hub_id(
    built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(built["text-classification"], tmp_path / "ckpt")
    component = component_class("text-classification")(ComponentSettings(model_uri="~/ckpt"))
    assert component.model_source() == str(tmp_path / "ckpt")
    _load("text-classification", "~/ckpt")
    with pytest.raises(ModelLoadError, match=r"'~/missing'.*no such directory"):
        _load("text-classification", "~/missing")
