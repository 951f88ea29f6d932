"""`make bench-coldstart`: per family, a replica's start: process start to ready, and the pull.

A replica that scales out pays two things before it serves: pulling its image, then
`mlserver start` importing the runtime and loading the weights. The second is measured
here per family: the time from the process's start to `/v2/health/ready` answering 200,
weights from a warm local cache (the checkpoint `bench-runtimes` would serve, built first
and read once, so it sits in the page cache). Each family starts `--starts` times; the
median counts. The first is taken from `make bench-images`' results (`images.json`):
every family is served by the runtimes image, so its pull size is the same for all.
`infergraph profile` times the same start per node (`server_start_s`, which a plan's new pods
take); the pull is what `infergraph plan --pod-pending-s` adds before it.

Checkpoints are the reference architectures with random weights at the scale
`bench-runtimes` uses (full for the text and image families it measures at real size, tiny
otherwise): a tiny checkpoint's start is mostly imports, not weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_runtimes import FAMILIES, build, image_pull_mb, uptime
from benchmarks.common import console, print_table, write_results
from tests.servers import mlserver, write_model

RUNTIME_IMAGE = "docker.io/infergraph/mlserver-runtimes:0.1.0-cuda"


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def warm(path: Path) -> None:
    """Read every file once: the weights come from the page cache, as from a warm node."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in files:
        with p.open("rb") as f:
            while f.read(1 << 24):
                pass


def ready_seconds(models: Path) -> float:
    started = time.perf_counter()
    with mlserver(models, startup_timeout=600):
        return time.perf_counter() - started


def family_row(family: str, root: Path, starts: int) -> dict[str, Any]:
    reference, scale, _ = FAMILIES[family]
    console.print(f"[bold]{family}[/] ({reference}, {scale} size)")
    uri = build(family, reference, scale, root / "ckpt")
    warm(uri)
    models = root / f"serve-{family}"
    write_model(models, "m", family, uri=str(uri))
    times = [ready_seconds(models) for _ in range(starts)]
    return {
        "family": family,
        "checkpoint": reference,
        "scale": scale,
        "weights_mb": size_mb(uri),
        "ready_s": statistics.median(times),
        "ready_s_each": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--starts", type=int, default=2, help="starts per family (median)")
    args = parser.parse_args()
    load_before = uptime()
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        rows = [family_row(family, Path(tmp), args.starts) for family in args.families]
    pulls = image_pull_mb()
    summary = {
        "ready_s": {r["family"]: r["ready_s"] for r in rows},
        "image": RUNTIME_IMAGE,
        "image_pull_mb": pulls.get(RUNTIME_IMAGE),
        "image_pull_source": "bench-results/images.json (make bench-images)",
        "loadavg_before": load_before,
        "loadavg_after": uptime(),
    }
    columns = ["family", "scale", "weights_mb", "ready_s"]
    print_table("cold start: process start to ready (weights in the page cache)", rows, columns)
    path = write_results("coldstart", rows, summary, vars(args))
    console.print(f"summary: {summary}\nwrote {path}")


if __name__ == "__main__":
    main()
