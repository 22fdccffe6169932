"""Webhook outbox and delivery cost, as ratios against baselines measured in this script.

1. Durable enqueue (WAL, synchronous=FULL: one fsync per event) against the same inserts
   with synchronous=OFF: the price of "a crash loses nothing", per event.
2. Deliveries per second to a loopback receiver with max_in_flight=8 against 1.

Run: python benchmarks/webhook_outbox.py [N]
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
from pathlib import Path

import trio

from voxpipe.serving import serve_asgi
from voxpipe_webhook.delivery import DeliveryLoop, Endpoint
from voxpipe_webhook.outbox import Outbox
from voxpipe_webhook.schedule import Schedule, State
from voxpipe_webhook.signing import parse_secret

BODY = b'{"recording_id":"r","success":true,"total_bytes":1000000,"audit_entries":[]}' + b" " * 600


def enqueue_seconds(path: Path, n: int, synchronous: str) -> float:
    from voxpipe_webhook import outbox as module

    original = module._synchronous.__enter__
    if synchronous == "OFF":  # baseline: the same inserts without the per-event fsync
        module._synchronous.__enter__ = lambda self: self.db.execute("PRAGMA synchronous=OFF")
    try:
        outbox = Outbox(path)
        t0 = time.perf_counter()
        for i in range(n):
            outbox.enqueue(endpoint="http://127.0.0.1:1/h", body=BODY, source="s", pipeline="p",
                           recording_id=str(i))
        elapsed = time.perf_counter() - t0
        outbox.close()
    finally:
        module._synchronous.__enter__ = original
    return elapsed


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def deliver_seconds(path: Path, n: int, max_in_flight: int) -> float:
    outbox = Outbox(path)
    secret = parse_secret("whsec_" + base64.b64encode(bytes(32)).decode())

    async def main() -> float:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, app)
            for i in range(n):
                outbox.enqueue(endpoint=url + "/h", body=BODY, source="s", pipeline="p", recording_id=str(i))
            t0 = time.perf_counter()
            loop = DeliveryLoop(outbox, Endpoint(url + "/h", (secret,)), Schedule(), max_in_flight=max_in_flight)
            await nursery.start(loop.run)
            while outbox.counts()[State.DELIVERED.value] < n:
                await trio.sleep(0.01)
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
            return elapsed

    try:
        return trio.run(main)
    finally:
        outbox.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        off = enqueue_seconds(tmp_path / "off.db", n, "OFF")
        full = enqueue_seconds(tmp_path / "full.db", n, "FULL")
        print(f"enqueue: {n / full:,.0f} events/s durable (FULL) vs {n / off:,.0f} events/s unsynced; "
              f"durability costs {full / off:.1f}x ({full / n * 1000:.2f} ms per event)")
        one = deliver_seconds(tmp_path / "d1.db", n, 1)
        eight = deliver_seconds(tmp_path / "d8.db", n, 8)
        print(f"delivery to loopback: {n / eight:,.0f}/s with max_in_flight=8 vs {n / one:,.0f}/s with 1 "
              f"({one / eight:.2f}x)")


if __name__ == "__main__":
    main()
