"""`infergraph profile`: measure each node's forward passes and the graph's hops and branches.

Two parts. Forward passes: each node's component is loaded in this process on the
device it would use (its `device` setting: a GPU when one is visible, else this
CPU) and its `run_batch` is timed for batch sizes 1, 2, 4, ... up to the node's
limit, the exact call the serving batcher makes per batch. Hops and branches: the
graph is served by the local runner and a sample of payloads is sent through it,
first one at a time, then in bursts of a full batch at once, then as a Poisson load that
keeps the busiest node about half busy (`--load`), every node allowed to batch up to its
profiled limit. The timings every response carries give the router and wire time per hop
and how a forward pass runs inside its server (a factor on the profiled pass plus a
per-pass overhead, from the batch sizes the load formed), both with their spread, taken
from the loaded half (plans run loaded: decoding other requests competes with the pass);
the hop less its wait behind a batch's earlier answers, whose time per answer the bursts
show against the one-at-a-time requests; and from all replies the rows each node
receives and which side of each `when` every request took.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from infergraph.errors import InfergraphError
from infergraph.graph.model import InferenceGraph, Node
from infergraph.json_types import JSONObject, JSONShapeError
from infergraph.planner.endpoints import EndpointError, Endpoints, node_timer
from infergraph.planner.profiles import (
    BatchTiming,
    GraphProfile,
    NodeProfile,
    lognormal_sigma,
)
from infergraph.planner.topology import Topology, topology_of
from infergraph.planner.turnaround import pass_turnaround_ms
from infergraph.serving.heap import settled_heap

if TYPE_CHECKING:
    import aiohttp

    from infergraph.components.base import Component

Progress = Callable[[str, float], None]  # (description, advance)


# The graph pass's bursts (`burst_size`): at most this many requests at once, and a burst's
# two passes at their p99 within this share of each node's timeoutMs (the rest left to the
# server's own time and the machine's noise).
MAX_BURST = 32
BURST_TIMEOUT_SHARE = 0.5


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
    requests: int = 60  # per half of the graph pass
    bursts: int = 8  # bursts of up to a full batch at once, after the one-at-a-time half
    load: float = 0.5  # the loaded half's utilisation of the busiest node; 0: no loaded half
    loaded_rps: float | None = None  # the loaded half's rate itself (instead of `load`)
    skip_graph: bool = False
    server_start: bool = True  # time a fresh server of each node to ready (server_start.py)
    endpoints: Endpoints | None = None  # a served graph: its nodes timed where they run
    extra: JSONObject = field(default_factory=dict)


def batch_sizes(limit: int) -> list[int]:
    sizes, b = [], 1
    while b < limit:
        sizes.append(b)
        b *= 2
    return [*sizes, limit]


def _hardware() -> JSONObject:
    info: JSONObject = {
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


def _versions() -> JSONObject:
    out: JSONObject = {"python": platform.python_version()}
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


def _component(node: Node, settings: ProfileSettings, limit: int) -> Component:
    from infergraph.components.base import ComponentSettings
    from infergraph.components.registry import component_class

    uri = _checkpoint_uri(node, settings)
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


def _checkpoint_uri(node: Node, settings: ProfileSettings) -> str | None:
    from infergraph.runner.repository import offline_checkpoint

    if settings.offline:
        built = offline_checkpoint(node, settings.offline_scale)  # type: ignore[arg-type]
        return built or node.model_uri
    return node.model_uri


def evict_from_page_cache(uri: str | None) -> bool:
    """Drop a local checkpoint's files from the OS page cache (POSIX_FADV_DONTNEED), so
    the next load reads them from disk as a fresh node's first pod does. Only this
    checkpoint's clean pages go; nothing else on the machine is touched. False when the
    checkpoint is no local path (a hub id: its cache folder is not known here) or the
    platform cannot evict."""
    path = Path(uri[7:] if uri and uri.startswith("file://") else uri or "")
    if not uri or not path.exists() or not hasattr(os, "posix_fadvise"):
        return False
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    for file in files:
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def timed_load(node: Node, settings: ProfileSettings, limit: int) -> tuple[Component, float]:
    """The node's component loaded and warmed up, and the seconds that took: checkpoint to
    ready, what a new pod spends before it takes traffic (less scheduling and image pull)."""
    started = time.perf_counter()
    component = _component(node, settings, limit)
    return component, time.perf_counter() - started


def _rows(component: Component, b: int) -> tuple[list[Any], Hashable]:
    rows: list[Any] = []
    key: Hashable = None
    while len(rows) < b:
        prepared = component.prepare(component.example_inputs(b), {})
        rows.extend(prepared.rows)
        key = prepared.batch_key
    return rows[:b], key


def _sync(component: Component) -> None:
    device = str(getattr(component, "device", "cpu"))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class PassTimings:
    """What timing the passes of one node found: per size, and how its speed held."""

    batches: list[BatchTiming]


def time_in_turns(
    sizes: list[int],
    time_one: Callable[[int], float],
    settings: ProfileSettings,
    progress: Progress,
    label: str,
) -> PassTimings:
    """p50/p99/mean per batch size of `time_one(size)` (ms of one pass).

    Sizes take turns, one pass each, rather than each size's passes in a row: a machine
    whose speed drifts over seconds (a shared VM, a warming GPU) then shifts every size
    alike, and the cost curve keeps its shape. Back to back, ResNet-18 on one core took
    46 ms a row at batch 8, no less than at batch 1; taken in turns, 42.6, as did the served
    batch-8 passes of the same hour (40-45).
    """
    samples: dict[int, list[float]] = {b: [] for b in sizes}
    spent = dict.fromkeys(sizes, 0.0)
    waiting = list(sizes)
    while waiting:
        for b in list(waiting):
            ms = time_one(b)
            samples[b].append(ms)
            spent[b] += ms / 1000.0
            enough = len(samples[b]) >= settings.repeats
            if enough or (spent[b] > settings.max_seconds_per_size and len(samples[b]) >= 5):
                waiting.remove(b)
                progress(f"{label} batch {b}", 1)
    return PassTimings([_timing(b, samples[b]) for b in sizes])


def time_batches(
    component: Component, sizes: list[int], settings: ProfileSettings, progress: Progress
) -> PassTimings:
    """`run_batch` timed in turns per batch size (`time_in_turns`), after two unmeasured
    passes of each: the exact call the serving batcher makes per batch."""
    batches = {b: _rows(component, b) for b in sizes}
    for rows, key in batches.values():
        for _ in range(2):
            component.run_batch(rows, key)

    def time_one(b: int) -> float:
        rows, key = batches[b]
        _sync(component)
        start = time.perf_counter()
        component.run_batch(rows, key)
        _sync(component)
        return (time.perf_counter() - start) * 1000.0

    return time_in_turns(sizes, time_one, settings, progress, component.family)


def _timing(batch_size: int, samples: list[float]) -> BatchTiming:
    arr = np.asarray(samples)
    return BatchTiming(
        batch_size=batch_size,
        p50_ms=float(np.percentile(arr, 50)),
        p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()),
        samples=len(samples),
    )


def _request_overhead_ms(component: Component) -> float:
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
    hop_ms: dict[str, float]  # less the wait behind a batch's earlier answers (`response_ms`)
    hop_p99_ms: dict[str, float]
    served_ms: dict[str, dict[int, float]]  # node -> rows -> median inference_ms in the server
    served_p99_ms: dict[str, dict[int, float]]
    served_passes: dict[str, dict[int, int]]  # node -> rows -> how many replies saw such a pass
    rows: dict[str, dict[int, int]]
    branches: dict[str, float]
    samples: int  # replies that carried our router's per-node timings
    response_ms: dict[str, float] = field(default_factory=dict)  # node -> ms per answer


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
    topology: Topology,
    replies: list[tuple[float, JSONObject]],
    nodes: list[str],
    per_answer: dict[str, float] | None = None,
) -> GraphPass:
    """Per-request (client ms, response parameters) -> hops, rows and branch fractions;
    each node's per-answer time fitted to these replies, or `per_answer` where given."""
    ingress: list[float] = []
    hops: dict[str, list[tuple[float, int]]] = {n: [] for n in nodes}  # (ms, its batch size)
    samples = 0
    served: dict[str, dict[int, list[float]]] = {n: {} for n in nodes}
    rows: dict[str, Counter[int]] = {n: Counter() for n in nodes}
    sides: dict[str, list[bool]] = {g: [] for g in topology.gates}
    for client_ms, params in replies:
        total = _number(params, "graph.total_ms", client_ms)
        node_total, timed = 0.0, False
        path = {p for p in str(params.get("graph.path", "")).split(",") if p}
        for n in nodes:
            t = _node_reply(params, n, hops[n], rows[n], served[n])
            if t is not None:
                node_total += t
                timed = True
        if not timed:  # not our router's reply: it tells neither hops nor rows nor branches
            continue
        samples += 1
        ingress.append(max(client_ms - total, 0.0) + max(total - node_total, 0.0))
        for gate in topology.gates:
            side = _taken(topology, gate, path)
            if side is not None:
                sides[gate].append(side)
    hop_ms, hop_p99_ms, response = _hop_summary(hops, per_answer or {})
    return GraphPass(
        ingress_ms=float(np.mean(ingress)) if ingress else 0.0,
        hop_ms=hop_ms,
        hop_p99_ms=hop_p99_ms,
        response_ms=response,
        served_ms={
            n: {b: float(np.median(v)) for b, v in per.items()} for n, per in served.items() if per
        },
        served_p99_ms={
            n: {b: float(np.percentile(v, 99)) for b, v in per.items()}
            for n, per in served.items()
            if per
        },
        served_passes={n: {b: len(v) for b, v in per.items()} for n, per in served.items() if per},
        rows={n: dict(c) for n, c in rows.items() if c},
        branches={g: float(np.mean(v)) for g, v in sides.items() if v},
        samples=samples,
    )


