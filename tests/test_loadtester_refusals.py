"""The load tester tells a server's refusals (overloaded: HTTP 503, gRPC UNAVAILABLE) from
failures to connect, and holds a run to the graph's refusal limit as the planner does.

A real MLServer serves a `controlled` node (benchmarks/controlled.py) whose forward pass takes
40 ms, one row a pass and at most one row waiting (`batching.maxQueueRows`): closed-loop
callers beyond two are refused by our batcher (`QueueFullError`), over REST and gRPC alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from async_load_tester import ConfigError, LoadConfig, run_load
from benchmarks.controlled import EXTRA_FAMILIES
from tests.servers import MLServerProcess, families_env, free_port, mlserver, write_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("refusals") / "models"
    root.mkdir()
    write_model(
        root, "bounded", "controlled", max_batch_size=1, max_batch_time=0.0,
        max_queue_rows=1, base_ms=40, per_row_ms=0,
    )  # fmt: skip
    with mlserver(root, env=families_env(EXTRA_FAMILIES)) as srv:
        yield srv


def _config(server: MLServerProcess, protocol: str, **kw: object) -> LoadConfig:
    target = server.url if protocol == "v2-rest" else f"grpc://127.0.0.1:{server.grpc_port}"
    base: dict[str, object] = {
        "target": target,
        "model": "bounded",
        "protocol": protocol,
        "payload": "synthetic:tensor:1x2",
        "input_name": "input",
        "concurrency": 6,
        "requests": 60,
        "warmup": 0.0,
        "progress": False,
        "slo_ms": 60_000,
        "slo_percentile": 1,  # every answer is within a minute: only refusals can miss
    }
    return LoadConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "kind"), [("v2-rest", "http_503"), ("v2-grpc", "grpc_unavailable")]
)
def test_refusals_are_counted_as_the_servers_answer_and_held_to_the_limit(
    server: MLServerProcess, protocol: str, kind: str
) -> None:
    """gRPC's UNAVAILABLE from the server was counted `connect`, as if nothing had answered."""
    loose = run_load(_config(server, protocol)).steps[0]
    assert set(loose.errors) == {kind}, loose.errors
    refused = loose.errors[kind]
    assert refused > 0 and loose.ok + refused == loose.sent == 60
    assert "overloaded" in loose.error_samples[kind]
    assert loose.refused == refused
    assert loose.refused_fraction == pytest.approx(refused / 60)
    assert loose.max_refused_pct is None and loose.meets_slo  # the percentile alone: met

    strict = run_load(_config(server, protocol, max_refused_pct=1.0)).steps[0]
    assert strict.refused > 0 and strict.max_refused_pct == 1.0
    assert strict.meets_slo is False  # the same answers, past the limit
    allowed = run_load(_config(server, protocol, max_refused_pct=100.0)).steps[0]
    assert allowed.meets_slo is True


@pytest.mark.slow
def test_a_channel_that_cannot_connect_is_still_connect_over_grpc() -> None:
    target = f"grpc://127.0.0.1:{free_port()}"
    config = LoadConfig(
        target=target, model="m", protocol="v2-grpc", payload="synthetic:tensor:1x2",
        input_name="input", concurrency=1, requests=3, warmup=0.0, progress=False,
        timeout_s=5.0,
    )  # fmt: skip
    step = run_load(config).steps[0]
    assert step.ok == 0 and set(step.errors) == {"connect"}, step.errors
    assert step.refused == 0


def test_the_graphs_refusal_limit_is_the_default_and_the_option_overrides_it(
    tmp_path: Path,
) -> None:
    from async_load_tester.runner import Prepared

    doc = yaml.safe_load((REPO / "k8s/graphs/cascade.yaml").read_text())
    doc["spec"]["slo"] = {"latencyMs": 250, "percentile": 95, "maxRefusedPercent": 0.5}
    graph = tmp_path / "cascade.yaml"
    graph.write_text(yaml.safe_dump(doc))
    base = LoadConfig(target="http://127.0.0.1:1", model="cascade", graph=graph, rate=1)
    assert Prepared(base).max_refused_pct == 0.5
    override = base.model_copy(update={"max_refused_pct": 2.0})
    assert Prepared(override).max_refused_pct == 2.0


@pytest.mark.parametrize("value", [-1.0, 101.0, float("nan")])
def test_a_bad_refusal_limit_is_named(value: float) -> None:
    config = LoadConfig(target="http://127.0.0.1:1", model="m", rate=1, max_refused_pct=value)
    with pytest.raises(ConfigError, match="--max-refused-pct"):
        config.validated()


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("bounded: overloaded: 3 rows waiting for a forward pass", "grpc_unavailable"),
        # Model names that hold a channel word: still the server's answer.
        ("entity-resolver: overloaded: 9 rows waiting", "grpc_unavailable"),
        ("connector: overloaded: 9 rows waiting", "grpc_unavailable"),
        ("geofence: overloaded", "grpc_unavailable"),
        ("preset-ranker: overloaded", "grpc_unavailable"),
        ("too many connections", "grpc_unavailable"),
        ("upstream connect error or disconnect/reset before headers. reset reason: overflow",
         "grpc_unavailable"),
        ("", "grpc_unavailable"),
        ("keepalive-probe: overloaded: 2 rows waiting", "grpc_unavailable"),
        # grpc-core's own: nothing answered.
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed "
         "to connect to remote host: Connection refused", "connect"),
        ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
         "Socket closed", "connect"),
        ("DNS resolution failed for nowhere:8081: C-ares status is not ARES_SUCCESS", "connect"),
        ("connections to all backends failing; last error: UNKNOWN", "connect"),
        ("Socket closed", "reset"),
        ("recvmsg:Connection reset by peer", "reset"),
        ("GOAWAY received; Error code: 11; Debug Text: too_many_pings", "reset"),
        ("keepalive watchdog timeout", "reset"),
        ("Endpoint read failed", "reset"),
        ("Channel shutdown", "reset"),
        ("Delayed close due to in-progress write (Broken pipe)", "reset"),
        ("Tls handshake failed", "reset"),
        ("Transport destroyed", "reset"),
    ],
)  # fmt: skip
def test_who_said_unavailable(detail: str, kind: str) -> None:
    from async_load_tester.engine import _unavailable_kind

    assert _unavailable_kind(detail) == kind


def test_a_refusal_limit_without_an_slo_is_refused_by_name() -> None:
    """Without an SLO no step meets or misses anything: the limit would do nothing, silently."""
    from async_load_tester.runner import Prepared

    config = LoadConfig(target="http://127.0.0.1:1", model="m", rate=1, max_refused_pct=1.0)
    with pytest.raises(ConfigError, match=r"--max-refused-pct.*--slo-ms"):
        Prepared(config)
