"""`infergraph demo` end to end at its smallest scale, as a user runs it (a real process).

One full run checks every artifact the demo promises and that it leaves no process
behind; a second run is interrupted with Ctrl-C (SIGINT) while its MLServer is starting,
and must stop everything it started and say where its partial results are.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from infergraph.cost import CostError, engine_cost, graph_cost, load_catalog
from infergraph.demo.folder import MARKER, prepare_folder
from infergraph.demo.server import DemoError
from infergraph.graph.plan import load_graph
from infergraph.render import engine_pods
from tests.test_render_schemas import crds_available, validate

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
ENGINES = ("seldon-v2", "seldon-v1", "kserve")


def _demo(out: Path, tag: str, *extra: str) -> subprocess.Popen[str]:
    """The demo at test size; every process it starts inherits `tag` in its environment."""
    command = [sys.executable, "-m", "infergraph.cli", "demo", "--scale", "tiny"]
    command += ["--step-seconds", "3", "--out", str(out), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFERGRAPH_TEST_TAG": tag, "COLUMNS": "100"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _tagged(tag: str) -> list[str]:
    """Command lines of live processes carrying the tag (the demo's leftovers)."""
    found = []
    needle = f"INFERGRAPH_TEST_TAG={tag}".encode()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def _stuck(proc: subprocess.Popen[str], tag: str, late: subprocess.TimeoutExpired) -> str:
    """What a demo that did not stop was doing: its state, its processes, its last output.
    Everything tagged is killed so the run goes on."""
    said = late.output.decode(errors="replace") if isinstance(late.output, bytes) else late.output
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        state = next(line for line in status.splitlines() if line.startswith("State"))
        wchan = Path(f"/proc/{proc.pid}/wchan").read_text()
    except OSError:
        state, wchan = "exited", ""
    left = _tagged(tag)
    for pid in _tagged_pids(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    return (
        f"the demo did not stop within 180 s of SIGINT (exit {proc.returncode} after SIGKILL); "
        f"demo {state} in {wchan!r}; tagged processes: {left}; output tail:\n{(said or '')[-3000:]}"
    )


def _tagged_pids(tag: str) -> list[int]:
    needle = f"INFERGRAPH_TEST_TAG={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
    return pids


def _no_leftovers(tag: str) -> list[str]:
    deadline = time.monotonic() + 15
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    out = tmp_path_factory.mktemp("demo") / "demo-results"
    tag = uuid.uuid4().hex
    proc = _demo(out, tag)
    output, _ = proc.communicate(timeout=540)
    assert proc.returncode == 0, output[-4000:]
    return out, output, _no_leftovers(tag)


def test_demo_leaves_no_process_behind(demo_run: tuple[Path, str, list[str]]) -> None:
    assert demo_run[2] == []


def test_demo_output_fits_100_columns_and_says_weights_are_random(
    demo_run: tuple[Path, str, list[str]],
) -> None:
    _, output, _ = demo_run
    assert "RANDOM WEIGHTS" in output
    for step in ("1. serve", "2. find the knee", "3. price it", "4. plan it", "5. deploy it"):
        assert step in output
    table_lines = [line for line in output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines
    assert max(len(line) for line in table_lines) <= 100


def test_demo_sweep_finds_a_knee_and_a_front(demo_run: tuple[Path, str, list[str]]) -> None:
    out = demo_run[0]
    sweep = json.loads((out / "sweep.json").read_text())
    rates = [row["offered_rps"] for row in sweep["rows"]]
    # At least 4 whichever steps a loaded machine fails to carry: the sweep bisects towards
    # the first rate it did not carry until it has 5 (`demo.sweep.MIN_RATES`).
    assert len(rates) >= 4 and rates == sorted(rates)
    carried = {row["offered_rps"] for row in sweep["rows"] if row["carried"]}
    assert sweep["knee"]["offered_rps"] in carried
    # How many points the front has follows the measured latencies, which a stall in one
    # 3 s step reorders; which rates are on it follows from the rows, whatever they measured.
    latency = f"p{sweep['slo']['percentile']:g}_ms"
    assert [p["offered_rps"] for p in sweep["pareto_front"]] == _front_of(sweep["rows"], latency)
    assert sweep["slo"]["latency_ms"] > 0 and sweep["slo"]["reason"]
    for row in sweep["rows"]:
        assert row["usd_per_million"] > 0 and row["served_rps"] > 0
    csv_lines = (out / "sweep.csv").read_text().strip().splitlines()
    assert len(csv_lines) == len(rates) + 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["knee"] == sweep["knee"]
    stages = summary["stages_at_knee"]
    assert set(stages) == {"fast", "accurate"}
    assert all(row["inference_ms"] > 0 for row in stages.values())


def _front_of(rows: list[dict[str, float]], latency: str) -> list[float]:
    """The carried rates no other carried rate beats on both $ per million and `latency`
    (the SLO's percentile), cheapest first: the front the demo must have written."""
    carried = sorted(
        (row for row in rows if row["carried"]),
        key=lambda row: (row["usd_per_million"], row[latency]),
    )
    front, best = [], math.inf
    for row in carried:
        if row[latency] < best:
            front.append(row["offered_rps"])
            best = row[latency]
    assert front, "no carried rate, so no front"
    return front


def test_demo_prices_the_machine_it_ran_on(demo_run: tuple[Path, str, list[str]]) -> None:
    out = demo_run[0]
    served = load_graph(out / "graph-as-run.yaml")
    assert {n.hardware for n in served.spec.nodes} == {"c7i.large"}
    assert all(n.resources.gpu == 0 for n in served.spec.nodes)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usd_per_hour_as_run"] == pytest.approx(0.08925)
    cores = summary["cores"]  # where the served work ran, against the class's 2 vCPUs
    assert cores["vcpus"] == 2 and set(cores["server"]) <= set(cores["machine"])
    assert len(cores["server"]) == min(2, len(cores["machine"]))
    assert "CPUs: " in demo_run[1]
    for row in json.loads((out / "sweep.json").read_text())["rows"]:
        expected = 0.08925 / (row["served_rps"] * 3600) * 1e6
        assert row["usd_per_million"] == pytest.approx(expected, rel=1e-6)


def test_demo_plans_a_valid_graph(demo_run: tuple[Path, str, list[str]]) -> None:
    out = demo_run[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan_error"] is None
    plan = summary["plan"]
    assert plan["predicted_ms"] > 0 and plan["usd_per_hour"] > 0
    assert summary["plan_rate_rps"] == plan["rate_rps"] > 0
    planned = load_graph(out / "plan" / "cascade.planned.yaml")
    for node in planned.spec.nodes:
        chosen = plan["nodes"][node.name]
        assert node.batching.max_batch_size == chosen["max_batch_size"]
        assert node.replicas == chosen["replicas"] >= 1
    assert (out / "plan" / "plan.json").is_file() and (out / "plan" / "pareto.png").is_file()
    assert json.loads((out / "profile.json").read_text())["graph"] == "cascade"


def test_demo_renders_both_graphs_for_every_engine(demo_run: tuple[Path, str, list[str]]) -> None:
    if not crds_available():
        pytest.skip("CRD schemas not found (clone with ../shared beside the repo)")
    out = demo_run[0]
    for label in ("original", "planned"):
        for engine in ENGINES:
            manifest = out / "manifests" / label / engine / "cascade.yaml"
            objects = [o for o in yaml.safe_load_all(manifest.read_text()) if o]
            assert objects, manifest
            problems = [p for o in objects for p in validate(o)]
            assert problems == [], (manifest, problems)


def test_demo_prices_the_planned_graph_on_every_engine(
    demo_run: tuple[Path, str, list[str]],
) -> None:
    """Step 5 says what the planned graph costs on each engine, as the operator's
    status.pricePerHour would, and where its pods do not fit their class: each replica asks
    for a whole c7i.large, which leaves no room for Seldon v2's agent and rclone."""
    out, output, _ = demo_run
    summary = json.loads((out / "summary.json").read_text())
    planned = load_graph(out / "plan" / "cascade.planned.yaml")
    assert summary["priced_on_engines"] == str(out / "plan" / "cascade.planned.yaml")
    catalog = load_catalog()
    own = graph_cost(planned, catalog).usd_per_hour
    prices = summary["on_engines"]
    assert set(prices) == set(ENGINES)
    for engine, price in prices.items():
        try:
            expected = engine_cost(planned, engine, engine_pods(planned, engine), catalog)
        except CostError as exc:
            assert price == {"usd_per_hour": None, "added_usd_per_hour": None, "problem": str(exc)}
            continue
        assert price["problem"] is None
        assert price["usd_per_hour"] == pytest.approx(expected.usd_per_hour)
        assert price["added_usd_per_hour"] == pytest.approx(expected.usd_per_hour - own)
        assert price["added_usd_per_hour"] > 0  # the engine's own pods at the least
    assert "does not fit on one 'c7i.large'" in prices["seldon-v2"]["problem"]
    fits = [e for e, p in prices.items() if p["problem"] is None]
    assert fits == ["kserve"]  # a whole allocatable per pod; KServe adds no sidecar to it
    said = " ".join(output.split())  # the console wraps long lines
    assert "as planned: c7i.large nodes, on kserve" in said
    assert "your Nodes' DaemonSets take more: `infergraph node-catalog`" in said


def test_demo_folder_readme_names_every_file(demo_run: tuple[Path, str, list[str]]) -> None:
    out = demo_run[0]
    readme = (out / "README.md").read_text()
    for name in ("sweep.json", "latency_throughput.png", "cost_latency.png", "profile.json"):
        assert f"`{name}`" in readme
        assert (out / name).stat().st_size > 0
    for png in ("latency_throughput.png", "cost_latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_replaces_its_own_folder_and_refuses_others(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    prepare_folder(ours).close()  # closed: that run has ended
    (ours / "old.json").write_text("{}")
    prepare_folder(ours).close()
    assert sorted(p.name for p in ours.iterdir()) == [MARKER]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    with pytest.raises(DemoError, match="not written by the demo"):
        prepare_folder(theirs)
    assert (theirs / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hardware", "no-such-class"], "hardware class 'no-such-class'"),
        (["--graph", "k8s/graphs/missing.yaml"], "missing.yaml"),
        (["--scale", "huge"], "--scale must be demo, full or tiny"),
        (["--plan-rate", "nan"], "--plan-rate must be a request rate > 0"),
        (["--step-seconds", "0"], "--step-seconds must be between 1 and 600"),
    ],
)
def test_bad_options_are_named_and_touch_no_results(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "demo-results"
    done = subprocess.run(
        [sys.executable, "-m", "infergraph.cli", "demo", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode != 0
    assert message in done.stderr + done.stdout, done.stderr
    assert not out.exists()


def test_ctrl_c_stops_every_process_and_names_the_partial_results(tmp_path: Path) -> None:
    """Interrupted while MLServer is still starting: the hardest moment to leave nothing.

    The results folder's path is longer than the demo's 100 columns, as a CI worker's temporary
    folders are: the path it names must still be one line a user can copy."""
    out = tmp_path / ("a-results-folder-with-a-long-name-" * 3) / "demo-results"
    tag = uuid.uuid4().hex
    proc = _demo(out, tag)
    deadline = time.monotonic() + 240
    while not any("mlserver" in cmd for cmd in _tagged(tag)):
        assert proc.poll() is None and time.monotonic() < deadline, "MLServer never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired as late:
        pytest.fail(_stuck(proc, tag, late))
    assert proc.returncode == 130, rest[-3000:]
    assert "interrupted" in rest and f"partial results are in {out}" in rest, rest[-3000:]
    assert _no_leftovers(tag) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["knee"] is None
    assert (out / "README.md").is_file() and (out / "graph-as-run.yaml").is_file()
