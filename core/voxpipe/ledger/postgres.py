"""The PostgreSQL ledger: one database shared by every worker of a pipeline.

Selected by ``ledger: postgresql://user:${PASSWORD}@host/db`` (libpq URL; the password
appears in no message, log line or report: see :func:`~voxpipe.ledger.locate.redact_url`).
Needs ``pip install 'voxpipe[postgres]'`` (psycopg 3 and psycopg_pool).

Rows are scoped by pipeline name and source identity, so any number of pipelines and
tenants share one database without collisions. Claims follow the job-queue pattern
(``shared/reference/postgres.md``): ``UPDATE ... WHERE (source, id) IN (SELECT ... FOR
UPDATE SKIP LOCKED)``, so concurrent workers never claim the same recording and never
wait on each other's row locks. Every change under a lease carries its token in the
``WHERE`` clause (the fence of :mod:`voxpipe.ledger.leases`). Lease times come from the
database clock (``clock_timestamp()``), so clock skew between worker machines does not
shorten or lengthen leases.

Each method is one transaction on a pooled connection; :meth:`PostgresLedger.finish`
writes the final state and the run's outcome in one statement. Driver errors become
:class:`LedgerError` naming the redacted URL.

Durability: :meth:`~PostgresLedger.finish`, runs, discovery and administration commit
durably (WAL flushed). The in-between changes of an attempt (``claim``,
``begin_attempt``, ``checkpoint``, ``verified``) commit with ``synchronous_commit =
off``: the server flushes them within ``wal_writer_delay`` (200 ms by default), and a
database crash can lose the last of them but never reorders or corrupts anything. What
such a loss means is repeated work only: a lost claim or ``verified`` is claimed and
done again (fencing refuses the stale holder, whose worker id no longer matches); a lost
checkpoint resumes from the previous one, as after a crash between a sink's fsync and
its checkpoint. One flush per recording instead of four is what lets one worker do
hundreds of recordings per second on a disk whose fsync takes milliseconds
(``benchmarks/ledger_scale.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from .interface import (OPEN_STATES, TRANSITIONS, Claim, Finish, Lease, LeaseBusy, LeaseLost, LedgerError,
                        QueueStatus, RecordingState, RunHandle, WorkerInfo)
from .locate import redact_url
from .pg_schema import MIGRATION_LOCK, MIGRATIONS, SCHEMA_VERSION

#: Connections per process (the async facade runs at most this many calls at once, plus headroom).
POOL_SIZE = 10
#: Seconds to wait for a connection (at start-up and from the pool).
CONNECT_TIMEOUT = 15.0
#: Seconds a statement may run before the server cancels it.
STATEMENT_TIMEOUT_MS = 30_000
#: Seconds a call keeps retrying a lost connection before it raises LedgerError.
RETRY_SECONDS = 60.0
#: First and longest pause between those retries, seconds.
RETRY_FIRST_DELAY, RETRY_MAX_DELAY = 0.2, 5.0

_NOW = "extract(epoch from clock_timestamp())"
_COLUMNS = ("source, id, state, reason, message, attempts, size, etag, resume_offset, checkpoint, sha256, stored, "
            "verdicts, updated_at, worker, lease_token, lease_until, run_id")
_R_COLUMNS = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
_JSON_FIELDS = ("checkpoint", "stored", "verdicts")
_SCOPE = "pipeline = %(pipeline)s AND identity = %(identity)s"
_R_SCOPE = "r.pipeline = %(pipeline)s AND r.identity = %(identity)s"
_OPEN = "state IN ('queued', 'downloading', 'verified')"
#: The claim rule of :func:`voxpipe.ledger.leases.claim_decision`, in SQL.
_CLAIMABLE = f"{_OPEN} AND (lease_until IS NULL OR lease_until < {_NOW})"
_TAKEOVER = "(lease_until IS NOT NULL OR (state <> 'queued' AND worker IS NOT NULL))"

T = TypeVar("T")
log = logging.getLogger("voxpipe.ledger")


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Driver errors become LedgerError naming the redacted URL, never the password.

    Lost connections (a database restart, a network cut: ``OperationalError``, or no
    connection from the pool in time) are retried with backoff for up to
    :data:`RETRY_SECONDS`, so a short outage only delays the caller (a worker thread).
    A retried change may have committed before its answer was lost: every method is safe
    to repeat (fenced updates match again, outcomes are upserts), except that an attempt
    may be counted twice or a claim's rows wait for their lease to expire.
    """

    @functools.wraps(method)
    def wrapper(self: "PostgresLedger", *args: Any, **kwargs: Any) -> T:
        deadline = time.monotonic() + RETRY_SECONDS
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                return method(self, *args, **kwargs)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if self._closed.is_set() or time.monotonic() + delay > deadline:
                    raise LedgerError(f"{self.location}: {self._scrub(str(exc).strip())}") from None
                log.warning("ledger %s: %s; retrying in %.1f s", self.location,
                            self._scrub(str(exc).strip().splitlines()[0]), delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
            except psycopg.Error as exc:
                raise LedgerError(f"{self.location}: {self._scrub(str(exc).strip())}") from None

    return wrapper


class PostgresLedger:
    """The ledger in the PostgreSQL database at ``url``, scoped to ``pipeline`` and ``identity``.

    :raises LedgerError: the database cannot be reached, or its schema is newer than this
        voxpipe supports.
    """

    shared = True

    def __init__(self, url: str, *, pipeline: str, identity: str, pool_size: int = POOL_SIZE):
        self.location = redact_url(url)
        self.pipeline, self.identity = pipeline, identity
        parts = urlsplit(url)
        self._secrets = [s for s in [parts.password, *parse_qs(parts.query).get("password", [])] if s]
        self._scope = {"pipeline": pipeline, "identity": identity}
        self._closed = threading.Event()
        try:
            self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, timeout=CONNECT_TIMEOUT,
                                        kwargs={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                                                "connect_timeout": int(CONNECT_TIMEOUT)})
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (psycopg.Error, PoolTimeout) as exc:
            raise LedgerError(f"{self.location}: cannot connect: {self._scrub(str(exc).strip())}") from None
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @_translated
    def _migrate(self) -> None:
        with self._pool.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE SCHEMA IF NOT EXISTS voxpipe")
                conn.execute("CREATE TABLE IF NOT EXISTS voxpipe.schema_migrations (version integer PRIMARY KEY, "
                             f"applied_at double precision NOT NULL DEFAULT {_NOW})")
                row = conn.execute("SELECT max(version) FROM voxpipe.schema_migrations").fetchone()
                current = row[0] or 0
                if current > SCHEMA_VERSION:
                    raise LedgerError(f"{self.location}: ledger schema version {current} is newer than this voxpipe "
                                      f"supports ({SCHEMA_VERSION}); upgrade voxpipe on every worker")
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    conn.execute(MIGRATIONS[version])
                    conn.execute("INSERT INTO voxpipe.schema_migrations (version) VALUES (%s)", (version,))

    def connection(self):
        """A pooled connection to the ledger's database, as a context manager (committed on
        exit), for components that keep their own tables beside the ledger's in the
        ``voxpipe`` schema (the webhook outbox). Driver errors are raised as they are."""
        return self._pool.connection()

    def schema_version(self) -> int:
        """The schema version applied to the database."""
        return self._one("SELECT max(version) FROM voxpipe.schema_migrations", {})[0]

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresLedger({self.location!r}, pipeline={self.pipeline!r}, identity={self.identity!r})"

    # ------------------------------------------------------------------ plumbing

    def _one(self, sql: str, params: Mapping[str, Any], *, durable: bool = True) -> tuple | None:
        rows = self._all(sql, params, durable=durable)
        return rows[0] if rows else None

    def _all(self, sql: str, params: Mapping[str, Any], *, durable: bool = True) -> list[tuple]:
        with self._pool.connection() as conn:
            if not durable:  # see "Durability" in the module docstring
                conn.execute("SET LOCAL synchronous_commit TO OFF")
            cur = conn.cursor(row_factory=tuple_row).execute(sql, {**self._scope, **params})
            return cur.fetchall() if cur.description else []

    # ------------------------------------------------------------------ reads

    @_translated
    def get(self, source: str, recording_id: str) -> RecordingState | None:
        row = self._one(f"SELECT {_COLUMNS} FROM voxpipe.recordings WHERE {_SCOPE} AND source = %(source)s "
                        "AND id = %(id)s", {"source": source, "id": recording_id})
        return _row(row) if row else None

    @_translated
    def recordings(self, state: str | None = None, *, limit: int | None = None) -> list[RecordingState]:
        sql = f"SELECT {_COLUMNS} FROM voxpipe.recordings WHERE {_SCOPE}"
        if state:
            sql += " AND state = %(state)s"
        sql += " ORDER BY source, id"
        if limit is not None:
            sql += " LIMIT %(limit)s"
        return [_row(r) for r in self._all(sql, {"state": state, "limit": limit})]

    @_translated
    def counts(self) -> dict[str, int]:
        return dict(self._all(f"SELECT state, count(*) FROM voxpipe.recordings WHERE {_SCOPE} GROUP BY state", {}))

    @_translated
    def held_checkpoints(self) -> list[dict[str, Any]]:
        rows = self._all(f"SELECT checkpoint FROM voxpipe.recordings WHERE {_SCOPE} AND checkpoint IS NOT NULL "
                         "AND state <> 'stored' ORDER BY source, id", {})
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ runs

    @_translated
    def start_run(self, pipeline: str, *, worker: str, lease_seconds: float) -> RunHandle:
        params = {"worker": worker, "lease": lease_seconds, "lock": f"voxpipe-run:{self.pipeline}:{self.identity}"}
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))", params)
            live = ("EXISTS (SELECT 1 FROM voxpipe.workers w WHERE w.run_id = r.run_id AND w.finished_at IS NULL "
                    f"AND w.heartbeat_at >= {_NOW} - %(lease)s)")
            row = cur.execute(f"SELECT run_id FROM voxpipe.runs r WHERE {_SCOPE} AND finished_at IS NULL AND {live} "
                              "ORDER BY run_id DESC LIMIT 1", {**self._scope, **params}).fetchone()
            if row is not None:
                run_id, joined = row[0], True
            else:  # every earlier run of the scope without a live worker ended: close it
                cur.execute(f"UPDATE voxpipe.runs r SET finished_at = {_NOW}, interrupted = true WHERE {_SCOPE} "
                            f"AND finished_at IS NULL", self._scope)
                run_id = cur.execute(f"INSERT INTO voxpipe.runs (pipeline, identity, started_at, lease_seconds) VALUES "
                                     f"(%(pipeline)s, %(identity)s, {_NOW}, %(lease)s) RETURNING run_id",
                                     {**self._scope, **params}).fetchone()[0]
                joined = False
            cur.execute(f"INSERT INTO voxpipe.workers VALUES (%(run)s, %(worker)s, {_NOW}, {_NOW}, NULL) "
                        "ON CONFLICT (run_id, worker) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, "
                        "finished_at = NULL", {"run": run_id, **params})
        return RunHandle(run_id, worker, joined=joined)

    @_translated
    def heartbeat(self, run: RunHandle, leases: Sequence[Lease], *, lease_seconds: float) -> list[Lease]:
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute(f"UPDATE voxpipe.workers SET heartbeat_at = {_NOW} WHERE run_id = %s AND worker = %s",
                        (run.run_id, run.worker))
            if not leases:
                return []
            renewed = cur.execute(
                f"UPDATE voxpipe.recordings r SET lease_until = {_NOW} + %(lease)s "
                "FROM unnest(%(sources)s::text[], %(ids)s::text[], %(tokens)s::bigint[]) AS l(source, id, token) "
                f"WHERE r.pipeline = %(pipeline)s AND r.identity = %(identity)s AND r.source = l.source "
                "AND r.id = l.id AND r.lease_token = l.token AND r.worker = %(worker)s "
                "RETURNING r.source, r.id, r.lease_token",
                {**self._scope, "lease": lease_seconds, "worker": run.worker,
                 "sources": [le.source for le in leases], "ids": [le.id for le in leases],
                 "tokens": [le.token for le in leases]}).fetchall()
        kept = set(renewed)
        return [le for le in leases if (le.source, le.id, le.token) not in kept]

    @_translated
    def finish_run(self, run: RunHandle, *, interrupted: bool) -> bool:
        params = {"run": run.run_id, "worker": run.worker, "interrupted": interrupted,
                  "lock": f"voxpipe-run:{self.pipeline}:{self.identity}"}
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))", params)
            cur.execute(f"UPDATE voxpipe.workers SET finished_at = {_NOW} WHERE run_id = %(run)s AND worker = %(worker)s",
                        params)
            others = cur.execute("SELECT count(*) FROM voxpipe.workers w JOIN voxpipe.runs r USING (run_id) "
                                 "WHERE w.run_id = %(run)s AND w.finished_at IS NULL "
                                 f"AND w.heartbeat_at >= {_NOW} - r.lease_seconds", params).fetchone()[0]
            if others:
                if interrupted:
                    cur.execute("UPDATE voxpipe.runs SET interrupted = true WHERE run_id = %(run)s", params)
                return False
            cur.execute(f"UPDATE voxpipe.runs SET finished_at = {_NOW}, interrupted = interrupted OR %(interrupted)s "
                        "WHERE run_id = %(run)s", params)
        return True

    @_translated
    def runs(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT r.run_id, r.pipeline, r.started_at, r.finished_at, r.interrupted, "
                         "(SELECT count(*) FROM voxpipe.workers w WHERE w.run_id = r.run_id) "
                         f"FROM voxpipe.runs r WHERE {_SCOPE} ORDER BY r.run_id", {})
        keys = ("run_id", "pipeline", "started_at", "finished_at", "interrupted", "workers")
        return [dict(zip(keys, r)) for r in rows]

    @_translated
    def workers(self, run_id: int | None = None) -> list[WorkerInfo]:
        sql = ("SELECT w.run_id, w.worker, w.started_at, w.heartbeat_at, w.finished_at, "
               "(SELECT count(*) FROM voxpipe.recordings x WHERE x.pipeline = r.pipeline AND x.identity = r.identity "
               "AND x.worker = w.worker AND x.lease_until IS NOT NULL) "
               f"FROM voxpipe.workers w JOIN voxpipe.runs r USING (run_id) WHERE {_R_SCOPE}")
        if run_id is not None:
            sql += " AND w.run_id = %(run)s"
        return [WorkerInfo(*r) for r in self._all(sql + " ORDER BY w.started_at", {"run": run_id})]

    @_translated
    def outcomes(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._all("SELECT o.result FROM voxpipe.outcomes o JOIN voxpipe.runs r USING (run_id) "
                         f"WHERE o.run_id = %(run)s AND {_R_SCOPE} "
                         "ORDER BY o.source, o.id", {"run": run_id})
        return [r[0] for r in rows]

    @_translated
    def record_outcome(self, run_id: int, source: str, recording_id: str, status: str,
                       result: dict[str, Any]) -> None:
        with self._pool.connection() as conn:
            conn.execute(_UPSERT_OUTCOME, {"run": run_id, "source": source, "id": recording_id, "status": status,
                                           "result": _jsonb(result)})

    # ------------------------------------------------------------------ the queue

    @_translated
    def begin_discovery(self, run: RunHandle) -> bool:
        # no advisory lock held for the whole discovery (a session lock would pin a pooled
        # connection): the row's state is the lock, and a dead discoverer's is taken over
        row = self._one(
            "UPDATE voxpipe.runs r SET discovery = 'running', discoverer = %(worker)s WHERE run_id = %(run)s AND "
            "(discovery = 'pending' OR (discovery = 'running' AND r.discoverer = %(worker)s) "
            "OR (discovery = 'running' AND NOT EXISTS (SELECT 1 FROM voxpipe.workers w "
            "WHERE w.run_id = r.run_id AND w.worker = r.discoverer AND w.finished_at IS NULL "
            f"AND w.heartbeat_at >= {_NOW} - r.lease_seconds))) RETURNING 1",
            {"run": run.run_id, "worker": run.worker})
        return row is not None

    @_translated
    def end_discovery(self, run: RunHandle, *, error: str | None = None) -> None:
        with self._pool.connection() as conn:
            conn.execute("UPDATE voxpipe.runs SET discovery = 'done', discovery_error = %s WHERE run_id = %s "
                         "AND discoverer = %s", (error, run.run_id, run.worker))

    @_translated
    def enqueue(self, run: RunHandle, source: str, specs: Sequence[tuple[str, Mapping[str, Any]]], *,
                max_attempts_total: int) -> list[RecordingState]:
        unique = dict(specs)  # one row per id (ON CONFLICT cannot touch a row twice)
        if not unique:
            return []
        params = {**self._scope, "source": source, "run": run.run_id, "max": max_attempts_total,
                  "ids": list(unique), "specs": [_jsonb(dict(m)) for m in unique.values()]}
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            cur.execute(
                "INSERT INTO voxpipe.recordings AS r (pipeline, identity, source, id, state, updated_at, run_id, spec) "
                f"SELECT %(pipeline)s, %(identity)s, %(source)s, x.id, 'queued', {_NOW}, %(run)s, x.spec "
                "FROM unnest(%(ids)s::text[], %(specs)s::jsonb[]) AS x(id, spec) "
                "ON CONFLICT (pipeline, identity, source, id) DO UPDATE SET run_id = EXCLUDED.run_id, "
                "spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at, "
                "state = CASE WHEN r.state = 'failed' THEN 'queued' ELSE r.state END "
                "WHERE r.state <> 'stored' AND NOT (r.state = 'failed' AND r.attempts >= %(max)s)", params)
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM voxpipe.recordings WHERE {_SCOPE} AND source = %(source)s "
                "AND id = ANY(%(ids)s) AND (state = 'stored' OR (state = 'failed' AND attempts >= %(max)s)) "
                "ORDER BY id", params).fetchall()
        return [_row(r) for r in rows]

    @_translated
    def claim(self, run: RunHandle, *, limit: int, lease_seconds: float) -> list[Claim]:
        rows = self._all(
            f"WITH picked AS (SELECT source, id, state, {_TAKEOVER} AS takeover FROM voxpipe.recordings "
            f"WHERE {_SCOPE} AND run_id = %(run)s AND {_CLAIMABLE} ORDER BY id LIMIT %(limit)s "
            "FOR UPDATE SKIP LOCKED) "
            f"UPDATE voxpipe.recordings r SET worker = %(worker)s, lease_token = r.lease_token + 1, "
            f"lease_until = {_NOW} + %(lease)s, state = 'downloading', attempts = r.attempts + 1, "
            f"updated_at = {_NOW} FROM picked WHERE r.pipeline = %(pipeline)s "
            "AND r.identity = %(identity)s AND r.source = picked.source AND r.id = picked.id "
            f"RETURNING {_R_COLUMNS}, picked.state, r.spec, picked.takeover",
            {"run": run.run_id, "limit": limit, "worker": run.worker, "lease": lease_seconds}, durable=False)
        claims = []
        for row in sorted(rows, key=lambda r: r[1]):
            state = _row(row[:-3])
            lease = Lease(state.source, state.id, run.worker, state.lease_token, state.lease_until)
            before = dataclasses.replace(state, state=row[-3], attempts=state.attempts - 1)
            claims.append(Claim(lease, row[-2] or {}, before, takeover=bool(row[-1]), attempt=state.attempts))
        return claims

    @_translated
    def queue_status(self, run: RunHandle) -> QueueStatus:
        rows = self._all(f"SELECT state, count(*), count(*) FILTER (WHERE lease_until IS NULL OR lease_until < {_NOW}) "
                         f"FROM voxpipe.recordings WHERE {_SCOPE} AND run_id = %(run)s AND {_OPEN} GROUP BY state",
                         {"run": run.run_id})
        discovery = self._one("SELECT discovery FROM voxpipe.runs WHERE run_id = %(run)s", {"run": run.run_id})
        return QueueStatus(open={r[0]: r[1] for r in rows}, claimable=sum(r[2] for r in rows),
                           discovery=discovery[0] if discovery else "done")

    # ------------------------------------------------------------------ one recording (fenced)

    @_translated
    def acquire(self, source: str, recording_id: str, *, run: RunHandle, lease_seconds: float,
                metadata: Mapping[str, Any] | None = None) -> Lease:
        params = {**self._scope, "source": source, "id": recording_id, "run": run.run_id, "worker": run.worker,
                  "lease": lease_seconds, "spec": _jsonb(dict(metadata or {}))}
        row = self._one(
            "INSERT INTO voxpipe.recordings AS r (pipeline, identity, source, id, state, updated_at, run_id, spec, "
            f"worker, lease_token, lease_until) VALUES (%(pipeline)s, %(identity)s, %(source)s, %(id)s, 'queued', "
            f"{_NOW}, %(run)s, %(spec)s, %(worker)s, 1, {_NOW} + %(lease)s) "
            "ON CONFLICT (pipeline, identity, source, id) DO UPDATE SET worker = EXCLUDED.worker, "
            "lease_token = r.lease_token + 1, lease_until = EXCLUDED.lease_until, run_id = EXCLUDED.run_id "
            f"WHERE r.lease_until IS NULL OR r.lease_until < {_NOW} RETURNING lease_token, lease_until", params)
        if row is None:
            current = self.get(source, recording_id)
            raise LeaseBusy(f"{self.location}: recording {recording_id} is held by worker "
                            f"{current.worker if current else '?'} until its lease expires")
        return Lease(source, recording_id, run.worker, row[0], row[1])

    @_translated
    def begin_attempt(self, lease: Lease) -> int:
        row = self._fenced(lease, "downloading", "attempts = attempts + 1", {}, returning="attempts", durable=False)
        return int(row[0])

    @_translated
    def checkpoint(self, lease: Lease, *, resume_offset: int, checkpoint: dict[str, Any], etag: str | None,
                   size: int | None) -> None:
        self._fenced(lease, "downloading", *_sets({"resume_offset": resume_offset, "checkpoint": checkpoint,
                                                   "etag": etag, "size": size}), durable=False)

    @_translated
    def clear_checkpoint(self, lease: Lease) -> None:
        self._fenced(lease, "downloading", *_sets({"resume_offset": 0, "checkpoint": None}))

    @_translated
    def verified(self, lease: Lease, *, sha256: str | None, verdicts: list[dict[str, Any]]) -> None:
        self._fenced(lease, "verified", *_sets({"sha256": sha256, "verdicts": verdicts}), durable=False)

    @_translated
    def finish(self, lease: Lease, finish: Finish, *, run_id: int) -> None:
        sets, params = _sets(finish.columns())
        sets += ", lease_until = NULL"
        if finish.outcome is None:
            self._fenced(lease, finish.state, sets, params)
            return
        status, result = finish.outcome
        update, update_params = self._fenced_sql(lease, finish.state, sets, params, returning="source, id")
        row = self._one(f"WITH changed AS ({update}) INSERT INTO voxpipe.outcomes (run_id, source, id, status, result) "
                        "SELECT %(run)s, source, id, %(status)s, %(result)s FROM changed "
                        "ON CONFLICT (run_id, source, id) DO UPDATE SET status = EXCLUDED.status, "
                        "result = EXCLUDED.result RETURNING 1",
                        {**update_params, "run": run_id, "status": status, "result": _jsonb(result)})
        if row is None:
            self._refused(lease, finish.state)

    def _fenced_sql(self, lease: Lease, new: str, sets: str, params: Mapping[str, Any], *,
                    returning: str = "state") -> tuple[str, dict[str, Any]]:
        previous = [s for s, allowed in TRANSITIONS.items() if s is not None and new in allowed]
        sql = (f"UPDATE voxpipe.recordings SET state = %(new)s, updated_at = {_NOW}, {sets} WHERE {_SCOPE} "
               "AND source = %(l_source)s AND id = %(l_id)s AND worker = %(l_worker)s AND lease_token = %(l_token)s "
               f"AND state = ANY(%(previous)s) RETURNING {returning}")
        return sql, {**self._scope, **params, "new": new, "previous": previous, "l_source": lease.source,
                     "l_id": lease.id, "l_worker": lease.worker, "l_token": lease.token}

    def _fenced(self, lease: Lease, new: str, sets: str, params: Mapping[str, Any], *,
                returning: str = "state", durable: bool = True) -> tuple:
        sql, full = self._fenced_sql(lease, new, sets, params, returning=returning)
        row = self._one(sql, full, durable=durable)
        if row is None:
            self._refused(lease, new)
        return row

    def _refused(self, lease: Lease, new: str) -> None:
        """Why a fenced change matched no row: the lease was lost, or the change is illegal."""
        current = self.get(lease.source, lease.id)
        if current is None or current.lease_token != lease.token or current.worker != lease.worker:
            holder = f"held by {current.worker} (lease {current.lease_token})" if current else "forgotten"
            raise LeaseLost(f"{self.location}: recording {lease.id}: lease {lease.token} of {lease.worker} lost; "
                            f"now {holder}")
        raise LedgerError(f"recording {lease.id}: illegal ledger transition {current.state} -> {new}")

    # ------------------------------------------------------------------ administration

    @_translated
    def reset(self, *, source: str | None = None, ids: Iterable[str] | None = None, state: str = "failed") -> int:
        sql = (f"UPDATE voxpipe.recordings SET state = 'queued', attempts = 0, reason = NULL, message = NULL, "
               f"lease_until = NULL, updated_at = {_NOW} WHERE {_SCOPE} AND state = %(state)s")
        params: dict[str, Any] = {**self._scope, "state": state}
        if source is not None:
            sql += " AND source = %(source)s"
            params["source"] = source
        if ids is not None:
            sql += " AND id = ANY(%(ids)s)"
            params["ids"] = list(ids)
        with self._pool.connection() as conn:
            return conn.execute(sql, params).rowcount

    @_translated
    def forget(self, source: str, recording_id: str) -> bool:
        with self._pool.connection() as conn:
            return conn.execute(f"DELETE FROM voxpipe.recordings WHERE {_SCOPE} AND source = %(source)s "
                                "AND id = %(id)s", {**self._scope, "source": source, "id": recording_id}).rowcount == 1


_UPSERT_OUTCOME = ("INSERT INTO voxpipe.outcomes (run_id, source, id, status, result) VALUES (%(run)s, %(source)s, "
                   "%(id)s, %(status)s, %(result)s) ON CONFLICT (run_id, source, id) DO UPDATE SET "
                   "status = EXCLUDED.status, result = EXCLUDED.result")


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)


_dumps = functools.partial(json.dumps, default=str)


def _sets(fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``col = %(f_col)s, ...`` and its parameters (JSON columns as jsonb)."""
    sql = ", ".join(f"{k} = %(f_{k})s" for k in fields)
    return sql, {f"f_{k}": (_jsonb(v) if k in _JSON_FIELDS else v) for k, v in fields.items()}


def _row(row: Sequence[Any]) -> RecordingState:
    (source, rid, state, reason, message, attempts, size, etag, resume_offset, checkpoint, sha256, stored, verdicts,
     updated_at, worker, lease_token, lease_until, run_id) = row
    return RecordingState(source, rid, state, reason, message, attempts, size, etag, resume_offset, checkpoint,
                          sha256, stored, verdicts, updated_at, worker, lease_token, lease_until, run_id)


__all__ = ["PostgresLedger", "SCHEMA_VERSION", "OPEN_STATES"]
