"""What `infergraph plan` shows and writes: tables, assumptions, Pareto plot, JSON, planned YAML.

Every file is first written into a scratch folder beside the output folder and
moved into place only when all of them are complete, so a failure leaves nothing
half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from infergraph.errors import MissingExtraError
from infergraph.graph.plan import parse_graph
from infergraph.json_types import JSONObject
from infergraph.planner.planning import PlanOutcome, planned_manifest
from infergraph.planner.search import Evaluated, SearchSettings

SEARCH_METHOD = (
    "per-node Pareto options (exhaustive over hardware x batch x delay, fewest replicas), "
    "then best-first over their combinations in $/hour order with a lower-bound prune "
    "(and no second look at a prefix of nodes already seen to miss), "
    "each combination checked by the whole-graph simulation: the first accepted is the "
    "cheapest combination of per-node Pareto options"
)


def node_table(outcome: PlanOutcome) -> Table:
    s = outcome.inputs.settings
    p = f"p{s.percentile:g}"
    table = Table(title=f"planned configuration of '{outcome.inputs.graph.name}'")
    columns = ("node", "hardware", "batch", "delay ms", "replicas", "mean", "util", f"{p} ms")
    for col in (*columns, "$/hour"):
        table.add_column(col, justify="right")
    final = outcome.final
    for node, option in final.options.items():
        mean = final.mean_replicas.get(node, float(option.replicas))
        table.add_row(
            node,
            option.hardware,
            str(option.max_batch_size),
            f"{option.max_batch_time_ms:g}",
            str(option.replicas),
            f"{mean:.2f}" + (" (autoscaled)" if outcome.autoscaled(node) else ""),
            f"{final.utilisation.get(node, 0.0):.2f}",
            _node_ms(final, node),
            f"{option.usd_per_replica_hour * mean:.4f}",
        )
    return table


def scaling_table(outcome: PlanOutcome) -> Table:
    table = Table(title="autoscaling targets (per replica) and bounds")
    for col in ("node", "engine", "metric", "target", "min", "max", "in graph", "why"):
        table.add_column(col)
    for node in outcome.inputs.graph.spec.nodes:
        a = outcome.scaling[node.name]
        table.add_row(
            a.node,
            a.engine,
            a.metric,
            f"{a.target:g}",
            str(a.min_replicas),
            str(a.max_replicas),
            _in_graph(outcome, node.name),
            a.why,
        )
    return table


def _in_graph(outcome: PlanOutcome, node: str) -> str:
    """Whether the planned graph carries this node's autoscaler, and why not."""
    if outcome.autoscaled(node):
        return "written"
    if outcome.inputs.autoscale == "off":
        return "not written (--autoscale off)"
    if outcome.margin is None:
        return "not written (no target kept the SLO: held at its replicas)"
    return "advice (no autoscaling block)"


def assumptions(outcome: PlanOutcome) -> list[str]:
    inputs = outcome.inputs
    catalog_dates = sorted(
        {
            str(inputs.catalog.get(o.hardware).as_of)
            for o in outcome.final.options.values()
            if inputs.catalog.get(o.hardware).as_of
        }
    )
    lines = [
        f"load: {inputs.workload.label}; mean {inputs.workload.mean_rps:.1f} req/s, "
        f"peak {inputs.workload.peak_rps:.1f} req/s",
        f"search load: {outcome.search_window}, rate x{1 + inputs.headroom:.2f} (headroom)",
        "profiles: "
        + ", ".join(
            f"{p.source} ({p.hardware_class}, {p.created or 'undated'})"
            for p in outcome.profiles.profiles
        ),
        "branch fractions: "
        + (", ".join(f"{g} then={f:.3f}" for g, f in outcome.profiles.branches.items()) or "none"),
        f"router ingress {outcome.profiles.ingress_ms:.2f} ms per request; "
        "per-node hops as profiled",
        f"prices: {', '.join(inputs.catalog.origin)} (as of {', '.join(catalog_dates) or 'n/a'})",
        f"cost: {engine_line(outcome)}",
        "pods may ask, per node of a class: " + _rooms(outcome),
        "replicas get requests round-robin; each runs the runtime's micro-batcher"
        + _queue_bounds(outcome),
        _autoscaling_assumption(outcome),
        f"search: {SEARCH_METHOD}; {outcome.search.simulations} simulations"
        + (" (capped: the result may not be the cheapest)" if outcome.search.capped else "")
        + (
            "; no combination of per-node options passed together, so replicas were added "
            "to the slowest node (the result may not be the cheapest)"
            if outcome.search.repaired
            else ""
        ),
    ]
    lines += list(outcome.search.notes)
    return lines


