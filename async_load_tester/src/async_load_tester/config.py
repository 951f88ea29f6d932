"""Run settings, validated up front so bad input fails before any load is sent."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from async_load_tester.errors import ConfigError
from async_load_tester.protocols.encode import (
    Protocol,
    authority,
    check_protocol,
    path_template,
    render_path,
)
from async_load_tester.schedule import Arrival, Schedule, parse_schedule

_RANGE = re.compile(r"^(\d+):(\d+)(?::(x?)(\d+))?$")
GRPC_DEFAULT_PORT = 8081  # a gRPC target without a port, as KServe and MLServer serve it


# Every float option, by the flag that sets it: nan and inf are refused before any load.
_FLOAT_OPTIONS = {
    "rate": "--rate",
    "duration": "--duration",
    "warmup": "--warmup",
    "timeout_s": "--timeout",
    "late_ms": "--late-ms",
    "slo_ms": "--slo-ms",
    "slo_percentile": "--slo-percentile",
    "max_refused_pct": "--max-refused-pct",
}


class LoadConfig(BaseModel):
    """Everything one run needs; recorded verbatim in its results.

    Exactly one load shape: `rate` or `schedule` (open loop), `concurrency` or
    `concurrency_range` (closed loop), or `sweep` (closed loop, adaptive, needs `slo_ms`).
    """

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        description="http(s)://host:port[/prefix] or grpc(s)://host[:port] (port 8081 if none)"
    )
    model: str
    protocol: Protocol = "v2-rest"
    payload: str = "synthetic:tensor:1x16"
    input_name: str | None = None
    model_version: str | None = None
    namespace: str = "default"
    path_template: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    request_parameters: dict[str, Any] = Field(default_factory=dict)
    rate: float | None = None
    schedule: str | None = None
    arrival: Arrival = "constant"
    concurrency: int | None = None
    concurrency_range: str | None = None
    sweep: bool = False
    sweep_max_concurrency: int = 256
    duration: float | None = 30.0
    requests: int | None = None
    warmup: float = 5.0
    seed: int = 0
    timeout_s: float = 30.0
    max_in_flight: int = 1024
    connections: int = 8
    grpc_channels: int = 1
    late_ms: float = 1.0
    check_every: int = 1
    stages: bool = True
    slo_ms: float | None = None
    slo_percentile: float | None = None
    # The most requests, in percent, a step may see refused (`engine.REFUSAL_KINDS`) and still
    # meet the SLO; default: the graph's spec.slo.maxRefusedPercent, else no limit.
    max_refused_pct: float | None = None
    graph: Path | None = None
    engine: str | None = None  # price the graph's pods on this engine, not its nodes alone
    catalog: Path | None = None
    prices: dict[str, float] = Field(default_factory=dict)
    default_hardware: str | None = None
    replica_mode: Literal["spec", "min", "max"] = "spec"
    insecure: bool = False
    progress: bool = True

    def validated(self) -> LoadConfig:
        """Check cross-field rules; raises ConfigError naming the option.

        The checks run in a fixed order (numbers, load shape, limits, then what the target and
        schedule parse to) so one bad run always names the same option first.
        """
        self._check_finite()
        check_protocol(self.protocol)
        self._check_load_shape()
        self._check_limits()
        if self.graph is not None and not self.graph.is_file():
            raise ConfigError("--graph", f"'{self.graph}' is not a file")
        self._check_engine()
        self.endpoint()
        self._check_insecure()
        self.path()
        if self.open_loop:
            self.parsed_schedule()
        return self

    def _check_engine(self) -> None:
        """`--engine` prices a graph as that engine runs it: it needs the graph, and an
        engine that deploys one."""
        if self.engine is None:
            return
        if self.graph is None:
            raise ConfigError("--engine", "prices a graph's pods: give --graph too")
        from infergraph.engines import RENDERED, UnknownEngineError, engine

        try:
            engine(self.engine, RENDERED, "deploy a graph")
        except UnknownEngineError as exc:
            raise ConfigError("--engine", str(exc)) from None

    def _check_insecure(self) -> None:
        """`--insecure` skips certificate checks for https only: grpcio has no switch for it
        (a channel verifies against its root certificates, always), so with TLS gRPC the
        option would be ignored and every request fail the handshake. Refused instead, naming
        what works: grpc core's roots file, which can hold the server's own certificate."""
        if not self.insecure or self.protocol != "v2-grpc":
            return
        scheme = self.endpoint()[0]
        if scheme in ("grpcs", "https"):
            raise ConfigError(
                "--insecure",
                f"cannot skip certificate checks for TLS gRPC ({scheme}://): grpcio has no "
                "such switch. Trust the server's certificate (or its CA) instead with "
                "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=cert.pem, or use a plaintext grpc:// port",
            )

    def _check_finite(self) -> None:
        """nan and inf pass every `<=` comparison as False, so they are refused before those."""
        for attr, option in _FLOAT_OPTIONS.items():
            value = getattr(self, attr)
            if value is not None and not math.isfinite(value):
                raise ConfigError(option, f"must be a finite number, got {value}")

    def _check_load_shape(self) -> None:
        """Exactly one load shape, and that one usable: the run must know how to send load."""
        shapes = [
            self.rate is not None,
            self.schedule is not None,
            self.concurrency is not None,
            self.concurrency_range is not None,
            self.sweep,
        ]
        if sum(shapes) == 0:
            raise ConfigError(
                "--rate",
                "give a load: --rate, --schedule, --concurrency, --concurrency-range or --sweep",
            )
        if sum(shapes) > 1:
            raise ConfigError(
                "--rate",
                "use only one of --rate, --schedule, --concurrency, --concurrency-range, --sweep",
            )
        if self.rate is not None and (not math.isfinite(self.rate) or self.rate <= 0):
            raise ConfigError(
                "--rate", f"must be a positive number of requests/s, got {self.rate:g}"
            )
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError("--concurrency", f"must be >= 1, got {self.concurrency}")
        if self.concurrency_range is not None:
            self.concurrency_levels()
        if self.sweep and self.slo_ms is None:
            raise ConfigError(
                "--sweep", "needs --slo-ms (the latency the cheapest configuration must meet)"
            )

    def _check_limits(self) -> None:
        """Step length, timeouts, caps and the SLO in range: outside it a step measures nothing."""
        if self.requests is not None and self.requests < 1:
            raise ConfigError("--requests", f"must be >= 1, got {self.requests}")
        if (
            self.requests is None
            and self.schedule is None
            and (self.duration is None or self.duration <= 0)
        ):
            raise ConfigError("--duration", "must be > 0 seconds (or give --requests)")
        if self.warmup < 0:
            raise ConfigError("--warmup", "must be >= 0 seconds")
        if self.timeout_s <= 0:
            raise ConfigError("--timeout", "must be > 0 seconds")
        if self.max_in_flight < 1 or self.connections < 1 or self.grpc_channels < 1:
            raise ConfigError(
                "--max-in-flight", "in-flight cap, connections and channels must be >= 1"
            )
        if self.late_ms <= 0:
            raise ConfigError("--late-ms", "must be > 0")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ConfigError("--slo-ms", "must be > 0")
        if self.slo_percentile is not None and not 0 < self.slo_percentile <= 100:
            raise ConfigError("--slo-percentile", "must be in (0, 100]")
        if self.max_refused_pct is not None and not 0 <= self.max_refused_pct <= 100:
            raise ConfigError("--max-refused-pct", "must be a percentage from 0 to 100")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or self.schedule is not None

    def parsed_schedule(self) -> Schedule:
        """The open-loop schedule; its length is the step's (the runner stops there).

        With --requests a constant rate (`--rate R` or `constant:R`) runs long enough to send
        them all, with slack, so the count replaces --duration as it does in closed loop; a
        ramp still spans --duration and a step or trace its own length, the count a cap.
        """
        spec = self.schedule if self.schedule is not None else f"constant:{self.rate}"
        duration = self.duration
        if self.requests is not None and spec.startswith("constant:"):
            rate = parse_schedule(spec, 1.0).start_rate
            duration = self.requests / rate * 1.5 + 10
        return parse_schedule(spec, duration)

    def concurrency_levels(self) -> list[int]:
        """`1:64:x2` (doubling), `1:64:8` (step 8) or `4:16` (step 1), like perf_analyzer."""
        if self.concurrency is not None:
            return [self.concurrency]
        assert self.concurrency_range is not None
        m = _RANGE.match(self.concurrency_range.replace(" ", ""))
        if not m:
            raise ConfigError(
                "--concurrency-range",
                f"'{self.concurrency_range}' is not START:END[:STEP|:xFACTOR]",
            )
        start, end, mult, step = int(m[1]), int(m[2]), m[3] == "x", int(m[4] or 1)
        if start < 1 or end < start or step < 1 or (mult and step < 2):
            raise ConfigError(
                "--concurrency-range",
                f"'{self.concurrency_range}': need 1 <= start <= end, step >= 1, factor >= 2",
            )
        levels, c = [], start
        while c <= end:
            levels.append(c)
            c = c * step if mult else c + step
        return levels

    def endpoint(self) -> tuple[str, str, int, str]:
        """(scheme, host, port, path prefix) of the target.

        gRPC without a port goes to 8081 (KServe's and MLServer's gRPC port) whatever the
        scheme, REST to 80 or 443. A gRPC scheme with a REST protocol is refused: the run
        would send HTTP/1.1 to a gRPC port (or plain HTTP into TLS) and measure only errors.
        """
        url = self.target if "://" in self.target else f"http://{self.target}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "grpc", "grpcs"):
            raise ConfigError(
                "--target", f"'{self.target}': scheme must be http, https, grpc or grpcs"
            )
        if parts.scheme in ("grpc", "grpcs") and self.protocol != "v2-grpc":
            raise ConfigError(
                "--target",
                f"'{self.target}' is a {parts.scheme}:// target but --protocol is "
                f"{self.protocol}, which speaks REST: use --protocol v2-grpc, or an "
                f"http{'s' if parts.scheme == 'grpcs' else ''}:// target for {self.protocol}",
            )
        if not parts.hostname:
            raise ConfigError("--target", f"'{self.target}' has no host")
        try:
            explicit = parts.port
        except ValueError:
            raise ConfigError("--target", f"'{self.target}' has an invalid port") from None
        if explicit is not None:
            port = explicit
        elif self.protocol == "v2-grpc":
            port = GRPC_DEFAULT_PORT
        else:
            port = 443 if parts.scheme == "https" else 80
        return parts.scheme, parts.hostname, port, parts.path.rstrip("/")

    def path(self) -> str:
        """The REST request path (with `/versions/{version}` when a version is asked for)."""
        if self.protocol == "v2-grpc":
            return ""
        template = path_template(self.protocol, self.path_template, self.model_version)
        prefix = self.endpoint()[3]
        return prefix + render_path(template, self.model, self.namespace, self.model_version)

    def host_header(self) -> str:
        """The Host header (`authority`), its port left out when the scheme's default."""
        scheme, host, port, _ = self.endpoint()
        default = 443 if scheme in ("https", "grpcs") else 80
        return authority(host, None if port == default else port)

    def recorded(self) -> dict[str, Any]:
        """Settings as written to results, with credentials masked."""
        data = self.model_dump(mode="json")
        data["headers"] = {
            k: ("***" if k.lower() in ("authorization", "cookie", "x-api-key") else v)
            for k, v in self.headers.items()
        }
        return data
