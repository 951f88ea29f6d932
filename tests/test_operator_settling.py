"""A graph whose children are starting is passed again every `settle_interval_s` (the chart's
`settleIntervalSeconds`), so its Ready condition follows them within seconds of their
controllers reporting, not at the drift timer's next run (60 s by default). The passes stop
once the graph is Ready, and `settle_window_s` after this generation of the graph was first
seen waiting (children that are stuck: the drift timer's pace is enough for them).

The harness is tests/test_operator.py's (the real operator, kopf and our handlers, against
kmock); the drift timer is set to an hour here, so every pass after the first comes from the
settling timer.
"""

from __future__ import annotations

import asyncio
import copy
import logging

import kopf
import pytest

from infergraph.errors import SettingsError
from infergraph.operator import status as graph_status_module
from infergraph.operator.config import OperatorConfig
from infergraph.operator.handlers import QuietTicks
from infergraph.operator.kube import KubeClient
from infergraph.operator.metrics import OperatorMetrics
from infergraph.operator.reconcile import Reconciler
from infergraph.operator.settling import SettleClock, waiting_on_children
from tests.test_operator import (
    ApplyingEmulator,
    Operator,
    apply_graph,
    condition,
    eventually,
    graph_body,
    graph_status,
    running,
    server,
    settled,
)
from tests.test_operator_spec_change import _report_ready

__all__ = ["server"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.kmock(cls=ApplyingEmulator), pytest.mark.timeout(120)]


def _passes(op: Operator, trigger: str) -> float:
    """Passes the operator counted for `trigger` (infergraph_operator_reconciles_total)."""
    return sum(
        sample.value
        for metric in op.metrics.reconciles.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("trigger") == trigger
    )


def _ready(server) -> str | None:
    return condition(graph_status(server), "Ready").get("status")


async def test_children_reporting_ready_make_the_graph_ready_without_an_edit(server) -> None:
    """Before, Ready waited for the drift timer (or an edit of the graph) after the children's
    controllers reported: an hour here, a minute by default."""
    async with running(server, drift_interval_s=3600, settle_interval_s=0.3) as op:
        await apply_graph(server, graph_body())
        status = await settled(server, generation=1)
        assert condition(status, "Ready")["status"] == "Unknown"
        # The drift timer's first run (at its start) is over: it cannot see what follows.
        await eventually(lambda: _passes(op, "timer") >= 1)
        _report_ready(server)
        await eventually(lambda: _ready(server) == "True", timeout=10)
        assert _passes(op, "settle") >= 1

        await asyncio.sleep(1.0)  # the last settling pass, if one was under way, has ended
        after_ready = _passes(op, "settle")
        await asyncio.sleep(1.5)  # five intervals
        assert _passes(op, "settle") == after_ready  # a Ready graph is left to the drift timer


async def test_a_graph_not_ready_past_its_window_is_left_to_the_drift_timer(server) -> None:
    """A pass here takes about half a second, and more on a loaded machine; the window is a
    few of them. A new generation opens a window of its own."""
    window_s = 3.0
    async with running(
        server, drift_interval_s=3600, settle_interval_s=0.2, settle_window_s=window_s
    ) as op:
        await apply_graph(server, graph_body())
        await settled(server, generation=1)
        await eventually(lambda: _passes(op, "settle") >= 1, timeout=10)
        opened = asyncio.get_running_loop().time()  # the window opened before the first
        await asyncio.sleep(window_s + 1.5)  # past it, and a pass begun inside it has ended
        stuck = _passes(op, "settle")
        assert stuck >= 2
        await asyncio.sleep(1.5)
        assert _passes(op, "settle") == stuck
        assert _ready(server) == "Unknown"
        assert asyncio.get_running_loop().time() - opened > window_s

        bigger = graph_body(generation=2)
        bigger["spec"]["nodes"][0]["resources"]["memory"] = "5Gi"
        await apply_graph(server, bigger, update=True)
        await settled(server, generation=2)
        await eventually(lambda: _passes(op, "settle") > stuck, timeout=10)