def _node_reply(
    params: JSONObject,
    n: str,
    hops: list[tuple[float, int]],
    rows: Counter[int],
    served: dict[int, list[float]],
) -> float | None:
    """One reply's timings of node `n` into its hops, rows and served passes; the node's
    total ms (None: the reply has no timings of it)."""
    if params.get(f"{n}.skipped"):
        rows[0] += 1
        return None
    if f"{n}.total_ms" not in params:
        return None
    t = _number(params, f"{n}.total_ms", 0.0)
    inner = _number(params, f"{n}.inference_ms", 0.0) + _number(params, f"{n}.queue_ms", 0.0)
    batch = int(_number(params, f"{n}.batch_size", 1))
    hops.append((max(t - inner, 0.0), batch))
    rows[batch] += 1
    if f"{n}.inference_ms" in params:
        served.setdefault(batch, []).append(_number(params, f"{n}.inference_ms", 0.0))
    return t


def _number(params: JSONObject, key: str, default: float) -> float:
    """A timing or count among a reply's parameters (the runtime writes numbers; a number
    as text reads too, as `float` reads it); absent is `default`."""
    value = params.get(key, default)
    if not isinstance(value, int | float | str):
        raise JSONShapeError(f"parameters.{key}", "a number", value)
    return float(value)


