"""The ledger contract (voxpipe.ledger.interface.LedgerBackend) on both backends:
SQLite files and a real PostgreSQL (pgserver). Claims, leases, fencing, the queue, runs,
administration; PostgreSQL only: concurrent claims, run joining, discovery takeover,
scopes, migrations and password hygiene."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from voxpipe.ledger import (Finish, LeaseLost, LedgerBackend, LedgerError, RunHandle, SqliteLedger, open_ledger,
                            redact_url)

IDS = [f"r{i:03d}" for i in range(10)]


@pytest.fixture(params=["sqlite", "postgres"])
def make_ledger(request, tmp_path):
    opened = []

    def make(identity: str = "cxone client=a", pipeline: str = "night") -> LedgerBackend:
        if request.param == "sqlite":
            ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        else:
            ledger = open_ledger(request.getfixturevalue("pg_url"), state_dir=tmp_path, pipeline=pipeline,
                                 identity=identity)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def queued(ledger, worker="w1", ids=IDS, lease=60.0) -> RunHandle:
    run = ledger.start_run("night", worker=worker, lease_seconds=lease)
    assert ledger.begin_discovery(run)
    assert ledger.enqueue(run, "cxone", [(i, {"n": n}) for n, i in enumerate(ids)], max_attempts_total=3) == []
    ledger.end_discovery(run)
    return run


def test_is_a_ledger_backend(make_ledger):
    ledger = make_ledger()
    assert isinstance(ledger, LedgerBackend)


def test_claims_never_repeat_and_the_queue_drains(make_ledger):
    ledger = make_ledger()
    run = queued(ledger)
    first = ledger.claim(run, limit=4, lease_seconds=60)
    second = ledger.claim(run, limit=100, lease_seconds=60)
    assert [c.lease.id for c in first] == IDS[:4] and [c.lease.id for c in second] == IDS[4:]
    assert first[1].metadata == {"n": 1} and not first[0].takeover and first[0].lease.token == 1
    assert first[0].attempt == 1 and first[0].state.state == "queued"  # the row before the claim
    assert ledger.claim(run, limit=5, lease_seconds=60) == []
    status = ledger.queue_status(run)
    assert status.open == {"downloading": 10} and status.claimable == 0 and not status.drained
    for claim in first + second:
        ledger.verified(claim.lease, sha256="ab" * 32, verdicts=[{"verifier": "sha256", "ok": True}])
        ledger.finish(claim.lease, Finish("stored", stored=[{"sink": "files", "path": f"/a/{claim.lease.id}"}],
                                          outcome=("ok", {"id": claim.lease.id, "status": "ok"})), run_id=run.run_id)
    assert ledger.queue_status(run).drained
    assert ledger.counts() == {"stored": 10}
    assert [o["id"] for o in ledger.outcomes(run.run_id)] == IDS
    row = ledger.get("cxone", "r003")
    assert row.stored == [{"sink": "files", "path": "/a/r003"}] and row.lease_until is None and row.attempts == 1
    # the next run finds them stored: settled, not queued
    assert ledger.finish_run(run, interrupted=False)
    run2 = ledger.start_run("night", worker="w1", lease_seconds=60)
    ledger.begin_discovery(run2)
    settled = ledger.enqueue(run2, "cxone", [(i, {}) for i in IDS], max_attempts_total=3)
    assert [s.id for s in settled] == IDS and ledger.claim(run2, limit=10, lease_seconds=60) == []


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(make_ledger):
    ledger = make_ledger()
    run = queued(ledger, ids=["r1"])
    old = ledger.claim(run, limit=1, lease_seconds=0.3)[0].lease
    ledger.checkpoint(old, resume_offset=1000, checkpoint={"sinks": [{"files": ["/t/a"]}], "host": "h1"},
                      etag='"e1"', size=5000)
    assert ledger.claim(run, limit=1, lease_seconds=60) == []  # still held
    time.sleep(0.5)
    w2 = RunHandle(run.run_id, "w2")
    taken = ledger.claim(w2, limit=1, lease_seconds=60)
    assert len(taken) == 1 and taken[0].takeover and taken[0].lease.token == old.token + 1
    assert taken[0].state.resume_offset == 1000 and taken[0].state.checkpoint["host"] == "h1"
    assert taken[0].attempt == 2 and taken[0].state.state == "downloading"
    new = taken[0].lease
    ledger.checkpoint(new, resume_offset=2000, checkpoint={"sinks": [{"files": ["/t/b"]}]}, etag='"e1"', size=5000)
    for change in (lambda: ledger.checkpoint(old, resume_offset=4000, checkpoint={}, etag=None, size=None),
                   lambda: ledger.clear_checkpoint(old), lambda: ledger.begin_attempt(old),
                   lambda: ledger.verified(old, sha256=None, verdicts=[]),
                   lambda: ledger.finish(old, Finish("stored", outcome=("ok", {})), run_id=run.run_id)):
        with pytest.raises(LeaseLost, match="r1: lease 1 of w1 lost; now held by w2"):
            change()
    row = ledger.get("cxone", "r1")
    assert (row.state, row.resume_offset, row.worker, row.attempts) == ("downloading", 2000, "w2", 2)
    assert ledger.outcomes(run.run_id) == []
    # heartbeats: the new holder renews, the old one learns it lost
    assert ledger.heartbeat(w2, [new], lease_seconds=60) == []
    assert ledger.heartbeat(run, [old], lease_seconds=60) == [old]
    assert ledger.held_checkpoints() == [{"sinks": [{"files": ["/t/b"]}]}]


def test_failed_recordings_keep_or_drop_checkpoints_then_reset_and_forget(make_ledger):
    ledger = make_ledger()
    run = queued(ledger, ids=["a", "b"])
    a, b = (c.lease for c in ledger.claim(run, limit=2, lease_seconds=60))
    for lease in (a, b):
        ledger.checkpoint(lease, resume_offset=10, checkpoint={"sinks": [{"files": ["/x"]}]}, etag=None, size=None)
    ledger.finish(a, Finish("failed", reason="interrupted", message="stop", keep_checkpoint=True), run_id=run.run_id)
    ledger.finish(b, Finish("failed", reason="http-401", message="recording b: 401",
                            outcome=("failed", {"id": "b", "status": "failed"})), run_id=run.run_id)
    ra, rb = ledger.get("cxone", "a"), ledger.get("cxone", "b")
    assert (ra.resume_offset, ra.checkpoint) == (10, {"sinks": [{"files": ["/x"]}]})
    assert (rb.resume_offset, rb.checkpoint, rb.reason) == (0, None, "http-401")
    assert [r.id for r in ledger.recordings("failed")] == ["a", "b"]
    assert ledger.reset(ids=["b"]) == 1
    rb = ledger.get("cxone", "b")
    assert (rb.state, rb.attempts, rb.reason) == ("queued", 0, None)
    assert ledger.reset() == 1 and ledger.reset() == 0
    assert ledger.forget("cxone", "a") and not ledger.forget("cxone", "a")
    assert ledger.get("cxone", "a") is None


def test_acquire_takes_a_recording_discovered_locally(make_ledger):
    ledger = make_ledger()
    run = ledger.start_run("night", worker="w1", lease_seconds=60)
    lease = ledger.acquire("voice", "call-1", run=run, lease_seconds=60)
    assert ledger.begin_attempt(lease) == 1
    ledger.finish(lease, Finish("stored", stored=[], outcome=("ok", {"id": "call-1"})), run_id=run.run_id)
    again = ledger.acquire("voice", "call-1", run=run, lease_seconds=60)
    assert again.token == lease.token + 1
    assert ledger.finish_run(run, interrupted=False)
    assert ledger.runs()[-1]["finished_at"] is not None and ledger.runs()[-1]["workers"] == 1


def test_illegal_transitions_raise(make_ledger):
    ledger = make_ledger()
    run = queued(ledger, ids=["x"])
    lease = ledger.claim(run, limit=1, lease_seconds=60)[0].lease
    ledger.verified(lease, sha256=None, verdicts=[])
    ledger.finish(lease, Finish("stored"), run_id=run.run_id)
    with pytest.raises(LedgerError, match="illegal ledger transition stored -> verified"):
        ledger.verified(lease, sha256=None, verdicts=[])
    with pytest.raises(LedgerError, match="stored or failed"):
        ledger.finish(lease, Finish("verified"), run_id=run.run_id)


# ---------------------------------------------------------------------- PostgreSQL only


@pytest.fixture
def pg(pg_url, tmp_path):
    opened = []

    def make(identity: str = "cxone client=a", pipeline: str = "night"):
        ledger = open_ledger(pg_url, state_dir=tmp_path, pipeline=pipeline, identity=identity)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def test_concurrent_claims_skip_locked_rows(pg):
    ids = [f"c{i:04d}" for i in range(400)]
    first = pg()
    run = queued(first, ids=ids)
    workers = [pg() for _ in range(4)]
    got: list[list[str]] = [[] for _ in workers]

    def drain(n: int) -> None:
        handle = RunHandle(run.run_id, f"w{n}")
        while claims := workers[n].claim(handle, limit=7, lease_seconds=60):
            for claim in claims:
                workers[n].finish(claim.lease, Finish("stored", outcome=("ok", {"id": claim.lease.id})),
                                  run_id=run.run_id)
                got[n].append(claim.lease.id)

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for g in got for i in g]
    assert sorted(everything) == ids  # each exactly once
    assert sum(1 for g in got if g) >= 2  # the work was actually shared
    assert first.counts() == {"stored": 400}


def test_workers_join_one_run_and_the_last_one_finishes_it(pg):
    a, b = pg(), pg()
    run_a = a.start_run("night", worker="wa", lease_seconds=60)
    run_b = b.start_run("night", worker="wb", lease_seconds=60)
    assert run_b.run_id == run_a.run_id and run_b.joined and not run_a.joined
    assert a.begin_discovery(run_a) and not b.begin_discovery(run_b)
    a.enqueue(run_a, "cxone", [("1", {}), ("1", {}), ("2", {})], max_attempts_total=3)  # duplicate ids: one row
    a.end_discovery(run_a)
    assert b.queue_status(run_b).open == {"queued": 2}
    assert [c.attempt for c in b.claim(run_b, limit=5, lease_seconds=60)] == [1, 1]
    assert not a.finish_run(run_a, interrupted=False)
    assert b.finish_run(run_b, interrupted=False)
    [run] = a.runs()
    assert run["workers"] == 2 and run["finished_at"] is not None
    assert [w.worker for w in a.workers(run["run_id"])] == ["wa", "wb"]
    c = pg()
    assert c.start_run("night", worker="wc", lease_seconds=60).run_id != run_a.run_id  # the next night


def test_a_dead_discoverer_is_replaced(pg):
    a, b = pg(), pg()
    run_a = a.start_run("night", worker="wa", lease_seconds=1)
    assert a.begin_discovery(run_a)
    run_b = b.start_run("night", worker="wb", lease_seconds=1)
    assert run_b.joined and not b.begin_discovery(run_b)
    time.sleep(1.3)  # wa stops beating
    b.heartbeat(run_b, [], lease_seconds=1)
    assert b.begin_discovery(run_b)
    b.end_discovery(run_b)
    a.end_discovery(run_a)  # the late original changes nothing (not the discoverer any more)
    assert b.queue_status(run_b).discovery == "done"


def test_scopes_keep_tenants_and_pipelines_apart(pg):
    t1, t2, other = pg("cxone client=tenant-1"), pg("cxone client=tenant-2"), pg("cxone client=tenant-1", "day")
    for ledger in (t1, t2, other):
        run = queued(ledger, ids=["100", "101"])
        lease = ledger.claim(run, limit=1, lease_seconds=60)[0].lease
        ledger.finish(lease, Finish("stored"), run_id=run.run_id)
    for ledger in (t1, t2, other):
        assert ledger.counts() == {"stored": 1, "queued": 1}
        assert len(ledger.runs()) == 1


def test_schema_is_versioned_and_migrated_once(pg, pg_url):
    import psycopg

    first = pg()
    assert first.schema_version() == 1
    pg().close()  # a second open applies nothing
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM voxpipe.schema_migrations ORDER BY version")]
        assert versions == [1]
        conn.execute("INSERT INTO voxpipe.schema_migrations (version) VALUES (99)")
    with pytest.raises(LedgerError, match="schema version 99 is newer than this voxpipe supports"):
        pg()


def test_passwords_never_appear_in_errors_or_locations(tmp_path):
    url = "postgresql://voxpipe:S3cr3t-pw@127.0.0.1:1/ledger?password=S3cr3t-pw&sslmode=disable"
    assert redact_url(url) == "postgresql://voxpipe:***@127.0.0.1:1/ledger?password=***&sslmode=disable"
    with pytest.raises(LedgerError) as info:
        open_ledger(url, state_dir=tmp_path, pipeline="p", identity="i")
    assert "S3cr3t" not in str(info.value) and "voxpipe:***@127.0.0.1:1/ledger" in str(info.value)


def test_sqlite_version_1_files_are_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE recordings (source TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
            message TEXT, attempts INTEGER NOT NULL DEFAULT 0, size INTEGER, etag TEXT,
            resume_offset INTEGER NOT NULL DEFAULT 0, checkpoint TEXT, sha256 TEXT, stored TEXT, verdicts TEXT,
            updated_at REAL NOT NULL, PRIMARY KEY (source, id));
        CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, started_at REAL NOT NULL,
            finished_at REAL, interrupted INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE outcomes (run_id INTEGER NOT NULL, source TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,
            result TEXT NOT NULL, PRIMARY KEY (run_id, source, id));
        INSERT INTO recordings (source, id, state, attempts, updated_at) VALUES ('cxone', '7', 'failed', 2, 1.0);
        INSERT INTO runs (pipeline, started_at, finished_at) VALUES ('night', 1.0, 2.0);
    """)
    db.close()
    ledger = SqliteLedger(path)
    try:
        row = ledger.get("cxone", "7")
        assert (row.state, row.attempts, row.lease_token, row.worker) == ("failed", 2, 0, None)
        assert ledger.runs()[0]["run_id"] == 1
        run = ledger.start_run("night", worker="w", lease_seconds=60)
        assert run.run_id == 2
    finally:
        ledger.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
