"""`benchmarks/gpu_run.sh`: SigLIP so400m-patch14-384 and ViT-B/16 on a lent GPU (issue 30).

Per model (real architecture at full size, random weights, bf16, transformers' default
scaled-dot-product attention):

- the direct forward pass over batch sizes 1, 2, 4, ... until memory runs out or
  throughput stops growing: images/s and the per-batch time (the measured profile the
  planner's GPU classes need), on prepared pixels;
- the same with `torch.compile` (`reduce-overhead`: CUDA graphs), to say whether it pays;
- the whole served path: `mlserver start` with the runtime, JPEG/PNG bytes in V2 JSON,
  per-row batching up to the best batch size, a closed loop of clients;
- images/s against the chip's dense bf16 limit (FLOPs per image counted by torch's
  FlopCounterMode on the model itself: about 670 GFLOP for so400m at 384 px).

`--smoke` runs tiny checkpoints on the CPU for a few seconds, so a test checks the whole
script end to end where no GPU is lent. Results go to bench-results/gpu.json (`--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_runtimes import build, request_inputs, v2_bodies
from benchmarks.closed_loop import through_server
from benchmarks.common import RESULTS, console, machine, print_table
from infergraph.components.base import Component, ComponentSettings
from infergraph.components.registry import component_class
from tests.servers import mlserver, write_model

MODELS: dict[str, tuple[str, str]] = {
    "siglip-so400m-384": ("image-embedding", "google/siglip-so400m-patch14-384"),
    "vit-b16-224": ("image-classification", "google/vit-base-patch16-224"),
}
# Dense bf16 tensor throughput (TFLOP/s, no sparsity) by a name the device reports.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


def peak_tflops(device_name: str | None) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if device_name and key in device_name:
            return tflops
    return None


def start(family: str, uri: Path, args: argparse.Namespace, max_batch: int) -> Component:
    settings = ComponentSettings(
        model_uri=str(uri), max_batch_size=max_batch, device=args.device, dtype=args.dtype
    )
    component = component_class(family)(settings)
    component.start()
    return component


def flops_per_image(component: Component, rows: list[Any], key: Any) -> float:
    """FLOPs of one image's forward pass, as torch counts them on this model."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        component.run_batch(rows[:1], key)
    return float(counter.get_total_flops())


def timed_batches(component: Component, rows: list[Any], key: Any, seconds: float) -> list[float]:
    """Seconds per forward pass of `rows`, repeated for `seconds` (at least 3 passes)."""
    component.run_batch(rows, key)  # warm this shape (and any compilation)
    times: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds or len(times) < 3:
        t0 = time.perf_counter()
        component.run_batch(rows, key)  # returns numpy: the device has finished
        times.append(time.perf_counter() - t0)
    return times


def sweep(
    component: Component, args: argparse.Namespace, label: str, only: int | None = None
) -> list[dict[str, Any]]:
    """Images/s and per-batch time at each batch size until memory or growth runs out
    (`only`: that batch size alone)."""
    import torch

    prepared = [component.prepare(r, {}) for r in request_inputs(component, args.family)]
    rows_one = [row for p in prepared for row in p.rows]
    key = prepared[0].batch_key
    profile: list[dict[str, Any]] = []
    bs = only or 1
    while bs <= (only or args.max_batch):
        rows = [rows_one[i % len(rows_one)] for i in range(bs)]
        try:
            times = timed_batches(component, rows, key, args.seconds)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        p50 = statistics.median(times)
        profile.append(
            {
                "variant": label,
                "batch": bs,
                "batch_ms_p50": p50 * 1e3,
                "batch_ms_max": max(times) * 1e3,
                "images_per_s": bs / p50,
            }
        )
        console.print(profile[-1])
        if len(profile) > 2 and profile[-1]["images_per_s"] < 1.02 * profile[-2]["images_per_s"]:
            break  # past the knee: larger batches only add latency
        bs *= 2
    return profile


def compiled_profile(
    component: Component, args: argparse.Namespace, batch: int
) -> list[dict[str, Any]]:
    """The best eager batch size again with the model under torch.compile (CUDA graphs on a
    GPU), when asked: one shape, so one compilation, within the run's time."""
    import torch

    model = getattr(component, "model", None)
    if not args.compile or model is None:
        return []
    # SigLIP's run_batch calls `model.get_image_features`, which a compiled wrapper of the
    # whole model would pass through uncompiled: compile the tower that does the work.
    owner, attr = (
        (model, "vision_model") if hasattr(model, "vision_model") else (component, "model")
    )
    eager = getattr(owner, attr)
    setattr(owner, attr, torch.compile(eager, mode="reduce-overhead", dynamic=False))
    try:
        return sweep(component, args, "compiled", only=batch)
    except Exception as exc:  # a model torch.compile cannot take: say so, keep eager figures
        console.print(f"torch.compile failed: {exc!r}")
        return [{"variant": "compiled", "error": repr(exc)[:300]}]
    finally:
        setattr(owner, attr, eager)


