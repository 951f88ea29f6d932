"""`make bench-runtimes`: direct batched forward throughput vs. through MLServer, per family.

For each model family: the best direct forward throughput over batch sizes
(the limit the hardware allows), then the throughput a real `mlserver start`
reaches with our per-row adaptive batching at concurrency 16, their ratio,
and the client-side p50/p99. Checkpoints are the real architectures with random
weights (no hub here); the compute-heavy families (SigLIP, ViT) run at base size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import console, percentiles, print_table, write_results
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
from infergraph.runner.repository import architecture_kwargs
from infergraph.serving.tensors import from_numpy
from tests.servers import mlserver, write_model

# family -> (reference architecture, scale, heavy?)
FAMILIES: dict[str, tuple[str, str, bool]] = {
    "image-embedding": ("google/siglip-base-patch16-224", "full", True),
    "image-classification": ("google/vit-base-patch16-224", "full", True),
    "image-captioning": ("Salesforce/blip-image-captioning-base", "tiny", False),
    "object-detection": ("facebook/detr-resnet-50", "tiny", False),
    "text-classification": ("distilbert-base-uncased-finetuned-sst-2-english", "full", False),
    "language-identification": ("papluca/xlm-roberta-base-language-detection", "tiny", False),
    "translation": ("Helsinki-NLP/opus-mt-fr-en", "tiny", False),
    "summarization": ("sshleifer/distilbart-cnn-12-6", "tiny", False),
    "question-answering": ("distilbert-base-cased-distilled-squad", "full", False),
    "speech-recognition": ("facebook/s2t-small-librispeech-asr", "tiny", False),
    "text-embedding": ("sentence-transformers/all-MiniLM-L6-v2", "full", False),
}
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def build(family: str, reference: str, scale: str, root: Path) -> Path:
    """The offline builder `infergraph serve --offline` uses, for the reference architecture."""
    cls = component_class(family)
    target = root / family
    target.mkdir(parents=True, exist_ok=True)
    build_checkpoint = cls.build_checkpoint  # type: ignore[attr-defined]
    build_checkpoint(target, scale=scale, **architecture_kwargs(build_checkpoint, reference))
    return target


def direct_throughput(family: str, uri: Path, seconds: float) -> tuple[float, int]:
    """Best rows/s of run_batch over batch sizes, rows prepared beforehand (the forward only)."""
    cls = component_class(family)
    component = cls(ComponentSettings(model_uri=str(uri), max_batch_size=max(BATCH_SIZES)))
    component.start()
    best, best_bs = 0.0, 1
    for bs in BATCH_SIZES:
        prepared = component.prepare(component.example_inputs(bs), {})
        rows = prepared.rows[:bs]
        component.run_batch(rows, prepared.batch_key)  # warm this shape
        count, iterations, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds or iterations < 3:
            component.run_batch(rows, prepared.batch_key)
            count += len(rows)
            iterations += 1
        rate = count / (time.perf_counter() - start)
        if rate > best:
            best, best_bs = rate, bs
        elif rate < best * 0.5:
            break  # far past the knee: larger batches only cost memory and time
    return best, best_bs


def v2_body(family: str, uri: Path, row: int) -> bytes:
    cls = component_class(family)
    component = cls(ComponentSettings(model_uri=str(uri), warmup=False))
    inputs = component.example_inputs(1 + row % 3)
    first = {
        k: v[row % len(v) : row % len(v) + 1] if v.ndim and len(v) > 1 else v
        for k, v in inputs.items()
    }
    tensors = []
    for name, array in first.items():
        datatype, shape, data, params = from_numpy(array)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape, "data": data}
        if params.get("content_type") == "base64":
            tensor["parameters"] = {"content_type": "base64"}
        tensors.append(tensor)
    return json.dumps({"inputs": tensors}).encode()


async def through_server(
    url: str, bodies: list[bytes], concurrency: int, seconds: float
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:

        async def worker(i: int) -> None:
            nonlocal errors
            n = i
            while time.perf_counter() < stop_at:
                body = bodies[n % len(bodies)]
                n += concurrency
                t0 = time.perf_counter()
                async with s.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                latencies.append((time.perf_counter() - t0) * 1000.0)

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        root = Path(tmp)
        for family in args.families:
            reference, scale, heavy = FAMILIES[family]
            console.print(f"[bold]{family}[/] ({reference}, {scale} size)")
            uri = build(family, reference, scale, root / "ckpt")
            direct, best_bs = direct_throughput(family, uri, args.seconds / 2)
            models = root / f"serve-{family}"
            models.mkdir()
            write_model(
                models,
                "m",
                family,
                uri=str(uri),
                max_batch_size=max(best_bs, 4),
                max_batch_time=0.005,
            )
            bodies = [v2_body(family, uri, i) for i in range(3)]
            # Every body must have one row so rows/s and requests/s agree.
            bodies = [b for b in bodies if json.loads(b)["inputs"][0]["shape"][0] == 1] or bodies
            with mlserver(models) as server:
                url = f"{server.url}/v2/models/m/infer"
                asyncio.run(through_server(url, bodies, args.concurrency, 2.0))  # warm-up
                served, latencies, errors = asyncio.run(
                    through_server(url, bodies, args.concurrency, args.seconds)
                )
            row = {
                "family": family,
                "checkpoint": reference,
                "scale": scale,
                "heavy": heavy,
                "best_batch": best_bs,
                "direct_rps": direct,
                "mlserver_rps": served,
                "ratio": served / direct if direct else float("nan"),
                **percentiles(latencies),
                "errors": errors,
            }
            rows.append(row)
            console.print(row)
    heavy_ratios = [r["ratio"] for r in rows if r["heavy"]]
    summary = {
        "min_heavy_ratio": min(heavy_ratios) if heavy_ratios else None,
        "goal_min_heavy_ratio": 0.85,
        "concurrency": args.concurrency,
    }
    print_table(
        "runtimes: direct forward vs through MLServer (rows/s)",
        rows,
        [
            "family",
            "scale",
            "best_batch",
            "direct_rps",
            "mlserver_rps",
            "ratio",
            "p50_ms",
            "p99_ms",
            "errors",
        ],
    )
    path = write_results("runtimes", rows, summary, vars(args))
    console.print(f"summary: {summary}\nwrote {path}")


if __name__ == "__main__":
    main()
