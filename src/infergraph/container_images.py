"""The one place container image names come from: registry and organisation, names, tags.

The renderers, the chart's values and the README read the registry from here
(`docker.io/infergraph` unless a `RenderOptions.image_registry` or the chart's
`image.registry` value says otherwise).
"""

from __future__ import annotations

from infergraph import __version__

DEFAULT_REGISTRY = "docker.io/infergraph"
MLSERVER_RUNTIMES = "mlserver-runtimes"
SELDON_COMPONENTS = "seldon-components"
OPERATOR = "operator"
LOAD_TESTER = "async-load-tester"
CUDA_SUFFIX = "-cuda"


def image_ref(
    name: str, registry: str = DEFAULT_REGISTRY, tag: str | None = None, cuda: bool = False
) -> str:
    """`<registry>/<name>:<version>[-cuda]`: the CUDA variant only for pods that get a GPU."""
    version = tag or __version__
    return f"{registry.rstrip('/')}/{name}:{version}{CUDA_SUFFIX if cuda else ''}"
