"""Device and dtype selection: CUDA when present, CPU otherwise, and never silently CPU on a GPU.

`device: auto` falls back to CPU when torch sees no GPU. That is right on a CPU node and wrong
in a pod that holds a GPU: there it means the image's CUDA cannot use the GPU (most often a
node driver older than the CUDA build of the `-cuda` images: docs/runtimes.md, "GPU driver
floor"), and the model would serve at CPU speed while holding the GPU. `select_device` tells
the two apart by the device files the NVIDIA container runtime mounts into a pod granted
`nvidia.com/gpu`, and refuses the second with torch's own reason (`CudaUnusableError`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infergraph.errors import SettingsError

if TYPE_CHECKING:
    import torch

DtypeName = Literal["fp32", "fp16", "bf16"]
log = logging.getLogger(__name__)

# The NVIDIA container runtime mounts /dev/nvidia<N> for each GPU granted to the container
# (nvidia-container-toolkit: one device node per NVIDIA_VISIBLE_DEVICES entry); a pod
# without a GPU has none, whatever NVIDIA_VISIBLE_DEVICES the image sets.
DEVICE_DIR = Path("/dev")
GPU_DEVICE_GLOB = "nvidia[0-9]*"

# torch's CUDA initialisation messages (c10/cuda/CUDAFunctions.cpp, in torch/lib/libc10_cuda.so
# of the locked torch; pinned by tests/test_device.py): the short reason a metric label carries.
REASONS = (
    ("The NVIDIA driver on your system is too old", "driver_too_old"),
    ("Found no NVIDIA driver on your system", "no_driver"),
)
CPU_ONLY_TORCH = "cpu_only_torch"
UNUSABLE = "cuda_unusable"


class CudaUnusableError(SettingsError):
    """`device: auto` in a pod that holds a GPU its torch cannot use."""

    def __init__(self, gpus: list[str], detail: str) -> None:
        self.gpus = gpus
        self.detail = detail
        self.code = reason_code(detail)
        super().__init__(
            "device",
            f"'auto' in a container that holds GPU(s) {', '.join(gpus)}, but CUDA is unusable "
            f"({self.code}): {detail}. The -cuda images need an NVIDIA driver of branch R580 "
            "or newer (docs/runtimes.md, 'GPU driver floor'); set `device: cpu` to run on CPU "
            "knowingly",
        )


def held_gpus(devices: Path | None = None) -> list[str]:
    """The GPU device files mounted into this container (empty: it holds no GPU)."""
    found = (devices or DEVICE_DIR).glob(GPU_DEVICE_GLOB)
    return sorted(str(p) for p in found if p.name[6:].isdigit())


def reason_code(detail: str) -> str:
    """torch's CUDA initialisation message as a short, bounded label value."""
    if detail.startswith("torch is built without CUDA"):
        return CPU_ONLY_TORCH
    return next((code for text, code in REASONS if text in detail), UNUSABLE)


def cuda_problem() -> str | None:
    """Why this process's torch cannot use CUDA, in torch's words; None when it can."""
    import torch

    if not torch.backends.cuda.is_built():
        return "torch is built without CUDA (a CPU image on a GPU node)"
    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()  # raises with the driver's reason, which is_available() swallows
    except (RuntimeError, AssertionError) as exc:
        return str(exc).strip()
    return "torch.cuda.is_available() is False after a successful CUDA initialisation"


def select_device(requested: str = "auto", devices: Path | None = None) -> torch.device:
    """Resolve 'auto' to cuda:0 when a GPU is usable, CPU when none is held; refuse the rest."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        gpus = held_gpus(devices)
        problem = cuda_problem() if gpus else None
        if problem is not None:
            error = CudaUnusableError(gpus, problem)
            log.error("GPU HELD BUT UNUSED: %s", error)
            raise error
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError(
            "device", f"'{requested}' requested but CUDA is unusable: {cuda_problem()}"
        )
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


def forward_thread_setup(device: object, instances: int) -> Callable[[], None] | None:
    """What each of a model's forward threads runs first: its share of the CPU's threads.

    A CPU forward pass parallelises each operator over torch's intra-op threads, which meet
    at a barrier after every operator; on a small machine one thread held up by the server's
    event loop stalls the rest. Several instances on a CPU each get `cores // instances`
    threads (at least one) instead of all contending for all of them: on the 2-core
    benchmark machine two single-threaded MiniLM instances ran 1,110 items/s where one
    two-threaded instance ran 790, and two two-threaded ones 616 (`docs/runtimes.md`).

    Every CPU model's forward threads set their count, one instance included: torch's
    `set_num_threads` also changes the count threads started later begin with, so a model
    of several instances would otherwise shrink the pool of a model loaded after it in the
    same server. `cores` is read on the calling thread (the server's event loop, which
    never sets it). A GPU, or a CPU process that has not loaded torch, needs nothing.
    """
    if getattr(device, "type", device) != "cpu":
        return None
    if instances <= 1 and "torch" not in sys.modules:
        return None
    import torch

    threads = max(1, torch.get_num_threads() // max(1, instances))

    def setup() -> None:
        torch.set_num_threads(threads)

    return setup
