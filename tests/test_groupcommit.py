"""Group commit of ledger writes: batched into shared transactions, each call still its own outcome."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import trio

from voxpipe.groupcommit import GroupCommit
from voxpipe.ledger import Ledger, LedgerError


def test_concurrent_callers_share_transactions_and_keep_their_own_errors(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    group = GroupCommit(ledger.run_batch)
    errors: dict[str, BaseException] = {}
    attempts: dict[str, int] = {}

    async def stream(rid: str) -> None:
        attempts[rid] = await group.call(lambda: ledger.begin_attempt("s", rid))
        await group.call(lambda: ledger.transition("s", rid, "verified", sha256="00" * 32))
        try:
            # every tenth stream tries an illegal change (verified -> queued): it fails alone
            await group.call(lambda: ledger.transition("s", rid, "queued" if rid.endswith("0") else "stored"))
        except LedgerError as exc:
            errors[rid] = exc

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(stream, f"r{i:02d}")

    trio.run(main)
    try:
        assert attempts == {f"r{i:02d}": 1 for i in range(60)}
        assert sorted(errors) == [f"r{i}0" for i in range(6)]
        assert all("illegal ledger transition verified -> queued" in str(e) for e in errors.values())
        states = {s.id: s.state for s in ledger.all()}
        assert states == {f"r{i:02d}": ("verified" if i % 10 == 0 else "stored") for i in range(60)}
        assert group.calls == 180
        assert group.batches < group.calls  # calls shared transactions
    finally:
        ledger.close()
    # Durable: another connection sees every committed change.
    other = sqlite3.connect(tmp_path / "l.sqlite3")
    assert other.execute("SELECT COUNT(*) FROM recordings WHERE state='stored'").fetchone()[0] == 54
    other.close()


def test_a_lone_call_commits_at_once_and_each_caller_waits_for_its_commit(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    group = GroupCommit(ledger.run_batch)
    seen = []

    async def main():
        await group.call(lambda: ledger.begin_attempt("s", "one"))
        # visible to another connection as soon as the call returned
        other = sqlite3.connect(tmp_path / "l.sqlite3")
        seen.append(other.execute("SELECT state FROM recordings WHERE id='one'").fetchone()[0])
        other.close()

    trio.run(main)
    ledger.close()
    assert seen == ["downloading"] and group.batches == 1


def test_a_cancelled_caller_withdraws_a_call_not_yet_taken(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    release = threading.Event()
    entered = threading.Event()

    def blocking_batch(calls):
        entered.set()
        release.wait(10)
        return ledger.run_batch(calls)

    group = GroupCommit(blocking_batch)

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(group.call, lambda: ledger.begin_attempt("s", "first"))
            await trio.to_thread.run_sync(entered.wait, 10)  # the first batch is running
            with trio.move_on_after(0.05) as scope:
                await group.call(lambda: ledger.begin_attempt("s", "withdrawn"))
            assert scope.cancelled_caught
            nursery.start_soon(group.call, lambda: ledger.begin_attempt("s", "third"))
            await trio.sleep(0.05)
            release.set()

    trio.run(main)
    try:
        assert sorted(s.id for s in ledger.all()) == ["first", "third"]
    finally:
        ledger.close()


def test_a_failed_transaction_fails_every_call_of_its_batch(tmp_path):
    def broken(calls):
        raise sqlite3.OperationalError("disk I/O error")

    group = GroupCommit(broken)

    async def main():
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
            await group.call(lambda: None)

    trio.run(main)
