"""`infergraph profile`: measure each node's forward passes and the graph's hops and branches.

Two parts. Forward passes: each node's component is loaded in this process on the
device it would use (its `device` setting: a GPU when one is visible, else this
CPU) and its `run_batch` is timed for batch sizes 1, 2, 4, ... up to the node's
limit, the exact call the serving batcher makes per batch. Hops and branches: the
graph is served by the local runner and a sample of payloads is sent through it
one at a time (so nothing queues); the timings every response carries give the
router and wire time per hop, the rows each node receives, and which side of
each `when` every request took.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph, Node
from infergraph.planner.profiles import BatchTiming, GraphProfile, NodeProfile
from infergraph.planner.topology import Topology, topology_of

Progress = Callable[[str, float], None]  # (description, advance)


class ProfilingError(InfergraphError):
    """Profiling could not run: a node would not load, or the graph pass failed."""


@dataclass
class ProfileSettings:
    hardware_class: str | None = None  # catalog class this machine stands for
    max_batch_size: int | None = None  # None: each node's own maxBatchSize
    repeats: int = 20
    max_seconds_per_size: float = 8.0
    offline: bool = False
    offline_scale: str = "full"
    payload: str | None = None  # None: synthetic, from the graph's first input
    requests: int = 60
    skip_graph: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def batch_sizes(limit: int) -> list[int]:
    sizes, b = [], 1
    while b < limit:
        sizes.append(b)
        b *= 2
    return [*sizes, limit]


def _hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or None,
        "gpu": None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("infergraph", "torch", "transformers", "timm", "mlserver"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _class_for(node: Node, device: str, settings: ProfileSettings) -> str:
    from infergraph.cost.pricing import load_catalog

    if settings.hardware_class:
        return settings.hardware_class
    if node.hardware is None:
        raise ProfilingError(
            f"node '{node.name}' has no `hardware` class; pass --hardware-class naming the "
            "price-catalog class this machine stands for"
        )
    has_gpu = load_catalog().get(node.hardware).gpus > 0
    if has_gpu != device.startswith("cuda"):
        raise ProfilingError(
            f"node '{node.name}' runs on {device} here but its hardware class "
            f"'{node.hardware}' {'has' if has_gpu else 'has no'} GPU; pass --hardware-class "
            "naming the price-catalog class this machine stands for"
        )
    return node.hardware


def _component(node: Node, settings: ProfileSettings, limit: int) -> Any:
    from infergraph.components.base import ComponentSettings
    from infergraph.components.registry import component_class
    from infergraph.runner.repository import offline_checkpoint

    uri = node.model_uri
    if settings.offline:
        uri = offline_checkpoint(node, settings.offline_scale) or uri  # type: ignore[arg-type]
    cls = component_class(node.family)
    component = cls(
        ComponentSettings(
            model_uri=uri,
            device=node.device,
            dtype=node.dtype,
            max_batch_size=limit,
            options=dict(node.options),
        )
    )
    component.start()
    return component


def _rows(component: Any, b: int) -> tuple[list[Any], Any]:
    rows: list[Any] = []
    key = None
    while len(rows) < b:
        prepared = component.prepare(component.example_inputs(b), {})
        rows.extend(prepared.rows)
        key = prepared.batch_key
    return rows[:b], key


def _sync(component: Any) -> None:
    device = str(getattr(component, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_batches(
    component: Any, sizes: list[int], settings: ProfileSettings, progress: Progress
) -> list[BatchTiming]:
    """p50/p99/mean of `run_batch` per batch size, after two unmeasured passes."""
    timings = []
    for b in sizes:
        rows, key = _rows(component, b)
        for _ in range(2):
            component.run_batch(rows, key)
        samples: list[float] = []
        deadline = time.perf_counter() + settings.max_seconds_per_size
        while len(samples) < settings.repeats:
            _sync(component)
            start = time.perf_counter()
            component.run_batch(rows, key)
            _sync(component)
            samples.append((time.perf_counter() - start) * 1000.0)
            if time.perf_counter() > deadline and len(samples) >= 5:
                break
        arr = np.asarray(samples)
        timings.append(
            BatchTiming(
                batch_size=b,
                p50_ms=float(np.percentile(arr, 50)),
                p99_ms=float(np.percentile(arr, 99)),
                mean_ms=float(arr.mean()),
                samples=len(samples),
            )
        )
        progress(f"{component.family} batch {b}", 1)
    return timings


def _request_overhead_ms(component: Any) -> float:
    """prepare + finish for one single-row request: the per-request work outside the batch."""
    samples = []
    for _ in range(5):
        inputs = component.example_inputs(1)
        start = time.perf_counter()
        prepared = component.prepare(inputs, {})
        prep = time.perf_counter() - start
        results = component.run_batch(prepared.rows, prepared.batch_key)
        start = time.perf_counter()
        component.finish(results, prepared)
        samples.append((prep + time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


@dataclass
class GraphPass:
    """What sending sample payloads through the served graph showed."""

    ingress_ms: float
    hop_ms: dict[str, float]
    served_ms: dict[str, dict[int, float]]  # node -> rows -> median inference_ms in the server
    rows: dict[str, dict[int, int]]
    branches: dict[str, float]
    samples: int


def _taken(topology: Topology, gate: str, path: set[str]) -> bool | None:
    """Which side a request took at `gate` (None: the gate was not reached)."""
    then_nodes = topology.nodes_on_side(gate, "then")
    other_nodes = topology.nodes_on_side(gate, "otherwise")
    stage = topology.stage(gate)
    for outer, side in stage.branch:
        if _taken(topology, outer, path) is not (side == "then"):
            return None
    if any(n in path for n in then_nodes):
        return True
    if any(n in path for n in other_nodes) or not other_nodes:
        return False
    return None


def summarise_pass(
    topology: Topology, replies: list[tuple[float, dict[str, Any]]], nodes: list[str]
) -> GraphPass:
    """Per-request (client ms, response parameters) -> hops, rows and branch fractions."""
    ingress, hops = [], {n: [] for n in nodes}
    served: dict[str, dict[int, list[float]]] = {n: {} for n in nodes}
    rows: dict[str, Counter[int]] = {n: Counter() for n in nodes}
    sides: dict[str, list[bool]] = {g: [] for g in topology.gates}
    for client_ms, params in replies:
        total = float(params.get("graph.total_ms", client_ms))
        node_total = 0.0
        path = {p for p in str(params.get("graph.path", "")).split(",") if p}
        for n in nodes:
            if params.get(f"{n}.skipped"):
                rows[n][0] += 1
                continue
            if f"{n}.total_ms" not in params:
                continue
            t = float(params[f"{n}.total_ms"])
            node_total += t
            inner = float(params.get(f"{n}.inference_ms", 0.0)) + float(
                params.get(f"{n}.queue_ms", 0.0)
            )
            hops[n].append(max(t - inner, 0.0))
            batch = int(params.get(f"{n}.batch_size", 1))
            rows[n][batch] += 1
            if f"{n}.inference_ms" in params:
                served[n].setdefault(batch, []).append(float(params[f"{n}.inference_ms"]))
        ingress.append(max(client_ms - total, 0.0) + max(total - node_total, 0.0))
        for gate in topology.gates:
            side = _taken(topology, gate, path)
            if side is not None:
                sides[gate].append(side)
    return GraphPass(
        ingress_ms=float(np.mean(ingress)) if ingress else 0.0,
        hop_ms={n: float(np.median(v)) for n, v in hops.items() if v},
        served_ms={
            n: {b: float(np.median(v)) for b, v in per.items()} for n, per in served.items() if per
        },
        rows={n: dict(c) for n, c in rows.items() if c},
        branches={g: float(np.mean(v)) for g, v in sides.items() if v},
        samples=len(replies),
    )


def serving_factor(profile: NodeProfile, served_ms: dict[int, float]) -> float:
    """How much slower (or faster) a forward pass runs inside the server than in the profiler.

    Compares the graph pass's own `inference_ms` (one request at a time, so no queueing)
    with the profiled median at the same batch size: the server's process, threads and
    neighbours are part of what a request pays. 1.0 when the graph pass saw no forward pass.
    """
    ratios = [ms / profile.raw_median_ms(b) for b, ms in served_ms.items() if b >= 1 and ms > 0]
    return float(np.median(ratios)) if ratios else 1.0


def _payload_spec(graph: InferenceGraph, settings: ProfileSettings) -> str:
    if settings.payload:
        return settings.payload
    first = graph.spec.inputs[0]
    kind = first.name if first.name in ("image", "text", "audio") else "image"
    return f"synthetic:{kind}"


async def _send_sample(
    graph: InferenceGraph, settings: ProfileSettings, progress: Progress
) -> list[tuple[float, dict[str, Any]]]:
    try:
        import aiohttp
        import orjson
        from async_load_tester.payloads import load_payloads
        from async_load_tester.protocols.encode import v2_json_body
    except ImportError as exc:
        raise ProfilingError(
            f"the graph pass needs the local runner and the load tester ({exc.name} is missing); "
            "install with `uv sync --extra mlserver`, or pass --skip-graph"
        ) from None
    from infergraph.runner.local import run_graph

    payloads = load_payloads(_payload_spec(graph, settings), graph.spec.inputs[0].name)
    bodies = [v2_json_body(p) for p in payloads]
    replies: list[tuple[float, dict[str, Any]]] = []
    async with (
        run_graph(
            graph,
            offline=settings.offline,
            offline_scale=settings.offline_scale,  # type: ignore[arg-type]
        ) as running,
        aiohttp.ClientSession() as session,
    ):
        for i in range(settings.requests + 3):
            start = time.perf_counter()
            async with session.post(
                running.infer_url,
                data=bodies[i % len(bodies)],
                headers={"Content-Type": "application/json"},
            ) as resp:
                raw = await resp.read()
            elapsed = (time.perf_counter() - start) * 1000.0
            if resp.status != 200:
                raise ProfilingError(
                    f"graph '{graph.name}' answered HTTP {resp.status} to a sample payload: "
                    f"{raw[:300].decode(errors='replace')}"
                )
            if i >= 3:  # the first requests warm connections and lazy paths
                replies.append((elapsed, orjson.loads(raw).get("parameters") or {}))
                progress("sample payloads through the graph", 1)
    return replies


def profile_graph(
    graph: InferenceGraph, settings: ProfileSettings, progress: Progress
) -> GraphProfile:
    """Measure every node, then (unless skipped) the graph's hops and branches."""
    topology = topology_of(graph)
    nodes: dict[str, NodeProfile] = {}
    classes = set()
    for node in graph.spec.nodes:
        from infergraph.device import select_device

        limit = settings.max_batch_size or node.batching.max_batch_size
        # Which class this measures is settled before anything loads: a mismatch fails fast.
        hardware_class = _class_for(node, str(select_device(node.device)), settings)
        try:
            component = _component(node, settings, limit)
        except InfergraphError as exc:
            raise ProfilingError(f"node '{node.name}' would not load: {exc}") from None
        device = str(component.device or "cpu")
        classes.add(hardware_class)
        timings = time_batches(component, batch_sizes(limit), settings, progress)
        nodes[node.name] = NodeProfile(
            node=node.name,
            family=node.family,
            hardware_class=hardware_class,
            device=device,
            batches=tuple(timings),
            hop_ms=_request_overhead_ms(component),
        )
        del component
        gc.collect()
    branches: dict[str, float] = {}
    ingress_ms = 0.0
    samples = 0
    if not settings.skip_graph:
        replies = asyncio.run(_send_sample(graph, settings, progress))
        measured = summarise_pass(topology, replies, list(nodes))
        for name, prof in list(nodes.items()):
            nodes[name] = NodeProfile(
                node=prof.node,
                family=prof.family,
                hardware_class=prof.hardware_class,
                device=prof.device,
                batches=prof.batches,
                hop_ms=measured.hop_ms.get(name, prof.hop_ms),
                rows=measured.rows.get(name, prof.rows),
                serving_factor=serving_factor(prof, measured.served_ms.get(name, {})),
            )
        branches = measured.branches
        ingress_ms = measured.ingress_ms
        samples = measured.samples
    return GraphProfile(
        graph=graph.name,
        hardware_class=sorted(classes)[0] if len(classes) == 1 else "mixed",
        nodes=nodes,
        branches=branches,
        branch_samples=samples,
        ingress_ms=ingress_ms,
        hardware=_hardware(),
        versions=_versions(),
        settings={
            "repeats": settings.repeats,
            "max_batch_size": settings.max_batch_size,
            "offline": settings.offline,
            "offline_scale": settings.offline_scale if settings.offline else None,
            "payload": None if settings.skip_graph else _payload_spec(graph, settings),
            "requests": 0 if settings.skip_graph else settings.requests,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
