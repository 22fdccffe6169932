"""Delivery against a real receiver on loopback: down at first, slow, 500, 429 + Retry-After, 410, 4xx."""

from __future__ import annotations

import base64
import functools
import time

import trio

from voxpipe.serving import serve_asgi
from voxpipe_webhook.delivery import DeliveryLoop, Endpoint
from voxpipe_webhook.outbox import Outbox
from voxpipe_webhook.schedule import Schedule, State
from voxpipe_webhook.signing import parse_secret

from webhook_receiver import Receiver, reserve_port, verified

SECRET = "whsec_" + base64.b64encode(b"delivery-test-secret-0123456789").decode()
FAST = Schedule(delays=(0, 0.1), horizon=30, jitter=0.2)


def endpoint(url: str, timeout: float = 2.0, headers=None) -> Endpoint:
    return Endpoint(url + "/hook", (parse_secret(SECRET),), headers or {}, timeout)


def enqueue(outbox: Outbox, url: str, rids):
    return [outbox.enqueue(endpoint=url + "/hook", body=f'{{"recording_id":"{r}"}}'.encode(), source="memory",
                           pipeline="p", recording_id=r) for r in rids]


async def wait_for(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def states(outbox: Outbox, events) -> list[State]:
    return [outbox.get(e.id).state for e in events]


def test_receiver_down_at_first_then_up_gets_every_event_signed_with_stable_ids(tmp_path):
    port = reserve_port()
    url = f"http://127.0.0.1:{port}"
    receiver = Receiver()
    outbox = Outbox(tmp_path / "o.db")
    events = enqueue(outbox, url, ["a", "b", "c"])

    async def main():
        async with trio.open_nursery() as nursery:
            loop = DeliveryLoop(outbox, endpoint(url), FAST, max_in_flight=2)
            await nursery.start(loop.run)
            await wait_for(lambda: all(outbox.get(e.id).attempts >= 2 for e in events))
            refused = outbox.get(events[0].id)
            assert refused.state is State.PENDING and refused.last_status is None
            assert "ConnectError" in refused.last_error
            await nursery.start(functools.partial(serve_asgi, receiver, port=port))  # the receiver comes up
            await wait_for(lambda: states(outbox, events) == [State.DELIVERED] * 3)
            nursery.cancel_scope.cancel()

    trio.run(main)
    got = receiver.snapshot()
    assert sorted(r.id for r in got) == sorted(e.id for e in events)  # each exactly once, under its own id
    bodies = verified(got, SECRET)
    assert sorted(b["recording_id"] for b in bodies) == ["a", "b", "c"]
    for r in got:
        assert r.headers["x-stream-source"] == "memory" and r.headers["content-type"] == "application/json"
        assert abs(int(r.headers["webhook-timestamp"]) - r.at) < 5  # fresh timestamp on the late attempt


def test_500_then_success_retries_with_the_same_id_and_fresh_timestamps(tmp_path):
    receiver = Receiver(lambda n, r: (500 if n < 2 else 200, {}, 0.0))
    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, receiver)
            events = enqueue(outbox, url, ["x"])
            await nursery.start(DeliveryLoop(outbox, endpoint(url, headers={"Authorization": "Bearer t0k"}),
                                             Schedule(delays=(0, 1.1), jitter=0)).run)
            await wait_for(lambda: outbox.get(events[0].id).state is State.DELIVERED)
            nursery.cancel_scope.cancel()
            return events[0]

    event = trio.run(main)
    got = receiver.snapshot()
    assert [r.id for r in got] == [event.id] * 3
    verified(got, SECRET)
    stamps = [int(r.headers["webhook-timestamp"]) for r in got]
    assert stamps[2] > stamps[0]  # each attempt signs anew: the timestamp moves, the id stays
    assert len({r.headers["webhook-signature"] for r in got}) == 3
    assert all(r.headers["authorization"] == "Bearer t0k" for r in got)
    row = outbox.get(event.id)
    assert row.attempts == 3 and row.last_status == 200 and row.delivered_at


