"""`make bench-runtimes`: direct batched forward throughput vs. through MLServer, per family.

Throughput is in items per second, one item per request. The direct figure runs the
prepared rows of the benchmark's requests through `run_batch` at the best batch size
(the limit the hardware allows); the served figure sends the same requests to a real
`mlserver start` with our per-row adaptive batching, at concurrency 64 by default (the
figure `min_light_ratio` takes for text embedding and text classification); the ratio of the
two and the client-side p50/p99 follow. `cpu_ratio` is the same ratio by CPU per item
(direct over served), which a machine other work shares moves much less than wall time.
`ready_s` is the server's time from process start to ready, weights from local disk: with
the runtime image's pull size (`make bench-images`) it is a replica's cold start.

For the families in `--account` (every one by default) a second window of load at the same
concurrency is profiled (`serving_account.py`): the server's CPU per request, by stage (HTTP,
body decode, validation, preparation, queueing and hand-offs, forward, response encode),
and the load generator's own CPU. A weightless identity model with a small V2 JSON tensor
gives `identity_rps_per_core`: requests answered per second of the server's CPU; the same
request over the binary extension and gRPC gives `identity_transport_vs_json`, and a bare
grpc.aio server under the same gRPC load gives `grpc_floor_rps_per_core` (grpc_floor.py).

Families in `--instances-families` are also measured as several model instances
(`--instances`, the node setting `instances`: copies with a forward thread each, on a CPU
splitting its threads). Each instance count gets its own direct figure (that many copies
running `run_batch` at once, at the best batch size of one copy) and its own served run; the
row's headline `direct_rps` and `mlserver_rps` are the best of each over the counts, so the
ratio compares the best way to serve the model with the best way to run it, and
`by_instances` keeps every count's figures.

Checkpoints are the real architectures with random weights (no hub here); the compute-heavy
families (SigLIP, ViT) run at base size, where the forward pass dominates and the ratio is
meaningful. For tiny checkpoints the forward takes microseconds and the ratio only measures
serving overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.closed_loop import LoopRun, through_server
from benchmarks.common import RESULTS, console, percentiles, print_table, write_results
from benchmarks.serving_account import COLUMNS, account, cores_while
from infergraph.checkpoints.registry import BUILDERS
from infergraph.components.base import ComponentSettings
from infergraph.components.registry import component_class
from infergraph.device import forward_thread_setup
from infergraph.tensors.v2json import encode_json
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
LIGHT = ("text-embedding", "text-classification")
IDENTITY_BODY = json.dumps(
    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.5] * 4}]}
).encode()
# The same tensor in the binary tensor extension: a JSON header, then the 16 raw bytes;
# the output asked for in binary too.
_BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 4],
                "parameters": {"binary_data_size": 16},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
).encode()
IDENTITY_BINARY = _BINARY_HEADER + np.full(4, 0.5, dtype="<f4").tobytes()
BINARY_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Inference-Header-Content-Length": str(len(_BINARY_HEADER)),
}


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
) -> tuple[float, int, float, list[dict[str, np.ndarray]]]:
    """Best items/s of run_batch over batch sizes, rows prepared beforehand (the forward only).

    Also returns the best batch size, the CPU microseconds per item there (this process's
    CPU time, every thread), and the requests it measured, for the served run to send.
    """
    cls = component_class(family)
    component = cls(ComponentSettings(model_uri=str(uri), max_batch_size=max(BATCH_SIZES)))
    component.start()
    requests = request_inputs(component, family)
    prepared = [component.prepare(inputs, {}) for inputs in requests]
    key = prepared[0].batch_key
    best, best_bs, best_cpu = 0.0, 1, 0.0
    for bs in BATCH_SIZES:
        rows = [row for i in range(bs) for row in prepared[i % len(prepared)].rows]
        component.run_batch(rows, key)  # warm this shape
        items, iterations, start, cpu = 0, 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds or iterations < 3:
            component.run_batch(rows, key)
            items += bs
            iterations += 1
        rate = items / (time.perf_counter() - start)
        if rate > best:
            best, best_bs, best_cpu = rate, bs, (time.process_time() - cpu) / items * 1e6
        elif rate < best * 0.5:
            break  # far past the knee: larger batches only cost memory and time
    return best, best_bs, best_cpu, requests


def direct_instances(
    family: str, uri: Path, rows_of: list[Any], key: Any, instances: int, seconds: float
) -> tuple[float, float]:
    """Items/s and CPU microseconds per item of `instances` copies each running `run_batch`
    on the same batch at once, each thread with its share of the CPU's threads, as the
    server's forward threads run them (`device.forward_thread_setup`).

    Each thread warms its shape first and all start timing together; each runs for
    `seconds` and at least three passes (a single-threaded SigLIP pass at batch 16 takes
    seconds), and the rate is the sum of each thread's own passes over its own time.
    """
    cls = component_class(family)
    copies = [cls(ComponentSettings(model_uri=str(uri), max_batch_size=len(rows_of)))]
    copies += [cls(copies[0].settings) for _ in range(instances - 1)]
    for copy in copies:
        copy.start()
    setup = forward_thread_setup(copies[0].device, instances)
    rates = [0.0] * instances
    counts = [0] * instances
    ready = threading.Barrier(instances + 1)

    def run(i: int) -> None:
        if setup is not None:
            setup()
        copies[i].run_batch(rows_of, key)  # warm this shape in this thread, untimed
        ready.wait()
        passes, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or passes < 3:
            copies[i].run_batch(rows_of, key)
            passes += 1
        counts[i] = passes * len(rows_of)
        rates[i] = counts[i] / (time.perf_counter() - started)

    default_threads = torch.get_num_threads()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(instances)]
    for thread in threads:
        thread.start()
    ready.wait()
    cpu = time.process_time()
    for thread in threads:
        thread.join()
    torch.set_num_threads(default_threads)  # a forward thread's setting is the new default
    return sum(rates), (time.process_time() - cpu) / max(1, sum(counts)) * 1e6


def v2_bodies(requests: list[dict[str, np.ndarray]]) -> list[bytes]:
    bodies = []
    for inputs in requests:
        tensors = []
        for name, array in inputs.items():
            datatype, shape, data, params = encode_json(array)
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


def load(url: str, bodies: list[bytes], concurrency: int) -> Callable[[float], Awaitable[int]]:
    """A closed loop of `concurrency` clients for `seconds`: how many requests succeeded."""

    async def run(seconds: float) -> int:
        return (await through_server(url, bodies, concurrency, seconds)).answered

    return run


def accounted(pid: int, url: str, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """The per-request CPU account of one profiled window (see serving_account.py)."""
    drive = load(url, bodies, args.concurrency)
    return uvloop.run(account(pid, drive, args.account_seconds)).row()


def served(
    models: Path, bodies: list[bytes], args: argparse.Namespace, src: str | None, profile: bool
) -> dict[str, Any]:
    """Throughput at `args.concurrency` through `mlserver start`, then its CPU account.

    `src` (a source tree of this package) makes the server run that code instead: the
    runtime before a change, measured beside the runtime after it.
    """
    env = {"PYTHONPATH": src} if src else None
    started = time.perf_counter()
    with mlserver(models, env=env) as server:
        ready_s = time.perf_counter() - started  # process start to ready, weights local
        url = f"{server.url}/v2/models/m/infer"
        pid = server.process.pid
        uvloop.run(through_server(url, bodies, args.concurrency, 2.0))  # warm-up
        run, cores = cores_while(
            pid, lambda: uvloop.run(through_server(url, bodies, args.concurrency, args.seconds))
        )
        cpu = accounted(pid, url, bodies, args) if profile else None
    return {
        "ready_s": ready_s,
        "mlserver_rps": run.rps,
        "server_cores": cores,
        "rps_per_core": run.rps / cores if cores else 0.0,
        **run.latency(),
        "errors": run.errors,
        "account": cpu,
    }


def serve_family(family: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Direct forward, then served throughput (and its CPU account) for one family, for each
    instance count it is measured at; the row's headline is the best of each side."""
    reference, scale, heavy = FAMILIES[family]
    console.print(f"[bold]{family}[/] ({reference}, {scale} size)")
    uri = build(family, reference, scale, root / "ckpt")
    direct, best_bs, direct_cpu_us, requests = direct_throughput(family, uri, args.seconds / 2)
    gc.collect()  # the direct run's model goes before the server loads its own
    bodies = v2_bodies(requests)
    profile = family in args.account
    row: dict[str, Any] = {
        "family": family,
        "checkpoint": reference,
        "scale": scale,
        "heavy": heavy,
        "best_batch": best_bs,
        "direct_rps": direct,
        "direct_cpu_us": direct_cpu_us,
    }
    counts = args.instances if family in args.instances_families else [1]
    by_instances: dict[str, dict[str, Any]] = {}
    for count in counts:
        side = dict(row)
        if count > 1:
            prepared = direct_prepared(family, uri, requests, best_bs)
            rate, cpu_us = direct_instances(family, uri, *prepared, count, args.seconds / 2)
            side.update(direct_rps=rate, direct_cpu_us=cpu_us)
            gc.collect()
        models = root / f"serve-{family}-{count}"
        models.mkdir()
        write_model(models, "m", family, uri=str(uri), max_batch_size=max(best_bs, 4),
                    max_batch_time=0.005, instances=count)  # fmt: skip
        if args.before_src and count == 1:
            side["before"] = with_ratios(
                served(models, bodies, args, args.before_src, profile), side
            )
        side.update(with_ratios(served(models, bodies, args, None, profile), side))
        by_instances[str(count)] = side
    return best_of(row, by_instances)


