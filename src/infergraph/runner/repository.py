"""Turn graph nodes into an MLServer model repository (one folder per node).

Offline mode builds each node's checkpoint from the real architecture with
random weights (the family's builder in `infergraph.checkpoints.registry`), because
no model hub is reachable; latency and cost are then real, outputs are meaningless.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from infergraph.checkpoints.builder import Scale
from infergraph.checkpoints.registry import checkpoint_builder
from infergraph.components.registry import component_class
from infergraph.graph.model import InferenceGraph, Node
from infergraph.graph.model_settings import model_settings

log = logging.getLogger(__name__)


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infergraph"
    return Path(os.environ.get("INFERGRAPH_CACHE", default))


def offline_checkpoint(node: Node, scale: Scale) -> str | None:
    """Build (once, cached) a random-weight checkpoint of the node's real architecture."""
    cls = component_class(node.family)  # an unknown family fails here, naming the known ones
    builder = checkpoint_builder(node.family)
    if builder is None:
        return None  # weightless plumbing
    source = node.model_uri or cls.default_model
    if Path(source).is_dir():
        return source  # a local checkpoint needs no hub: use it as it is
    digest = hashlib.sha1(f"{node.family}:{source}:{scale}".encode()).hexdigest()[:12]
    target = cache_root() / "offline" / f"{node.family}-{scale}-{digest}"
    marker = target / ".complete"
    if not marker.exists():
        log.warning(
            "OFFLINE: building %s checkpoint for node '%s' (%s, %s size) with RANDOM weights",
            node.family,
            node.name,
            source,
            scale,
        )
        target.mkdir(parents=True, exist_ok=True)
        builder.build_for(source, target, scale)
        marker.write_text(source)
    return str(target)


def write_repository(
    graph: InferenceGraph, root: Path, offline: bool, scale: Scale = "full"
) -> dict[str, Path]:
    """Write one model folder per node under `root`; returns node -> folder."""
    return {
        node.name: write_model_folder(
            node, root, offline_checkpoint(node, scale) if offline else None
        )
        for node in graph.spec.nodes
    }


def write_model_folder(node: Node, root: Path, uri: str | None) -> Path:
    """`root/<node>/model-settings.json` for `node`, loading `uri` (None: its modelUri)."""
    folder = root / node.name
    folder.mkdir(parents=True, exist_ok=True)
    settings = model_settings(node.name, node.family, node, uri or node.model_uri)
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder
