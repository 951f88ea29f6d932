"""The offline checkpoint registry: one builder per weighted family, each reading its own ids.

Builds themselves are exercised by every component test (tests/*_fixtures.py and the
test modules' fixtures); this covers what `infergraph serve --offline` decides before it
builds anything, without torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infergraph.checkpoints.registry import BUILDERS, checkpoint_builder
from infergraph.components.registry import component_class, family_names

REPO = Path(__file__).resolve().parent.parent


def test_every_family_with_weights_has_a_builder_and_plumbing_has_none() -> None:
    weighted = {f for f in family_names() if component_class(f).default_model}
    assert set(BUILDERS) == weighted
    for family in set(family_names()) - weighted:
        assert checkpoint_builder(family) is None, family


@pytest.mark.parametrize(
    ("family", "reference", "expected"),
    [
        ("image-classification", "timm/resnet50.a1_in1k", {"backend": "timm"}),
        ("image-classification", "microsoft/resnet-50", {"backend": "transformers"}),
        ("image-classification", "google/vit-base-patch16-224", {"backend": "transformers"}),
        ("image-embedding", "google/siglip-base-patch16-224", {"architecture": "siglip"}),
        ("image-embedding", "openai/clip-vit-base-patch32", {"architecture": "clip"}),
        ("object-detection", "facebook/detr-resnet-50", {"architecture": "detr"}),
        ("object-detection", "hustvl/yolos-small", {"architecture": "yolos"}),
        (
            "speech-recognition",
            "facebook/s2t-small-librispeech-asr",
            {"architecture": "speech2text"},
        ),
        ("speech-recognition", "openai/whisper-tiny", {"architecture": "whisper"}),
        ("speech-recognition", "facebook/wav2vec2-base-960h", {"architecture": "wav2vec2"}),
        ("translation", "Helsinki-NLP/opus-mt-fr-en", {}),
    ],
)
def test_each_builder_reads_the_architecture_from_the_id(
    family: str, reference: str, expected: dict[str, str]
) -> None:
    chosen = BUILDERS[family].choose(reference)
    assert {k: v for k, v in chosen.items() if k != "reference"} == expected
    if "reference" in chosen:  # builders that size themselves from the id get it verbatim
        assert chosen["reference"] == reference


def test_the_registry_imports_without_model_frameworks() -> None:
    script = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'timm', 'sentence_transformers', 'tokenizers',\n"
        "             'sentencepiece', 'PIL'):\n"
        "    sys.modules[name] = None\n"
        "import infergraph.runner.repository\n"
        "from infergraph.checkpoints.registry import BUILDERS\n"
        "print(len(BUILDERS))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) == len(BUILDERS)