def _queue_bounds(outcome: PlanOutcome) -> str:
    """The nodes whose replicas refuse requests past a queue bound, as their servers do."""
    bounded = [
        f"{n.name} ({n.batching.max_queue_rows} rows)"
        for n in outcome.inputs.graph.spec.nodes
        if n.batching.max_queue_rows is not None
    ]
    if not bounded:
        return ""
    if not outcome.queue_bounds_enforced:
        return (
            f"; batching.maxQueueRows of {', '.join(bounded)} caps batches only: it is not "
            f"enforced on {outcome.inputs.engine} (Seldon-protocol units have no queue), so "
            "no request is simulated refused"
        )
    return (
        "; a request that would pass a replica's batching.maxQueueRows is refused, never "
        f"answered, and counts as missing the SLO: {', '.join(bounded)}"
    )


def _rooms(outcome: PlanOutcome) -> str:
    """What one node of each planned class lets pods ask for, and on whose word."""
    rooms = []
    for name in sorted({o.hardware for o in outcome.final.options.values()}):
        instance = outcome.inputs.catalog.get(name)
        room = instance.allocatable
        rooms.append(
            f"{name} {room.vcpus:.3g} of {instance.vcpus:g} vCPU, {room.memory_gib:.3g} of "
            f"{instance.memory_gib:g} GiB ({instance.allocatable_basis})"
        )
    return "; ".join(rooms)


def _autoscaling_assumption(outcome: PlanOutcome) -> str:
    mode = outcome.inputs.autoscale
    if mode == "off" or not any(outcome.autoscaled(n) for n in outcome.final.options):
        return "replicas: every node held at its planned replicas (peak-provisioned)"
    return (
        "replicas: autoscaled nodes replayed through the HPA algorithm as rendered (15 s sync, "
        "1 min rate window, 10% tolerance, up 2 pods/30 s, down half/60 s, the node's cooldown), "
        f"each new pod taking traffic after its start-up ({_startups(outcome)}); "
        "$/hour is the time-averaged pod cost" + _cold_start_share(outcome)
    )


def _startups(outcome: PlanOutcome) -> str:
    parts = []
    for node in outcome.final.options:
        if outcome.autoscaled(node):
            seconds, source = outcome.startup_s(node)
            parts.append(f"{node} {seconds:.3g} s, {source}")
    return "; ".join(parts)


def _cold_start_share(outcome: PlanOutcome) -> str:
    share = outcome.cold_start_budget_share
    if share is None:
        return ""
    return (
        f"; pods' start-up takes {share * 100:.1f}% of the SLO's miss budget "
        f"({100 - outcome.inputs.settings.percentile:g}% of requests)"
    )


def verdict(outcome: PlanOutcome) -> str:
    """One line: the plan's predicted percentile against the SLO, and what it costs."""
    s = outcome.inputs.settings
    final = outcome.final
    meets = "[green]meets[/]" if final.feasible else "[red]misses[/]"
    return (
        f"end to end p{s.percentile:g}: [bold]{final.latency_ms:.1f} ms[/] {meets} the SLO of "
        f"{s.slo_ms:g} ms ({outcome.attainment * 100:.2f}% of requests within it"
        f"{_refused(final, s)}); "
        f"[bold]${outcome.usd_per_hour:.4f}/hour[/] (${outcome.peak_usd_per_hour:.4f} with every "
        f"node at its planned replicas), "
        f"${outcome.usd_per_million():.3f} per million inferences at the mean rate"
    )


