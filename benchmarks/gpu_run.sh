#!/usr/bin/env bash
# The prepared GPU run of issue 30: SigLIP so400m-patch14-384 and ViT-B/16, bf16, direct and
# through the served path, on whatever GPU this machine has; writes bench-results/gpu.json
# (`--out` elsewhere). Sized for at most 10 minutes of device time; `--smoke` runs it on a CPU
# with tiny checkpoints in a minute or two.
#
# Interpreter: $PYTHON if set, else the project's .venv, else `python3` (a lent GPU machine's,
# which holds PyTorch and transformers but not MLServer): there the wheels that
# `benchmarks/gpu_wheels.py` put in .whl/ (carried with the working tree) are installed into
# /tmp/site first, and infergraph runs from src/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ "$PYTHON" = python3 ] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PATH="/tmp/site/bin:$PATH"
fi
export PYTHONPATH="$PWD/src:$PWD/async_load_tester/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
{ date -u; uptime; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true; } >&2
exec timeout "${GPU_RUN_TIMEOUT:-560}" "$PYTHON" benchmarks/bench_gpu.py "$@"
