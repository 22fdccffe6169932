"""The webhook outbox in a shared PostgreSQL ledger's database.

With ``ledger: postgresql://...`` every worker of a pipeline enqueues into, and delivers
from, the same tables, so an event enqueued by a worker that died (or whose delivery was
in flight when it died) is delivered by another once its claim's lease has run out,
always under its ``webhook-id``. The interface and semantics are those of the SQLite
:class:`~voxpipe_webhook.outbox.Outbox` (same states, same lease-as-``next_attempt_at``
claims), with ``FOR UPDATE SKIP LOCKED`` so concurrent workers never claim one event.

Rows are scoped by pipeline and source identity (like the ledger's), in the ``voxpipe``
schema: ``webhook_events`` and ``webhook_endpoints`` (disabled endpoints), created here
(version in ``voxpipe.component_schema``). Connections come from the ledger's pool
(:meth:`voxpipe.ledger.postgres.PostgresLedger.connection`); every method is one
transaction; PostgreSQL commits durably, so :meth:`PgOutbox.enqueue` returns only once
the event is on disk.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import psycopg

from .outbox import _COLUMNS, DELIVERED_RETENTION, MAX_CLAIM, MAX_ERROR_CHARS, OutboxError, OutboxEvent, new_event_id
from .schedule import Decision, State

SCHEMA_VERSION = 1
_COMPONENT = "webhook-outbox"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS voxpipe.component_schema (component text PRIMARY KEY, version integer NOT NULL);
CREATE TABLE IF NOT EXISTS voxpipe.webhook_events (
    scope           text NOT NULL,
    id              text NOT NULL,
    endpoint        text NOT NULL,
    source          text NOT NULL,
    pipeline        text NOT NULL,
    recording_id    text NOT NULL,
    body            bytea NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      double precision NOT NULL,
    next_attempt_at double precision,
    last_attempt_at double precision,
    last_status     integer,
    last_error      text,
    delivered_at    double precision,
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS webhook_events_due ON voxpipe.webhook_events (scope, endpoint, state, next_attempt_at);
CREATE TABLE IF NOT EXISTS voxpipe.webhook_endpoints (
    scope       text NOT NULL,
    url         text NOT NULL,
    disabled_at double precision NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (scope, url)
);
"""
#: Key of the transaction advisory lock held while creating the tables ("vxwebhk" in ASCII).
_SCHEMA_LOCK = 0x767877656268

_SELECT = f"SELECT {_COLUMNS} FROM voxpipe.webhook_events"
_CLAIMED = ", ".join("picked.due" if c.strip() == "next_attempt_at" else f"e.{c.strip()}" for c in _COLUMNS.split(","))


