"""The webhook outbox in a shared PostgreSQL ledger: a worker that died with an event
enqueued (or in flight) has it delivered by another worker, under its webhook-id; the
SQLite outbox's semantics hold (claims skip each other, 410 disables the endpoint)."""

from __future__ import annotations

import base64
import functools
import time

import trio

from voxpipe.ledger import open_ledger
from voxpipe.serving import serve_asgi
from voxpipe_webhook.delivery import DeliveryLoop, Endpoint
from voxpipe_webhook.pg_outbox import PgOutbox
from voxpipe_webhook.schedule import Decision, Outcome, Schedule, State
from voxpipe_webhook.signing import parse_secret

from webhook_receiver import Receiver, reserve_port, verified

SECRET = "whsec_" + base64.b64encode(b"pg-outbox-test-secret-0123456789").decode()
FAST = Schedule(delays=(0, 0.1), horizon=30, jitter=0.2)


def ledger_for(pg_url, tmp_path, identity="cxone client=a"):
    return open_ledger(pg_url, state_dir=tmp_path, pipeline="night", identity=identity)


def test_a_dead_workers_events_are_delivered_by_another(pg_url, tmp_path):
    port = reserve_port()
    url = f"http://127.0.0.1:{port}/hook"
    dead_ledger, live_ledger = ledger_for(pg_url, tmp_path), ledger_for(pg_url, tmp_path)
    dead, live = PgOutbox(dead_ledger), PgOutbox(live_ledger)
    try:
        events = [dead.enqueue(endpoint=url, body=f'{{"recording_id":"{r}"}}'.encode(), source="cxone",
                               pipeline="night", recording_id=r) for r in ("a", "b", "c")]
        in_flight = dead.claim(url, lease=0.5)  # the dead worker was delivering them when it died
        assert [e.id for e in in_flight] == [e.id for e in events]
        assert live.claim(url) == []  # leased: no second claim
        receiver = Receiver()

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve_asgi, receiver, port=port))
                loop = DeliveryLoop(live, Endpoint(url, (parse_secret(SECRET),), {}, 2.0), FAST)
                await nursery.start(loop.run)
                with trio.fail_after(15):
                    while not all(live.get(e.id).state is State.DELIVERED for e in events):
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        started = time.time()
        trio.run(main)
        got = receiver.snapshot()
        assert sorted(r.id for r in got) == sorted(e.id for e in events)  # once each, under its own id
        assert min(r.at for r in got) >= started + 0.3  # not before the dead worker's claim ran out
        assert sorted(b["recording_id"] for b in verified(got, SECRET)) == ["a", "b", "c"]
        assert live.counts()["delivered"] == 3 and dead.counts()["delivered"] == 3  # one shared outbox
        other = PgOutbox(ledger_for(pg_url, tmp_path, identity="cxone client=b"))
        assert other.counts()["delivered"] == 0  # scoped per pipeline and source identity
    finally:
        dead_ledger.close()
        live_ledger.close()


def test_outbox_semantics_match_the_sqlite_outbox(pg_url, tmp_path):
    ledger = ledger_for(pg_url, tmp_path)
    try:
        box = PgOutbox(ledger)
        url = "http://127.0.0.1:9/hook"
        a = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="1", now=100.0)
        b = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="2", now=101.0,
                        first_attempt_at=500.0)
        assert a.state is State.PENDING and a.body == b"{}" and a.next_attempt_at == 100.0
        assert [e.id for e in box.claim(url, now=200.0, lease=10)] == [a.id]  # b is not due yet
        assert box.get(a.id).next_attempt_at == 210.0 and box.next_due(url) == 210.0
        box.release([a.id], now=201.0)
        assert box.get(a.id).next_attempt_at == 201.0
        box.record(a.id, Decision(State.DISABLED, Outcome.GONE), status=410, error=None, now=202.0)
        assert box.get(b.id).state is State.DISABLED and url in box.disabled_endpoints()
        c = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="3")
        assert c.state is State.DISABLED and c.last_error == "endpoint disabled (HTTP 410)"
        reopened = box.reopen(states=[State.DISABLED], now=300.0)
        assert {e.id for e in reopened} == {a.id, b.id, c.id} and box.disabled_endpoints() == {}
        box.record(a.id, Decision(State.DELIVERED, Outcome.DELIVERED), status=200, error=None, now=301.0)
        assert box.prune(older_than=10, now=400.0) == 1 and box.get(a.id) is None
        assert box.counts() == {"pending": 2, "delivered": 0, "failed": 0, "disabled": 0}
    finally:
        ledger.close()
