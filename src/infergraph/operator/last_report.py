"""The status each graph's last pass reported, for the pass queued behind it.

A pass waiting for its graph's lock holds the body it was handed, and kopf patches a pass's
status only after its handler returned: the waiting body's status can predate the last
report. Judged from it, a condition "changes" again (its lastTransitionTime moves a pass
late) and a refusal already told is told again, or one the last pass cleared and that came
back is taken as told. Passes take the lock in the order they copied their bodies (no await
between the two: `handlers.run`), so a waiting body's spec is never older than the one the
last pass applied; only its status can be.

So each pass's report is kept with the statuses known to predate it (what the passes since
the watch last caught up were handed, and what they reported before it). A body showing one
of those gets the last report in their place, whole (a merge could not remove a field the
report cleared). A body showing the last report means the watch has caught up: the memory
goes. A body showing anything else was written by someone else, or shows that a patch
failed, and is read as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infergraph.json_types import JSONObject, Manifest, object_or_empty
from infergraph.operator.status import patched

# The most statuses kept as predating a report: one per pass since the watch last caught up.
MAX_OLDER = 16


@dataclass
class _Report:
    status: JSONObject  # the status as the last report left it
    older: list[JSONObject] = field(default_factory=list)  # statuses that predate it


class LastReports:
    """Per graph uid, the last report and the statuses that predate it."""

    def __init__(self) -> None:
        self._reports: dict[str, _Report] = {}

    def lay_over(self, uid: str, body: Manifest) -> Manifest:
        """`body` with the last report in place of a status that predates it; as handed
        otherwise (no report yet, the watch caught up, or a status written since)."""
        report = self._reports.get(uid)
        if report is None:
            return body
        own = object_or_empty(body, "status")
        if any(own == older for older in report.older):
            return {**body, "status": dict(report.status)}
        del self._reports[uid]  # caught up, or written since by someone else: the body's
        return body

    def remember(self, uid: str, handed: Manifest, passed: Manifest, patch: JSONObject) -> None:
        """The pass that was `handed` a body and ran on `passed` (the same, or with the last
        report laid over) reported `patch` (kopf's status patch: None removes a field)."""
        report = self._reports.get(uid)
        older = [*report.older, report.status] if report is not None else []
        handed_status = object_or_empty(handed, "status")
        if handed_status not in older:
            older.append(handed_status)
        status = patched(object_or_empty(passed, "status"), patch)
        self._reports[uid] = _Report(status, older[-MAX_OLDER:])

    def forget(self, uid: str) -> None:
        self._reports.pop(uid, None)