def _hop_summary(
    hops: dict[str, list[tuple[float, int]]], per_answer: dict[str, float]
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per node: the own hop's median and p99, and the per-answer time (given, or fitted)."""
    response = {n: per_answer.get(n, response_ms(v)) for n, v in hops.items() if v}
    own = {n: own_hops(v, response[n]) for n, v in hops.items() if v}
    return (
        {n: float(np.median(v)) for n, v in own.items()},
        {n: float(np.percentile(v, 99)) for n, v in own.items()},
        response,
    )


def response_ms(hops: list[tuple[float, int]]) -> float:
    """Per-answer time of a node's response path, from the hops the router saw by batch size.

    `hops`: (ms, batch size) per reply. A batch's answers leave its server one at a time, so
    a request's hop is its own part plus its wait for the answers before it: on average
    (b - 1) / 2 answers' time in a batch of b. The slope of the median hop per batch size
    against that mean wait (sizes seen at least MIN_PASSES_FOR_FIT times, weighted by how
    often) is the time per answer; medians, as a hop's tail is the machine's. 0.0 with
    fewer than two such sizes, or a falling line.
    """
    by_size: dict[int, list[float]] = {}
    for hop, b in hops:
        by_size.setdefault(max(b, 1), []).append(hop)
    fit = {b: v for b, v in by_size.items() if len(v) >= MIN_PASSES_FOR_FIT}
    if len(fit) < 2:
        return 0.0
    x = np.array([(b - 1) / 2 for b in fit])
    y = np.array([float(np.median(v)) for v in fit.values()])
    w = np.array([len(v) for v in fit.values()], dtype=float)
    x_mean, y_mean = np.average(x, weights=w), np.average(y, weights=w)
    slope = float(np.average((x - x_mean) * (y - y_mean), weights=w)) / float(
        np.average((x - x_mean) ** 2, weights=w)
    )
    return max(slope, 0.0)


def profiled_hop_ms(
    loaded: GraphPass, alone: GraphPass, node: str, default: float
) -> tuple[float, float]:
    """The node's own hop for the simulator, (median, p99): the loaded half's, but never a
    median below the one-at-a-time half's. Load only adds to a request's own part of the
    hop; on a busy machine the per-answer wait fitted from bursts can explain a loaded
    reply's whole hop, and the node would be simulated with none. Where the floor applies,
    the spread comes with it (the alone half's p99), as a raised median beside the loaded
    p99 would narrow it. `default`: the median of a node no reply timed (p99 0: no spread)."""
    floor = (alone.hop_ms.get(node, default), alone.hop_p99_ms.get(node, 0.0))
    if node not in loaded.hop_ms or loaded.hop_ms[node] < floor[0]:
        return floor
    return loaded.hop_ms[node], loaded.hop_p99_ms.get(node, 0.0)


def own_hops(hops: list[tuple[float, int]], per_answer_ms: float) -> list[float]:
    """Each hop less its mean wait for the answers before it in its batch (what the
    simulator adds back through `response_ms`); a lone request's hop is unchanged."""
    return [max(h - per_answer_ms * (max(b, 1) - 1) / 2, 0.0) for h, b in hops]


def serving_sigma(
    served_ms: dict[int, float],
    served_p99_ms: dict[int, float],
    passes: dict[int, int] | None = None,
) -> float:
    """The log-normal spread of a forward pass inside the server, from the graph pass.

    A served pass shares its process with request decoding and its machine with every other
    node, so its p99 sits further from its median than the profiler's isolated passes show;
    the simulator takes the wider of the two. With `passes` (replies per batch size), only
    the size seen most often counts: a p99 over a handful of passes is just their maximum.
    0.0 when the pass saw no forward pass.
    """
    sizes = [b for b, ms in served_ms.items() if ms > 0 and served_p99_ms.get(b, 0.0) >= ms]
    if passes and sizes:
        sizes = [max(sizes, key=lambda b: passes.get(b, 0))]
    spreads = [lognormal_sigma(served_ms[b], served_p99_ms[b]) for b in sizes]
    return float(np.median(spreads)) if spreads else 0.0


# A batch size's served median counts in the fit once this many replies saw it.
MIN_PASSES_FOR_FIT = 5


def serving_cost(
    profile: NodeProfile, served_ms: dict[int, float], passes: dict[int, int]
) -> tuple[float, float]:
    """(factor, overhead_ms): a pass in the server takes raw x factor + overhead_ms.

    The graph pass's own `inference_ms` (the forward pass alone, queueing apart) against
    the profiled median at the same batch size. Work that shares the server slows a pass
    in proportion to its length (the factor); what every pass pays whatever its size adds
    the overhead. Two or more batch sizes seen often enough separate the two (a weighted
    least-squares line through (profiled, served)), its slope at least 1 (sharing the server
    cannot make a pass faster than alone); with one, or a line that needs an overhead < 0,
    all of it is taken as the factor (the median ratio over the well-seen sizes). (1.0, 0.0)
    when the pass saw no forward pass.
    """
    seen = {b: ms for b, ms in served_ms.items() if b >= 1 and ms > 0}
    if not seen:
        return 1.0, 0.0
    fit = {b: ms for b, ms in seen.items() if passes.get(b, 0) >= MIN_PASSES_FOR_FIT}
    ratio = float(np.median([ms / profile.raw_median_ms(b) for b, ms in (fit or seen).items()]))
    if len(fit) < 2:
        return ratio, 0.0
    x = np.array([profile.raw_median_ms(b) for b in fit])
    y = np.array(list(fit.values()))
    w = np.array([passes[b] for b in fit], dtype=float)
    x_mean, y_mean = np.average(x, weights=w), np.average(y, weights=w)
    spread = float(np.average((x - x_mean) ** 2, weights=w))
    if spread <= 0:
        return ratio, 0.0
    factor = float(np.average((x - x_mean) * (y - y_mean), weights=w)) / spread
    if factor < 1.0:  # sharing the server cannot speed a pass up: a flatter line is noise
        factor = 1.0
    overhead = float(y_mean - factor * x_mean)
    if overhead < 0:
        return ratio, 0.0
    return factor, overhead


def with_batch_limits(graph: InferenceGraph, limits: dict[str, int]) -> InferenceGraph:
    """The graph as the loaded half serves it: each node may batch up to its profiled limit.

    Queued requests then share passes of several sizes, which is what separates a served
    pass's per-pass overhead from its slowdown (`serving_cost`); each node's batch delay is
    left as the graph sets it. Its queue bound (`maxQueueRows`) is lifted: the bursts are
    there to be timed, and refusing them would measure the admission policy, which the
    simulator applies from the graph instead.
    """
    served = graph.model_copy(deep=True)
    for node in served.spec.nodes:
        limit = max(limits.get(node.name, 1), node.batching.max_batch_size)
        update = {"max_batch_size": limit, "max_queue_rows": None}
        node.batching = node.batching.model_copy(update=update)
    return served


def payload_spec(graph: InferenceGraph, settings: ProfileSettings) -> str:
    """The load tester's payload spec the graph pass sends: --payload, else synthetic."""
    if settings.payload:
        return settings.payload
    first = graph.spec.inputs[0]
    kind = first.name if first.name in ("image", "text", "audio") else "image"
    return f"synthetic:{kind}"


Reply = tuple[float, JSONObject]  # client milliseconds, the response's parameters


@dataclass
class SampleReplies:
    """The graph pass's replies: one request at a time, bursts, then an open-loop Poisson
    load."""

    sequential: list[Reply]
    loaded: list[Reply]
    loaded_rps: float
    bursts: list[Reply] = field(default_factory=list)  # full batches at once (`_bursts`)


def loaded_rate(
    replies: list[Reply], nodes: dict[str, int], load: float, cpus: int | None
) -> float:
    """The Poisson rate that keeps the busiest node (or the machine's CPUs) `load` busy.

    From the one-at-a-time replies: each node's forward time per request over its
    replicas (`nodes`: name -> replicas), and, when the graph runs on this machine
    (`cpus`; None for a deployment elsewhere), the whole request's client time spread
    over the CPUs, which bounds cheap graphs whose router and decoding cost more than
    their forward passes.
    """
    busiest = 0.0
    for name, replicas in nodes.items():
        per_request = [_number(p, f"{name}.inference_ms", 0.0) for _, p in replies]
        busiest = max(busiest, float(np.mean(per_request)) / max(replicas, 1))
    whole = float(np.mean([ms for ms, _ in replies])) / max(cpus, 1) if cpus else 0.0
    return load * 1000.0 / max(busiest, whole, 1e-3)


@asynccontextmanager
async def _graph_url(graph: InferenceGraph, settings: ProfileSettings) -> AsyncIterator[str]:
    """The graph's infer URL: the endpoint it is served at, else the local runner, started."""
    if settings.endpoints is not None:
        yield settings.endpoints.graph_url()
        return
    from infergraph.runner.local import run_graph

    async with run_graph(
        graph,
        offline=settings.offline,
        offline_scale=settings.offline_scale,  # type: ignore[arg-type]
    ) as running:
        yield running.infer_url


async def _send_sample(
    graph: InferenceGraph, settings: ProfileSettings, progress: Progress, burst: int
) -> SampleReplies:
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

    payloads = load_payloads(payload_spec(graph, settings), graph.spec.inputs[0].name)
    bodies = [v2_json_body(p) for p in payloads]
    headers = {"Content-Type": "application/json"}
    if settings.endpoints is not None:
        headers |= settings.endpoints.graph_headers()
    async with _graph_url(graph, settings) as infer_url, aiohttp.ClientSession() as session:

        async def send(i: int) -> Reply:
            start = time.perf_counter()
            try:
                reply = await _post(session, infer_url, bodies[i % len(bodies)], headers)
            except aiohttp.ClientError as exc:
                raise ProfilingError(f"graph '{graph.name}' at {infer_url}: {exc}") from None
            elapsed = (time.perf_counter() - start) * 1000.0
            status, raw = reply
            if status != 200:
                raise ProfilingError(
                    f"graph '{graph.name}' answered HTTP {status} to a sample payload: "
                    f"{raw[:300].decode(errors='replace')}"
                )
            return elapsed, orjson.loads(raw).get("parameters") or {}

        sequential = []
        for i in range(settings.requests + 3):
            reply = await send(i)
            if i >= 3:  # the first requests warm connections and lazy paths
                sequential.append(reply)
                progress("sample payloads through the graph, one at a time", 1)
        if burst:
            progress(f"sample payloads through the graph, in bursts of {burst}", 0)
        bursts = await _bursts(send, burst, settings.bursts)
        if settings.loaded_rps is None and settings.load <= 0:
            return SampleReplies(sequential, [], 0.0, bursts)
        loaded, rate = await _loaded_half(send, graph, settings, sequential, progress)
    return SampleReplies(sequential, loaded, rate, bursts)


Send = Callable[[int], Awaitable[Reply]]


async def _bursts(send: Send, size: int, count: int) -> list[Reply]:
    """`count` bursts of `size` requests at once (`burst_size`), one after another: each
    forms full batches, whose answers show how far apart a batch's members leave its server
    (`response_ms`, against the one-at-a-time replies)."""
    replies: list[Reply] = []
    for _ in range(count if size >= 2 else 0):
        replies += await asyncio.gather(*(send(i) for i in range(size)))
    return replies


def burst_size(graph: InferenceGraph, nodes: Mapping[str, NodeProfile]) -> int:
    """The largest burst, 2 to 32 requests and no more than the largest batch limit, that
    every node answers well within its timeoutMs by its profiled passes; 0 when not even two
    fit (no bursts: a batch's answers are then taken to leave together).

    A burst's member may wait behind the pass its first arrival started and then ride a
    full one, so both passes at their p99 must fit `BURST_TIMEOUT_SHARE` of the timeout. A
    burst as large as the batch limit could outlast it on slow hardware: the full-size
    cascade on one CPU thread, where ViT-Base's batch of 16 queued past its 10 s.
    """
    cap = min(max(n.batching.max_batch_size for n in graph.spec.nodes), MAX_BURST)
    for size in sorted(batch_sizes(cap), reverse=True):
        if size >= 2 and all(
            _burst_fits(node, nodes[node.name], size)
            for node in graph.spec.nodes
            if node.name in nodes
        ):
            return size
    return 0


def _burst_fits(node: Node, profile: NodeProfile, size: int) -> bool:
    rows = min(size, node.batching.max_batch_size)
    waits_ms = profile.raw_p99_ms(1) + profile.raw_p99_ms(rows)
    return waits_ms <= BURST_TIMEOUT_SHARE * node.timeout_ms


async def _loaded_half(
    send: Send,
    graph: InferenceGraph,
    settings: ProfileSettings,
    sequential: list[Reply],
    progress: Progress,
) -> tuple[list[Reply], float]:
    """The open-loop Poisson half: its replies and rate."""
    replicas = {n.name: n.replicas for n in graph.spec.nodes}
    cpus = None if settings.endpoints else os.cpu_count() or 1
    rate = settings.loaded_rps or loaded_rate(sequential, replicas, settings.load, cpus)
    gaps = np.random.default_rng(0).exponential(1.0 / rate, settings.requests)
    began = time.perf_counter()

    async def arrive(i: int, at: float) -> Reply:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - began)))
        reply = await send(i)
        progress(f"sample payloads through the graph at {rate:.1f} req/s", 1)
        return reply

    loaded = await asyncio.gather(*(arrive(i, at) for i, at in enumerate(np.cumsum(gaps))))
    return list(loaded), rate


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    async with session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


