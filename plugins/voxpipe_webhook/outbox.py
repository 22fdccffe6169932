"""The durable outbox: webhook events in SQLite, written before their first attempt.

One row per event (its ``webhook-id``, endpoint URL, exact body bytes, state, attempts,
next attempt time, last status or error, timestamps) and one row per endpoint that
answered ``410 Gone`` (disabled). The database runs in WAL mode;
:meth:`Outbox.enqueue` commits with ``synchronous=FULL`` and returns only once the event
is on disk, so a crash, ``kill -9`` or power cut right after loses nothing. Claims and
outcomes commit with ``synchronous=NORMAL`` (safe against process crashes; a power cut may
undo the last outcomes, which only causes a repeat under the same ``webhook-id``).

Claims are leases, not states: :meth:`Outbox.claim` pushes a due event's
``next_attempt_at`` ``lease`` seconds ahead (in one ``BEGIN IMMEDIATE`` transaction, so
two processes never claim the same row), and the attempt's outcome then sets the real
next time. A process that dies mid-attempt leaves its events pending; they are due again
when the lease runs out. Delivery is therefore at-least-once, always under the same
``webhook-id``. No secret is ever stored here (bodies carry none).

All methods are synchronous and thread-safe (one connection behind a lock); async
callers run them with ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from voxpipe.sqlitetx import Transaction

from .schedule import Decision, State

SCHEMA_VERSION = 1
#: Delivered events older than this many seconds are deleted when the outbox is opened.
DELIVERED_RETENTION = 30 * 24 * 3600.0
#: Events one claim returns at most.
MAX_CLAIM = 256
#: Characters of an error text kept per event.
MAX_ERROR_CHARS = 500
#: Milliseconds SQLite waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 15_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id              TEXT PRIMARY KEY,       -- webhook-id, stable across retries
    endpoint        TEXT NOT NULL,          -- the URL it is delivered to
    source          TEXT NOT NULL,          -- X-Stream-Source
    pipeline        TEXT NOT NULL,
    recording_id    TEXT NOT NULL,
    body            BLOB NOT NULL,          -- the exact signed bytes
    state           TEXT NOT NULL,          -- pending / delivered / failed / disabled
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,          -- Unix seconds; origin of the retry horizon
    next_attempt_at REAL,                   -- Unix seconds, pending events only
    last_attempt_at REAL,
    last_status     INTEGER,                -- HTTP status of the last answer, if any
    last_error      TEXT,                   -- what the last attempt met
    delivered_at    REAL
);
CREATE INDEX IF NOT EXISTS events_due ON events (endpoint, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS events_state ON events (state, created_at);
CREATE TABLE IF NOT EXISTS endpoints (
    url         TEXT PRIMARY KEY,
    disabled_at REAL NOT NULL,
    reason      TEXT NOT NULL
);
"""

_COLUMNS = ("id, endpoint, source, pipeline, recording_id, body, state, attempts, created_at, next_attempt_at, "
            "last_attempt_at, last_status, last_error, delivered_at")


def new_event_id() -> str:
    """A fresh ``webhook-id``: ``msg_`` and 32 hex digits of a random UUID."""
    return "msg_" + uuid.uuid4().hex


@dataclass(frozen=True)
class OutboxEvent:
    """One row of the outbox (times are Unix seconds)."""

    id: str
    endpoint: str
    source: str
    pipeline: str
    recording_id: str
    body: bytes
    state: State
    attempts: int
    created_at: float
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    delivered_at: float | None
    #: set by :meth:`Outbox.enqueue` when the id was already there (nothing new was stored)
    duplicate: bool = False

    @classmethod
    def _from_row(cls, row: tuple) -> "OutboxEvent":
        values = list(row)
        values[5] = bytes(values[5])
        values[6] = State(values[6])
        return cls(*values)


class OutboxError(RuntimeError):
    """The outbox file cannot be opened or is not a voxpipe outbox."""


