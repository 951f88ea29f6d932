"""PyTriton peer: the Triton Inference Server build bundled in nvidia-pytriton, CPU only.

One model `minilm` bound to a Python `@batch` function; Triton's dynamic batcher merges
requests (max 32 rows, 2 ms queue delay, as every batching peer). Triton wants the batch
dimension in each request, so a one-text request is `text` BYTES shape [1, 1].

Triton starts the Python backend stub as its own program, linked against libpython3.12.so:
the directory holding this interpreter's copy goes on LD_LIBRARY_PATH (pyenv's is not on
the loader's default path). The workspace (model store, tritonserver copy) goes in the
bench's per-run folder, the working directory.

SIGTERM (the bench stops the process group) is turned into the KeyboardInterrupt that
`Triton.serve` already handles: it stops tritonserver and the backend stub, and removes
its workspace and shared-memory regions, instead of dying with them left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import torch
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

sys.path.insert(0, os.path.dirname(__file__))
from common import embed, load

# PEER_INSTANCES > 1: Triton model instances (PyTriton binds one per callable given), each
# with its own copy of the model, run in threads of this process; on a CPU each thread takes
# its share of PEER_THREADS, as the kit's runtime gives its forward threads theirs.
INSTANCES = int(os.environ.get("PEER_INSTANCES", "1"))
THREADS_EACH = max(1, int(os.environ.get("PEER_THREADS", "2")) // INSTANCES)


def instance():
    """One instance's callable: its own model, its thread's share of the CPU threads."""
    model = load(os.environ["PEER_MODEL_DIR"])
    local = threading.local()

    @batch
    def infer(text: np.ndarray) -> dict[str, np.ndarray]:
        """`text` is [batch, 1] of bytes; one L2-normalised vector per row."""
        if INSTANCES > 1 and not getattr(local, "threads_set", False):
            torch.set_num_threads(THREADS_EACH)
            local.threads_set = True
        texts = [row[0].decode() for row in text]
        return {"embedding": np.asarray(embed(model, texts), dtype=np.float32)}

    return infer


def config() -> TritonConfig:
    return TritonConfig(
        http_address="127.0.0.1",
        http_port=int(os.environ["PEER_PORT"]),
        grpc_address="127.0.0.1",
        grpc_port=int(os.environ["PEER_GRPC_PORT"]),
        metrics_address="127.0.0.1",
        metrics_port=int(os.environ["PEER_METRICS_PORT"]),
        allow_gpu_metrics=False,
        exit_timeout_secs=5,
    )


def main() -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = [libdir, *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":"))]
    os.environ["LD_LIBRARY_PATH"] = ":".join(paths)
    with Triton(config=config(), workspace=Path.cwd() / "pytriton-workspace") as triton:
        triton.bind(
            model_name="minilm",
            infer_func=[instance() for _ in range(INSTANCES)] if INSTANCES > 1 else instance(),
            inputs=[Tensor(name="text", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="embedding", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(
                max_batch_size=32,
                batcher=DynamicBatcher(max_queue_delay_microseconds=2000),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
