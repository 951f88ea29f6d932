#!/usr/bin/env bash
# The prepared GPU run of issue 30: SigLIP so400m-patch14-384 and ViT-B/16, bf16, direct and
# through the served path, on whatever GPU this machine has; writes bench-results/gpu.json.
# Sized for at most 10 minutes of device time. Needs the project's virtualenv (PYTHON names
# another interpreter with the same packages); `--smoke` runs it on a CPU in under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ date -u; uptime; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true; } >&2
exec timeout "${GPU_RUN_TIMEOUT:-560}" "$PYTHON" benchmarks/bench_gpu.py "$@"
