"""Measured per-node profiles: what `infergraph profile` writes and `infergraph plan` reads.

One file holds one graph measured on one kind of hardware. Each node has its
batch service times (p50/p99 of a forward pass per batch size), the per-request
time outside the batch (router hop, wire, preprocessing), how many rows a request
brings it, and the graph has branch fractions and the ingress cost. Plans combine
files taken on different hardware: each file names the price-catalog class it
stands for.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from infergraph.errors import InfergraphError
from infergraph.json_types import JSONObject

FORMAT = "infergraph-profile/v1"
Z99 = 2.3263478740408408  # standard normal quantile at 0.99


def lognormal_sigma(p50: float, p99: float) -> float:
    """The spread of a log-normal whose median is `p50` and whose p99 is `p99` (0 if none)."""
    return math.log(p99 / p50) / Z99 if p50 > 0 and p99 > p50 else 0.0


class ProfileError(InfergraphError):
    """A profile cannot be read or does not match the graph; `subject` names what is wrong."""

    def __init__(self, subject: str, reason: str) -> None:
        self.subject = subject
        self.reason = reason
        super().__init__(f"{subject}: {reason}")


@dataclass(frozen=True)
class BatchTiming:
    """One forward pass of `batch_size` rows, over `samples` repetitions."""

    batch_size: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    samples: int

    @property
    def rows_per_second(self) -> float:
        return self.batch_size / (self.mean_ms / 1000.0) if self.mean_ms > 0 else math.inf


@dataclass(frozen=True)
class NodeProfile:
    """A node's measured costs on one hardware class."""

    node: str
    family: str
    hardware_class: str
    device: str
    batches: tuple[BatchTiming, ...]
    hop_ms: float = 0.0  # median per-request time outside the batch
    hop_p99_ms: float = 0.0  # its p99 in the graph pass; 0: no spread measured
    # Per request, the server's response path taken one request at a time: a batch's answers
    # leave this far apart (graph pass; 0: not measured, every answer leaves with its pass).
    response_ms: float = 0.0
    # The batcher's time from one pass's end to the next one's start when requests wait:
    # answers handed over, the next batch collected (0: not measured, an endpoint profile).
    turnaround_ms: float = 0.0
    rows: dict[int, int] = field(default_factory=lambda: {1: 1})  # rows per request -> count
    serving_factor: float = 1.0  # forward pass in the server / in the profiler (graph pass)
    serving_overhead_ms: float = 0.0  # what every pass in the server adds on top (graph pass)
    serving_sigma: float = 0.0  # log-normal spread of a forward pass in the server (graph pass)
    # Checkpoint to ready (load and warm-up), seconds; 0: not measured (an endpoint profile).
    load_s: float = 0.0  # from a warm page cache: loaded again at once
    cold_load_s: float = 0.0  # with the checkpoint's files first evicted from the page cache
    first_load_s: float = 0.0  # the first load in the profiler's process, whatever was cached
    # A fresh `mlserver start` of the node alone to its model ready, seconds (server_start.py):
    # the pod's process start, imports and load. 0: not measured (older or endpoint profiles).
    server_start_s: float = 0.0

    @property
    def startup_s(self) -> float | None:
        """What a new pod of this node spends before it takes traffic, as measured: its
        server's start where one was timed; else the cold load where one was measured (a new
        pod's node rarely holds the files), else the first; None when nothing was measured."""
        return self.server_start_s or self.cold_load_s or self.first_load_s or self.load_s or None

    @property
    def max_batch_size(self) -> int:
        return max(b.batch_size for b in self.batches)

    def _interpolate(self, b: int, value: Any) -> float:
        pts = sorted(self.batches, key=lambda t: t.batch_size)
        if b <= pts[0].batch_size or len(pts) == 1:
            first = pts[0]
            return value(first) * (b / first.batch_size if b > first.batch_size else 1.0)
        for lo, hi in itertools.pairwise(pts):
            if b <= hi.batch_size:
                f = (b - lo.batch_size) / (hi.batch_size - lo.batch_size)
                return value(lo) + f * (value(hi) - value(lo))
        lo, hi = pts[-2], pts[-1]  # past the last measurement: extend the last slope
        slope = (value(hi) - value(lo)) / (hi.batch_size - lo.batch_size)
        return value(hi) + slope * (b - hi.batch_size)

    def raw_median_ms(self, b: int) -> float:
        """p50 of `run_batch` over b rows as the profiler timed it (linear between sizes)."""
        return max(self._interpolate(b, lambda t: t.p50_ms), 1e-6)

    def raw_p99_ms(self, b: int) -> float:
        """p99 of `run_batch` over b rows as the profiler timed it (linear between sizes)."""
        return max(self._interpolate(b, lambda t: max(t.p99_ms, t.p50_ms)), 1e-6)

    def median_ms(self, b: int) -> float:
        """p50 service time of a batch of b rows in the server: the profiled pass, slowed by
        what shares the server with it, plus what each pass costs there on top."""
        return self.raw_median_ms(b) * self.serving_factor + self.serving_overhead_ms

    def sigma(self, b: int) -> float:
        """Log-normal spread fitted so that its p99 is the measured p99: the profiler's own
        passes, or the wider spread the same pass showed inside the server."""
        p50 = self._interpolate(b, lambda t: t.p50_ms)
        p99 = self._interpolate(b, lambda t: max(t.p99_ms, t.p50_ms))
        return max(lognormal_sigma(p50, p99), self.serving_sigma)

    @property
    def hop_sigma(self) -> float:
        """Log-normal spread of the per-request hop, fitted to its median and p99."""
        return lognormal_sigma(self.hop_ms, self.hop_p99_ms)

    @property
    def mean_rows(self) -> float:
        total = sum(self.rows.values())
        return sum(r * n for r, n in self.rows.items()) / total if total else 1.0