def direct_prepared(
    family: str, uri: Path, requests: list[dict[str, np.ndarray]], batch: int
) -> tuple[list[Any], Any]:
    """One batch of the benchmark's prepared rows (as `direct_throughput` builds them)."""
    component = component_class(family)(ComponentSettings(model_uri=str(uri), max_batch_size=batch))
    component.start()
    prepared = [component.prepare(inputs, {}) for inputs in requests]
    rows = [r for i in range(batch) for r in prepared[i % len(prepared)].rows]
    return rows, prepared[0].batch_key


def best_of(row: dict[str, Any], by_instances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The row with its headline from the best count of each side: direct from the fastest
    direct run, served (and its account) from the fastest served run, ratios recomputed."""
    direct = max(by_instances.values(), key=lambda side: side["direct_rps"])
    served_side = max(by_instances.values(), key=lambda side: side["mlserver_rps"])
    best = {**row, "direct_rps": direct["direct_rps"], "direct_cpu_us": direct["direct_cpu_us"]}
    best["direct_instances"] = int(next(k for k, v in by_instances.items() if v is direct))
    best["served_instances"] = int(next(k for k, v in by_instances.items() if v is served_side))
    run = {k: v for k, v in served_side.items() if k not in row or k in ("before",)}
    best.update(with_ratios(run, best))
    if "before" in by_instances.get("1", {}):
        # --before-src serves the older tree at one instance: its side is kept whichever
        # count won, and compared with one instance of this tree (`by_instances`).
        best["before"] = by_instances["1"]["before"]
    if len(by_instances) > 1:
        best["by_instances"] = {
            k: {f: v.get(f) for f in INSTANCE_FIELDS} for k, v in by_instances.items()
        }
        if "before" in best:
            best["by_instances"]["1"]["before_ratio"] = best["before"].get("ratio")
    return best


# What a row keeps of each instance count it was measured at.
INSTANCE_FIELDS = ("direct_rps", "direct_cpu_us", "mlserver_rps", "server_cores", "ratio",
                   "cpu_ratio", "p50_ms", "p99_ms", "errors", "ready_s")  # fmt: skip


def with_ratios(run: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Served / direct by throughput (`ratio`) and by CPU per item (`cpu_ratio`).

    On a quiet machine where the server alone uses every core, `cpu_ratio` is what `ratio`
    would be. Under heavy load neither is steady: the direct side's CPU per item rises too,
    torch's intra-op threads spinning while their partner is descheduled (docs/benchmarks.md,
    2026-12-05); the account's `outside_forward_share` is the steadier figure there.
    """
    direct = row["direct_rps"]
    served_cpu_us = 1e6 / run["rps_per_core"] if run["rps_per_core"] else float("nan")
    return {
        **run,
        "ratio": run["mlserver_rps"] / direct if direct else float("nan"),
        "served_cpu_us": served_cpu_us,
        "cpu_ratio": row["direct_cpu_us"] / served_cpu_us,
    }


def identity(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A weightless node on small V2 JSON tensors: requests per second of server CPU."""
    models = root / "serve-identity"
    models.mkdir()
    write_model(models, "m", "identity")
    row: dict[str, Any] = {"family": "identity", "heavy": None}
    if args.before_src:
        row["before"] = served(models, [IDENTITY_BODY], args, args.before_src, True)
        row["before"]["transports"] = transports(models, args, args.before_src)
    row.update(served(models, [IDENTITY_BODY], args, None, True))
    row["transports"] = transports(models, args, None)
    if not args.no_grpc_floor:
        row["grpc_floor"] = grpc_floor(args)
    return row


def grpc_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The same gRPC load on a bare grpc.aio server answering one fixed response
    (`grpc_floor.py`), with and without MLServer's metrics interceptor: the least a gRPC
    request can cost here, whatever the serving path does."""
    from benchmarks.grpc_floor import measure

    return {mode: measure(mode, {}, args) for mode in ("aio-uvloop", "aio-mlserver")}


async def through_grpc(target: str, concurrency: int, seconds: float, raw: bool = False) -> LoopRun:
    """The identity request as a V2 gRPC ModelInfer, a closed loop of `concurrency` callers:
    values in `fp32_contents`, or with `raw` in `raw_input_contents` (tritonclient's way)."""
    import grpc
    from mlserver.grpc import dataplane_pb2 as pb
    from mlserver.grpc import dataplane_pb2_grpc as pb_grpc

    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 4])
    if raw:
        entries = [np.full(4, 0.5, dtype="<f4").tobytes()]
        request = pb.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=entries)
    else:
        tensor.contents.fp32_contents.extend([0.5] * 4)
        request = pb.ModelInferRequest(model_name="m", inputs=[tensor])
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    await stub.ModelInfer(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1000.0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    spread = percentiles(latencies) if latencies else {"p50_ms": None, "p99_ms": None}
    return LoopRun(
        len(latencies) / elapsed, spread["p50_ms"], spread["p99_ms"], len(latencies), errors
    )


def transports(models: Path, args: argparse.Namespace, src: str | None) -> dict[str, Any]:
    """The identity request over V2 JSON, the binary tensor extension and gRPC (contents and
    raw contents), one server:
    requests/s, the server's cores and requests per core for each (the goal: binary and gRPC
    at least as fast as JSON)."""
    env = {"PYTHONPATH": src} if src else None
    out: dict[str, Any] = {}
    with mlserver(models, env=env) as server:
        url = f"{server.url}/v2/models/m/infer"
        target = f"127.0.0.1:{server.grpc_port}"
        runs: dict[str, Callable[[float], Awaitable[LoopRun]]] = {
            "json": lambda t: through_server(url, [IDENTITY_BODY], args.concurrency, t),
            "binary": lambda t: through_server(
                url, [IDENTITY_BINARY], args.concurrency, t, BINARY_HEADERS
            ),
            "grpc": lambda t: through_grpc(target, args.concurrency, t),
            "grpc_raw": lambda t: through_grpc(target, args.concurrency, t, raw=True),
        }
        for name, drive in runs.items():
            uvloop.run(drive(2.0))  # warm-up
            run, cores = cores_while(
                server.process.pid, lambda drive=drive: uvloop.run(drive(args.seconds))
            )
            out[name] = {
                "rps": run.rps,
                "server_cores": cores,
                "rps_per_core": run.rps / cores if cores else 0.0,
                **run.latency(),
                "errors": run.errors,
            }
            console.print(f"identity over {name}: {out[name]}")
    return out


def uptime() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--account",
        nargs="*",
        default=list(FAMILIES),
        help="families whose served CPU is accounted by stage (py-spy)",
    )
    parser.add_argument("--account-seconds", type=float, default=6.0)
    parser.add_argument("--no-identity", action="store_true")
    parser.add_argument(
        "--no-grpc-floor",
        action="store_true",
        help="skip the bare grpc.aio server beside the identity node (grpc_floor.py)",
    )
    parser.add_argument(
        "--instances",
        nargs="*",
        type=int,
        default=[1, 2],
        help="model instances to measure the families of --instances-families at",
    )
    parser.add_argument(
        "--instances-families",
        nargs="*",
        default=[*LIGHT, "image-embedding", "image-classification"],
        help="families measured at each count of --instances (the rest at one instance)",
    )
    parser.add_argument(
        "--before-src",
        help="a source tree of this package (e.g. `git archive` of the commit before a change) "
        "to serve beside the current one in the same run",
    )
    args = parser.parse_args()
    load_before = uptime()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        root = Path(tmp)
        ident = None if args.no_identity else identity(root, args)
        for family in args.families:
            rows.append(serve_family(family, root, args))
            console.print(rows[-1])
    summary = summarise(rows, ident, args)
    summary["loadavg_before"], summary["loadavg_after"] = load_before, uptime()
    report(rows, ident, args.concurrency)
    path = write_results("runtimes", rows + ([ident] if ident else []), summary, vars(args))
    console.print(f"summary: {summary}\nwrote {path}")


