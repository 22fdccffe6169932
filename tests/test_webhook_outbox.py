"""The SQLite outbox on a real file: durability, claims as leases, outcomes, 410, reopening."""

from __future__ import annotations

import sqlite3

import pytest

from voxpipe_webhook.outbox import MAX_CLAIM, Outbox, OutboxError
from voxpipe_webhook.schedule import Decision, Outcome, Schedule, State, decide

URL = "http://127.0.0.1:9/hook"
OTHER = "http://127.0.0.1:9/other"


def add(outbox: Outbox, rid: str, *, endpoint: str = URL, now: float = 1000.0, first: float | None = None):
    return outbox.enqueue(endpoint=endpoint, body=f'{{"recording_id":"{rid}"}}'.encode(), source="memory",
                          pipeline="p", recording_id=rid, now=now, first_attempt_at=first)


def test_enqueue_is_durable_across_reopen_and_uses_wal(tmp_path):
    path = tmp_path / "state" / "outbox.sqlite3"
    outbox = Outbox(path)
    event = add(outbox, "r1")
    assert event.id.startswith("msg_") and len(event.id) == 36 and event.state is State.PENDING
    assert event.attempts == 0 and event.next_attempt_at == 1000.0 and event.body == b'{"recording_id":"r1"}'
    # read by an independent connection before close: the row is committed, journal is WAL
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT id, state FROM events").fetchall() == [(event.id, "pending")]
    other.close()
    outbox.close()
    outbox.close()  # idempotent
    with Outbox(path) as again:
        assert again.get(event.id) == event


def test_claim_leases_due_events_and_a_dead_claim_expires(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    a = add(outbox, "a", first=1000)
    b = add(outbox, "b", first=1001)
    add(outbox, "later", first=2000)
    add(outbox, "elsewhere", endpoint=OTHER, first=0)
    claimed = outbox.claim(URL, now=1500, lease=20)
    assert [e.id for e in claimed] == [a.id, b.id]  # oldest due first; not the later one nor another endpoint's
    assert outbox.claim(URL, now=1510, lease=20) == []  # leased: a second claimer gets nothing
    # the claimer "dies": after the lease, the same events are due again, with the same ids
    assert [e.id for e in outbox.claim(URL, now=1521, lease=20)] == [a.id, b.id]
    assert outbox.claim(URL, now=1600, limit=1, lease=20)[0].id == a.id
    assert [e.id for e in outbox.claim(URL, now=3000, ids=[b.id], lease=1)] == [b.id]


def test_claim_is_bounded(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    for i in range(MAX_CLAIM + 5):
        add(outbox, f"r{i}")
    assert len(outbox.claim(URL, now=5000, limit=10_000)) == MAX_CLAIM


def test_record_outcomes(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    s = Schedule(delays=(0, 5), jitter=0)
    e = add(outbox, "a")
    outbox.claim(URL, now=1000)
    outbox.record(e.id, decide(s, status=500, attempts=1, created_at=1000, now=1001), status=500, error=None, now=1001)
    row = outbox.get(e.id)
    assert (row.state, row.attempts, row.next_attempt_at, row.last_status) == (State.PENDING, 1, 1006, 500)
    assert "HTTP 500" in row.last_error
    outbox.record(e.id, decide(s, status=200, attempts=2, created_at=1000, now=1007), status=200, error=None, now=1007)
    row = outbox.get(e.id)
    assert (row.state, row.attempts, row.delivered_at, row.last_error, row.next_attempt_at) == \
        (State.DELIVERED, 2, 1007, None, None)
    f = add(outbox, "f")
    outbox.record(f.id, decide(s, status=403, attempts=1, created_at=1000, now=1001), status=403, error=None, now=1001)
    assert outbox.get(f.id).state is State.FAILED
    assert outbox.counts() == {"pending": 0, "delivered": 1, "failed": 1, "disabled": 0}


def test_410_disables_endpoint_its_pending_events_and_new_ones_until_reopened(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    a, b = add(outbox, "a"), add(outbox, "b")
    c = add(outbox, "c", endpoint=OTHER)
    outbox.record(a.id, Decision(State.DISABLED, Outcome.GONE, None, "HTTP 410: endpoint disabled"), status=410,
                  error=None, now=1001)
    assert outbox.get(a.id).state is State.DISABLED and outbox.get(b.id).state is State.DISABLED
    assert outbox.get(c.id).state is State.PENDING  # other endpoints unaffected
    assert URL in outbox.disabled_endpoints() and "410" in outbox.disabled_endpoints()[URL][1]
    d = add(outbox, "d")
    assert d.state is State.DISABLED and outbox.claim(URL, now=9999) == []
    reopened = outbox.reopen(states=[State.DISABLED], now=2000)
    assert sorted(e.recording_id for e in reopened) == ["a", "b", "d"]
    assert all(e.state is State.PENDING and e.next_attempt_at == 2000 for e in reopened)
    assert outbox.disabled_endpoints() == {}
    assert add(outbox, "e").state is State.PENDING


def test_reopen_unknown_id_and_listing(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    a = add(outbox, "a", now=1)
    b = add(outbox, "b", now=2)
    with pytest.raises(KeyError):
        outbox.reopen(["msg_nope"])
    assert [e.id for e in outbox.events()] == [a.id, b.id]
    assert outbox.events([State.DELIVERED]) == []
    assert [e.id for e in outbox.events(limit=1)] == [a.id]
    assert outbox.next_due(URL) == 1.0 and outbox.next_due(OTHER) is None


def test_prune_keeps_recent_and_undelivered(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    old, recent, pending = add(outbox, "old"), add(outbox, "recent"), add(outbox, "pending")
    ok = Decision(State.DELIVERED, Outcome.DELIVERED)
    outbox.record(old.id, ok, status=200, error=None, now=1000)
    outbox.record(recent.id, ok, status=200, error=None, now=90_000)
    assert outbox.prune(older_than=10_000, now=100_000) == 1
    assert outbox.get(old.id) is None and outbox.get(recent.id) and outbox.get(pending.id)


def test_not_an_outbox(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(OutboxError, match="not a usable outbox"):
        Outbox(bad)
    with pytest.raises(OutboxError, match="no such outbox"):
        Outbox(tmp_path / "missing.db", create=False)


def test_release_makes_unfinished_claims_due_now_but_not_finished_ones(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    a, b = add(outbox, "a"), add(outbox, "b")
    outbox.claim(URL, now=1000, lease=60)
    outbox.record(b.id, Decision(State.DELIVERED, Outcome.DELIVERED), status=200, error=None, now=1001)
    outbox.release([a.id, b.id], now=1002)
    assert outbox.get(a.id).next_attempt_at == 1002 and outbox.get(b.id).state is State.DELIVERED
    assert outbox.get(b.id).next_attempt_at is None
