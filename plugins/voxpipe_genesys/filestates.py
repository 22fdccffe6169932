"""Recording ``fileState``: what to do with each state, how long to wait for transient ones,
and the file that carries recordings still transient to the next run. No network I/O.

``RecordingMetadata.fileState`` (official SDK): ARCHIVED, AVAILABLE, DELETED, RESTORED,
RESTORING, UPLOADING, ERROR. AVAILABLE and RESTORED can be downloaded; UPLOADING (the
media is still being stored after the call) and RESTORING (coming back from archive,
hours to days) are transient: discovery re-reads their metadata (:func:`next_check`)
for at most ``transient_wait`` seconds, then leaves them for a later run. Such a
recording is not yielded as a stream, so the ledger counts no attempt against it; it is
written to :class:`DeferredStore`, whose conversations the next run looks up again
whatever its interval. Every other state fails the recording with a reason of its own.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxpipe.atomic import write_atomic

log = logging.getLogger("voxpipe.genesys")

#: ``fileState`` values whose media can be fetched now.
DOWNLOADABLE = frozenset({"AVAILABLE", "RESTORED"})
#: ``fileState`` values that become downloadable by themselves.
TRANSIENT = frozenset({"UPLOADING", "RESTORING"})
#: Failure reason and advice per state that cannot be downloaded.
UNAVAILABLE = {
    "ARCHIVED": ("archived", "it is archived: restore it in Genesys Cloud (it becomes RESTORING, then RESTORED), "
                             "then run again"),
    "DELETED": ("deleted", "it was deleted"),
    "ERROR": ("recording-error", "Genesys Cloud reports an error for the recording's media"),
}
#: Most recordings the deferred file carries; the oldest are dropped beyond it.
MAX_DEFERRED = 100_000
#: Seconds a recording stays in the deferred file (a restore takes up to 48 hours).
MAX_DEFERRED_AGE = 14 * 86_400.0
#: Largest deferred file read (bytes).
MAX_DEFERRED_FILE = 64 << 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a recording in a given state: ``action`` is ``download``, ``wait`` or ``fail``."""

    action: str
    reason: str | None = None
    advice: str = ""


def classify(file_state: str | None) -> Verdict:
    """The verdict for a ``fileState`` (absent: AVAILABLE, as the API omits it for ordinary recordings)."""
    state = (file_state or "AVAILABLE").strip().upper()
    if state in DOWNLOADABLE:
        return Verdict("download")
    if state in TRANSIENT:
        return Verdict("wait")
    reason, advice = UNAVAILABLE.get(state, ("not-available", f"fileState {state} is not downloadable (needs "
                                             f"{' or '.join(sorted(DOWNLOADABLE))})"))
    return Verdict("fail", reason, advice)


def next_check(first_seen: float, now: float, delay: float, limit: float) -> float | None:
    """When to re-read a transient recording's metadata next (same clock as the arguments),
    or ``None`` when waiting longer would pass ``limit`` seconds after ``first_seen``."""
    if now + delay > first_seen + limit:
        return None
    return now + delay


@dataclass(frozen=True, slots=True)
class Deferred:
    """A recording left for a later run."""

    recording_id: str
    conversation_id: str
    file_state: str
    since: float  # when first deferred (Unix seconds)
    runs: int = 1  # runs that deferred it


class DeferredStore:
    """``genesys-deferred.json`` in the pipeline's state directory: recordings still
    transient when a run gave up on them. Written atomically; never holds a URL or secret.

    :raises ValueError: (from :meth:`load`) the file is not this store's JSON, naming the file.
    """

    VERSION = 1

    def __init__(self, path: Path, entries: dict[str, Deferred] | None = None):
        self.path = path
        self.entries: dict[str, Deferred] = dict(entries or {})
        self._dirty = False

    @classmethod
    def load(cls, path: Path) -> "DeferredStore":
        if not path.exists():
            return cls(path)
        if path.stat().st_size > MAX_DEFERRED_FILE:
            raise ValueError(f"{path}: larger than {MAX_DEFERRED_FILE} bytes")
        try:
            doc = json.loads(path.read_text("utf-8"))
            entries = {}
            for rid, item in doc["recordings"].items():
                entries[rid] = Deferred(rid, str(item["conversationId"]), str(item["fileState"]),
                                        float(item["since"]), int(item.get("runs", 1)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a deferred-recordings file ({type(exc).__name__}: {exc}); "
                             "move it away to start afresh") from None
        return cls(path, entries)

    def conversation_ids(self) -> list[str]:
        """Conversations holding deferred recordings, oldest deferral first."""
        out: dict[str, None] = {}
        for entry in sorted(self.entries.values(), key=lambda e: e.since):
            out[entry.conversation_id] = None
        return list(out)

    def defer(self, recording_id: str, conversation_id: str, file_state: str, now: float | None = None) -> Deferred:
        """Remember a recording for the next run (again, if an earlier run deferred it too)."""
        now = time.time() if now is None else now
        old = self.entries.get(recording_id)
        entry = Deferred(recording_id, conversation_id, file_state, old.since if old else now,
                         (old.runs + 1) if old else 1)
        self.entries[recording_id] = entry
        self._dirty = True
        return entry

    def resolve(self, recording_id: str) -> None:
        """The recording left its transient state (it is archived now, or failed for good)."""
        if self.entries.pop(recording_id, None) is not None:
            self._dirty = True

    def expire(self, now: float | None = None) -> list[Deferred]:
        """Drop entries older than :data:`MAX_DEFERRED_AGE`, and the oldest past :data:`MAX_DEFERRED`."""
        now = time.time() if now is None else now
        dropped = [e for e in self.entries.values() if now - e.since > MAX_DEFERRED_AGE]
        keep = sorted((e for e in self.entries.values() if now - e.since <= MAX_DEFERRED_AGE), key=lambda e: e.since)
        dropped += keep[:max(0, len(keep) - MAX_DEFERRED)]
        for entry in dropped:
            del self.entries[entry.recording_id]
        self._dirty = self._dirty or bool(dropped)
        return dropped

    def save(self) -> None:
        """Write the file if anything changed (removing it when empty)."""
        if not self._dirty:
            return
        if not self.entries:
            self.path.unlink(missing_ok=True)
        else:
            doc: dict[str, Any] = {"version": self.VERSION, "recordings": {
                e.recording_id: {"conversationId": e.conversation_id, "fileState": e.file_state, "since": e.since,
                                 "runs": e.runs} for e in self.entries.values()}}
            write_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())
        self._dirty = False