class PgOutbox:
    """The outbox of one pipeline and source identity in a shared ledger's database.

    :param ledger: a :class:`voxpipe.ledger.postgres.PostgresLedger` (its pool and scope).
    :raises OutboxError: the tables cannot be created, or their version is newer than this voxpipe's.
    """

    def __init__(self, ledger: Any):
        self._ledger = ledger
        self.path = f"{ledger.location} (webhook outbox)"  # for messages, like Outbox.path; no password
        self.scope = f"{ledger.pipeline}\x1f{ledger.identity}"
        self._closed = False
        try:
            with ledger.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA)
                row = conn.execute("SELECT version FROM voxpipe.component_schema WHERE component = %s",
                                   (_COMPONENT,)).fetchone()
                if row and row[0] > SCHEMA_VERSION:
                    raise OutboxError(f"{self.path}: outbox schema {row[0]} is newer than this voxpipe "
                                      f"({SCHEMA_VERSION})")
                conn.execute("INSERT INTO voxpipe.component_schema VALUES (%s, %s) ON CONFLICT (component) "
                             "DO UPDATE SET version = EXCLUDED.version", (_COMPONENT, SCHEMA_VERSION))
        except psycopg.Error as exc:
            raise OutboxError(f"{self.path}: not a usable outbox: {type(exc).__name__}") from None

    def _run(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        with self._ledger.connection() as conn:
            cur = conn.execute(sql, {"scope": self.scope, **params})
            return cur.fetchall() if cur.description else []

    # ------------------------------------------------------------------ writing

    def enqueue(self, *, endpoint: str, body: bytes, source: str, pipeline: str, recording_id: str,
                first_attempt_at: float | None = None, now: float | None = None,
                event_id: str | None = None) -> OutboxEvent:
        """Store a new event durably and return it (see :meth:`Outbox.enqueue`)."""
        now = time.time() if now is None else now
        params = {"id": event_id or new_event_id(), "endpoint": endpoint, "source": source, "pipeline": pipeline,
                  "recording_id": recording_id, "body": body, "now": now,
                  "first": first_attempt_at if first_attempt_at is not None else now}
        rows = self._run(
            f"INSERT INTO voxpipe.webhook_events (scope, {_COLUMNS}) SELECT %(scope)s, %(id)s, %(endpoint)s, "
            "%(source)s, %(pipeline)s, %(recording_id)s, %(body)s, CASE WHEN d.url IS NULL THEN 'pending' "
            "ELSE 'disabled' END, 0, %(now)s, CASE WHEN d.url IS NULL THEN %(first)s END, NULL, NULL, "
            "CASE WHEN d.url IS NOT NULL THEN 'endpoint disabled (HTTP 410)' END, NULL "
            "FROM (SELECT 1) AS one LEFT JOIN voxpipe.webhook_endpoints d ON d.scope = %(scope)s "
            f"AND d.url = %(endpoint)s RETURNING {_COLUMNS}", params)
        return OutboxEvent._from_row(rows[0])

    def claim(self, endpoint: str, *, now: float | None = None, limit: int = MAX_CLAIM, lease: float = 60.0,
              ids: Iterable[str] | None = None) -> list[OutboxEvent]:
        """Take up to ``limit`` due pending events of ``endpoint`` (see :meth:`Outbox.claim`);
        concurrent claims skip each other's rows."""
        now = time.time() if now is None else now
        limit = max(0, min(limit, MAX_CLAIM))
        params: dict[str, Any] = {"endpoint": endpoint, "now": now, "limit": limit, "until": now + lease}
        only = ""
        if ids is not None:
            params["ids"] = list(ids)[:MAX_CLAIM]
            only = " AND id = ANY(%(ids)s)"
        rows = self._run(
            "WITH picked AS (SELECT id, next_attempt_at AS due FROM voxpipe.webhook_events WHERE scope = %(scope)s "
            f"AND endpoint = %(endpoint)s AND state = 'pending' AND next_attempt_at <= %(now)s{only} "
            "ORDER BY next_attempt_at, created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
            "UPDATE voxpipe.webhook_events e SET next_attempt_at = %(until)s FROM picked "
            f"WHERE e.scope = %(scope)s AND e.id = picked.id RETURNING {_CLAIMED}", params)
        # like Outbox.claim, each event carries the due time it was claimed at, not the lease end
        return sorted((OutboxEvent._from_row(r) for r in rows), key=lambda e: (e.next_attempt_at, e.created_at))

    def record(self, event_id: str, decision: Decision, *, status: int | None, error: str | None,
               now: float | None = None) -> None:
        """Record one attempt's outcome (see :meth:`Outbox.record`)."""
        now = time.time() if now is None else now
        note = (error or decision.note or None)
        note = note[:MAX_ERROR_CHARS] if note else None
        delivered = decision.state is State.DELIVERED
        with self._ledger.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE voxpipe.webhook_events SET state = %(state)s, attempts = attempts + 1, "
                "next_attempt_at = %(next)s, last_attempt_at = %(now)s, last_status = %(status)s, "
                "last_error = %(error)s, delivered_at = %(delivered)s WHERE scope = %(scope)s AND id = %(id)s "
                "RETURNING endpoint",
                {"scope": self.scope, "id": event_id, "state": decision.state.value,
                 "next": decision.next_attempt_at, "now": now, "status": status,
                 "error": None if delivered else note, "delivered": now if delivered else None}).fetchone()
            if decision.state is State.DISABLED and row is not None:
                params = {"scope": self.scope, "url": row[0], "now": now, "reason": f"HTTP {status} for event {event_id}"}
                conn.execute("INSERT INTO voxpipe.webhook_endpoints VALUES (%(scope)s, %(url)s, %(now)s, %(reason)s) "
                             "ON CONFLICT (scope, url) DO UPDATE SET disabled_at = EXCLUDED.disabled_at, "
                             "reason = EXCLUDED.reason", params)
                conn.execute("UPDATE voxpipe.webhook_events SET state = 'disabled', next_attempt_at = NULL, "
                             "last_error = 'endpoint disabled (HTTP 410)' WHERE scope = %(scope)s "
                             "AND endpoint = %(url)s AND state = 'pending'", params)

    def release(self, event_ids: Iterable[str], *, now: float | None = None) -> None:
        """Give back claims whose attempt never finished: the pending ones are due now."""
        now = time.time() if now is None else now
        self._run("UPDATE voxpipe.webhook_events SET next_attempt_at = %(now)s WHERE scope = %(scope)s "
                  "AND id = ANY(%(ids)s) AND state = 'pending'", {"now": now, "ids": list(event_ids)})

    def reopen(self, event_ids: Iterable[str] = (), *, states: Iterable[State] = (),
               now: float | None = None) -> list[OutboxEvent]:
        """Make events pending and due now; re-enables their endpoints (see :meth:`Outbox.reopen`).

        :raises KeyError: an id is not in the outbox.
        """
        now = time.time() if now is None else now
        ids = list(event_ids)
        with self._ledger.connection() as conn, conn.transaction():
            known = {r[0] for r in conn.execute("SELECT id FROM voxpipe.webhook_events WHERE scope = %s "
                                                "AND id = ANY(%s)", (self.scope, ids))}
            for event_id in ids:
                if event_id not in known:
                    raise KeyError(event_id)
            values = [State(s).value for s in states]
            if values:
                ids += [r[0] for r in conn.execute("SELECT id FROM voxpipe.webhook_events WHERE scope = %s "
                                                   "AND state = ANY(%s) ORDER BY created_at", (self.scope, values))]
            ids = list(dict.fromkeys(ids))
            endpoints = [r[0] for r in conn.execute(
                "UPDATE voxpipe.webhook_events SET state = 'pending', next_attempt_at = %s, delivered_at = NULL "
                "WHERE scope = %s AND id = ANY(%s) RETURNING endpoint", (now, self.scope, ids))]
            conn.execute("DELETE FROM voxpipe.webhook_endpoints WHERE scope = %s AND url = ANY(%s)",
                         (self.scope, list(set(endpoints))))
        return [e for e in (self.get(i) for i in ids) if e is not None]

    def prune(self, *, older_than: float = DELIVERED_RETENTION, now: float | None = None) -> int:
        """Delete events delivered more than ``older_than`` seconds ago; returns how many."""
        now = time.time() if now is None else now
        with self._ledger.connection() as conn:
            return conn.execute("DELETE FROM voxpipe.webhook_events WHERE scope = %s AND state = 'delivered' "
                                "AND delivered_at < %s", (self.scope, now - older_than)).rowcount

    # ------------------------------------------------------------------ reading

    def get(self, event_id: str) -> OutboxEvent | None:
        rows = self._run(f"{_SELECT} WHERE scope = %(scope)s AND id = %(id)s", {"id": event_id})
        return OutboxEvent._from_row(rows[0]) if rows else None

    def events(self, states: Iterable[State] | None = None, *, limit: int | None = None) -> list[OutboxEvent]:
        """Events in the given states (default all), oldest first."""
        sql = f"{_SELECT} WHERE scope = %(scope)s"
        params: dict[str, Any] = {"limit": limit}
        if states is not None:
            sql += " AND state = ANY(%(states)s)"
            params["states"] = [State(s).value for s in states]
        sql += " ORDER BY created_at, id" + (" LIMIT %(limit)s" if limit is not None else "")
        return [OutboxEvent._from_row(r) for r in self._run(sql, params)]

    def counts(self) -> dict[str, int]:
        """Events per state (every state present, zeros included)."""
        out = {s.value: 0 for s in State}
        for state, n in self._run("SELECT state, count(*) FROM voxpipe.webhook_events WHERE scope = %(scope)s "
                                  "GROUP BY state", {}):
            out[state] = n
        return out

    def next_due(self, endpoint: str) -> float | None:
        """The earliest ``next_attempt_at`` of the endpoint's pending events, or ``None``."""
        rows = self._run("SELECT min(next_attempt_at) FROM voxpipe.webhook_events WHERE scope = %(scope)s "
                         "AND endpoint = %(endpoint)s AND state = 'pending'", {"endpoint": endpoint})
        return rows[0][0]

    def disabled_endpoints(self) -> dict[str, tuple[float, str]]:
        """Disabled endpoint URLs with when (Unix seconds) and why."""
        return {url: (at, reason) for url, at, reason in self._run(
            "SELECT url, disabled_at, reason FROM voxpipe.webhook_endpoints WHERE scope = %(scope)s", {})}

    def close(self) -> None:
        """Nothing to release (the ledger owns the connections). Idempotent."""
        self._closed = True

    def __enter__(self) -> "PgOutbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PgOutbox {self.path}>"
