"""The load tester against real servers on loopback.

A deliberately slow/flaky/wrong aiohttp server (own process) checks measured
latencies against injected delays, error counts against injected faults, and
open-loop timing; a real MLServer serving this project's identity runtime checks
V2 REST and gRPC end to end. Timing tolerances are generous: CI boxes are small
and shared.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from async_load_tester.cli import app
from typer.testing import CliRunner

from async_load_tester import ConfigError, LoadConfig, intended_sends, run_load
from tests.loadtest_servers import LoadTestServer, loadtest_server
from tests.servers import free_port, mlserver, write_model

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server() -> Iterator[LoadTestServer]:
    with loadtest_server() as s:
        yield s


def config(server: LoadTestServer, model: str, **kw: object) -> LoadConfig:
    base: dict[str, object] = {
        "target": server.url,
        "model": model,
        "warmup": 0.0,
        "progress": False,
    }
    return LoadConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_percentiles_match_injected_delay(server: LoadTestServer) -> None:
    server.behave("slow", delay_ms=50)
    step = run_load(config(server, "slow", rate=40, duration=3, warmup=0.5)).steps[0]
    assert step.errors == {} and step.ok == step.sent == 120
    lat = step.latency_ms
    # No request is answered before its injected delay, load or not. Above it, a loaded box
    # adds what it adds: latency counts from each intended send, so a 250 ms stall of either
    # process lands on the ~10 requests due in it. The ceilings still catch a latency
    # measured from the wrong moment or in the wrong unit.
    assert 50 <= lat["p50"] <= 150, lat  # type: ignore[operator]
    assert 50 <= lat["min"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat  # type: ignore[operator]
    assert lat["p90"] <= 400, lat  # type: ignore[operator]


def test_closed_loop_errors_are_counted_exactly(server: LoadTestServer) -> None:
    server.behave("flaky", fail_every=4, malformed_every=5, reset_every=7)
    step = run_load(config(server, "flaky", concurrency=4, requests=300)).steps[0]
    counts = server.counts("flaky")
    assert counts.requests == step.sent == 300
    assert step.errors == {
        "http_503": counts.failed,
        "malformed": counts.malformed,
        "reset": counts.reset,
    }
    assert step.ok == 300 - counts.failed - counts.malformed - counts.reset
    assert "injected failure" in step.error_samples["http_503"]


def test_open_loop_timing_does_not_drift(server: LoadTestServer) -> None:
    server.behave("fast")
    step = run_load(config(server, "fast", rate=200, duration=4, warmup=1)).steps[0]
    counts = server.counts("fast")
    assert step.sent == 800  # exactly rate x duration, whatever the box's load
    assert counts.requests == 1000  # warm-up requests were sent too, just not measured
    assert step.ok + step.dropped == 800
    # The last send is due at 3.995 s and its answer can only come later; a stall of the
    # tester or the server near the end delays the last answers (and moves up to a quarter
    # second's answers out of the window): the ceilings leave room for a stall or two.
    assert 3.95 <= step.elapsed_s <= 5.0, step.elapsed_s
    assert step.throughput_rps == pytest.approx(200, rel=0.15)


def test_poisson_open_loop_is_seeded(server: LoadTestServer) -> None:
    server.behave("poisson")
    a = run_load(config(server, "poisson", rate=100, duration=2, arrival="poisson", seed=3)).steps[
        0
    ]
    b = run_load(config(server, "poisson", rate=100, duration=2, arrival="poisson", seed=3)).steps[
        0
    ]
    assert a.sent == b.sent
    assert a.sent == pytest.approx(200, rel=0.25)


def test_intended_sends_are_the_arrivals_a_run_makes(server: LoadTestServer) -> None:
    server.behave("replayed")
    cfg = config(server, "replayed", rate=80, duration=2, warmup=0.5, arrival="poisson", seed=11)
    offsets = intended_sends(cfg)
    step = run_load(cfg).steps[0]
    assert np.all(np.diff(offsets) >= 0) and offsets[0] >= 0 and offsets[-1] < 2.5
    assert server.counts("replayed").requests == offsets.size  # warm-up sends included
    assert step.sent == int(np.sum(offsets >= 0.5))  # the measured ones
    assert not np.array_equal(intended_sends(cfg.model_copy(update={"seed": 12})), offsets)
    with pytest.raises(ConfigError, match="closed-loop"):
        intended_sends(config(server, "replayed", concurrency=2, duration=1))


def test_timeouts_are_counted(server: LoadTestServer) -> None:
    server.behave("hang", hang=True)
    step = run_load(config(server, "hang", rate=20, duration=1, timeout_s=0.3)).steps[0]
    assert step.errors == {"timeout": 20} and step.ok == 0


def test_refused_connections_are_counted() -> None:
    target = f"http://127.0.0.1:{free_port()}"
    result = run_load(LoadConfig(target=target, model="m", rate=50, duration=1, warmup=0))
    step = result.steps[0]
    assert step.errors == {"connect": 50}
    assert "Connection refused" in step.error_samples["connect"]
    assert any("no request succeeded" in w for w in result.warnings)
    closed = run_load(
        LoadConfig(target=target, model="m", concurrency=2, duration=0.5, warmup=0)
    ).steps[0]
    assert closed.ok == 0 and closed.errors["connect"] == closed.sent > 0


def test_stage_breakdown_and_seldon_with_headers(server: LoadTestServer) -> None:
    stages = {"queue_ms": 1.5, "preprocess_ms": 2.0, "fast.inference_ms": 20.0}
    server.behave("graph", stages=stages)
    step = run_load(config(server, "graph", concurrency=2, requests=50)).steps[0]
    assert {k: v["p50"] for k, v in step.stages_ms.items()} == stages
    assert all(v["count"] == 50 for v in step.stages_ms.values())
    server.behave("cascade", stages={"inference_ms": 3.0})
    step = run_load(
        config(
            server,
            "cascade",
            protocol="seldon-rest",
            headers={"Seldon-Model": "cascade"},
            concurrency=2,
            requests=40,
        )
    ).steps[0]
    assert step.ok == 40 and server.counts("cascade").requests == 40
    assert step.stages_ms["inference_ms"]["p50"] == 3.0
    server.behave("routed")
    step = run_load(
        config(
            server,
            "routed",
            namespace="prod",
            path_template="/seldon/{namespace}/{model}/v2/models/{model}/infer",
            concurrency=1,
            requests=10,
        )
    ).steps[0]
    assert step.ok == 10 and server.counts("routed").requests == 10


def test_engine_prices_the_pods_it_runs(server: LoadTestServer) -> None:
    """With --engine the $/1M is the graph as that engine runs it: the same figure the
    operator's `status.pricePerHour` reports, above the nodes' own resources."""
    from infergraph.cost import engine_cost, graph_cost, load_catalog
    from infergraph.cost.pods import seldon_v2_pods
    from infergraph.graph.plan import load_graph
    from infergraph.render import render
    from infergraph.render.options import RenderOptions

    server.behave("priced", delay_ms=1)
    graph_file = REPO / "k8s" / "graphs" / "cascade.yaml"
    run = config(server, "priced", concurrency=1, requests=5, graph=graph_file)
    plain = run_load(run)
    on_v2 = run_load(run.model_copy(update={"engine": "seldon-v2"}))
    graph, catalog = load_graph(graph_file), load_catalog()
    objs = render(graph, "seldon-v2", RenderOptions(storage_uri="s3://bucket/infergraph"))
    expected = engine_cost(graph, "seldon-v2", seldon_v2_pods(objs), catalog).usd_per_hour
    assert on_v2.graph_cost is not None and plain.graph_cost is not None
    assert on_v2.graph_cost["usd_per_hour"] == pytest.approx(expected)
    assert plain.graph_cost["usd_per_hour"] == pytest.approx(
        graph_cost(graph, catalog).usd_per_hour
    )
    assert expected > plain.graph_cost["usd_per_hour"]
    assert any(n["part"] == "engine" for n in on_v2.graph_cost["nodes"])
    step = on_v2.steps[0]
    assert step.ok == 5
    assert step.usd_per_million == pytest.approx(expected / (step.throughput_rps * 3600) * 1e6)


def test_sweep_cost_and_outputs(server: LoadTestServer, tmp_path: Path) -> None:
    server.behave("sweep", delay_ms=20)
    result = run_load(
        config(
            server,
            "sweep",
            sweep=True,
            slo_ms=60,
            slo_percentile=95,
            duration=1.0,
            warmup=0.2,
            sweep_max_concurrency=8,
            graph=REPO / "k8s" / "graphs" / "cascade.yaml",
        )
    )
    levels = [s.concurrency for s in result.steps]
    assert levels[:2] == [1, 2]
    assert result.graph_cost is not None and result.graph_cost["usd_per_hour"] > 0
    for s in result.steps:
        expected = result.graph_cost["usd_per_hour"] / (s.throughput_rps * 3600) * 1e6
        assert s.usd_per_million == pytest.approx(expected)
    assert result.sweep is not None and result.sweep["best"] is not None
    assert result.sweep["pareto_front"]
    paths = result.write(tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["config"]["slo_ms"] == 60 and data["environment"]["versions"]["async-load-tester"]
    assert data["target"]["protocol"] == "v2-rest"
    assert paths["csv"].read_text().startswith("label,mode,concurrency")
    for name in ("latency_cdf", "throughput_latency", "cost_latency"):
        assert paths[name].read_bytes().startswith(b"\x89PNG")


def test_cli_rejects_bad_input_before_sending(server: LoadTestServer, tmp_path: Path) -> None:
    server.behave("guard")
    runner = CliRunner()
    for args, message in (
        (["--protocol", "v3-rest", "--rate", "5"], "unknown protocol 'v3-rest'"),
        (["--rate", "0"], "--rate"),
        (["--rate", "5", "--payload", str(tmp_path / "missing")], "is not a folder"),
        (["--rate", "5", "--payload", str(tmp_path)], "holds no image"),
        (["--rate", "5", "--header", "broken"], "not 'Name: value'"),
    ):
        result = runner.invoke(app, ["run", "--target", server.url, "--model", "guard", *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
    assert server.counts("guard").requests == 0


def test_cli_run_writes_results(server: LoadTestServer, tmp_path: Path) -> None:
    server.behave("cli", delay_ms=5)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--target",
            server.url,
            "--model",
            "cli",
            "--rate",
            "50",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--slo-ms",
            "100",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["steps"][0]["sent"] == 50 and data["steps"][0]["slo_attainment"] > 0.9


@pytest.fixture(scope="module")
def echo_mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    models = tmp_path_factory.mktemp("models")
    write_model(models, "echo", "identity")
    with mlserver(models) as s:
        yield s


@pytest.mark.parametrize("protocol", ["v2-rest", "v2-grpc"])
def test_real_mlserver(echo_mlserver: object, protocol: str) -> None:
    s = echo_mlserver
    target = s.url if protocol == "v2-rest" else f"grpc://127.0.0.1:{s.grpc_port}"  # type: ignore[attr-defined]
    step = run_load(
        LoadConfig(
            target=target,
            model="echo",
            protocol=protocol,
            payload="synthetic:tensor:1x4",  # type: ignore[arg-type]
            input_name="input",
            concurrency=2,
            requests=100,
            warmup=0.5,
            progress=False,
        )
    ).steps[0]
    assert step.errors == {} and step.ok == step.sent == 100
    assert step.latency_ms["p50"] is not None and step.latency_ms["p50"] < 1000
    if (
        protocol == "v2-rest"
    ):  # MLServer's REST keeps our runtime's stage timings; its gRPC drops floats
        assert {"preprocess_ms", "inference_ms"} <= set(step.stages_ms)
    open_step = run_load(
        LoadConfig(
            target=target,
            model="echo",
            protocol=protocol,
            payload="synthetic:tensor:1x4",  # type: ignore[arg-type]
            input_name="input",
            rate=50,
            duration=2,
            warmup=0.5,
            progress=False,
        )
    ).steps[0]
    assert open_step.errors == {} and open_step.ok == open_step.sent == 100
