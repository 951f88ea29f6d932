"""How long a run lasts and what its throughput divides by, against a real aiohttp server."""

from __future__ import annotations

import orjson
import pytest
from async_load_tester.cli import app
from typer.testing import CliRunner

from async_load_tester import LoadConfig, run_load
from tests.loadtest_servers import loadtest_server


@pytest.mark.parametrize("load", [["--rate", "50"], ["--schedule", "constant:50"]])
def test_open_loop_requests_outlast_duration(load: list[str]) -> None:
    """`--requests N` at a constant rate sends N, even when N/rate is longer than `--duration`:
    the help calls it "instead of duration", and closed loop already reads it that way."""
    with loadtest_server() as server:
        result = CliRunner().invoke(
            app,
            ["run", "--target", server.url, "--model", "m", *load,
             "--requests", "100", "--duration", "1", "--warmup", "0",
             "--no-progress", "--json"],
        )  # fmt: skip
        served = server.counts("m").paths
    assert result.exit_code == 0, result.output
    step = orjson.loads(result.stdout)["steps"][0]
    assert (step["sent"], step["ok"]) == (100, 100), step
    assert len(served) == 100
    # 100 sends at 50/s, not 1 s: the last one is due 1.98 s after the first. The upper bound
    # only catches a run that never ends; a loaded machine may stall the answers' arrival.
    assert 1.95 <= step["elapsed_s"] < 10.0, step


def test_closed_loop_requests_outlast_duration() -> None:
    """The same rule in closed loop (already held): the count wins over the duration."""
    with loadtest_server() as server:
        config = LoadConfig(
            target=server.url, model="m", concurrency=1, requests=60, duration=0.01,
            warmup=0.0, progress=False,
        )  # fmt: skip
        step = run_load(config).steps[0]
    assert (step.sent, step.ok) == (60, 60)


@pytest.mark.parametrize(
    ("load", "expected_rps", "within"),
    [({"rate": 20.0}, 20.0, 0.1), ({"concurrency": 4}, 4 / 0.75, 0.06)],
    ids=["open", "closed"],
)
def test_throughput_counts_completions_in_the_window(
    load: dict[str, float], expected_rps: float, within: float
) -> None:
    """Throughput is what completed inside the 3 s window over 3 s. A server that answers in
    0.75 s handles 20/s when sent 20/s, and 4 / 0.75 s = 5.3/s at concurrency 4; dividing by
    the time to the last completion (0.75 s past the window) reports about 16/s and 4.7/s.

    A stall of a loaded machine moves the answers due at the window's ends across them:
    open loop, 20 a second of them, so its bound leaves 0.3 s (the wrong answer is 20 % off);
    closed loop, each worker's answers come 0.375 s from either end (one lost is 6.25 %)."""
    with loadtest_server() as server:
        server.behave("m", delay_ms=750)
        base = {"target": server.url, "model": "m", "duration": 3.0, "warmup": 1.125}
        config = LoadConfig.model_validate({**base, "progress": False, **load})
        step = run_load(config).steps[0]
    assert step.errors == {}
    assert step.throughput_rps == pytest.approx(expected_rps, rel=within), step.throughput_rps
