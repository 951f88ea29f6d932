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
from pathlib import Path

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

sys.path.insert(0, os.path.dirname(__file__))
from common import embed, load

MODEL = load(os.environ["PEER_MODEL_DIR"])


@batch
def infer(text: np.ndarray) -> dict[str, np.ndarray]:
    """`text` is [batch, 1] of bytes; one L2-normalised vector per row."""
    texts = [row[0].decode() for row in text]
    return {"embedding": np.asarray(embed(MODEL, texts), dtype=np.float32)}


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
            infer_func=infer,
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