def test_429_retry_after_is_honoured(tmp_path):
    receiver = Receiver(lambda n, r: (429, {"Retry-After": "1"}, 0.0) if n == 0 else (204, {}, 0.0))
    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, receiver)
            events = enqueue(outbox, url, ["throttled"])
            await nursery.start(DeliveryLoop(outbox, endpoint(url), Schedule(delays=(0, 0.05), jitter=0)).run)
            await wait_for(lambda: outbox.get(events[0].id).state is State.DELIVERED)
            nursery.cancel_scope.cancel()

    trio.run(main)
    first, second = receiver.snapshot()
    assert first.id == second.id
    assert second.at - first.at >= 0.95  # waited for Retry-After, not the 0.05 s schedule
    verified([first, second], SECRET)


def test_slow_receiver_times_out_and_the_retry_keeps_the_id(tmp_path):
    receiver = Receiver(lambda n, r: (200, {}, 3.0 if n == 0 else 0.0))
    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, receiver)
            events = enqueue(outbox, url, ["slow"])
            loop = DeliveryLoop(outbox, endpoint(url, timeout=0.3), FAST)
            await nursery.start(loop.run)
            await wait_for(lambda: outbox.get(events[0].id).state is State.DELIVERED)
            nursery.cancel_scope.cancel()
            return events[0]

    event = trio.run(main)
    row = outbox.get(event.id)
    assert row.attempts == 2
    got = receiver.snapshot()
    assert [r.id for r in got] == [event.id, event.id]  # the receiver saw it twice: same id, so it de-duplicates
    verified(got, SECRET)


def test_410_disables_the_endpoint_and_other_4xx_fail_permanently(tmp_path):
    plan = {"gone": 410, "bad": 422, "ok": 200}
    receiver = Receiver(lambda n, r: (plan[r.event()["recording_id"]], {}, 0.0))
    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, receiver)
            bad, ok = enqueue(outbox, url, ["bad", "ok"])
            loop = DeliveryLoop(outbox, endpoint(url), FAST, max_in_flight=1)
            await nursery.start(loop.run)
            await wait_for(lambda: states(outbox, [bad, ok]) == [State.FAILED, State.DELIVERED])
            gone, = enqueue(outbox, url, ["gone"])
            later, = enqueue(outbox, url, ["ok"])
            loop.notify()
            await wait_for(lambda: outbox.get(gone.id).state is State.DISABLED)
            await trio.sleep(0.5)  # time for retries that must not happen
            nursery.cancel_scope.cancel()
            return bad, gone, later

    bad, gone, later = trio.run(main)
    got = receiver.snapshot()
    assert [r.event()["recording_id"] for r in got].count("bad") == 1  # 422: never retried
    assert [r.event()["recording_id"] for r in got].count("gone") == 1  # 410: never retried
    assert "permanent" in outbox.get(bad.id).last_error and outbox.get(bad.id).last_status == 422
    row = outbox.get(later.id)
    if row.state is State.DISABLED:  # enqueued before the 410 answer: moved to disabled, never sent
        assert later.id not in {r.id for r in got}
    else:
        assert row.state is State.DELIVERED
    assert list(outbox.disabled_endpoints()) == [gone.endpoint]
    assert outbox.enqueue(endpoint=gone.endpoint, body=b"{}", source="s", pipeline="p",
                          recording_id="after").state is State.DISABLED
    verified(got, SECRET)


def test_bounded_concurrency(tmp_path):
    in_flight = {"now": 0, "max": 0}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await trio.sleep(0.1)
        in_flight["now"] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, app)
            events = enqueue(outbox, url, [f"r{i}" for i in range(12)])
            await nursery.start(DeliveryLoop(outbox, endpoint(url), FAST, max_in_flight=3).run)
            await wait_for(lambda: set(states(outbox, events)) == {State.DELIVERED})
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert in_flight["max"] == 3


def test_shutdown_mid_attempt_gives_the_claim_back(tmp_path):
    receiver = Receiver(lambda n, r: (200, {}, 5.0))
    outbox = Outbox(tmp_path / "o.db")

    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, receiver)
            events = enqueue(outbox, url, ["held"])
            async with trio.open_nursery() as inner:
                await inner.start(DeliveryLoop(outbox, endpoint(url, timeout=30), FAST).run)
                await wait_for(lambda: receiver.snapshot())
                leased = outbox.get(events[0].id).next_attempt_at
                assert leased > time.time() + 30  # claimed: leased for timeout + margin
                inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
            return events[0], leased

    event, leased = trio.run(main)
    row = outbox.get(event.id)
    assert row.state is State.PENDING and row.attempts == 0 and row.next_attempt_at <= time.time()
