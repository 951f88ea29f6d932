"""What a family's offline builder is: a build function and how it reads a checkpoint id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Scale = Literal["tiny", "full"]


def nothing_to_choose(reference: str) -> dict[str, str]:
    """For families with one architecture: the checkpoint id changes nothing."""
    return {}


@dataclass(frozen=True)
class CheckpointBuilder:
    """One family's random-weight builder.

    `build(target_dir, scale=..., **choose(reference))` saves a checkpoint of the
    architecture the hub id `reference` names. Each family's `choose` reads the id
    itself (`timm/...` -> timm backend, `...whisper...` -> Whisper), because only the
    family knows which of its architectures an id stands for.
    """

    build: Callable[..., Path]
    choose: Callable[[str], dict[str, str]] = nothing_to_choose

    def build_for(self, reference: str, target_dir: Path, scale: Scale) -> Path:
        """Save the stand-in for `reference` at `scale` under `target_dir`."""
        return self.build(target_dir, scale=scale, **self.choose(reference))
