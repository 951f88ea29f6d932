"""Typed errors shared by every layer.

Each carries enough context (which input, which node, which field) for an
adapter to turn it into a clear client-facing message without re-parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass


class InfergraphError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(InfergraphError):
    """A request input is unusable; HTTP 400 / gRPC INVALID_ARGUMENT (see `status_for`).

    `input_name` names the tensor, `index` the row within it where one row is at fault.
    """

    def __init__(self, input_name: str, reason: str, index: int | None = None) -> None:
        self.input_name = input_name
        self.reason = reason
        self.index = index
        where = f"input '{input_name}'" + (f" row {index}" if index is not None else "")
        super().__init__(f"{where}: {reason}")


class PayloadTooLargeError(InputError):
    """An input exceeds a configured size limit (decompression bombs, oversize text).

    HTTP 413 / gRPC RESOURCE_EXHAUSTED.
    """


class QueueFullError(InfergraphError):
    """The model's batch queue holds as many rows as it may (`batching.maxQueueRows`): the
    request is refused before it is queued. HTTP 503 / gRPC UNAVAILABLE: overload, neither
    the client's fault nor a failure, and a retry (or another replica) may well succeed, as
    Triton's dynamic batcher answers a request past its `max_queue_size`."""

    def __init__(self, waiting: int, rows: int, limit: int) -> None:
        self.waiting = waiting
        self.rows = rows
        self.limit = limit
        super().__init__(
            f"overloaded: {waiting} rows waiting for a forward pass; this request's {rows} "
            f"more would pass the queue's limit of {limit} rows (batching.maxQueueRows): "
            "retry later"
        )


class ModelLoadError(InfergraphError):
    """A checkpoint could not be found or loaded from its URI."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"cannot load model from '{uri}': {reason}")

    @classmethod
    def wrap(cls, uri: str, exc: Exception) -> ModelLoadError:
        """A from_pretrained failure, naming the URI that could not load."""
        return cls(uri, f"{type(exc).__name__}: {exc}")


class SettingsError(InfergraphError):
    """A runtime or component setting is invalid."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"setting '{field}': {reason}")


class GraphValidationError(InfergraphError):
    """An InferenceGraph is invalid; `problems` lists every fault found, each with a path."""

    def __init__(self, graph: str, problems: list[str]) -> None:
        self.graph = graph
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"InferenceGraph '{graph}' is invalid:\n{listing}")


class NodeError(InfergraphError):
    """A graph node failed or timed out while the graph was executing."""

    def __init__(self, node: str, reason: str, status_code: int = 502) -> None:
        self.node = node
        self.reason = reason
        self.status_code = status_code
        super().__init__(f"node '{node}': {reason}")


class MissingExtraError(InfergraphError, ImportError):
    """An optional dependency is not installed: names it and the extra that installs it."""

    def __init__(self, package: str, extra: str, needed_for: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} needs {package}, which is not installed: install infergraph's "
            f"'{extra}' extra (pip install 'infergraph[{extra}]', or uv sync --extra {extra})"
        )


class RenderError(InfergraphError):
    """A graph cannot be rendered for the chosen engine."""

    def __init__(self, engine: str, reason: str) -> None:
        self.engine = engine
        self.reason = reason
        super().__init__(f"cannot render for {engine}: {reason}")


@dataclass(frozen=True)
class Status:
    """How one error travels on each protocol: HTTP status, gRPC status name, Seldon reason."""

    http: int
    grpc: str
    seldon_reason: str


# HTTP -> gRPC follows the Open Inference Protocol's table (400 INVALID_ARGUMENT, 404 NOT_FOUND,
# 500 INTERNAL) plus gRPC's own choices: an oversize message is RESOURCE_EXHAUSTED, as gRPC
# itself answers a message over the receive limit; an unreachable node UNAVAILABLE.
_GRPC_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def http_status(exc: BaseException) -> int:
    """The HTTP status every adapter answers for `exc` (500 for anything unexpected)."""
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, QueueFullError):
        return 503
    if isinstance(exc, NodeError):
        return exc.status_code
    return 500


def status_for(exc: BaseException) -> Status:
    """One mapping shared by the MLServer and Seldon adapters and the graph router."""
    http = http_status(exc)
    reason = "MICROSERVICE_BAD_DATA" if 400 <= http < 500 else "MICROSERVICE_ERROR"
    return Status(http, grpc_code_for_http(http), reason)


def grpc_code_for_http(http: int) -> str:
    """gRPC status name for an HTTP status (the router's answers and MLServer's table)."""
    return _GRPC_FOR_HTTP.get(http, "INVALID_ARGUMENT" if 400 <= http < 500 else "INTERNAL")