def _node_ms(ev: Evaluated, node: str) -> str:
    """A node's percentile for the table; where its refusals leave none, what it refused."""
    ms = ev.node_latency_ms.get(node, 0.0)
    if math.isfinite(ms):
        return f"{ms:.1f}"
    return f"- ({ev.node_refused_fraction.get(node, 0.0) * 100:.1f}% refused)"


def _refused(ev: Evaluated, settings: SearchSettings) -> str:
    """The requests the nodes' queue bounds refused (batching.maxQueueRows), if any, and the
    limit the plan was held to, if one was set."""
    limit = ""
    if settings.max_refused is not None:
        limit = f"; at most {settings.max_refused * 100:g}% refused ({settings.max_refused_from})"
    if not ev.refused_fraction:
        return limit
    refused = f"{ev.refused_fraction * 100:.3f}% refused by a full queue (batching.maxQueueRows)"
    return f", {refused}{limit}"


def _finite(value: float | None) -> float | None:
    """A latency for JSON: None where every request at that percentile was refused
    (JSON has no infinity)."""
    return value if value is None or math.isfinite(value) else None


def engine_line(outcome: PlanOutcome) -> str:
    """What the engine adds, where the plan is for one."""
    engine = outcome.inputs.engine
    if engine is None:
        return (
            "priced at each node's own resources; --engine adds what the engine that "
            "deploys the graph runs beside them"
        )
    own = ", ".join(c.node for c in outcome.engine_pods) or "none"
    return (
        f"each replica at what its pod asks for on {engine} (sidecars included), and "
        f"${outcome.engine_usd_per_hour:.4f}/hour of pods of its own ({own})"
    )


def print_report(outcome: PlanOutcome, console: Console) -> None:
    s = outcome.inputs.settings
    console.print(node_table(outcome))
    console.print(verdict(outcome))
    console.print(scaling_table(outcome))
    front = Table(title="Pareto front: $/hour against simulated latency (search load)")
    front.add_column("$/hour", justify="right")
    front.add_column(f"p{s.percentile:g} ms", justify="right")
    front.add_column("settings (node: hardware/batch/delay/replicas)")
    for ev in outcome.search.pareto:
        front.add_row(f"{outcome.with_engine(ev):.4f}", f"{ev.latency_ms:.1f}", describe(ev))
    console.print(front)
    console.print("[bold]assumptions[/]")
    for line in assumptions(outcome):
        console.print(f"  - {line}")
    console.print(f"planned in {outcome.seconds:.2f} s")


def describe(ev: Evaluated) -> str:
    return "; ".join(
        f"{n}: {o.hardware}/{o.max_batch_size}/{o.max_batch_time_ms:g}/{o.replicas}"
        for n, o in ev.options.items()
    )


def to_json(outcome: PlanOutcome) -> JSONObject:
    s = outcome.inputs.settings

    def ev_dict(ev: Evaluated) -> JSONObject:
        return {
            "usd_per_hour": outcome.with_engine(ev),
            "latency_ms": _finite(ev.latency_ms),
            "feasible": ev.feasible,
            "refused_fraction": ev.refused_fraction,
            "nodes": {
                n: {
                    "hardware": o.hardware,
                    "max_batch_size": o.max_batch_size,
                    "max_batch_time_ms": o.max_batch_time_ms,
                    "replicas": o.replicas,
                    "mean_replicas": ev.mean_replicas.get(n, float(o.replicas)),
                    "usd_per_hour": o.usd_per_replica_hour
                    * ev.mean_replicas.get(n, float(o.replicas)),
                    "latency_ms": _finite(ev.node_latency_ms.get(n)),
                    "utilisation": ev.utilisation.get(n),
                }
                for n, o in ev.options.items()
            },
        }

    return {
        "graph": outcome.inputs.graph.name,
        "slo": {
            "latency_ms": s.slo_ms,
            "percentile": s.percentile,
            "max_refused_fraction": s.max_refused,
        },
        "plan": ev_dict(outcome.final),
        "slo_attainment": outcome.attainment,
        "usd_per_hour": outcome.usd_per_hour,
        "peak_usd_per_hour": outcome.peak_usd_per_hour,
        "engine": _engine_json(outcome),
        "autoscale": outcome.inputs.autoscale,
        "usd_per_million": outcome.usd_per_million(),
        "search_load": ev_dict(outcome.best),
        "pareto": [ev_dict(ev) for ev in outcome.search.pareto],
        "autoscaling": {n: vars(a) for n, a in outcome.scaling.items()},
        "autoscaling_written": sorted(n for n in outcome.final.options if outcome.autoscaled(n)),
        "startup_s": {
            n: dict(zip(("seconds", "source"), outcome.startup_s(n), strict=True))
            for n in outcome.final.options
            if outcome.autoscaled(n)
        },
        "cold_start_budget_share": outcome.cold_start_budget_share,
        "assumptions": assumptions(outcome),
        "simulations": outcome.search.simulations,
        "capped": outcome.search.capped,
        "repaired": outcome.search.repaired,
        "planner_seconds": outcome.seconds,
    }


