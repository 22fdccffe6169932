"""The SQLite ledger: one file per pipeline, one machine (the default backend).

It makes runs idempotent and resumable (see :mod:`voxpipe.ledger.interface` for the
contract and the state table):

- ``stored`` recordings are skipped by later runs (idempotent re-runs);
- ``failed`` ones are retried by later runs until ``attempts`` reaches the pipeline's
  ``max_attempts_total``;
- ``downloading`` with a checkpoint (``resume_offset`` bytes durably on disk in a sink's
  temporary file, with the ``etag`` they came from) is resumed from that offset.

Durability: WAL journal, ``synchronous=FULL``; every state change is its own transaction,
so after ``kill -9`` the database holds the last state each recording reached.

Leases: the file belongs to one machine, and one run of a pipeline at a time holds it
(the run lock), so :meth:`SqliteLedger.acquire` always succeeds: it takes the recording
over from whatever lease a crashed run left, incrementing the token so that a zombie
process's changes are still fenced off. ``shared`` is ``False``: the engine reads the
source's discovery directly instead of a shared queue.

Schema versions (``meta.schema_version``): 1 the original tables; 2 adds the lease
columns (``worker``, ``lease_token``, ``lease_until``, ``run_id``, ``spec``), the run's
discovery state and the ``workers`` table. Opening a version-1 file migrates it in place.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import leases as rules
from .interface import (OPEN_STATES, Claim, Finish, Lease, LeaseLost, LedgerError, QueueStatus, RecordingState,
                        RunHandle, WorkerInfo, check_transition)

SCHEMA_VERSION = 2
_SCHEMA_V1 = """
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
#: Migrations by the version they produce; each runs in one transaction.
_MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE recordings ADD COLUMN worker TEXT;
ALTER TABLE recordings ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recordings ADD COLUMN lease_until REAL;
ALTER TABLE recordings ADD COLUMN run_id INTEGER;
ALTER TABLE recordings ADD COLUMN spec TEXT;
ALTER TABLE runs ADD COLUMN discovery TEXT NOT NULL DEFAULT 'done';
ALTER TABLE runs ADD COLUMN discoverer TEXT;
CREATE TABLE workers (
    run_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (run_id, worker)
);
CREATE INDEX recordings_state ON recordings (state);
""",
}
_COLUMNS = ("source, id, state, reason, message, attempts, size, etag, resume_offset, checkpoint, sha256, stored, "
            "verdicts, updated_at, worker, lease_token, lease_until, run_id")
_JSON_FIELDS = ("checkpoint", "stored", "verdicts")


class SqliteLedger:
    """The ledger database at ``path`` (created if missing). Thread-safe; one connection.

    :raises LedgerError: the file is not a usable ledger (names the path).
    """

    shared = False

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable ledger database: {exc}") from None

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(_SCHEMA_V1):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            fresh = version is None
            if fresh:
                version = 1
            if version > SCHEMA_VERSION:
                raise LedgerError(f"{self.path}: ledger schema version {version} is newer than this voxpipe "
                                  f"supports ({SCHEMA_VERSION}); upgrade voxpipe")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _statements(_MIGRATIONS[target]):
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the database. Idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SqliteLedger({self.location!r})"

    # ------------------------------------------------------------------ reads

    def get(self, source: str, recording_id: str) -> RecordingState | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE source=? AND id=?",
                                   (source, recording_id)).fetchone()
        return _row(row) if row else None

    def recordings(self, state: str | None = None, *, limit: int | None = None) -> list[RecordingState]:
        sql = f"SELECT {_COLUMNS} FROM recordings" + (" WHERE state=?" if state else "") + " ORDER BY source, id"
        args: tuple = (state,) if state else ()
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    def all(self, state: str | None = None) -> list[RecordingState]:
        """Every row (or those in ``state``): :meth:`recordings` without a limit."""
        return self.recordings(state)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall())

    def held_checkpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT checkpoint FROM recordings WHERE checkpoint IS NOT NULL "
                                    "AND state != 'stored' ORDER BY source, id").fetchall()
        return [json.loads(r[0]) for r in rows]

    # ------------------------------------------------------------------ runs

    def start_run(self, pipeline: str, *, worker: str, lease_seconds: float = rules.DEFAULT_LEASE_SECONDS
                  ) -> RunHandle:
        now = time.time()
        with self._lock, _Transaction(self._db):
            cur = self._db.execute("INSERT INTO runs (pipeline, started_at, discovery) VALUES (?, ?, 'pending')",
                                   (pipeline, now))
            run_id = int(cur.lastrowid)
            self._db.execute("INSERT INTO workers VALUES (?, ?, ?, ?, NULL)", (run_id, worker, now, now))
        return RunHandle(run_id, worker, joined=False)

    def heartbeat(self, run: RunHandle, leases: Sequence[Lease], *,
                  lease_seconds: float = rules.DEFAULT_LEASE_SECONDS) -> list[Lease]:
        now = time.time()
        lost = []
        with self._lock, _Transaction(self._db):
            self._db.execute("UPDATE workers SET heartbeat_at=? WHERE run_id=? AND worker=?",
                             (now, run.run_id, run.worker))
            for lease in leases:
                cur = self._db.execute("UPDATE recordings SET lease_until=? WHERE source=? AND id=? AND worker=? "
                                       "AND lease_token=?", (now + lease_seconds, lease.source, lease.id,
                                                             lease.worker, lease.token))
                if cur.rowcount != 1:
                    lost.append(lease)
        return lost

    def finish_run(self, run: RunHandle, *, interrupted: bool) -> bool:
        now = time.time()
        with self._lock, _Transaction(self._db):
            self._db.execute("UPDATE workers SET finished_at=? WHERE run_id=? AND worker=?",
                             (now, run.run_id, run.worker))
            self._db.execute("UPDATE runs SET finished_at=?, interrupted=? WHERE run_id=?",
                             (now, int(interrupted), run.run_id))
        return True

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT r.run_id, r.pipeline, r.started_at, r.finished_at, r.interrupted, "
                                   "(SELECT COUNT(*) FROM workers w WHERE w.run_id = r.run_id) "
                                   "FROM runs r ORDER BY r.run_id")
            keys = ("run_id", "pipeline", "started_at", "finished_at", "interrupted", "workers")
            return [dict(zip(keys, r)) for r in cur]

    def workers(self, run_id: int | None = None) -> list[WorkerInfo]:
        sql = ("SELECT run_id, worker, started_at, heartbeat_at, finished_at, (SELECT COUNT(*) FROM recordings r "
               "WHERE r.worker = w.worker AND r.lease_until IS NOT NULL) FROM workers w")
        with self._lock:
            rows = self._db.execute(sql + (" WHERE run_id=?" if run_id is not None else "") +
                                    " ORDER BY started_at", (run_id,) if run_id is not None else ()).fetchall()
        return [WorkerInfo(*r) for r in rows]

    def outcomes(self, run_id: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT result FROM outcomes WHERE run_id=? ORDER BY source, id",
                                    (run_id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def record_outcome(self, run_id: int, source: str, recording_id: str, status: str,
                       result: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)",
                             (run_id, source, recording_id, status, json.dumps(result, default=str)))

    # ------------------------------------------------------------------ the queue

    def begin_discovery(self, run: RunHandle) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE runs SET discovery='running', discoverer=? WHERE run_id=? "
                                   "AND (discovery='pending' OR (discovery='running' AND discoverer=?))",
                                   (run.worker, run.run_id, run.worker))
            return cur.rowcount == 1

    def end_discovery(self, run: RunHandle, *, error: str | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE runs SET discovery='done' WHERE run_id=?", (run.run_id,))

    def enqueue(self, run: RunHandle, source: str, specs: Sequence[tuple[str, Mapping[str, Any]]], *,
                max_attempts_total: int) -> list[RecordingState]:
        settled = []
        now = time.time()
        with self._lock, _Transaction(self._db):
            for rid, metadata in specs:
                spec = json.dumps(dict(metadata))
                row = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE source=? AND id=?",
                                       (source, rid)).fetchone()
                if row is None:
                    self._db.execute("INSERT INTO recordings (source, id, state, updated_at, run_id, spec) "
                                     "VALUES (?, ?, 'queued', ?, ?, ?)", (source, rid, now, run.run_id, spec))
                    continue
                state = _row(row)
                if state.state == "stored" or (state.state == "failed" and state.attempts >= max_attempts_total):
                    settled.append(state)
                    continue
                new_state = "queued" if state.state == "failed" else state.state
                self._db.execute("UPDATE recordings SET state=?, run_id=?, spec=?, updated_at=? WHERE source=? "
                                 "AND id=?", (new_state, run.run_id, spec, now, source, rid))
        return settled

    def claim(self, run: RunHandle, *, limit: int, lease_seconds: float = rules.DEFAULT_LEASE_SECONDS
              ) -> list[Claim]:
        now = time.time()
        claims = []
        with self._lock, _Transaction(self._db):
            rows = self._db.execute(f"SELECT {_COLUMNS}, spec FROM recordings WHERE run_id=? AND state IN "
                                    "('queued', 'downloading', 'verified') ORDER BY source, id",
                                    (run.run_id,)).fetchall()
            for row in rows:
                if len(claims) >= limit:
                    break
                state = _row(row[:-1])
                decision = rules.claim_decision(_lease_row(state), now)
                if decision not in (rules.Decision.CLAIM, rules.Decision.TAKEOVER):
                    continue
                token = rules.next_token(_lease_row(state))
                check_transition(state.id, state.state, "downloading")
                self._db.execute("UPDATE recordings SET worker=?, lease_token=?, lease_until=?, state='downloading', "
                                 "attempts=attempts+1, updated_at=? WHERE source=? AND id=?",
                                 (run.worker, token, now + lease_seconds, now, state.source, state.id))
                lease = Lease(state.source, state.id, run.worker, token, now + lease_seconds)
                claims.append(Claim(lease, json.loads(row[-1]) if row[-1] else {}, state,
                                    takeover=decision is rules.Decision.TAKEOVER, attempt=state.attempts + 1))
        return claims

    def queue_status(self, run: RunHandle) -> QueueStatus:
        now = time.time()
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE run_id=? AND state IN "
                                    "('queued', 'downloading', 'verified')", (run.run_id,)).fetchall()
            discovery = self._db.execute("SELECT discovery FROM runs WHERE run_id=?", (run.run_id,)).fetchone()
        status = QueueStatus(discovery=discovery[0] if discovery else "done")
        for row in rows:
            state = _row(row)
            status.open[state.state] = status.open.get(state.state, 0) + 1
            if rules.claim_decision(_lease_row(state), now) in (rules.Decision.CLAIM, rules.Decision.TAKEOVER):
                status.claimable += 1
        return status

    # ------------------------------------------------------------------ one recording

    def acquire(self, source: str, recording_id: str, *, run: RunHandle,
                lease_seconds: float = rules.DEFAULT_LEASE_SECONDS, metadata: Mapping[str, Any] | None = None
                ) -> Lease:
        now = time.time()
        with self._lock, _Transaction(self._db):
            row = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE source=? AND id=?",
                                   (source, recording_id)).fetchone()
            state = _row(row) if row else None
            token = rules.next_token(_lease_row(state) if state else None)
            if state is None:
                self._db.execute("INSERT INTO recordings (source, id, state, updated_at, run_id, worker, lease_token, "
                                 "lease_until) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                                 (source, recording_id, now, run.run_id, run.worker, token, now + lease_seconds))
            else:  # one machine, one run at a time: always take over (see the module docstring)
                self._db.execute("UPDATE recordings SET worker=?, lease_token=?, lease_until=?, run_id=? "
                                 "WHERE source=? AND id=?", (run.worker, token, now + lease_seconds, run.run_id,
                                                              source, recording_id))
        return Lease(source, recording_id, run.worker, token, now + lease_seconds)

    def begin_attempt(self, lease: Lease) -> int:
        with self._lock, _Transaction(self._db):
            state = self._fenced_row(lease)
            attempts = state.attempts + 1
            self._update(lease, state, "downloading", {"attempts": attempts})
        return attempts

    def checkpoint(self, lease: Lease, *, resume_offset: int, checkpoint: dict[str, Any], etag: str | None,
                   size: int | None) -> None:
        self._change(lease, "downloading", resume_offset=resume_offset, checkpoint=checkpoint, etag=etag, size=size)

    def clear_checkpoint(self, lease: Lease) -> None:
        self._change(lease, "downloading", resume_offset=0, checkpoint=None)

    def verified(self, lease: Lease, *, sha256: str | None, verdicts: list[dict[str, Any]]) -> None:
        self._change(lease, "verified", sha256=sha256, verdicts=verdicts)

    def finish(self, lease: Lease, finish: Finish, *, run_id: int) -> None:
        fields = finish.columns()
        with self._lock, _Transaction(self._db):
            state = self._fenced_row(lease)
            self._update(lease, state, finish.state, {**fields, "lease_until": None})
            if finish.outcome is not None:
                status, result = finish.outcome
                self._db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)",
                                 (run_id, lease.source, lease.id, status, json.dumps(result, default=str)))

    # ------------------------------------------------------------------ administration

    def reset(self, *, source: str | None = None, ids: Iterable[str] | None = None, state: str = "failed") -> int:
        sql = ("UPDATE recordings SET state='queued', attempts=0, reason=NULL, message=NULL, lease_until=NULL, "
               "updated_at=? WHERE state=?")
        args: list[Any] = [time.time(), state]
        if source is not None:
            sql += " AND source=?"
            args.append(source)
        with self._lock, _Transaction(self._db):
            if ids is None:
                return self._db.execute(sql, args).rowcount
            return sum(self._db.execute(sql + " AND id=?", (*args, rid)).rowcount for rid in ids)

    def forget(self, source: str, recording_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM recordings WHERE source=? AND id=?",
                                    (source, recording_id)).rowcount == 1

    # ------------------------------------------------------------------ internals (caller holds the lock)

    def _fenced_row(self, lease: Lease) -> RecordingState:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE source=? AND id=?",
                               (lease.source, lease.id)).fetchone()
        state = _row(row) if row else None
        if state is None or not rules.fenced(_lease_row(state), lease.worker, lease.token):
            holder = f"held by {state.worker} (lease {state.lease_token})" if state else "forgotten"
            raise LeaseLost(f"{self.location}: recording {lease.id}: lease {lease.token} of {lease.worker} lost; "
                            f"now {holder}")
        return state

    def _update(self, lease: Lease, state: RecordingState, new: str, fields: dict[str, Any]) -> None:
        check_transition(lease.id, state.state, new)
        values = {k: (json.dumps(v) if k in _JSON_FIELDS and v is not None else v) for k, v in fields.items()}
        sets = ", ".join(f"{k}=?" for k in ["state", "updated_at", *values])
        self._db.execute(f"UPDATE recordings SET {sets} WHERE source=? AND id=? AND lease_token=?",
                         (new, time.time(), *values.values(), lease.source, lease.id, lease.token))

    def _change(self, lease: Lease, new: str, **fields: Any) -> None:
        with self._lock, _Transaction(self._db):
            self._update(lease, self._fenced_row(lease), new, fields)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _lease_row(state: RecordingState) -> rules.LeaseRow:
    return rules.LeaseRow(state.state, state.worker, state.lease_token, state.lease_until)


def _row(row: Sequence[Any]) -> RecordingState:
    (source, rid, state, reason, message, attempts, size, etag, resume_offset, checkpoint, sha256, stored, verdicts,
     updated_at, worker, lease_token, lease_until, run_id) = row
    return RecordingState(source, rid, state, reason, message, attempts, size, etag, resume_offset,
                          json.loads(checkpoint) if checkpoint else None, sha256,
                          json.loads(stored) if stored else None, json.loads(verdicts) if verdicts else None,
                          updated_at, worker, lease_token or 0, lease_until, run_id)


__all__ = ["SqliteLedger", "SCHEMA_VERSION", "OPEN_STATES"]
