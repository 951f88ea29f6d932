"""One reconcile pass over one InferenceGraph: validate, render, apply, prune, report.

The pass is idempotent (server-side apply by name), so create, update, resume and the drift
timer all run the same pass: a restarted operator re-applies the same objects instead of
creating new ones, and a child deleted or edited by hand is applied back as rendered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from infergraph.engines import engine as engine_named
from infergraph.errors import GraphValidationError, RenderError
from infergraph.graph.model import InferenceGraph
from infergraph.graph.plan import GraphPlan, parse_plan
from infergraph.json_types import (
    JSONObject,
    Manifest,
    as_list,
    as_objects,
    as_str_map,
    at,
    object_or_empty,
)
from infergraph.operator import pricing
from infergraph.operator import status as st
from infergraph.operator.applying import TAKEOVER_REFUSED, Refusal, apply_all
from infergraph.operator.children import children, engine_for, is_owned_by, stale
from infergraph.operator.config import OperatorConfig
from infergraph.operator.kube import KubeClient, KubeError, ref
from infergraph.operator.last_report import LastReports
from infergraph.operator.metrics import OperatorMetrics
from infergraph.operator.objects import ChildKey, meta_str, name_of
from infergraph.operator.observed_nodes import ObservedNodes
from infergraph.operator.settings_server import SettingsStore
from infergraph.operator.status import EVENT_MESSAGE_LIMIT, Event

STOPPED = "stopped"  # the stage of a pass the operator's shutdown made moot
GONE = "gone"  # the stage of a pass whose graph was deleted before it applied anything


PRUNE_FAILED = "PruneFailed"  # Rendered's reason when a stale child could not be removed
# How a `Rendered` message lists the stale children not removed and the children not applied.
NOT_REMOVED, NOT_APPLIED = "; not removed: ", "; not applied: "


@dataclass(frozen=True)
class Unpruned:
    """A stale child the prune could not remove, and why: it stays in `status.children`, so
    the next pass tries again."""

    child: dict[str, str]
    message: str


@dataclass
class Applied:
    """What one pass did to the children: applied (the live objects), refused, and of the
    stale ones, removed and left (a failed call)."""

    live: list[Manifest]
    refused: list[Refusal]
    removed: list[dict[str, str]] = field(default_factory=list)
    unpruned: list[Unpruned] = field(default_factory=list)
    # Each applied child's generation before this pass applied it (`applying.apply_all`): one
    # the apply advanced has not reported on its new spec yet (`status._applied_anew`).
    generations_before: dict[ChildKey, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a pass decided: status fields to write, Events to post, the stage that failed, and
    the children left unapplied (the handlers retry a pass with any, with backoff)."""

    status: JSONObject
    events: list[Event] = field(default_factory=list)
    stage: str = "done"
    applied: list[Manifest] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def graph_document(body: Manifest) -> Manifest:
    """The parts of the custom resource the graph model reads (the API server adds the rest)."""
    meta = object_or_empty(body, "metadata")
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": dict(object_or_empty(meta, "labels")),
            "annotations": dict(object_or_empty(meta, "annotations")),
        },
        "spec": body.get("spec"),
    }