def served(uri: Path, batch: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Images/s through `mlserver start` at `2 x batch` concurrent one-image requests."""
    models = root / f"serve-{args.name}"
    models.mkdir(parents=True)
    write_model(
        models,
        "m",
        args.family,
        uri=str(uri),
        max_batch_size=batch,
        max_batch_time=0.005,
        device=args.device,
        dtype=args.dtype,
    )
    component = component_class(args.family)(ComponentSettings(model_uri=str(uri)))
    bodies = v2_bodies(request_inputs(component, args.family))
    concurrency = max(2 * batch, 4)
    with mlserver(models, startup_timeout=600) as server:
        url = f"{server.url}/v2/models/m/infer"
        asyncio.run(through_server(url, bodies, concurrency, min(args.seconds, 3.0)))  # warm-up
        run = asyncio.run(through_server(url, bodies, concurrency, args.seconds * 4))
    return {
        "served_images_per_s": run.rps,
        "served_concurrency": concurrency,
        "errors": run.errors,
        "served_p50_ms": run.p50_ms,
        "served_p99_ms": run.p99_ms,
    }


def model_row(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Direct sweep (eager, compiled), then the served path at the best batch, for one model."""
    family, reference = MODELS[name]
    args.name, args.family = name, family
    console.print(f"[bold]{name}[/] ({reference}, {args.scale} size, {args.dtype})")
    uri = build(family, reference, args.scale, root / "ckpt")
    component = start(family, uri, args, args.max_batch)
    prepared = component.prepare(request_inputs(component, family)[0], {})
    flops = flops_per_image(component, prepared.rows, prepared.batch_key)
    profile = sweep(component, args, "eager")
    eager_best = max(profile, key=lambda p: float(p["images_per_s"]))
    profile += compiled_profile(component, args, int(eager_best["batch"]))
    del component
    _free_device()
    measured = [p for p in profile if "images_per_s" in p]
    best = max(measured, key=lambda p: p["images_per_s"])
    row: dict[str, Any] = {
        "model": name,
        "reference": reference,
        "family": family,
        "gflop_per_image": flops / 1e9,
        "direct_images_per_s": best["images_per_s"],
        "direct_variant": best["variant"],
        "best_batch": best["batch"],
        "profile": profile,
        **served(uri, best["batch"], args, root),
    }
    row["served_over_direct"] = row["served_images_per_s"] / row["direct_images_per_s"]
    peak = peak_tflops(machine().get("gpu"))
    row["peak_bf16_tflops"] = peak
    for key in ("direct", "served"):
        achieved = row[f"{key}_images_per_s"] * flops / 1e12
        row[f"{key}_tflops"] = achieved
        row[f"{key}_share_of_peak"] = achieved / peak if peak else None
    return row


def _free_device() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--smoke", action="store_true", help="tiny checkpoints on the CPU")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--max-batch", type=int, default=512)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)
    args.scale, args.device, args.dtype = "full", "cuda", "bf16"
    if args.smoke:
        args.scale, args.device, args.seconds, args.max_batch = "tiny", "cpu", 0.2, 2
        args.dtype = "fp32"  # bf16 matmuls on a CPU without AMX are slower, not what is tested
        args.compile = False  # torch.compile on a CPU needs a C++ toolchain; not what is tested
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = Path("/proc/loadavg").read_text().strip()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        for name in args.models:
            rows.append(model_row(name, args, Path(tmp)))
            _free_device()
    summary = {
        "min_served_over_direct": min(r["served_over_direct"] for r in rows),
        "goal_served_over_direct": 0.95,
        "served_share_of_peak": {r["model"]: r["served_share_of_peak"] for r in rows},
        "goal_so400m_share_of_peak": 0.5,
        "smoke": args.smoke,
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
    }
    columns = [
        "model",
        "gflop_per_image",
        "best_batch",
        "direct_variant",
        "direct_images_per_s",
        "served_images_per_s",
        "served_over_direct",
        "served_share_of_peak",
        "errors",
    ]
    print_table("GPU: direct vs served (images/s)", rows, columns)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {
        "benchmark": "gpu",
        "created": started,
        "machine": machine(),
        "settings": settings,
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=float))
    console.print(f"summary: {summary}\nwrote {args.out}")


if __name__ == "__main__":
    main()
