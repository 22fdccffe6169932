"""The ledger: a SQLite database of every recording's state, per pipeline.

It makes runs idempotent and resumable. The engine alone writes it; components reach it
through the narrow :class:`Ledger` methods (no SQL outside this module).

States (a transition table, :data:`TRANSITIONS`)::

    queued ──► downloading ──► verified ──► stored
                   │  ▲            │
                   ▼  │            ▼
                  failed ◄─────────┘

- ``stored`` recordings are skipped by later runs (idempotent re-runs);
- ``failed`` ones are retried by later runs until ``attempts`` reaches the pipeline's
  ``max_attempts_total``;
- ``downloading`` with a checkpoint (``resume_offset`` bytes durably on disk in a sink's
  temporary file, with the ``etag`` they came from) is resumed from that offset.

Durability: WAL journal, ``synchronous=FULL``; every state change is its own transaction,
so after ``kill -9`` the database holds the last state each recording reached.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

#: Legal state changes; anything else is a bug and raises :class:`LedgerError`.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"queued", "downloading", "failed"}),
    "queued": frozenset({"downloading", "failed"}),
    "downloading": frozenset({"downloading", "verified", "failed", "stored"}),
    "verified": frozenset({"stored", "failed", "downloading"}),  # downloading: a crash before commit
    "failed": frozenset({"downloading", "failed", "queued"}),
    "stored": frozenset({"stored"}),
}

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    etag TEXT,
    resume_offset INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    sha256 TEXT,
    stored TEXT,
    verdicts TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    interrupted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outcomes (
    run_id INTEGER NOT NULL REFERENCES runs(run_id),
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (run_id, source, id)
);
"""