def _profile_here(
    node: Node, limit: int, settings: ProfileSettings, progress: Progress
) -> NodeProfile:
    """The node's component loaded in this process, its `run_batch` timed per batch size."""
    from infergraph.device import select_device

    # Which class this measures is settled before anything loads: a mismatch fails fast.
    hardware_class = _class_for(node, str(select_device(node.device)), settings)
    try:
        # Cold: the checkpoint's files evicted from the page cache first (a local path only;
        # otherwise the first load, whatever the cache held). Warm: loaded again at once.
        cold = evict_from_page_cache(_checkpoint_uri(node, settings))
        component, first_s = timed_load(node, settings, limit)
        device = str(component.device or "cpu")
        timings = time_batches(component, batch_sizes(limit), settings, progress)
        hop_ms = _request_overhead_ms(component)
        turnaround_ms = pass_turnaround_ms(component.run_batch, *_rows(component, 1))
        del component
        gc.collect()
        component, warm_s = timed_load(node, settings, limit)
    except InfergraphError as exc:
        raise ProfilingError(f"node '{node.name}' would not load: {exc}") from None
    del component
    gc.collect()
    started_s = _timed_server_start(node, settings, progress) if settings.server_start else 0.0
    return NodeProfile(
        node=node.name,
        family=node.family,
        hardware_class=hardware_class,
        device=device,
        batches=tuple(timings.batches),
        hop_ms=hop_ms,
        turnaround_ms=turnaround_ms,
        load_s=warm_s,
        cold_load_s=first_s if cold else 0.0,
        first_load_s=first_s,
        server_start_s=started_s,
    )


