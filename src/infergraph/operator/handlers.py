"""kopf wiring: which events run a reconcile pass, where status and Events go, how to stop.

Everything is registered on a registry built here (no module-level handlers), so tests run
the operator against an emulated API server with their own settings and login.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict

import kopf
from aiohttp import web

from infergraph.graph.crd import GROUP, PLURAL, VERSION
from infergraph.json_types import Manifest
from infergraph.operator.config import OperatorConfig
from infergraph.operator.kube import KubeClient, KubeError
from infergraph.operator.metrics import OperatorMetrics, serve
from infergraph.operator.objects import name_of, namespace_of
from infergraph.operator.reconcile import GONE, STOPPED, Outcome, Reconciler
from infergraph.operator.settings_server import serve_settings
from infergraph.operator.settling import SettleClock
from infergraph.operator.sweep import sweep_forever

log = logging.getLogger(__name__)
Login = Callable[..., kopf.ConnectionInfo | None]
# What kopf accepts as stop/ready flags: an event of asyncio or of threading.
Flag = asyncio.Event | threading.Event
PERSISTENCE_PREFIX = "operator.infergraph.io"
# How long SIGTERM waits for running passes before closing the API session (the chart's pod
# has terminationGracePeriodSeconds 30).
SHUTDOWN_GRACE_S = 15.0


def default_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the mounted service account; elsewhere: the kubeconfig (KUBECONFIG)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


class _Session:
    """The operator's own API client, created after kopf has logged in."""

    def __init__(self, field_manager: str) -> None:
        self.field_manager = field_manager
        self.info: kopf.ConnectionInfo | None = None
        self.client: KubeClient | None = None

    async def get(self) -> KubeClient:
        if self.client is None:
            if self.info is None:
                raise kopf.TemporaryError("not logged in to the API server yet", delay=1)
            self.client = KubeClient(self.info, self.field_manager)
        return self.client

    async def relogin(self, info: kopf.ConnectionInfo | None) -> None:
        """kopf logs in again when a token expires: the next call uses the new credentials."""
        await self.close()
        self.info = info

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


# The start of the TemporaryError message a pass with unapplied children raises. kopf logs it
# as an error on every retry; it stays in the log (kopf posts log lines as Events only with
# `settings.posting.loggers`, off here), the pass having posted one Event per refusal.
RETRY_MESSAGE = "children not applied, retrying"