class Reconciler:
    """Holds the operator's settings, metrics and API client; one lock per graph."""

    def __init__(
        self,
        config: OperatorConfig,
        metrics: OperatorMetrics,
        client: Callable[[], Awaitable[KubeClient]],
        settings: SettingsStore | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._client = client
        # What the settings server serves: each pass puts its graph's rendered settings there.
        self.settings = settings or SettingsStore()
        self._nodes = ObservedNodes(config.node_refresh_s) if config.observe_nodes else None
        self._locks: dict[str, asyncio.Lock] = {}
        # The Events posted per graph since its last clean pass (applied, nothing refused, every
        # pod fits its class): passes that start from the same stale body (create and timer at
        # once) must not post one twice.
        self._posted: dict[str, set[tuple[str, str]]] = {}
        # Each graph's last report, laid over a queued pass's older status (`last_report`).
        self._reports = LastReports()
        # The uids of graphs deleted while this process ran. Their drift timers outlive them:
        # kopf stops a timer only on a deletionTimestamp (kopf 1.45.2
        # `_core/reactor/processing.py:407-412`), which a graph without a finalizer never
        # shows, and on the DELETED event it just drops its memory of the uid
        # (`processing.py:61-62`), so nothing stops that timer. Its passes return at once.
        self._deleted: set[str] = set()
        # Shutdown: no pass starts once `stopping`; `drain` waits for those in flight.
        self.stopping = False
        self._running = 0
        self._drained = asyncio.Event()
        self._drained.set()

    async def drain(self, timeout_s: float) -> bool:
        """Stop starting passes and wait up to `timeout_s` for running ones to finish, so the
        API session is not closed under them; False if some were still running."""
        self.stopping = True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def is_deleted(self, uid: str) -> bool:
        """Whether the graph `uid` was deleted while this process ran."""
        return uid in self._deleted

    def deleted(self, uid: str, namespace: str, name: str) -> None:
        """The graph `uid` is gone (its DELETED event, or a pass that found it gone): every
        later pass of it is GONE without a call, and it drops only its own settings, never
        those of a graph recreated under the same name."""
        self._deleted.add(uid)
        self.settings.forget(namespace, name, uid)
        self._locks.pop(uid, None)
        self._posted.pop(uid, None)
        self._reports.forget(uid)

    async def reconcile(self, body: Manifest, trigger: str) -> Outcome:
        """One pass, or stage `stopped` with nothing to report when the operator is stopping:
        a pass cut short by shutdown (its API session closed under it) would otherwise report
        its own shutdown as the cluster refusing every child. A deleted graph's pass (its
        orphaned drift timer) is `gone` at once: no API call, nothing counted."""
        if self.stopping:
            return Outcome({}, stage=STOPPED)
        if str(at(body, "metadata").get("uid")) in self._deleted:
            return Outcome({}, stage=GONE)
        self._running += 1
        self._drained.clear()
        try:
            outcome = await self._reconcile(body, trigger)
        finally:
            self._running -= 1
            if not self._running:
                self._drained.set()
        return Outcome({}, stage=STOPPED) if self.stopping else outcome

    async def _reconcile(self, body: Manifest, trigger: str) -> Outcome:
        uid = str(at(body, "metadata").get("uid"))
        started = time.perf_counter()
        async with self._locks.setdefault(uid, asyncio.Lock()):
            if uid in self._deleted:  # deleted while this pass waited for the lock
                return Outcome({}, stage=GONE)
            passed = self._reports.lay_over(uid, body)
            outcome = await self._pass(passed)
            if outcome.stage != GONE:
                self._reports.remember(uid, body, passed, outcome.status)
            posted = self._posted.setdefault(uid, set())
            outcome.events = [e for e in outcome.events if e[1:] not in posted]
            posted.update(e[1:] for e in outcome.events)
            if outcome.stage == "done" and not outcome.refused and not _outgrown(outcome):
                self._posted.pop(uid, None)
            if outcome.stage == GONE:
                self.deleted(uid, meta_str(body, "namespace"), name_of(body))
        self.metrics.duration.labels(trigger).observe(time.perf_counter() - started)
        # A graph deleted under its pass is no failure of the operator's.
        result = "ok" if outcome.stage == "done" else GONE if outcome.stage == GONE else "error"
        self.metrics.reconciles.labels(trigger, result).inc()
        if result == "error":
            self.metrics.errors.labels(outcome.stage).inc()
        return outcome

    async def _pass(self, body: Manifest) -> Outcome:
        previous = object_or_empty(body, "status")
        generation = at(body, "metadata").get("generation")
        fresh = previous.get("observedGeneration") != generation
        status: JSONObject = {"observedGeneration": generation}
        prev_conditions = as_objects(previous.get("conditions") or [], "status.conditions")
        try:
            plan = parse_plan(graph_document(body), name_of(body))
        except GraphValidationError as exc:
            return self._refused(
                status, prev_conditions, fresh, "GraphInvalid", str(exc), "validate"
            )
        try:  # the plan is compiled once: rendered, and its settings served, from it
            objs = children(dict(body), plan, self.config)
        except RenderError as exc:
            return self._refused(
                status, prev_conditions, fresh, "RenderFailed", str(exc), "render", valid=True
            )
        client = await self._client()
        if not await self._still_there(client, body):
            return Outcome({}, stage=GONE)  # `_reconcile` forgets this uid
        self._serve_settings(plan, meta_str(body, "namespace"), meta_str(body, "uid"))
        done = await self._apply(client, body, objs)
        return await self._reported(client, body, plan, objs, done, status)

    async def _apply(self, client: KubeClient, body: Manifest, objs: list[Manifest]) -> Applied:
        """Apply this generation's children, then prune what it no longer renders: each child
        on its own, so one failure leaves the rest of the pass (and its report) standing."""
        home = meta_str(body, "namespace")
        live, refused, before = await apply_all(client, objs, meta_str(body, "uid"), home)
        previous = _refs(object_or_empty(body, "status").get("children"), "status.children")
        removed, unpruned = await self._prune(client, body, previous, [ref(o, home) for o in objs])
        return Applied(live, refused, removed, unpruned, before)

    async def _reported(
        self,
        client: KubeClient,
        body: Manifest,
        plan: GraphPlan,
        objs: list[Manifest],
        done: Applied,
        status: JSONObject,
    ) -> Outcome:
        """This generation's status and Events from what the pass applied and pruned."""
        previous = object_or_empty(body, "status")
        prev_conditions = as_objects(previous.get("conditions") or [], "status.conditions")
        rooms = await self._nodes.rooms(client) if self._nodes else []
        engine = engine_for(plan.graph, self.config)
        priced = pricing.priced(plan.graph, self.config.price_catalog, engine, objs, rooms)
        status.update(self._report(plan.graph, body, priced, done, prev_conditions))
        prev_children = _refs(previous.get("children"), "status.children")
        status["children"] = _listed(done, prev_children, meta_str(body, "namespace"))
        # None removes the field in kopf's status patch once nothing is refused.
        status["refused"] = [r.status() for r in done.refused] or None
        events = _warnings(done, previous, prev_conditions) + pricing.outgrown_warning(
            prev_conditions, as_objects(status["conditions"], "status.conditions")
        )
        stage = "apply" if done.refused else "prune" if done.unpruned else "done"
        return Outcome(status, events=events, stage=stage, applied=done.live, refused=done.refused)

    def _serve_settings(self, plan: GraphPlan, namespace: str, uid: str) -> None:
        """Before the apply, so a Model's new folder is there when Seldon sees its new
        storageUri: the settings of this generation, from the same `seldon_v2._served` that
        wrote the storageUris (nothing for other engines or without a settings URL)."""
        engine = engine_named(engine_for(plan.graph, self.config))
        served = engine.served_settings(plan, self.config.render_options())
        self.settings.replace(namespace, plan.graph.name, served, uid)

    def _refused(
        self,
        status: JSONObject,
        prev_conditions: list[JSONObject],
        fresh: bool,
        reason: str,
        message: str,
        stage: str,
        valid: bool = False,
    ) -> Outcome:
        """An unusable generation: say why, keep the last good children untouched.

        What `kubectl get` shows (engine, endpoint, ready nodes, price, Ready) described the
        last valid generation; shown beside a new, unusable one it would read as current, so it
        is cleared and Ready is Unknown. `children` stays: a later valid generation prunes
        against it."""
        kept = "children of the last valid generation are left as they are"
        rendered = st.Condition("Rendered", st.FALSE, reason, f"{message}\n({kept})")
        status["conditions"] = st.conditions(
            prev_conditions,
            [
                st.Condition("Valid", st.TRUE, "GraphValid", "")
                if valid
                else st.Condition("Valid", st.FALSE, reason, message),
                rendered,
                st.Condition(
                    "Ready", st.UNKNOWN, reason, f"this generation is not applied; {kept}"
                ),
                st.Condition(
                    pricing.SCHEDULABLE, st.UNKNOWN, reason, "this generation is not applied"
                ),
            ],
        )
        for stale_field in ("engine", "endpoint", "readyNodes", "nodes", "pricePerHour"):
            status[stale_field] = None  # None removes the field in kopf's status patch
        # One Event per generation, and per new failure within one: an edit of only the
        # annotations that drive rendering (engine, omit-kinds) keeps the generation. The
        # drift timer re-checks without repeating it.
        before = st.condition(prev_conditions, "Rendered")
        said = (before.get("reason"), before.get("message")) == (reason, rendered.message)
        events = [("Warning", reason, message[:EVENT_MESSAGE_LIMIT])] if fresh or not said else []
        return Outcome(status, events=events, stage=stage)

    async def _still_there(self, client: KubeClient, body: Manifest) -> bool:
        """Whether the graph (this uid) still exists. Graphs carry no finalizer, so kopf may
        run a timer pass from a body read just before the deletion; applying it would create
        children for a graph that is gone (the garbage collector and the sweep would delete
        them again, but nothing should be created for a deleted graph)."""
        uid = at(body, "metadata").get("uid")
        try:
            live = await client.get(
                str(body.get("apiVersion")),
                str(body.get("kind")),
                meta_str(body, "namespace"),
                name_of(body),
            )
        except KubeError:
            return True  # unknown: apply, as before; the apply itself reports what fails
        return live is not None and object_or_empty(live, "metadata").get("uid") == uid

    async def _prune(
        self,
        client: KubeClient,
        body: Manifest,
        previous: list[dict[str, str]],
        current: list[dict[str, str]],
    ) -> tuple[list[dict[str, str]], list[Unpruned]]:
        """Delete what an earlier generation created and this one does not render, but only
        objects that still name this graph as owner (never someone else's same-named object):
        (removed, the ones a failed call left, each with why)."""
        removed: list[dict[str, str]] = []
        unpruned: list[Unpruned] = []
        for child in stale(previous, current):
            try:
                if await self._prune_one(client, body, child):
                    removed.append(child)
            except KubeError as exc:
                unpruned.append(Unpruned(child, f"{child['kind']}/{child['name']}: {exc}"))
        return removed, unpruned

    async def _prune_one(self, client: KubeClient, body: Manifest, child: dict[str, str]) -> bool:
        """Delete one stale child if it is still this graph's; False if there is nothing of
        ours to delete."""
        where = child.get("namespace", meta_str(body, "namespace"))
        api_version, kind, name = child["apiVersion"], child["kind"], child["name"]
        try:
            live = await client.get(api_version, kind, where, name)
        except KubeError as exc:
            # A 404 here is discovery's (`KubeClient.get` answers an absent object with None):
            # the cluster no longer serves the kind, so no object of it exists (deleting a CRD
            # deletes all its objects, as the Kubernetes API documents for CRDs).
            if exc.status == 404:
                return False
            raise
        if not is_owned_by(live, meta_str(body, "uid")):
            return False
        await client.delete(api_version, kind, where, name)
        return True

    def _report(
        self,
        graph: InferenceGraph,
        body: Manifest,
        priced: pricing.Priced,
        done: Applied,
        prev_conditions: list[JSONObject],
    ) -> JSONObject:
        engine = engine_for(graph, self.config)
        blocked = [(r.obj, r.reason) for r in done.refused]
        nodes, ready = st.graph_readiness(graph, done.live, blocked, done.generations_before)
        waiting = [n for n in nodes if not n["ready"]]
        rendered = _rendered_condition(engine, done)
        report: JSONObject = {
            "engine": engine,
            "endpoint": st.endpoint(graph, engine, meta_str(body, "namespace"), done.live),
            "readyNodes": f"{len(nodes) - len(waiting)}/{len(nodes)}",
            "nodes": nodes,
            "conditions": st.conditions(
                prev_conditions,
                [st.Condition("Valid", st.TRUE, "GraphValid", ""), rendered, ready, priced.fit],
            ),
        }
        # None removes a field in kopf's status patch: a price that stops being computable goes.
        report["pricePerHour"] = priced.price
        report["priceMessage"] = priced.problem or None
        return report


def _outgrown(outcome: Outcome) -> bool:
    conditions = as_objects(outcome.status.get("conditions") or [], "status.conditions")
    return pricing.is_outgrown(conditions)


def _rendered_condition(engine: str, done: Applied) -> st.Condition:
    """`Applied`, or which children were not applied and why (a takeover refusal first: it
    needs a person, an API failure may pass on retry), or which stale ones were not removed."""
    live, refused = done.live, done.refused
    count = f"{len(live)} of {len(live) + len(refused)}" if refused else str(len(live))
    applied = f"applied {count} object(s) for {engine}"
    if done.removed:
        applied += f"; removed {', '.join(f'{r["kind"]}/{r["name"]}' for r in done.removed)}"
    if done.unpruned:
        applied += f"{NOT_REMOVED}{'; '.join(u.message for u in done.unpruned)}"
    if not refused:
        if done.unpruned:
            return st.Condition("Rendered", st.FALSE, PRUNE_FAILED, applied)
        return st.Condition("Rendered", st.TRUE, "Applied", applied)
    reasons = {r.reason for r in refused}
    reason = TAKEOVER_REFUSED if TAKEOVER_REFUSED in reasons else refused[0].reason
    why = "; ".join(r.message for r in refused)
    return st.Condition("Rendered", st.FALSE, reason, f"{applied}{NOT_APPLIED}{why}")


def _warnings(
    done: Applied, previous: JSONObject, prev_conditions: list[JSONObject]
) -> list[Event]:
    """One Warning per new refusal (not in the previous `status.refused`) and per new prune
    failure (not in the "not removed" part of the previous `Rendered` message: an apply
    refusal of the same child can carry the same text): not one per retry."""
    told = [
        (c.get("kind"), c.get("name"), c.get("message"))
        for c in as_objects(previous.get("refused") or [], "status.refused")
    ]
    events = [
        ("Warning", r.reason, r.message[:EVENT_MESSAGE_LIMIT])
        for r in done.refused
        if (r.child["kind"], r.child["name"], r.message) not in told
    ]
    said = _not_removed(str(st.condition(prev_conditions, "Rendered").get("message") or ""))
    return events + [
        ("Warning", PRUNE_FAILED, u.message[:EVENT_MESSAGE_LIMIT])
        for u in done.unpruned
        if u.message not in said
    ]


def _not_removed(rendered_message: str) -> str:
    """The prune failures a `Rendered` message told (`_rendered_condition` writes them after
    "; not removed: " and before any "; not applied: ")."""
    told = rendered_message.partition(NOT_REMOVED)[2]
    return told.partition(NOT_APPLIED)[0]


def _refs(value: object, where: str) -> list[dict[str, str]]:
    """`status.children` as an earlier pass wrote it (`kube.ref`, strings, as the CRD's status
    schema says); none before the first pass."""
    items = as_list(value or [], where)
    return [as_str_map(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _listed(done: Applied, previous: list[dict[str, str]], home: str) -> list[dict[str, str]]:
    """`status.children`: what was applied, plus earlier children this pass could not apply
    (still ours, still rendered) or could not prune (so the next pass prunes them). Never an
    object of someone else's."""
    kept = [r.child for r in done.refused if r.reason != TAKEOVER_REFUSED and r.child in previous]
    return [ref(o, home) for o in done.live] + kept + [u.child for u in done.unpruned]