def _timed_server_start(node: Node, settings: ProfileSettings, progress: Progress) -> float:
    """A new pod's start: the node alone in a fresh server, the checkpoint's files evicted
    from the page cache first as for the cold load."""
    from infergraph.planner.server_start import server_start_seconds

    uri = _checkpoint_uri(node, settings)
    evict_from_page_cache(uri)
    progress(f"{node.name}: server start", 0)
    try:
        return server_start_seconds(node, uri)
    except InfergraphError as exc:  # its message names the node
        raise ProfilingError(str(exc)) from None


def _profile_at_endpoint(
    node: Node, limit: int, settings: ProfileSettings, progress: Progress, timing: set[str]
) -> NodeProfile:
    """The node as deployed, timed per batch size through its endpoint (`endpoints.py`)."""
    assert settings.endpoints is not None
    if limit > node.batching.max_batch_size:
        raise ProfilingError(
            f"node '{node.name}': --max-batch {limit} is more than its maxBatchSize "
            f"{node.batching.max_batch_size}, the most rows its server runs in one pass"
        )
    hardware_class = settings.hardware_class or node.hardware
    if hardware_class is None:
        raise ProfilingError(
            f"node '{node.name}' has no `hardware` class; pass --hardware-class naming the "
            "price-catalog class its endpoint runs on"
        )
    sizes = batch_sizes(limit)
    url = settings.endpoints.node_url(node.name)
    try:
        timer = node_timer(node, settings.endpoints, sizes)
        try:
            timings = time_in_turns(sizes, timer, settings, progress, node.name)
        finally:
            timer.client.close()
    except EndpointError as exc:
        raise ProfilingError(f"node '{node.name}' at {url}: {exc}") from None
    timing.update(timer.timing)
    return NodeProfile(
        node=node.name,
        family=node.family,
        hardware_class=hardware_class,
        device=f"endpoint {url}",
        batches=tuple(timings.batches),
        hop_ms=timer.hop_ms(),
    )


