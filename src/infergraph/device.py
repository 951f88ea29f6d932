"""Device and dtype selection: CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from infergraph.errors import SettingsError

if TYPE_CHECKING:
    import torch

DtypeName = Literal["fp32", "fp16", "bf16"]
log = logging.getLogger(__name__)


def select_device(requested: str = "auto") -> torch.device:
    """Resolve 'auto' to cuda:0 when a GPU is visible; reject a CUDA request without one."""
    import torch

    if requested == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("device", f"'{requested}' requested but no CUDA device is visible")
    try:
        return torch.device(requested)
    except RuntimeError as exc:
        raise SettingsError("device", f"unknown device '{requested}'") from exc


def select_dtype(name: str, device: torch.device) -> torch.dtype:
    """Map fp32/fp16/bf16 to a torch dtype; fp16 on CPU falls back to fp32 (slow or unsupported)."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise SettingsError("dtype", f"'{name}' is not one of {sorted(table)}")
    if name == "fp16" and device.type == "cpu":
        log.warning("dtype fp16 is not supported well on CPU; using fp32 instead")
        return torch.float32
    return table[name]