def _least(
    rows: list[dict[str, Any]], which: bool | tuple[str, ...], key: str = "ratio"
) -> float | None:
    if isinstance(which, tuple):
        ratios = [r[key] for r in rows if r["family"] in which]
    else:
        ratios = [r[key] for r in rows if r["heavy"] is which]
    return min(ratios) if ratios else None


def image_pull_mb() -> dict[str, float]:
    """Each built image's pull (gzip) size from `make bench-images`' results: a replica's
    cold start is this pull, then `ready_s` (every family is served by the runtimes image)."""
    path = RESULTS / "images.json"
    if not path.exists():
        return {}
    rows = json.loads(path.read_text()).get("rows", [])
    return {r["image"]: r["compressed_mb"] for r in rows if r.get("compressed_mb")}


def _per_core(ident: dict[str, Any] | None) -> dict[str, float] | None:
    if not ident or "transports" not in ident:
        return None
    return {name: t["rps_per_core"] for name, t in ident["transports"].items()}


def _vs_json(ident: dict[str, Any] | None) -> dict[str, float] | None:
    """Each transport's requests per core over JSON's (the goal: >= 1 for binary and gRPC)."""
    per_core = _per_core(ident)
    if not per_core or not per_core.get("json"):
        return None
    return {name: rate / per_core["json"] for name, rate in per_core.items() if name != "json"}


