"""The images this repository publishes: one Dockerfile target each, and the tags they get.

Tags are the ones .github/workflows/images.yml gives a release through docker/metadata-action:
`<version>`, `<major>.<minor>` and `sha-<short sha>`, each with `-cuda` for the CUDA variants.
Registry and organisation come from `infergraph.container_images.DEFAULT_REGISTRY` (one setting).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from infergraph import __version__
from infergraph.container_images import (
    DEFAULT_REGISTRY,
    LOAD_TESTER,
    MLSERVER_RUNTIMES,
    OPERATOR,
    SELDON_COMPONENTS,
    image_ref,
)

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "images" / "Dockerfile"


@dataclass(frozen=True)
class Image:
    """`torch`: which torch the image carries (cpu, cuda or none: torch-free)."""

    name: str
    cuda: bool
    torch: str

    @property
    def target(self) -> str:
        return f"{self.name}-cuda" if self.cuda else self.name

    def ref(self, tag: str | None = None, registry: str = DEFAULT_REGISTRY) -> str:
        return image_ref(self.name, registry, tag, self.cuda)

    def tags(self, registry: str = DEFAULT_REGISTRY) -> list[str]:
        major_minor = ".".join(__version__.split(".")[:2])
        return [self.ref(t, registry) for t in (__version__, major_minor, f"sha-{short_sha()}")]


IMAGES = (
    Image(MLSERVER_RUNTIMES, cuda=False, torch="cpu"),
    Image(MLSERVER_RUNTIMES, cuda=True, torch="cuda"),
    Image(SELDON_COMPONENTS, cuda=False, torch="cpu"),
    Image(SELDON_COMPONENTS, cuda=True, torch="cuda"),
    Image(OPERATOR, cuda=False, torch="none"),
    Image(LOAD_TESTER, cuda=False, torch="none"),
)


def by_target(target: str) -> Image:
    for image in IMAGES:
        if image.target == target:
            return image
    known = ", ".join(i.target for i in IMAGES)
    raise SystemExit(f"unknown image target '{target}' (known: {known})")


def revision() -> str:
    return git("rev-parse", "HEAD")


def short_sha() -> str:
    return git("rev-parse", "--short=7", "HEAD")


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_cpu_index_problem(index: str = TORCH_CPU_INDEX) -> str | None:
    """Why the CPU variants cannot be built here (their torch comes from `index`), or None."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{index}/torch/", timeout=10):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{index}, unreachable from this machine ({exc})"
