"""The prepared GPU run (benchmarks/gpu_run.sh) works end to end, checked on the CPU.

No GPU is lent to most sessions: `--smoke` runs the same script with tiny checkpoints on
the CPU, through the direct sweep and a real `mlserver start`, so the day a GPU is lent the
run does not fail on anything but the GPU itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # it starts an MLServer per model


def test_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_run.sh"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["summary"]["smoke"] is True
    rows = {row["model"]: row for row in result["rows"]}
    assert set(rows) == {"siglip-so400m-384", "vit-b16-224"}
    for row in rows.values():
        assert row["errors"] == 0
        assert row["gflop_per_image"] > 0
        assert row["direct_images_per_s"] > 0 and row["served_images_per_s"] > 0
        batches = [p["batch"] for p in row["profile"]]
        assert batches[0] == 1 and batches == sorted(batches)
        assert row["served_over_direct"] == pytest.approx(
            row["served_images_per_s"] / row["direct_images_per_s"]
        )