class Outbox:
    """A SQLite outbox file (created if missing, parent directories included).

    :raises OutboxError: the file is not an SQLite database or has a newer schema.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise OutboxError(f"{self.path}: no such outbox")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=BUSY_TIMEOUT_MS / 1000)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL for claims and outcomes: in WAL mode they survive a process crash; a power cut may
            # roll back the last outcomes, which only means a repeat under the same webhook-id.
            # enqueue() switches to FULL for its own transaction: a new event must survive anything.
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError(f"{self.path}: outbox schema {version} is newer than this voxpipe ({SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"{self.path}: not a usable outbox: {exc}") from None
        self._closed = False

    # ------------------------------------------------------------------ writing

    def enqueue(self, *, endpoint: str, body: bytes, source: str, pipeline: str, recording_id: str,
                first_attempt_at: float | None = None, now: float | None = None,
                event_id: str | None = None) -> OutboxEvent:
        """Store a new event durably (fsynced) and return it.

        The event is ``pending`` with its first attempt at ``first_attempt_at`` (default
        now), or ``disabled`` when its endpoint is disabled. An ``event_id`` already in
        the outbox (the same fact announced again, see
        :func:`voxpipe_webhook.events.event_id`) is not stored twice: the existing event is
        returned unchanged, whatever its state.
        """
        now = time.time() if now is None else now
        event_id = event_id or new_event_id()
        with self._lock, _synchronous(self._db, "FULL"), self._transaction():
            existing = self._db.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None
            if not existing:
                self._insert(event_id, endpoint, body, source, pipeline, recording_id, first_attempt_at, now)
        event = self.get(event_id)
        assert event is not None
        return replace(event, duplicate=existing)

    def _insert(self, event_id: str, endpoint: str, body: bytes, source: str, pipeline: str, recording_id: str,
                first_attempt_at: float | None, now: float) -> None:
        disabled = self._db.execute("SELECT 1 FROM endpoints WHERE url = ?", (endpoint,)).fetchone()
        state = State.DISABLED if disabled else State.PENDING
        self._db.execute(
            f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, NULL, NULL, ?, NULL)",
            (event_id, endpoint, source, pipeline, recording_id, body, state.value, now,
             (first_attempt_at if first_attempt_at is not None else now) if not disabled else None,
             "endpoint disabled (HTTP 410)" if disabled else None))

    def claim(self, endpoint: str, *, now: float | None = None, limit: int = MAX_CLAIM, lease: float = 60.0,
              ids: Iterable[str] | None = None) -> list[OutboxEvent]:
        """Take up to ``limit`` (at most :data:`MAX_CLAIM`) pending events of ``endpoint`` that are due,
        oldest due first; only those in ``ids`` when given.

        Each one's ``next_attempt_at`` moves ``lease`` seconds ahead, so no other claim
        takes it while it is in flight; :meth:`record` sets the real next time.
        """
        now = time.time() if now is None else now
        limit = max(0, min(limit, MAX_CLAIM))
        query = (f"SELECT {_COLUMNS} FROM events WHERE endpoint = ? AND state = 'pending' AND next_attempt_at <= ?")
        args: list = [endpoint, now]
        if ids is not None:
            wanted = list(ids)[:MAX_CLAIM]
            query += f" AND id IN ({', '.join('?' * len(wanted)) or 'NULL'})"
            args += wanted
        query += " ORDER BY next_attempt_at, created_at LIMIT ?"
        args.append(limit)
        with self._lock, self._transaction():
            rows = self._db.execute(query, args).fetchall()
            self._db.executemany("UPDATE events SET next_attempt_at = ? WHERE id = ?",
                                 [(now + lease, row[0]) for row in rows])
        return [OutboxEvent._from_row(row) for row in rows]

    def record(self, event_id: str, decision: Decision, *, status: int | None, error: str | None,
               now: float | None = None) -> None:
        """Record one attempt's outcome: state, attempts + 1, last status/error, next time.

        A ``disabled`` decision (410) also disables the endpoint and moves its other
        pending events to ``disabled``.
        """
        now = time.time() if now is None else now
        note = (error or decision.note or None)
        note = note[:MAX_ERROR_CHARS] if note else None
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE events SET state = ?, attempts = attempts + 1, next_attempt_at = ?, last_attempt_at = ?, "
                "last_status = ?, last_error = ?, delivered_at = ? WHERE id = ?",
                (decision.state.value, decision.next_attempt_at, now, status,
                 None if decision.state is State.DELIVERED else note,
                 now if decision.state is State.DELIVERED else None, event_id))
            if decision.state is State.DISABLED:
                endpoint = self._db.execute("SELECT endpoint FROM events WHERE id = ?", (event_id,)).fetchone()[0]
                self._db.execute("INSERT OR REPLACE INTO endpoints (url, disabled_at, reason) VALUES (?, ?, ?)",
                                 (endpoint, now, f"HTTP {status} for event {event_id}"))
                self._db.execute("UPDATE events SET state = 'disabled', next_attempt_at = NULL, "
                                 "last_error = 'endpoint disabled (HTTP 410)' "
                                 "WHERE endpoint = ? AND state = 'pending'", (endpoint,))

    def release(self, event_ids: Iterable[str], *, now: float | None = None) -> None:
        """Give back claims whose attempt never finished (shutdown): the pending ones are due now."""
        now = time.time() if now is None else now
        with self._lock, self._transaction():
            self._db.executemany("UPDATE events SET next_attempt_at = ? WHERE id = ? AND state = 'pending'",
                                 [(now, i) for i in event_ids])

    def reopen(self, event_ids: Iterable[str] = (), *, states: Iterable[State] = (),
               now: float | None = None) -> list[OutboxEvent]:
        """Make events pending and due now (operator redelivery); re-enables their endpoints.

        :param event_ids: events to reopen, in any state.
        :param states: also reopen every event in these states.
        :raises KeyError: an id is not in the outbox.
        """
        now = time.time() if now is None else now
        ids = list(event_ids)
        with self._lock, self._transaction():
            for event_id in ids:
                if self._db.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is None:
                    raise KeyError(event_id)
            for state in states:
                ids += [r[0] for r in self._db.execute("SELECT id FROM events WHERE state = ? ORDER BY created_at",
                                                       (State(state).value,))]
            ids = list(dict.fromkeys(ids))
            for event_id in ids:
                endpoint = self._db.execute("UPDATE events SET state = 'pending', next_attempt_at = ?, "
                                            "delivered_at = NULL WHERE id = ? RETURNING endpoint",
                                            (now, event_id)).fetchone()[0]
                self._db.execute("DELETE FROM endpoints WHERE url = ?", (endpoint,))
        return [e for e in (self.get(i) for i in ids) if e is not None]

    def prune(self, *, older_than: float = DELIVERED_RETENTION, now: float | None = None) -> int:
        """Delete delivered events delivered more than ``older_than`` seconds ago; returns how many."""
        now = time.time() if now is None else now
        with self._lock, self._transaction():
            cur = self._db.execute("DELETE FROM events WHERE state = 'delivered' AND delivered_at < ?",
                                   (now - older_than,))
            return cur.rowcount

    # ------------------------------------------------------------------ reading

    def get(self, event_id: str) -> OutboxEvent | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
        return OutboxEvent._from_row(row) if row else None

    def events(self, states: Iterable[State] | None = None, *, limit: int | None = None) -> list[OutboxEvent]:
        """Events in the given states (default all), oldest first."""
        query = f"SELECT {_COLUMNS} FROM events"
        args: list = []
        if states is not None:
            values = [State(s).value for s in states]
            query += f" WHERE state IN ({', '.join('?' * len(values))})"
            args += values
        query += " ORDER BY created_at, id"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [OutboxEvent._from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Events per state (every state present, zeros included)."""
        out = {s.value: 0 for s in State}
        with self._lock:
            for state, n in self._db.execute("SELECT state, count(*) FROM events GROUP BY state"):
                out[state] = n
        return out

    def next_due(self, endpoint: str) -> float | None:
        """The earliest ``next_attempt_at`` of the endpoint's pending events, or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT min(next_attempt_at) FROM events WHERE endpoint = ? AND state = 'pending'",
                                   (endpoint,)).fetchone()
        return row[0]

    def disabled_endpoints(self) -> dict[str, tuple[float, str]]:
        """Disabled endpoint URLs with when (Unix seconds) and why."""
        with self._lock:
            return {url: (at, reason) for url, at, reason in self._db.execute("SELECT url, disabled_at, reason FROM endpoints")}

    # ------------------------------------------------------------------ plumbing

    def _transaction(self):
        return Transaction(self._db)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Outbox {self.path}>"


class _synchronous:
    """``PRAGMA synchronous`` for one transaction, then back to NORMAL (set outside transactions only)."""

    def __init__(self, db: sqlite3.Connection, level: str):
        self.db, self.level = db, level

    def __enter__(self) -> None:
        self.db.execute(f"PRAGMA synchronous={self.level}")

    def __exit__(self, *exc: object) -> None:
        self.db.execute("PRAGMA synchronous=NORMAL")