def _publish(outcome: Outcome, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value
    for kind, reason, message in outcome.events:
        kopf.event(body, type=kind, reason=reason, message=message)
        # Info, not warning: kopf posts warnings as Events too, and this one is posted above.
        logger.info("%s: %s", reason, message)


def _retry_if_refused(outcome: Outcome, config: OperatorConfig, retry: int) -> None:
    """Children left unapplied: kopf runs the handler again after a growing delay (its status
    patch above is applied first: kopf applies a handler's patch whatever its outcome)."""
    if outcome.refused:
        names = ", ".join(f"{r.child['kind']}/{r.child['name']}" for r in outcome.refused)
        raise kopf.TemporaryError(f"{RETRY_MESSAGE}: {names}", delay=config.retry_delay(retry))


def build_registry(
    config: OperatorConfig, metrics: OperatorMetrics, login: Login = default_login
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    session = _Session(config.field_manager)
    reconciler = Reconciler(config, metrics, session.get)
    servers: dict[str, web.AppRunner] = {}
    sweepers: list[asyncio.Task[None]] = []
    listing: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    async def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = login(**kwargs)
        await session.relogin(info)
        if config.settings_url and not listing:  # once: the graphs a restart owes a pass
            client = await session.get()
            listing.append(asyncio.create_task(_expect_graphs(reconciler, client, config)))
        return info

    @kopf.on.startup(registry=registry)
    async def _startup(**_: object) -> None:
        servers["metrics"] = await serve(metrics, config.metrics_port)
        if config.settings_url:  # Seldon v2 agents copy model-settings.json from here
            servers["settings"] = await serve_settings(reconciler.settings, config.settings_port)
        if config.seldon_namespace:  # ServerConfigs there have no ownerReference: sweep them
            sweepers.append(
                asyncio.create_task(
                    sweep_forever(session.get, config.seldon_namespace, config.drift_interval_s)
                )
            )

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(logger: kopf.Logger, **_: object) -> None:
        while sweepers or listing:
            (sweepers or listing).pop().cancel()
        if not await reconciler.drain(SHUTDOWN_GRACE_S):
            logger.info("a pass was still running after %.0f s; closing under it", SHUTDOWN_GRACE_S)
        for server in ("settings", "metrics"):
            if server in servers:
                await servers.pop(server).cleanup()
        await session.close()
        logger.info("operator stopped cleanly")

    clock = SettleClock(config.settle_window_s)
    _register_passes(registry, config, reconciler, clock)

    _register_deletion(registry, reconciler, clock)
    _no_finalizer_for_timers(registry)
    return registry


def _register_deletion(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, clock: SettleClock
) -> None:
    """A deleted graph's model-settings folders stop being served, and its uid is known gone:
    kopf leaves the graph's timers running (see `Reconciler._deleted`), and its passes
    must touch nothing from then on.

    On the watch's DELETED event, not kopf.on.delete: graphs carry no finalizer, and an
    optional deletion handler did not run for a graph deleted without one
    (test_a_settings_edit_reaches_seldons_agent showed it). A graph deleted while the operator
    is down was never in this process's store."""

    # `uid` is the event body's (kopf 1.45.2 `_core/intents/causes.py:137`, ResourceCause).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def _forget_settings(
        type: str | None, namespace: str | None, name: str, uid: str | None, **_: object
    ) -> None:
        # Graphs are namespaced and the API server gives each a uid: neither is None here.
        if type == "DELETED" and namespace is not None and uid is not None:
            reconciler.deleted(uid, namespace, name)
            clock.forget(uid)


async def _expect_graphs(
    reconciler: Reconciler, client: KubeClient, config: OperatorConfig
) -> None:
    """The graphs that exist now, each owed a pass before the settings server is ready (its
    /readyz, the chart's readinessProbe). A list that fails owes nothing: readiness then
    follows kopf's start alone, as before."""
    graphs: list[Manifest] = []
    try:
        for namespace in config.namespaces or (None,):
            graphs += await client.list(f"{GROUP}/{VERSION}", "InferenceGraph", namespace)
    except KubeError as exc:
        log.warning("cannot list InferenceGraphs, so readiness waits for none: %s", exc)
        graphs = []
    reconciler.settings.expect((namespace_of(g) or "", name_of(g)) for g in graphs)


class _Resource(TypedDict):
    """The InferenceGraph resource as kopf's decorators take it."""

    group: str
    version: str
    plural: str
    registry: kopf.OperatorRegistry


Run = Callable[[str, kopf.Body, kopf.Patch, kopf.Logger, int], Awaitable[None]]


def _register_passes(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    reconciler: Reconciler,
    clock: SettleClock,
) -> None:
    """Create, update, resume and the timers all run the same pass; a pass cut short by
    shutdown or by the graph's deletion reports nothing, one with refusals is retried."""
    resource = _Resource(group=GROUP, version=VERSION, plural=PLURAL, registry=registry)

    async def run(
        trigger: str, body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int
    ) -> None:
        # No await between the copy and the pass joining its graph's lock queue: passes then
        # run in the order of their copies (`operator.last_report` relies on it).
        outcome = await reconciler.reconcile(_plain(body), trigger)
        if outcome.stage != STOPPED:
            reconciler.settings.passed(str(body.meta.namespace), str(body.meta.name))
        if outcome.stage == STOPPED:
            logger.info("operator stopping: this pass reports nothing; the next start resumes")
            return
        if outcome.stage == GONE:
            logger.info("the graph was deleted: nothing applied, nothing reported")
            return
        _publish(outcome, body, patch, logger)
        _retry_if_refused(outcome, config, retry)

    for trigger, decorator in (
        ("create", kopf.on.create(**resource, id="reconcile")),
        ("update", kopf.on.update(**resource, id="reconcile")),
        ("resume", kopf.on.resume(**resource, id="reconcile")),
    ):
        decorator(_handler(run, trigger))
    _register_timers(resource, config, reconciler, clock, run)


def _register_timers(
    resource: _Resource,
    config: OperatorConfig,
    reconciler: Reconciler,
    clock: SettleClock,
    run: Run,
) -> None:
    """The drift timer passes every graph every `drift_interval_s`; the settling timer passes
    a graph waiting on its children every `settle_interval_s`, within its generation's window
    (`settling.SettleClock`), so its Ready follows their controllers' reports within seconds.

    kopf re-matches a timer's `when` on every event of its object (kopf 1.45.2
    `_core/reactor/processing.py:419-430`, `process_spawning_cause` spawning the matching timers
    and stopping the rest): the settling timer starts when a pass reports the graph applied and
    not Ready, and stops when one reports it Ready. The children are not watched: that would
    take a watch per child kind (and its RBAC) to learn what the next pass reads anyway."""

    def settling(body: kopf.Body) -> bool:
        return clock.due(str(body.meta.uid), int(body.meta.get("generation") or 0), body.status)

    kopf.timer(**resource, id="drift", interval=config.drift_interval_s, idle=None)(
        _timer_handler(run, "timer", reconciler, lambda _: True)
    )
    kopf.timer(
        **resource,
        id="settle",
        interval=config.settle_interval_s,
        initial_delay=config.settle_interval_s,  # the pass that started it has just run
        idle=None,
        when=lambda body, **_: settling(body),
    )(_timer_handler(run, "settle", reconciler, settling))


def _timer_handler(
    run: Run, trigger: str, reconciler: Reconciler, due: Callable[[kopf.Body], bool]
) -> Callable[..., Awaitable[None]]:
    """A timer's tick: the pass for `trigger` where `due`. A deleted graph's timers tick on
    (kopf never stops them: `Reconciler._deleted` says why) and pass nothing, without a line
    of their own in the log (`QuietTicks` keeps kopf's out)."""

    async def tick(
        body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: object
    ) -> None:
        if not reconciler.is_deleted(str(body.meta.uid)) and due(body):
            await run(trigger, body, patch, logger, retry)

    return tick


class QuietTicks(logging.Filter):
    """Drops kopf's line for every timer tick that succeeded ("Timer 'settle' succeeded."):
    the settling timer ticks every few seconds, and a graph past its window, or deleted,
    keeps its timer until an event of the graph stops it, which may never come. The passes
    the timers run log what they did; a tick that failed is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Timer ") and message.endswith(" succeeded."))


def _handler(run: Run, trigger: str) -> Callable[..., Awaitable[None]]:
    """A kopf handler running the pass for `trigger` (kopf passes its kwargs by name)."""

    async def handle(
        body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, retry: int, **_: object
    ) -> None:
        await run(trigger, body, patch, logger, retry)

    return handle


def _no_finalizer_for_timers(registry: kopf.OperatorRegistry) -> None:
    """kopf gives every timer a finalizer on its object (`kopf.timer` registers it with
    `requires_finalizer=True`) so it can stop the timer before the object goes. The drift
    timer has nothing to do at deletion (the garbage collector removes the children), and the
    finalizer strands every graph left when the operator is uninstalled first: with
    `crds.keep: false` the CRD and its graphs hang in Terminating. kopf adds the finalizer only
    while some handler requires it, and removes it from graphs that still carry it.

    kopf has no public switch for this, so the registered timer handlers are replaced with
    copies that do not require it; `test_a_graph_left_at_uninstall_is_not_stranded_on_a_finalizer`
    fails if a kopf upgrade changes where they live."""
    spawning = registry._spawning  # private: see the docstring
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False) if h.requires_finalizer else h
        for h in spawning.get_all_handlers()
    ]


def _plain(body: Mapping[str, object]) -> Manifest:
    """A detached copy: kopf's Body is a live view that changes under a running handler."""
    import copy

    return copy.deepcopy(dict(body))


def configure(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's bookkeeping in annotations (status stays what users read), post only
    warnings as Events, and run standalone (one replica; the Deployment uses Recreate)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=PERSISTENCE_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PERSISTENCE_PREFIX
    )
    settings.persistence.finalizer = f"{PERSISTENCE_PREFIX}/finalizer"
    settings.posting.level = logging.WARNING
    # Explicit Events only (kopf's default): a retried pass's error line is not one per retry.
    settings.posting.loggers = False
    settings.posting.reporting_component = "infergraph-operator"
    settings.peering.standalone = True


async def run(
    config: OperatorConfig,
    login: Login = default_login,
    stop: Flag | None = None,
    ready: Flag | None = None,
    metrics: OperatorMetrics | None = None,
) -> None:
    """Run until `stop` is set or the process gets SIGINT/SIGTERM (kopf's own handlers)."""
    metrics = metrics or OperatorMetrics()
    settings = kopf.OperatorSettings()
    configure(settings)
    await kopf.operator(
        registry=build_registry(config, metrics, login),
        settings=settings,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
        stop_flag=stop,
        ready_flag=ready,
    )


def main(default_engine: str | None = None, namespaces: tuple[str, ...] = ()) -> None:
    """`infergraph operator`: settings from INFERGRAPH_* variables, flags override them."""
    config = OperatorConfig.from_env(default_engine=default_engine, namespaces=namespaces)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kopf.objects").addFilter(QuietTicks())
    asyncio.run(run(config))