def profile_graph(
    graph: InferenceGraph, settings: ProfileSettings, progress: Progress
) -> GraphProfile:
    """Measure every node, then (unless skipped) the graph's hops and branches."""
    topology = topology_of(graph)
    nodes, limits, pass_timing = _profile_nodes(graph, settings, progress)
    classes = {prof.hardware_class for prof in nodes.values()}
    served_limits = limits
    if settings.endpoints is not None:  # a deployment batches as it was deployed
        served_limits = {n.name: n.batching.max_batch_size for n in graph.spec.nodes}
    measured = _GraphMeasures(nodes=nodes)
    if not settings.skip_graph:
        measured = _measure_graph(graph, topology, settings, progress, nodes, served_limits)
    return GraphProfile(
        graph=graph.name,
        hardware_class=sorted(classes)[0] if len(classes) == 1 else "mixed",
        nodes=measured.nodes,
        branches=measured.branches,
        branch_samples=measured.samples,
        ingress_ms=measured.ingress_ms,
        hardware=_hardware()
        if settings.endpoints is None
        else {**settings.endpoints.describe(), "client": _hardware()},
        versions=_versions(),
        settings=_profile_settings(graph, settings, pass_timing, measured, served_limits),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@dataclass
class _GraphMeasures:
    """What the graph pass adds to the per-node profiles (all zero when it is skipped)."""

    nodes: dict[str, NodeProfile]
    branches: dict[str, float] = field(default_factory=dict)
    ingress_ms: float = 0.0
    samples: int = 0
    loaded_rps: float = 0.0
    burst_size: int = 0


def _profile_nodes(
    graph: InferenceGraph, settings: ProfileSettings, progress: Progress
) -> tuple[dict[str, NodeProfile], dict[str, int], set[str]]:
    """Each node timed alone (here, or at its endpoint): profiles, batch limits and how the
    passes were timed."""
    nodes: dict[str, NodeProfile] = {}
    limits: dict[str, int] = {}
    pass_timing: set[str] = set()
    for node in graph.spec.nodes:
        limit = settings.max_batch_size or node.batching.max_batch_size
        limits[node.name] = limit
        if settings.endpoints is None:
            nodes[node.name] = _profile_here(node, limit, settings, progress)
            pass_timing.add("in-process")
        else:
            nodes[node.name] = _profile_at_endpoint(node, limit, settings, progress, pass_timing)
    return nodes, limits, pass_timing


def _measure_graph(
    graph: InferenceGraph,
    topology: Topology,
    settings: ProfileSettings,
    progress: Progress,
    nodes: dict[str, NodeProfile],
    served_limits: dict[str, int],
) -> _GraphMeasures:
    """The graph served as a whole: the sample's hops, rows, serving costs and branches."""
    with settled_heap():  # this process routes the sample: no full-GC stalls in its hops
        served_graph = with_batch_limits(graph, served_limits)
        burst = burst_size(served_graph, nodes) if settings.bursts > 0 else 0
        replies = asyncio.run(_send_sample(served_graph, settings, progress, burst))
    # Serving costs come from the loaded half, where plans run: a forward pass shares its
    # process and machine with other requests' decoding there. Rows per request come from
    # the one-at-a-time half (a loaded batch also holds other requests' rows); branch
    # fractions from every reply.
    # A batch's answers leave one at a time: from full batches at once against one request
    # at a time, where nothing else competes (the loaded half mixes sizes with the load).
    turns = summarise_pass(topology, replies.sequential + replies.bursts, list(nodes))
    served = summarise_pass(
        topology, replies.loaded or replies.sequential, list(nodes), turns.response_ms
    )
    alone = summarise_pass(topology, replies.sequential, list(nodes))
    measured = summarise_pass(topology, replies.sequential + replies.loaded, list(nodes))
    factor_of = {
        name: serving_cost(prof, served.served_ms.get(name, {}), served.served_passes.get(name, {}))
        for name, prof in nodes.items()
    }
    hops = {name: profiled_hop_ms(served, alone, name, prof.hop_ms) for name, prof in nodes.items()}
    served_nodes = {
        name: replace(
            prof,
            hop_ms=hops[name][0],
            hop_p99_ms=hops[name][1],
            response_ms=served.response_ms.get(name, 0.0),
            rows=alone.rows.get(name, prof.rows),
            serving_factor=factor_of[name][0],
            serving_overhead_ms=factor_of[name][1],
            serving_sigma=serving_sigma(
                served.served_ms.get(name, {}),
                served.served_p99_ms.get(name, {}),
                served.served_passes.get(name, {}),
            ),
        )
        for name, prof in nodes.items()
    }
    return _GraphMeasures(
        nodes=served_nodes,
        branches=measured.branches,
        ingress_ms=served.ingress_ms,
        samples=measured.samples,
        loaded_rps=replies.loaded_rps,
        burst_size=burst,
    )


def _profile_settings(
    graph: InferenceGraph,
    settings: ProfileSettings,
    pass_timing: set[str],
    measured: _GraphMeasures,
    served_limits: dict[str, int],
) -> JSONObject:
    """The settings a profile was measured under, recorded with it so two can be compared."""
    return {
        "pass_timing": ", ".join(sorted(pass_timing)),
        "repeats": settings.repeats,
        "max_batch_size": settings.max_batch_size,
        "offline": settings.offline,
        "offline_scale": settings.offline_scale if settings.offline else None,
        "payload": None if settings.skip_graph else payload_spec(graph, settings),
        "requests": 0 if settings.skip_graph else settings.requests,
        "graph_pass_bursts": 0
        if settings.skip_graph or not measured.burst_size
        else settings.bursts,
        "graph_pass_burst_size": measured.burst_size,
        "graph_pass_load": None
        if settings.skip_graph or settings.loaded_rps is not None
        else settings.load,
        "graph_pass_loaded_rps": measured.loaded_rps,
        "graph_pass_batch_limits": None if settings.skip_graph else served_limits,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