#: Discovery watermarks (kept apart from the recordings' state: see Ledger.get_watermark).
_WATERMARK_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermarks (
    pipeline TEXT NOT NULL,
    source_key TEXT NOT NULL,
    value REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (pipeline, source_key)
);
"""


class LedgerError(RuntimeError):
    """An illegal state change or an unreadable ledger."""


@dataclass(frozen=True)
class RecordingState:
    """One row of the ledger.

    :ivar resume_offset: bytes of the recording durably held in a sink's temporary file.
    :ivar checkpoint: sink-specific resume data (JSON), e.g. temporary paths and offsets.
    """

    source: str
    id: str
    state: str
    reason: str | None
    message: str | None
    attempts: int
    size: int | None
    etag: str | None
    resume_offset: int
    checkpoint: dict[str, Any] | None
    sha256: str | None
    stored: list[dict[str, Any]] | None
    verdicts: list[dict[str, Any]] | None
    updated_at: float


class Ledger:
    """The ledger database at ``path`` (created if missing). Thread-safe; one connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.executescript(_WATERMARK_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable ledger database: {exc}") from None

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ reads

    def get(self, source: str, recording_id: str) -> RecordingState | None:
        """The recording's row, or ``None`` if the ledger has never seen it."""
        with self._lock:
            row = self._db.execute("SELECT * FROM recordings WHERE source=? AND id=?", (source, recording_id)).fetchone()
        return _row(row) if row else None

    def all(self, state: str | None = None) -> Iterator[RecordingState]:
        """Every row (or those in ``state``), ordered by source and id."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM recordings" + (" WHERE state=?" if state else "") +
                                    " ORDER BY source, id", (state,) if state else ()).fetchall()
        return (_row(r) for r in rows)

    def counts(self) -> dict[str, int]:
        """Recordings per state."""
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall())

    # ------------------------------------------------------------------ writes

    def transition(self, source: str, recording_id: str, state: str, **fields: Any) -> None:
        """Move a recording to ``state``, updating the given columns.

        :raises LedgerError: the change is not in :data:`TRANSITIONS`.
        """
        allowed = {"reason", "message", "size", "etag", "resume_offset", "checkpoint", "sha256", "stored", "verdicts",
                   "attempts"}
        unknown = set(fields) - allowed
        if unknown:
            raise LedgerError(f"unknown ledger fields {sorted(unknown)}")
        values = {k: (json.dumps(v) if k in ("checkpoint", "stored", "verdicts") and v is not None else v)
                  for k, v in fields.items()}
        with self._lock:
            cur = self._db.execute("SELECT state FROM recordings WHERE source=? AND id=?", (source, recording_id))
            row = cur.fetchone()
            current = row[0] if row else None
            if state not in TRANSITIONS.get(current, frozenset()):
                raise LedgerError(f"recording {recording_id}: illegal ledger transition {current} -> {state}")
            now = time.time()
            if row is None:
                cols = ["source", "id", "state", "updated_at", *values]
                self._db.execute(f"INSERT INTO recordings ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 (source, recording_id, state, now, *values.values()))
            else:
                sets = ", ".join(f"{k}=?" for k in ["state", "updated_at", *values])
                self._db.execute(f"UPDATE recordings SET {sets} WHERE source=? AND id=?",
                                 (state, now, *values.values(), source, recording_id))

    def begin_attempt(self, source: str, recording_id: str) -> int:
        """Mark a recording ``downloading`` and count the attempt; returns the attempt number."""
        current = self.get(source, recording_id)
        attempts = (current.attempts if current else 0) + 1
        self.transition(source, recording_id, "downloading", attempts=attempts)
        return attempts

    def checkpoint(self, source: str, recording_id: str, *, resume_offset: int, checkpoint: dict[str, Any],
                   etag: str | None, size: int | None) -> None:
        """Record that ``resume_offset`` bytes are durably on disk (called after an fsync)."""
        self.transition(source, recording_id, "downloading", resume_offset=resume_offset, checkpoint=checkpoint,
                        etag=etag, size=size)

    def clear_checkpoint(self, source: str, recording_id: str) -> None:
        """Forget a checkpoint (its files were discarded; the next attempt starts at byte 0)."""
        self.transition(source, recording_id, "downloading", resume_offset=0, checkpoint=None)

    # ------------------------------------------------------------------ runs

    def start_run(self, pipeline: str) -> int:
        """Record a run's start; returns its ``run_id``."""
        with self._lock:
            cur = self._db.execute("INSERT INTO runs (pipeline, started_at) VALUES (?, ?)", (pipeline, time.time()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, interrupted: bool) -> None:
        """Record a run's end and whether a signal stopped it."""
        with self._lock:
            self._db.execute("UPDATE runs SET finished_at=?, interrupted=? WHERE run_id=?",
                             (time.time(), int(interrupted), run_id))

    def record_outcome(self, run_id: int, source: str, recording_id: str, status: str, result: dict[str, Any]) -> None:
        """Record how a stream ended in a run (``result`` is ``StreamResult.to_dict()``)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)",
                             (run_id, source, recording_id, status, json.dumps(result, default=str)))

    def runs(self) -> list[dict[str, Any]]:
        """Every run: ``run_id``, ``pipeline``, ``started_at``, ``finished_at`` (Unix s), ``interrupted``."""
        with self._lock:
            cur = self._db.execute("SELECT run_id, pipeline, started_at, finished_at, interrupted FROM runs "
                                   "ORDER BY run_id")
            return [dict(zip(("run_id", "pipeline", "started_at", "finished_at", "interrupted"), r)) for r in cur]

    def outcomes(self, run_id: int) -> list[dict[str, Any]]:
        """The stream results recorded for a run, by source and id."""
        with self._lock:
            rows = self._db.execute("SELECT result FROM outcomes WHERE run_id=? ORDER BY source, id",
                                    (run_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ watermarks

    def get_watermark(self, pipeline: str, source_key: str) -> float | None:
        """Where discovery by date stopped for ``(pipeline, source_key)`` (Unix seconds), or ``None``.

        A source that finds recordings by time (CXone ``since: last-run``) starts its next
        window there, minus its overlap. Kept apart from recording state on purpose: two
        methods and one table, whatever the ledger's backend.
        """
        with self._lock:
            row = self._db.execute("SELECT value FROM watermarks WHERE pipeline=? AND source_key=?",
                                   (pipeline, source_key)).fetchone()
        return float(row[0]) if row else None

    def set_watermark(self, pipeline: str, source_key: str, value: float) -> None:
        """Record the watermark of ``(pipeline, source_key)`` (Unix seconds), in its own transaction."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO watermarks VALUES (?, ?, ?, ?)",
                             (pipeline, source_key, float(value), time.time()))


def _row(row: tuple) -> RecordingState:
    (source, rid, state, reason, message, attempts, size, etag, resume_offset, checkpoint, sha256, stored, verdicts,
     updated_at) = row
    return RecordingState(source, rid, state, reason, message, attempts, size, etag, resume_offset,
                          json.loads(checkpoint) if checkpoint else None, sha256,
                          json.loads(stored) if stored else None, json.loads(verdicts) if verdicts else None,
                          updated_at)
