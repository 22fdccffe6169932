"""Group commit on PostgreSQL (PostgresLedger.run_batch): several streams' fenced changes
in one transaction, each fenced on its own; a server error in one call fails that call
only; a worker killed mid-batch loses nothing committed and leaves nothing half-applied."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import trio

from voxpipe.ledger import AsyncLedger, Finish, LeaseLost, LedgerError, RunHandle, open_ledger

@pytest.fixture
def pg(pg_url, tmp_path):
    opened = []

    def make(pipeline: str = "night"):
        ledger = open_ledger(pg_url, state_dir=tmp_path, pipeline=pipeline, identity="cxone client=a")
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


def _queued(ledger, ids, *, worker="w1", lease=60.0) -> RunHandle:
    run = ledger.start_run("night", worker=worker, lease_seconds=lease)
    assert ledger.begin_discovery(run)
    ledger.enqueue(run, "cxone", [(i, {}) for i in ids], max_attempts_total=5)
    ledger.end_discovery(run)
    return run


def _stored(lease_id: str) -> Finish:
    return Finish("stored", stored=[{"sink": "file", "path": f"/a/{lease_id}"}], outcome=("ok", {"id": lease_id}))


def test_a_stale_lease_in_a_batch_is_refused_alone_and_the_rest_commits(pg, pg_url):
    a, b = pg(), pg()
    run = _queued(a, ["r1", "r2", "r3", "r4"], lease=0.5)
    claims = {c.lease.id: c.lease for c in a.claim(run, limit=4, lease_seconds=0.5)}
    time.sleep(0.7)  # r3's lease expires; worker b takes it over
    run_b = RunHandle(run.run_id, "wb")
    b_claims = b.claim(run_b, limit=1, lease_seconds=60)
    assert [c.lease.id for c in b_claims] == ["r1"]  # claims go by id: take r1 over, keep r2..r4 for a
    stale = claims["r1"]
    b.checkpoint(b_claims[0].lease, resume_offset=500, checkpoint={"sinks": ["b"]}, etag="e", size=1000)
    a.finish(claims["r4"], _stored("r4"), run_id=run.run_id)
    calls = [
        functools.partial(a.finish, claims["r2"], _stored("r2"), run_id=run.run_id),
        functools.partial(a.finish, stale, _stored("r1"), run_id=run.run_id),  # lost lease
        functools.partial(a.checkpoint, claims["r3"], resume_offset=10, checkpoint={"sinks": ["a"]}, etag=None,
                          size=20),
        functools.partial(a.verified, claims["r4"], sha256=None, verdicts=[]),  # illegal: already stored
        functools.partial(a.verified, stale, sha256="00" * 32, verdicts=[]),  # lost lease again
    ]
    results = a.run_batch(calls)
    assert results[0].unwrap() is None and results[2].unwrap() is None
    with pytest.raises(LeaseLost, match="r1: lease 1 of w1 lost; now held by wb"):
        results[1].unwrap()
    with pytest.raises(LeaseLost):
        results[4].unwrap()
    with pytest.raises(LedgerError, match="r4: illegal ledger transition stored -> verified"):
        results[3].unwrap()
    # Read through a fresh ledger (other connections): what committed, and the new holder's row untouched.
    c = pg()
    r1, r2, r3, r4 = (c.get("cxone", i) for i in ("r1", "r2", "r3", "r4"))
    assert (r1.state, r1.worker, r1.lease_token, r1.resume_offset, r1.checkpoint) == (
        "downloading", "wb", 2, 500, {"sinks": ["b"]})
    assert r1.sha256 is None
    assert (r2.state, r2.stored, r2.lease_until) == ("stored", [{"sink": "file", "path": "/a/r2"}], None)
    assert (r3.state, r3.resume_offset, r3.checkpoint, r3.size) == ("downloading", 10, {"sinks": ["a"]}, 20)
    assert (r4.state, r4.verdicts) == ("stored", None)
    assert [o["id"] for o in c.outcomes(run.run_id)] == ["r2", "r4"]


def test_a_server_error_in_one_call_fails_that_call_only(pg):
    a = pg()
    run = _queued(a, ["r1", "r2", "r3"])
    leases = {c.lease.id: c.lease for c in a.claim(run, limit=3, lease_seconds=60)}
    results = a.run_batch([
        functools.partial(a.finish, leases["r1"], _stored("r1"), run_id=run.run_id),
        # 2**70 does not fit the bigint column: the server aborts the shared transaction
        functools.partial(a.checkpoint, leases["r2"], resume_offset=2**70, checkpoint={}, etag=None, size=None),
        functools.partial(a.verified, leases["r3"], sha256="11" * 32, verdicts=[{"ok": True}]),
    ])
    assert results[0].unwrap() is None and results[2].unwrap() is None
    with pytest.raises(LedgerError, match="out of range"):
        results[1].unwrap()
    assert {s.id: s.state for s in pg().recordings()} == {"r1": "stored", "r2": "downloading", "r3": "verified"}
    assert a.get("cxone", "r2").resume_offset == 0


def test_async_streams_share_transactions(pg):
    backend = pg()
    ids = [f"s{i:02d}" for i in range(40)]
    run = _queued(backend, ids)
    ledger = AsyncLedger(backend)
    assert ledger.group is not None
    done: list[str] = []

    async def stream() -> None:
        while claims := await ledger.claim(run, limit=1, lease_seconds=60):
            lease = claims[0].lease
            await ledger.verified(lease, sha256="ab" * 32, verdicts=[])
            await ledger.finish(lease, _stored(lease.id), run_id=run.run_id)
            done.append(lease.id)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(stream)

    trio.run(main)
    assert sorted(done) == ids
    assert pg().counts() == {"stored": 40}
    assert len(backend.outcomes(run.run_id)) == 40
    assert ledger.group.calls == 80
    assert ledger.group.batches < ledger.group.calls  # streams shared transactions


_KILLED_WORKER = textwrap.dedent("""
    import functools, sys, time
    from pathlib import Path
    from voxpipe.ledger import Finish, RunHandle, open_ledger

    url, run_id = sys.argv[1], int(sys.argv[2])
    ledger = open_ledger(url, state_dir=Path("."), pipeline="night", identity="cxone client=a")
    claims = {c.lease.id: c.lease for c in ledger.claim(RunHandle(run_id, "victim"), limit=4, lease_seconds=1)}

    def stored(i):
        return functools.partial(ledger.finish, claims[i], Finish("stored", stored=[{"sink": "file"}],
                                 outcome=("ok", {"id": i})), run_id=run_id)

    for r in ledger.run_batch([stored("r1"), stored("r2")]):
        r.unwrap()
    print("committed", flush=True)

    def hang():
        print("in-batch", flush=True)
        time.sleep(600)

    ledger.run_batch([stored("r3"), functools.partial(ledger.checkpoint, claims["r4"], resume_offset=7,
                                                       checkpoint={"sinks": []}, etag=None, size=9), hang])