def _floor(ident: dict[str, Any] | None) -> dict[str, float] | None:
    if not ident or "grpc_floor" not in ident:
        return None
    return {mode: r["rps_per_core"] for mode, r in ident["grpc_floor"].items()}


def summarise(
    rows: list[dict[str, Any]], ident: dict[str, Any] | None, args: argparse.Namespace
) -> dict[str, Any]:
    outside = {r["family"]: r["account"]["outside_forward_share"] for r in rows if r["account"]}
    summary: dict[str, Any] = {
        "min_heavy_ratio": _least(rows, True),
        "goal_min_heavy_ratio": 0.95,
        "min_light_ratio": _least(rows, LIGHT),
        "goal_min_light_ratio": 0.8,
        "min_light_cpu_ratio": _least(rows, LIGHT, "cpu_ratio"),
        "identity_rps_per_core": ident["rps_per_core"] if ident else None,
        "goal_identity_rps_per_core": 2000,
        "identity_rps_per_core_by_transport": _per_core(ident),
        "identity_transport_vs_json": _vs_json(ident),
        "grpc_floor_rps_per_core": _floor(ident),
        "outside_forward_share": outside,
        "ready_s": {r["family"]: r["ready_s"] for r in rows},
        "image_pull_mb": image_pull_mb(),
        "concurrency": args.concurrency,
    }
    if args.before_src:
        befores = [{**r, **r["before"]} for r in rows if "before" in r]
        summary["before"] = {
            "min_light_ratio": _least(befores, LIGHT),
            "min_light_cpu_ratio": _least(befores, LIGHT, "cpu_ratio"),
            "min_heavy_ratio": _least(befores, True),
            "identity_rps_per_core": ident["before"]["rps_per_core"] if ident else None,
            "identity_rps_per_core_by_transport": _per_core(ident["before"] if ident else None),
            "identity_transport_vs_json": _vs_json(ident["before"] if ident else None),
        }
    return summary


