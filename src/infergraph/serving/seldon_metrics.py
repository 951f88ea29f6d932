"""The `infergraph_*` series of a Seldon Core v1 unit, in seldon-core's custom-metrics form.

seldon-core's microservice exposes what a model's `metrics()` returns after each successful
call (`seldon_core/seldon_methods.py` -> `SeldonMetrics.update`, `seldon_core/metrics.py`):
GAUGE values replace, COUNTER values add, every series labelled with its `tags` plus the
microservice's own labels (`method`, `worker_id`, `model_name`, ...), on the metrics port at
`PREDICTIVE_UNIT_METRICS_ENDPOINT` (`/metrics` unless the v1 operator sets `/prometheus`).
Names and the `model`/`outcome` labels match the MLServer runtime's (`serving/metrics.py`),
so one scaler query serves both.

Two consequences of that mechanism, both stated in docs/protocols.md: a failed call is
counted when the worker next answers successfully (seldon-core reports nothing for a call
that raised), and the gauges are as of the end of the last answered call, which is 0 once
traffic stops. A Seldon unit batches nothing, so `infergraph_batch_queue_size` counts the
requests in flight that wait behind the one being computed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from infergraph.errors import Status
from infergraph.json_types import JSONObject


class Outcome:
    """What one call ended as; `ok` unless the guard says otherwise."""

    def __init__(self) -> None:
        self.value = "ok"

    def set(self, status: Status) -> None:
        self.value = "bad_input" if 400 <= status.http < 500 else "error"


class UnitMetrics:
    """In-flight count and outcome deltas of one unit, shared by this worker's threads."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._inflight = 0
        self._unreported: Counter[str] = Counter()

    @contextmanager
    def request(self) -> Iterator[Outcome]:
        outcome = Outcome()
        with self._lock:
            self._inflight += 1
        try:
            yield outcome
        except BaseException:
            if outcome.value == "ok":
                outcome.value = "error"
            raise
        finally:
            with self._lock:
                self._inflight -= 1
                self._unreported[outcome.value] += 1

    def report(self) -> list[JSONObject]:
        """The metrics seldon-core records now; outcome counts are handed over once."""
        with self._lock:
            inflight = self._inflight
            counts, self._unreported = self._unreported, Counter()
        tags = {"model": self.model}
        out: list[JSONObject] = [
            {"type": "GAUGE", "key": "infergraph_inflight_requests", "value": float(inflight),
             "tags": dict(tags)},
            {"type": "GAUGE", "key": "infergraph_batch_queue_size",
             "value": float(max(inflight - 1, 0)), "tags": dict(tags)},
        ]  # fmt: skip
        out += [
            {
                "type": "COUNTER",
                "key": "infergraph_requests",
                "value": float(count),
                "tags": {**tags, "outcome": outcome},
            }
            for outcome, count in sorted(counts.items())
        ]
        return out