def _engine_json(outcome: PlanOutcome) -> JSONObject | None:
    if outcome.inputs.engine is None:
        return None
    return {
        "name": outcome.inputs.engine,
        "usd_per_hour": outcome.engine_usd_per_hour,
        "pods": [
            {
                "source": c.node,
                "hardware": c.hardware,
                "replicas": c.replicas,
                "usd_per_hour": c.usd_per_hour,
            }
            for c in outcome.engine_pods
        ],
    }


def pareto_plot(outcome: PlanOutcome, path: Path) -> None:
    try:
        import matplotlib
    except ModuleNotFoundError as exc:  # matplotlib is the `planner` extra
        raise MissingExtraError("matplotlib", "planner", "the planner's Pareto plot") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = outcome.inputs.settings
    fig, ax = plt.subplots(figsize=(7, 4.5))
    evs = outcome.search.evaluated
    ax.scatter(
        [e.latency_ms for e in evs],
        [outcome.with_engine(e) for e in evs],
        s=12,
        color="0.7",
        label="simulated combinations",
    )
    front = outcome.search.pareto
    ax.plot(
        [e.latency_ms for e in front],
        [outcome.with_engine(e) for e in front],
        "o-",
        color="tab:blue",
        label="Pareto front",
    )
    best = outcome.best
    ax.scatter(
        [best.latency_ms],
        [outcome.with_engine(best)],
        s=80,
        marker="*",
        color="tab:red",
        zorder=3,
        label="plan",
    )
    ax.axvline(s.slo_ms, color="tab:red", linestyle="--", linewidth=1, label=f"SLO {s.slo_ms:g} ms")
    ax.set_xlabel(f"simulated end-to-end p{s.percentile:g} latency (ms)")
    ax.set_ylabel("$/hour")
    ax.set_title(f"{outcome.inputs.graph.name}: cost against latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(outcome: PlanOutcome, out_dir: Path) -> dict[str, Path]:
    """planned YAML, plan.json and pareto.png, all or nothing."""
    manifest = planned_manifest(outcome)
    parse_graph(manifest, "planned graph")  # what serve/render will read must be valid
    name = outcome.inputs.graph.name
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".plan-", dir=out_dir))
    try:
        files = {
            "graph": scratch / f"{name}.planned.yaml",
            "json": scratch / "plan.json",
            "plot": scratch / "pareto.png",
        }
        files["graph"].write_text(yaml.safe_dump(manifest, sort_keys=False))
        # JSON has no infinity: a non-finite figure left in the report fails here, loudly,
        # before anything is moved into place (Python would write `Infinity`).
        files["json"].write_text(
            json.dumps(to_json(outcome), indent=2, default=str, allow_nan=False)
        )
        pareto_plot(outcome, files["plot"])
        final = {}
        for key, path in files.items():
            target = out_dir / path.name
            os.replace(path, target)
            final[key] = target
        return final
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
