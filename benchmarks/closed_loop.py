"""A closed loop of HTTP callers for the benchmarks, driven by the kit's own load tester.

`through_server` keeps `concurrency` callers each sending its next request as soon as its
previous answer arrives, for `seconds`, over keep-alive connections, with the load tester's
HTTP driver (`async_load_tester.engine.HttpDriver`: pre-built request bytes written to a
pooled socket, a parser that only finds the status line and the body's end). The benchmarks
run their load generator on the machine that runs the server, so its CPU is taken from the
server's: aiohttp, which they used before, spent 267 microseconds of CPU a request (the
account of 2026-12-07, MiniLM at concurrency 64), a tenth of the server's whole request.
Throughput is the load tester's: answers inside the window over its length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from async_load_tester.engine import Endpoint, HttpDriver, StepPlan
from async_load_tester.protocols.encode import authority, check_v2_json, http_request
from async_load_tester.recorder import Recorder, histogram_summary

JSON = "application/json"


@dataclass(frozen=True)
class LoopRun:
    """What one closed-loop window measured: answers a second, their latency from the actual
    send, the answers counted and the errors (a status other than 2xx, an answer that is no V2
    response, a refused or broken connection, a timeout)."""

    rps: float
    p50_ms: float | None
    p99_ms: float | None
    answered: int
    errors: int

    def latency(self) -> dict[str, float | None]:
        return {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


async def through_server(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
) -> LoopRun:
    """POST `bodies` (in turn) to `url` (plain http) from `concurrency` callers for `seconds`."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{url}: the benchmarks' closed loop speaks plain http only")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    fields = dict(headers or {})
    content_type = fields.pop("Content-Type", JSON)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    wires = [
        http_request("POST", path, authority(host, port), fields, body, content_type)
        for body in bodies
    ]
    recorder = Recorder()
    driver = HttpDriver(
        Endpoint(host, port, False, host),
        wires,
        recorder,
        connections=concurrency,
        timeout_s=60.0,
        max_in_flight=concurrency,
        late_s=1.0,
        checker=check_v2_json,  # an answer that is no V2 response is an error, not a success
        check_every=1,
        track_stages=False,
    )
    outcome = await driver.run(StepPlan("closed", 0.0, seconds, concurrency=concurrency))
    summary = histogram_summary(recorder.service_hist)
    return LoopRun(
        rps=recorder.window_ok / seconds,
        p50_ms=summary["p50"],
        p99_ms=summary["p99"],
        answered=recorder.ok,
        errors=recorder.error_count + outcome.in_flight_abandoned,
    )
