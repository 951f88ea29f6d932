"""`device: auto` in a pod that holds a GPU its torch cannot use (audit 17).

Runs torch's real CUDA entry points (`torch.backends.cuda.is_built`, `torch.cuda.is_available`,
`torch.cuda.init`) on this GPU-less machine with the locked CUDA build of torch: they answer
exactly as in a pod whose driver is missing, so only the device files a pod granted
`nvidia.com/gpu` would have are laid out by the test (a `nvidia0` file in a folder).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from mlserver.settings import ModelParameters, ModelSettings
from prometheus_client import REGISTRY

from infergraph import device
from infergraph.device import CudaUnusableError, held_gpus, reason_code, select_device

needs_cuda_torch = pytest.mark.skipif(
    not torch.backends.cuda.is_built(), reason="the locked torch is a CUDA build; this one is not"
)
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="a usable GPU is present")


def gpu_pod(tmp_path: Path) -> Path:
    """/dev as a pod granted one GPU sees it: the container runtime mounts /dev/nvidia0."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm"):
        (dev / name).touch()
    return dev


def test_held_gpus_counts_only_numbered_device_files(tmp_path: Path) -> None:
    dev = gpu_pod(tmp_path)
    (dev / "nvidia1").touch()
    assert held_gpus(dev) == [str(dev / "nvidia0"), str(dev / "nvidia1")]
    assert held_gpus(tmp_path) == []


@no_gpu_here
def test_auto_without_a_gpu_in_the_pod_is_cpu(tmp_path: Path) -> None:
    assert select_device("auto", devices=tmp_path) == torch.device("cpu")


@no_gpu_here
@needs_cuda_torch
def test_auto_holding_a_gpu_torch_cannot_use_refuses_with_torchs_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(CudaUnusableError) as caught:
        select_device("auto", devices=gpu_pod(tmp_path))
    error = caught.value
    assert error.code == "no_driver"  # what torch.cuda.init() says on this driver-less machine
    assert error.detail.startswith("Found no NVIDIA driver on your system")
    assert "nvidia0" in str(error) and "R580" in str(error) and "device: cpu" in str(error)
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert any("GPU HELD BUT UNUSED" in message for message in errors)


@no_gpu_here
@needs_cuda_torch
def test_explicit_cuda_names_torchs_reason() -> None:
    with pytest.raises(device.SettingsError, match="Found no NVIDIA driver"):
        select_device("cuda:0")


@needs_cuda_torch
def test_reason_codes_match_the_messages_in_the_locked_torch() -> None:
    """The texts `reason_code` looks for are torch's own (c10/cuda/CUDAFunctions.cpp)."""
    library = Path(torch.__file__).parent / "lib" / "libc10_cuda.so"
    text = library.read_bytes()
    for message, code in device.REASONS:
        assert message.encode() in text, f"{message!r} is not in {library}"
        assert reason_code(f"{message} (found version 12080). Please update") == code
    assert reason_code(device.cuda_problem() or "") == "no_driver" or torch.cuda.is_available()
    assert reason_code("torch is built without CUDA (a CPU image)") == "cpu_only_torch"
    assert reason_code("CUDA error: something else") == "cuda_unusable"


@no_gpu_here
@needs_cuda_torch
def test_mlserver_runtime_fails_the_load_and_exports_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime as MLServer drives it: load() raises and the gauge names model and reason."""
    from infergraph.serving.mlserver_runtime import ComponentRuntime

    monkeypatch.setattr(device, "DEVICE_DIR", gpu_pod(tmp_path))
    settings = ModelSettings(
        name="gpu-node",
        implementation=ComponentRuntime,
        parameters=ModelParameters(extra={"family": "image-classification", "device": "auto"}),
    )
    runtime = ComponentRuntime(settings)
    with pytest.raises(CudaUnusableError):
        asyncio.run(runtime.load())
    labels = {"model": "gpu-node", "reason": "no_driver"}
    assert REGISTRY.get_sample_value("infergraph_cuda_unusable", labels) == 1.0


# CUDA major -> NVIDIA's minimum Linux driver branch (CUDA toolkit release notes, Table 3).
DRIVER_FLOOR = {12: "R525", 13: "R580"}


def test_the_documented_driver_floor_is_that_of_the_locked_cuda() -> None:
    lock = (Path(__file__).resolve().parent.parent / "uv.lock").read_text()
    entry = lock.split('name = "cuda-toolkit"\nversion = "', 1)[1]
    major = int(entry.split(".", 1)[0])
    readme = (Path(__file__).resolve().parent.parent / "images" / "README.md").read_text()
    assert f"The lock's CUDA is **{major}." in readme
    assert f"driver **{DRIVER_FLOOR[major]} or newer**" in readme
