"""`make bench-runtimes`: direct batched forward throughput vs. through MLServer, per family.

Throughput is in items per second, one item per request. The direct figure runs the
prepared rows of the benchmark's requests through `run_batch` at the best batch size
(the limit the hardware allows); the served figure sends the same requests to a real
`mlserver start` with our per-row adaptive batching at concurrency 16; the ratio of the
two and the client-side p50/p99 follow. Checkpoints are the real architectures with
random weights (no hub here); the compute-heavy families (SigLIP, ViT) run at base size,
where the forward pass dominates and the ratio is meaningful. For tiny checkpoints the
forward takes microseconds and the ratio only measures serving overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import console, percentiles, print_table, write_results
from infergraph.checkpoints.registry import BUILDERS
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
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
    target = root / family
    target.mkdir(parents=True, exist_ok=True)
    return BUILDERS[family].build_for(reference, target, scale)


# Inputs a family's benchmark request leaves out: image embedding is measured on images
# alone (the embed_image case), not with a zero-shot text row riding along.
LEAVE_OUT: dict[str, set[str]] = {"image-embedding": {"text"}}
VARIANTS = 3


def request_inputs(component: Any, family: str) -> list[dict[str, np.ndarray]]:
    """A few one-item requests (the same ones direct and served runs use)."""
    many = component.example_inputs(VARIANTS)
    skip = LEAVE_OUT.get(family, set())
    requests = []
    for i in range(VARIANTS):
        requests.append(
            {
                name: (value[i : i + 1] if len(value) == VARIANTS else value)
                for name, value in many.items()
                if name not in skip
            }
        )
    return requests


def direct_throughput(
    family: str, uri: Path, seconds: float
) -> tuple[float, int, list[dict[str, np.ndarray]]]:
    """Best items/s of run_batch over batch sizes, rows prepared beforehand (the forward only).

    Also returns the requests it measured, for the served run to send.
    """
    cls = component_class(family)
    component = cls(ComponentSettings(model_uri=str(uri), max_batch_size=max(BATCH_SIZES)))
    component.start()
    requests = request_inputs(component, family)
    prepared = [component.prepare(inputs, {}) for inputs in requests]
    key = prepared[0].batch_key
    best, best_bs = 0.0, 1
    for bs in BATCH_SIZES:
        rows = [row for i in range(bs) for row in prepared[i % len(prepared)].rows]
        component.run_batch(rows, key)  # warm this shape
        items, iterations, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds or iterations < 3:
            component.run_batch(rows, key)
            items += bs
            iterations += 1
        rate = items / (time.perf_counter() - start)
        if rate > best:
            best, best_bs = rate, bs
        elif rate < best * 0.5:
            break  # far past the knee: larger batches only cost memory and time
    return best, best_bs, requests


def v2_bodies(requests: list[dict[str, np.ndarray]]) -> list[bytes]:
    bodies = []
    for inputs in requests:
        tensors = []
        for name, array in inputs.items():
            datatype, shape, data, params = from_numpy(array)
            tensor: dict[str, Any] = {
                "name": name,
                "datatype": datatype,
                "shape": shape,
                "data": data,
            }
            if params.get("content_type") == "base64":
                tensor["parameters"] = {"content_type": "base64"}
            tensors.append(tensor)
        bodies.append(json.dumps({"inputs": tensors}).encode())
    return bodies


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
            direct, best_bs, requests = direct_throughput(family, uri, args.seconds / 2)
            gc.collect()  # the direct run's model goes before the server loads its own
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
            bodies = v2_bodies(requests)
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
        "runtimes: direct forward vs through MLServer (items/s)",
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
