"""The load tester's own command line: help renders, non-finite numbers are refused up front."""

from __future__ import annotations

import pytest
from async_load_tester.cli import app
from typer.testing import CliRunner

TARGET = ["--target", "http://127.0.0.1:9", "--model", "m"]  # port 9: nothing is ever sent


@pytest.mark.parametrize("command", ["run", "trace", "prices"])
def test_help_renders(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "nan"], "--rate"),
        (["--rate", "inf"], "--rate"),
        (["--concurrency", "1", "--duration", "inf"], "--duration"),
        (["--concurrency", "1", "--duration", "nan"], "--duration"),
        (["--concurrency", "1", "--warmup", "nan"], "--warmup"),
        (["--concurrency", "1", "--timeout", "inf"], "--timeout"),
        (["--concurrency", "1", "--late-ms", "-inf"], "--late-ms"),
        (["--sweep", "--slo-ms", "nan"], "--slo-ms"),
        (["--concurrency", "1", "--slo-ms", "5", "--slo-percentile", "nan"], "--slo-percentile"),
        (["--schedule", "step:5@inf"], "--schedule"),
        (["--schedule", "constant:nan", "--duration", "5"], "--rate"),
        (["--schedule", "ramp:1-inf", "--duration", "5"], "--rate"),
    ],
)
def test_non_finite_options_are_refused_before_any_load(args: list[str], option: str) -> None:
    result = CliRunner().invoke(app, ["run", *TARGET, *args, "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"error: {option}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("option", ["--mean", "--peak", "--period"])
def test_trace_refuses_non_finite(option: str, tmp_path: object) -> None:
    values = {"--mean": "2", "--peak": "4", "--period": "60"}
    values[option] = "inf"
    args = [x for kv in values.items() for x in kv]
    result = CliRunner().invoke(app, ["trace", *args, "-o", f"{tmp_path}/t.txt"])
    assert result.exit_code == 2 and f"{option}: must be a finite number" in result.output