@dataclass
class GraphProfile:
    """Everything one `infergraph profile` run measured."""

    graph: str
    hardware_class: str
    nodes: dict[str, NodeProfile]
    branches: dict[str, float] = field(default_factory=dict)  # gate -> fraction taking "then"
    branch_samples: int = 0
    ingress_ms: float = 0.0
    hardware: JSONObject = field(default_factory=dict)
    versions: JSONObject = field(default_factory=dict)
    settings: JSONObject = field(default_factory=dict)
    created: str = ""
    source: str = ""

    def to_dict(self) -> JSONObject:
        data = asdict(self)
        data.pop("source")
        for name, node in data["nodes"].items():
            node["rows"] = {str(k): v for k, v in node["rows"].items()}
            for entry, timing in zip(node["batches"], self.nodes[name].batches, strict=True):
                entry["rows_per_second"] = timing.rows_per_second  # one replica, full batches
        return {"format": FORMAT, **data}

    def write(self, path: Path) -> None:
        """Whole file or nothing: written beside the target, then renamed over it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)


def _need(data: JSONObject, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ProfileError(where, f"missing '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProfileError(where, f"'{key}' has the wrong type ({type(value).__name__})")
    return value


def _non_negative(data: JSONObject, key: str, where: str, default: float = 0.0) -> float:
    """A finite number >= 0 (`default` when absent): a hand-edited profile names its field."""
    value = data.get(key, default)
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1
    if not (number >= 0 and math.isfinite(number)):
        raise ProfileError(where, f"{key} must be a number >= 0, got {value!r}")
    return number


def _rows(raw: object, where: str) -> dict[int, int]:
    """Rows per request -> how often seen: counts and row numbers whole and >= 0."""
    problem = "'rows' must map a row count (>= 0) to how often it was seen (>= 0)"
    if not isinstance(raw, dict):
        raise ProfileError(where, problem)
    try:
        rows = {int(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ProfileError(where, problem) from None
    if any(k < 0 or v < 0 for k, v in rows.items()):
        raise ProfileError(where, problem)
    return rows


def _mapping(data: JSONObject, key: str, where: str) -> JSONObject:
    """An optional object field (hardware, versions, settings), {} when absent."""
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ProfileError(where, f"'{key}' must be an object, got {type(value).__name__}")
    return dict(value)


def _branches(data: JSONObject, where: str) -> dict[str, float]:
    """Gate -> fraction of requests that took its `then` side, each in [0, 1]."""
    raw = _mapping(data, "branches", where)
    branches = {}
    for gate, frac in raw.items():
        number = frac if isinstance(frac, int | float) and not isinstance(frac, bool) else -1.0
        if not 0.0 <= number <= 1.0:
            raise ProfileError(where, f"branches: fraction of '{gate}' is {frac!r}, not in [0, 1]")
        branches[str(gate)] = float(number)
    return branches


def _node_profile(name: str, data: object, hardware_class: str, where: str) -> NodeProfile:
    where = f"{where}: node '{name}'"
    if not isinstance(data, dict):
        raise ProfileError(where, "is not a mapping")
    batches = []
    for i, item in enumerate(_need(data, "batches", list, where)):
        at = f"{where} batches[{i}]"
        if not isinstance(item, dict):
            raise ProfileError(at, "is not a mapping")
        timing = BatchTiming(
            batch_size=int(_need(item, "batch_size", int, at)),
            p50_ms=float(_need(item, "p50_ms", (int, float), at)),
            p99_ms=float(_need(item, "p99_ms", (int, float), at)),
            mean_ms=float(_need(item, "mean_ms", (int, float), at)),
            samples=int(_need(item, "samples", int, at)),
        )
        finite = math.isfinite(timing.p99_ms) and math.isfinite(timing.mean_ms)
        if timing.batch_size < 1 or not 0 < timing.p50_ms <= timing.p99_ms or not finite:
            raise ProfileError(at, "needs batch_size >= 1 and finite 0 < p50_ms <= p99_ms")
        batches.append(timing)
    if not batches:
        raise ProfileError(where, "has no batch timings")
    rows = _rows(data.get("rows") or {"1": 1}, where)
    factor = _non_negative(data, "serving_factor", where, default=1.0)
    if not factor > 0:
        raise ProfileError(where, f"serving_factor must be > 0, got {factor}")
    # Older profiles also hold speed_correlation and drift_* fields: a drift model the
    # controlled check showed no prediction needs (issue 28). They are ignored.
    keys = (
        "hop_p99_ms", "response_ms", "serving_sigma", "serving_overhead_ms", "load_s",
        "cold_load_s", "first_load_s", "server_start_s", "turnaround_ms",
    )  # fmt: skip
    measured = {key: _non_negative(data, key, where) for key in keys}
    return NodeProfile(
        node=name,
        family=str(data.get("family", "")),
        hardware_class=str(data.get("hardware_class") or hardware_class),
        device=str(data.get("device", "")),
        batches=tuple(sorted(batches, key=lambda t: t.batch_size)),
        hop_ms=_non_negative(data, "hop_ms", where),
        hop_p99_ms=measured["hop_p99_ms"],
        response_ms=measured["response_ms"],
        turnaround_ms=measured["turnaround_ms"],
        rows=rows,
        serving_factor=factor,
        serving_sigma=measured["serving_sigma"],
        serving_overhead_ms=measured["serving_overhead_ms"],
        load_s=measured["load_s"],
        cold_load_s=measured["cold_load_s"],
        first_load_s=measured["first_load_s"],
        server_start_s=measured["server_start_s"],
    )


def load_profile(path: str | Path) -> GraphProfile:
    """Read one profile file; every problem names the file and the field."""
    path = Path(path)
    where = f"profile '{path}'"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ProfileError(where, f"cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ProfileError(where, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(where, f"not an infergraph profile (expected format '{FORMAT}')")
    hardware_class = str(_need(data, "hardware_class", str, where))
    nodes = {
        name: _node_profile(name, item, hardware_class, where)
        for name, item in _need(data, "nodes", dict, where).items()
    }
    return GraphProfile(
        graph=str(_need(data, "graph", str, where)),
        hardware_class=hardware_class,
        nodes=nodes,
        branches=_branches(data, where),
        branch_samples=int(_non_negative(data, "branch_samples", where)),
        ingress_ms=_non_negative(data, "ingress_ms", where),
        hardware=_mapping(data, "hardware", where),
        versions=_mapping(data, "versions", where),
        settings=_mapping(data, "settings", where),
        created=str(data.get("created", "")),
        source=str(path),
    )


@dataclass
class ProfileSet:
    """Profiles of one graph, possibly on several hardware classes, checked against it."""

    profiles: list[GraphProfile]
    by_node: dict[str, dict[str, NodeProfile]]  # node -> hardware class -> profile
    branches: dict[str, float]
    ingress_ms: float

    def classes(self, node: str) -> list[str]:
        return sorted(self.by_node[node])


def _share_rows(
    profiles: Sequence[GraphProfile], by_node: dict[str, dict[str, NodeProfile]]
) -> None:
    """Rows per request come from the graph and its payloads, not the hardware: a profile
    taken without a graph pass (`--skip-graph`, say on a GPU machine without the serving
    stack) takes each node's rows from the profile with the most requests through the graph,
    rather than its default of one row per request."""
    passed = sorted((p for p in profiles if p.branch_samples > 0), key=lambda p: -p.branch_samples)
    if not passed:
        return
    for prof in profiles:
        if prof.branch_samples > 0:
            continue
        for name, node_profile in prof.nodes.items():
            measured = next((p.nodes[name].rows for p in passed if name in p.nodes), None)
            if measured is not None:
                by_node[name][node_profile.hardware_class] = replace(node_profile, rows=measured)


def _add_once(
    per_class: dict[str, NodeProfile],
    node: NodeProfile,
    profiles: Sequence[GraphProfile],
    holder: GraphProfile,
) -> None:
    """One measurement per node and class: with two, the plan would depend on the order
    the files were given in."""
    earlier = per_class.get(node.hardware_class)
    if earlier is not None:
        first = next(p.source for p in profiles if p.nodes.get(node.node) is earlier)
        raise ProfileError(
            "--profiles",
            f"node '{node.node}' on {node.hardware_class} is measured in both '{first}' and "
            f"'{holder.source}': give one of them",
        )
    per_class[node.hardware_class] = node


def match_profiles(
    profiles: Sequence[GraphProfile], graph_name: str, nodes: Iterable[str], gates: Iterable[str]
) -> ProfileSet:
    """Check that the profiles describe this graph: its name, every node, every gate."""
    if not profiles:
        raise ProfileError("--profiles", "give at least one profile file")
    node_names = list(nodes)
    by_node: dict[str, dict[str, NodeProfile]] = {n: {} for n in node_names}
    for prof in profiles:
        if prof.graph != graph_name:
            raise ProfileError(
                f"profile '{prof.source}'",
                f"was measured on graph '{prof.graph}', not '{graph_name}'",
            )
        extra = sorted(set(prof.nodes) - set(node_names))
        if extra:
            raise ProfileError(
                f"profile '{prof.source}'",
                f"has nodes {extra} that graph '{graph_name}' does not have "
                f"(its nodes: {', '.join(node_names)})",
            )
        for name, node_profile in prof.nodes.items():
            _add_once(by_node[name], node_profile, profiles, prof)
    _share_rows(profiles, by_node)
    missing = [n for n, per_class in by_node.items() if not per_class]
    if missing:
        raise ProfileError(
            "--profiles", f"no profile covers node(s) {', '.join(missing)} of '{graph_name}'"
        )
    branches: dict[str, float] = {}
    for prof in sorted(profiles, key=lambda p: -p.branch_samples):
        for gate, frac in prof.branches.items():
            branches.setdefault(gate, frac)
    gate_list = list(gates)
    unknown = sorted(set(branches) - set(gate_list))
    if unknown:
        raise ProfileError("--profiles", f"branch fractions for unknown gates {unknown}")
    absent = [g for g in gate_list if g not in branches]
    if absent:
        raise ProfileError(
            "--profiles",
            f"no measured branch fraction for gate(s) {', '.join(absent)}; "
            "profile with --payload so requests go through the graph",
        )
    ingress = max((p.ingress_ms for p in profiles), default=0.0)
    return ProfileSet(list(profiles), by_node, branches, ingress)
