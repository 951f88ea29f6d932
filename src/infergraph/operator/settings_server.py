"""The operator's model-settings server: Seldon v2's agent copies each Model's folder from here.

A Model the operator serves has `spec.storageUri` = `:http,url="<settings url>":<path>`
(`render.seldon_v2.settings_source`), `<path>` = `<namespace>/<graph>/<model>/<hash>`. Seldon's
agent gives that to its rclone sidecar as the source of a copy (seldon-core v2.10.2
`scheduler/pkg/agent/rclone/rclone.go:320-349`), and rclone's `http` backend reads folders as
HTML index pages (rclone v1.71.1, the version in `seldon-rclone:2.10.2`,
`backend/http/http.go`):

- the root without a trailing `/` is first asked with HEAD: a redirect to the same path with
  `/` (or a 404) makes it a folder, a 2xx makes it a file (`getFsEndpoint`, http.go:145-216);
- a folder is a GET of `<path>/` answered `text/html` (any other type fails, http.go:474-483),
  whose `<a href>` links, relative and one level deep, are its entries (`parse`/`parseName`,
  http.go:362-430); a name ending in `/` is a sub-folder.

So each folder `<path>/` lists one link, `model-settings.json`, and the file itself is the
rendered JSON. The folders of the last two different renderings of a graph exist (a Model whose
new spec was not applied yet keeps loading from its old folder); older ones are a 404.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web

from infergraph.render.seldon_v2 import SETTINGS_FILE, ServedSettings

Folders = dict[str, bytes]  # folder path -> model-settings.json bytes
GraphKey = tuple[str, str]  # (namespace, graph)
# Ready at the latest this long after the start, whatever passes are still owed: a graph whose
# pass keeps failing must not keep every other graph's agents from the settings for good.
READY_DEADLINE_S = 300.0

log = logging.getLogger(__name__)


class SettingsStore:
    """The folders of every graph, set on every pass from the settings just rendered."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # (namespace, graph) -> (the graph's uid, current folders, the previous different ones)
        self._by_graph: dict[GraphKey, tuple[str, Folders, Folders]] = {}
        # The graphs that existed at the start and have had no pass yet; None: not listed yet.
        self._owed: set[GraphKey] | None = None
        self._passed: set[GraphKey] = set()  # passes that ran before the list came back
        self._clock = clock
        self._since = clock()

    def expect(self, graphs: Iterable[GraphKey]) -> None:
        """The graphs found at the start: until each has had a pass its folders may be
        missing, so the store is not `ready`."""
        self._owed = set(graphs) - self._passed
        self._since = self._clock()

    def passed(self, namespace: str, graph: str) -> None:
        """A pass of the graph ran: its folders are what it rendered (none off Seldon v2)."""
        if self._owed is None:
            self._passed.add((namespace, graph))
        else:
            self._owed.discard((namespace, graph))

    def owed(self) -> list[GraphKey]:
        """Graphs still owed a first pass; empty when ready (or past `READY_DEADLINE_S`)."""
        if self._owed is None:
            return [("", "the list of graphs")]
        if self._owed and self._clock() - self._since > READY_DEADLINE_S:
            log.warning("ready without a first pass of %s", sorted(self._owed))
            self._owed = set()
        return sorted(self._owed)

    def replace(
        self, namespace: str, graph: str, served: Mapping[str, ServedSettings], uid: str = ""
    ) -> None:
        """The graph's folders become `served`; the ones they replace stay one more rendering,
        for Models whose new storageUri is not applied yet (a refused apply, a pass cut short).
        A graph recreated under the same name (another uid) starts afresh: the deleted one's
        folders are not its own."""
        current = {s.path: s.body for s in served.values()}
        owner, before, older = self._by_graph.get((namespace, graph), (uid, {}, {}))
        if owner != uid:
            before, older = {}, {}
        kept = older if current == before else before
        self._by_graph[(namespace, graph)] = (uid, current, kept)

    def forget(self, namespace: str, graph: str, uid: str | None = None) -> None:
        """The graph `uid` (None: whichever) is gone: its folders go, but not those of a graph
        recreated under the same name meanwhile (a late pass or event of the deleted uid must
        not take them)."""
        owner = self._by_graph.get((namespace, graph), ("",))[0]
        if uid is None or owner == uid:
            self._by_graph.pop((namespace, graph), None)
        self.passed(namespace, graph)

    def file(self, folder: str) -> bytes | None:
        namespace, _, rest = folder.partition("/")
        graph = rest.partition("/")[0]
        _, current, previous = self._by_graph.get((namespace, graph), ("", {}, {}))
        return current.get(folder, previous.get(folder))


def _index(folder: str) -> str:
    """The HTML index rclone's http backend lists: one relative link, the settings file."""
    name = html.escape(SETTINGS_FILE)
    return (
        f"<!DOCTYPE html>\n<html><head><title>{html.escape(folder)}/</title></head><body>\n"
        f'<a href="{name}">{name}</a>\n</body></html>\n'
    )


def settings_app(store: SettingsStore) -> web.Application:
    """GET (and HEAD, aiohttp adds it) on `<folder>`, `<folder>/` and
    `<folder>/model-settings.json`, `<folder>` = `<namespace>/<graph>/<model>/<hash>`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        folder, _, leaf = path.rpartition("/")
        if leaf == SETTINGS_FILE and (body := store.file(folder)) is not None:
            return web.Response(body=body, content_type="application/json")
        if leaf == "" and store.file(folder) is not None:
            return web.Response(text=_index(folder), content_type="text/html")
        if store.file(path) is not None:  # the folder without its `/`: say it is a folder
            raise web.HTTPMovedPermanently(location=f"/{path}/")
        raise web.HTTPNotFound()

    app = web.Application()

    async def readyz(_: web.Request) -> web.Response:
        """The chart's readinessProbe: 200 once every graph found at the start is served.
        kopf's /healthz cannot say so: it answers 200 with whatever its probes returned
        (kopf 1.45.2 _core/engines/probing.py:41-66)."""
        owed = store.owed()
        if not owed:
            return web.json_response({"ready": True})
        waiting = [f"{ns}/{name}" if ns else name for ns, name in owed[:10]]
        return web.json_response({"ready": False, "waiting_for": waiting}, status=503)

    app.router.add_get("/readyz", readyz)  # folders have four segments: no clash
    app.router.add_get("/{path:.+}", handle)
    return app


async def serve_settings(store: SettingsStore, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start the settings server in the running loop; the caller cleans it up."""
    runner = web.AppRunner(settings_app(store))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
