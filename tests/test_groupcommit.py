"""Group commit of ledger writes: batched into shared transactions, each call still its own outcome."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import trio

from voxpipe.groupcommit import GroupCommit
from voxpipe.ledger import AsyncLedger, Finish, LedgerError, SqliteLedger


def test_concurrent_streams_share_transactions_and_keep_their_own_errors(tmp_path):
    backend = SqliteLedger(tmp_path / "l.sqlite3")
    ledger = AsyncLedger(backend)
    assert ledger.group is not None
    run = backend.start_run("night", worker="w1", lease_seconds=60)
    errors: dict[str, BaseException] = {}
    attempts: dict[str, int] = {}

    async def stream(rid: str) -> None:
        lease = await ledger.acquire("cxone", rid, run=run, lease_seconds=60)
        attempts[rid] = await ledger.begin_attempt(lease)
        await ledger.checkpoint(lease, resume_offset=10, checkpoint={"sinks": []}, etag=None, size=20)
        await ledger.verified(lease, sha256="00" * 32, verdicts=[])
        if rid.endswith("0"):  # every tenth stream asks for an illegal change: it fails alone
            try:
                await ledger.finish(lease, Finish("queued"), run_id=run.run_id)
            except LedgerError as exc:
                errors[rid] = exc
            return
        await ledger.finish(lease, Finish("stored", stored=[{"sink": "file"}], outcome=("ok", {"id": rid})),
                            run_id=run.run_id)

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(stream, f"r{i:02d}")

    trio.run(main)
    try:
        assert attempts == {f"r{i:02d}": 1 for i in range(60)}
        assert sorted(errors) == [f"r{i}0" for i in range(6)]
        states = {s.id: s.state for s in backend.recordings()}
        assert states == {f"r{i:02d}": ("verified" if i % 10 == 0 else "stored") for i in range(60)}
        assert len(backend.outcomes(run.run_id)) == 54
        group = ledger.group
        assert group.calls == 60 * 5  # acquire, begin_attempt, checkpoint, verified, finish (6 refused)
        assert group.batches < group.calls  # calls shared transactions
    finally:
        backend.close()
    # Durable: another connection sees every committed change.
    other = sqlite3.connect(tmp_path / "l.sqlite3")
    assert other.execute("SELECT COUNT(*) FROM recordings WHERE state='stored'").fetchone()[0] == 54
    other.close()


def test_a_lone_call_commits_at_once_and_is_visible_when_it_returns(tmp_path):
    backend = SqliteLedger(tmp_path / "l.sqlite3")
    ledger = AsyncLedger(backend)
    run = backend.start_run("night", worker="w1", lease_seconds=60)
    seen = []

    async def main():
        lease = await ledger.acquire("cxone", "one", run=run, lease_seconds=60)
        await ledger.begin_attempt(lease)
        other = sqlite3.connect(tmp_path / "l.sqlite3")
        seen.append(other.execute("SELECT state, attempts FROM recordings WHERE id='one'").fetchone())
        other.close()

    trio.run(main)
    backend.close()
    assert seen == [("downloading", 1)] and ledger.group.batches == 2  # acquire, then begin_attempt


def test_a_cancelled_caller_withdraws_a_call_not_yet_taken(tmp_path):
    done: list[str] = []
    release = threading.Event()
    entered = threading.Event()

    def run_batch(calls):
        entered.set()
        release.wait(10)
        return [__import__("outcome").capture(c) for c in calls]

    group = GroupCommit(run_batch)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(group.call, lambda: done.append("first"))
            await trio.to_thread.run_sync(entered.wait, 10)  # the first batch is running
            with trio.move_on_after(0.05) as scope:
                await group.call(lambda: done.append("withdrawn"))
            assert scope.cancelled_caught
            nursery.start_soon(group.call, lambda: done.append("third"))
            await trio.sleep(0.05)
            release.set()

    trio.run(main)
    assert done == ["first", "third"]


def test_a_failed_transaction_fails_every_call_of_its_batch():
    def broken(calls):
        raise sqlite3.OperationalError("disk I/O error")

    group = GroupCommit(broken)

    async def main():
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await group.call(lambda: None)

    trio.run(main)