def report(rows: list[dict[str, Any]], ident: dict[str, Any] | None, concurrency: int) -> None:
    shown = [
        {
            **r,
            "before_ratio": r.get("before", {}).get("ratio", ""),
            "before_cpu_ratio": r.get("before", {}).get("cpu_ratio", ""),
        }
        for r in rows
    ]
    columns = ["family", "best_batch", "direct_rps", "mlserver_rps", "ratio", "before_ratio"]
    columns += ["direct_cpu_us", "served_cpu_us", "cpu_ratio", "before_cpu_ratio"]
    columns += ["server_cores", "p50_ms", "p99_ms", "errors", "ready_s"]
    print_table("runtimes: direct forward vs through MLServer (items/s)", shown, columns)
    accounts: list[tuple[str, dict[str, Any]]] = []
    for row in ([ident] if ident else []) + rows:
        if row.get("before", {}).get("account"):
            accounts.append((f"{row['family']} before", row["before"]["account"]))
        if row["account"]:
            accounts.append((row["family"], row["account"]))
    if not accounts:
        return
    keys = ["rps", "server_cores", "server_us", *[f"{k}_us" for k in COLUMNS]]
    keys += ["unattributed_us", "client_us", "outside_forward_share"]
    table = [{"": key, **{family: acc[key] for family, acc in accounts}} for key in keys]
    title = f"served CPU per request by stage (microseconds), concurrency {concurrency}"
    print_table(title, table, ["", *[family for family, _ in accounts]])


if __name__ == "__main__":
    main()