""")


def test_a_worker_killed_mid_batch_loses_nothing_committed_and_applies_nothing_half(pg, pg_url, tmp_path):
    setup = pg()
    run = _queued(setup, ["r1", "r2", "r3", "r4"], lease=1)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER, pg_url, str(run.run_id)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "committed"
        assert proc.stdout.readline().strip() == "in-batch"  # r3's finish and r4's checkpoint were executed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    states = {s.id: (s.state, s.resume_offset) for s in setup.recordings()}
    assert states == {"r1": ("stored", 0), "r2": ("stored", 0), "r3": ("downloading", 0), "r4": ("downloading", 0)}
    assert sorted(o["id"] for o in setup.outcomes(run.run_id)) == ["r1", "r2"]
    # The dead worker's row locks went with its session: its recordings are taken over once
    # their leases expire, and the new holder's changes commit.
    time.sleep(1.2)
    run_b = RunHandle(run.run_id, "heir")
    taken = {c.lease.id: c for c in setup.claim(run_b, limit=4, lease_seconds=60)}
    assert sorted(taken) == ["r3", "r4"] and all(c.takeover for c in taken.values())
    for r in setup.run_batch([functools.partial(setup.finish, c.lease, _stored(i), run_id=run.run_id)
                              for i, c in taken.items()]):
        r.unwrap()
    assert setup.counts() == {"stored": 4}