async def test_a_pass_queued_behind_another_starts_from_the_status_that_one_wrote(
    server, monkeypatch
) -> None:
    """The settling and drift timers may pass one graph at once. The second pass waits for
    the graph's lock holding the body it was handed, whose status predates the first pass's
    report (kopf patches it after the handler returns). It judged the conditions from that
    stale status: Ready, already True, "changed" again and its lastTransitionTime moved a
    pass after the change. Each stamp here is a minute after the last."""
    stamps = iter(f"2026-12-07T{h:02d}:{m:02d}:00Z" for h in range(24) for m in range(60))
    monkeypatch.setattr(graph_status_module, "now", lambda: next(stamps))
    await apply_graph(server, graph_body())
    client = KubeClient(kopf.ConnectionInfo(server=str(server.url)), "test")

    async def session() -> KubeClient:
        return client

    config = OperatorConfig(storage_uri="s3://team-bucket/graphs")
    reconciler = Reconciler(config, OperatorMetrics(), session)
    try:
        body = graph_body()
        created = await reconciler.reconcile(copy.deepcopy(body), "create")
        assert condition(created.status, "Ready")["status"] == "Unknown"
        body["status"] = created.status  # kopf's patch of the create pass
        _report_ready(server)
        drift, settle = await asyncio.gather(
            reconciler.reconcile(copy.deepcopy(body), "timer"),
            reconciler.reconcile(copy.deepcopy(body), "settle"),
        )
        became = condition(drift.status, "Ready")
        assert became["status"] == "True"
        assert condition(settle.status, "Ready") == became
        assert condition(settle.status, "Rendered") == condition(drift.status, "Rendered")
    finally:
        await client.close()


NOW = 1000.0


def _status(ready: str | None, rendered: str = "True") -> dict:
    conditions = [{"type": "Rendered", "status": rendered}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {"conditions": conditions}


@pytest.mark.parametrize(
    ("status", "waiting"),
    [
        (_status("Unknown"), True),
        (_status("False"), True),
        (_status("True"), False),
        (_status(None), True),  # rendered, no Ready yet
        (_status("Unknown", rendered="False"), False),  # nothing applied to wait on
        ({}, False),  # not passed yet: the create handler's
        ({"conditions": "garbled"}, False),
    ],
)
def test_which_graphs_wait_on_their_children(status: dict, waiting: bool) -> None:
    assert waiting_on_children(status) is waiting


def test_the_window_is_per_generation_and_a_flapping_ready_does_not_reopen_it() -> None:
    now = [NOW]
    clock = SettleClock(600.0, now=lambda: now[0])
    assert clock.due("g", 1, _status("Unknown"))
    now[0] += 599
    assert clock.due("g", 1, _status("False"))
    assert not clock.due("g", 1, _status("True"))  # Ready: nothing to wait for
    now[0] += 2
    assert not clock.due("g", 1, _status("False"))  # flapped back: the window is spent
    assert clock.due("g", 2, _status("Unknown"))  # a new spec: a new window
    assert clock.due("h", 1, _status("Unknown"))  # graphs each have their own
    clock.forget("g")
    now[0] += 601
    assert clock.due("g", 2, _status("Unknown"))  # forgotten: seen anew (a recreated graph)


def test_the_settling_settings_are_read_and_checked() -> None:
    env = {"INFERGRAPH_SETTLE_INTERVAL_SECONDS": "2", "INFERGRAPH_SETTLE_WINDOW_SECONDS": "90"}
    config = OperatorConfig.from_env(env)
    assert (config.settle_interval_s, config.settle_window_s) == (2.0, 90.0)
    assert (OperatorConfig().settle_interval_s, OperatorConfig().settle_window_s) == (5.0, 600.0)
    with pytest.raises(SettingsError, match="settleInterval"):
        OperatorConfig(settle_interval_s=0)
    with pytest.raises(SettingsError, match="settleWindow"):
        OperatorConfig(settle_window_s=-1)


def test_kopfs_line_for_each_succeeded_tick_is_dropped_and_failures_kept() -> None:
    quiet = QuietTicks()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, message, None, None)

    assert not quiet.filter(record("Timer 'settle' succeeded."))
    assert not quiet.filter(record("Timer 'drift' succeeded."))
    assert quiet.filter(record("Timer 'drift' failed temporarily: children not applied"))
    assert quiet.filter(record("Handler 'reconcile' succeeded."))
