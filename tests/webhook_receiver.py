"""A real webhook receiver for the tests: an ASGI app that records every request and
answers according to a plan (status, headers, delay), plus a port reserved for a
receiver that is "down at first" (nothing listens until it is started)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import trio
from standardwebhooks import Webhook

from voxpipe.serving import read_body

#: Largest webhook body the receiver accepts (bytes).
MAX_TEST_BODY = 1 << 20


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def event(self) -> dict:
        return json.loads(self.body)


#: plan(n, received) -> (status, extra headers, seconds to wait before answering); n counts
#: earlier requests carrying the same webhook-id.
Plan = Callable[[int, Received], tuple[int, dict[str, str], float]]


def always(status: int = 200) -> Plan:
    return lambda n, r: (status, {}, 0.0)


class Receiver:
    """ASGI app: records requests (thread-safe) and answers per ``plan`` (changeable at any time)."""

    def __init__(self, plan: Plan | None = None):
        self.plan = plan or always(200)
        self.requests: list[Received] = []
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = await read_body(receive, MAX_TEST_BODY)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        received = Received(headers, body, time.time())
        with self._lock:
            n = sum(1 for r in self.requests if r.headers.get("webhook-id") == headers.get("webhook-id"))
            self.requests.append(received)
        status, extra, delay = self.plan(n, received)
        if delay:
            await trio.sleep(delay)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in extra.items()]})
        await send({"type": "http.response.body", "body": b""})

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def by_id(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for r in self.snapshot():
            out.setdefault(r.id, []).append(r)
        return out


def verified(requests: list[Received], *secrets: str) -> list[dict]:
    """Every request verified with the reference library for every given secret; their events."""
    events = []
    for r in requests:
        for secret in secrets:
            events.append(Webhook(secret).verify(r.body, r.headers))
    return events[::len(secrets)] if secrets else []


def reserve_port() -> int:
    """A loopback port nothing listens on (yet): connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
