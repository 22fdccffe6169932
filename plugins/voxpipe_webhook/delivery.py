"""Delivering outbox events over HTTP: one signed attempt, and the trio loop that runs them.

Each attempt POSTs the event's stored body with a fresh ``webhook-timestamp`` and
signature but the event's own ``webhook-id`` (Standard Webhooks: the id is the
receiver's idempotency key), bounded by the endpoint's ``timeout``; redirects are not
followed. Its answer is classified by :mod:`.schedule` and recorded in the outbox before
anything else happens, under a cancel shield.

:class:`DeliveryLoop` claims due events of one endpoint (at most ``max_in_flight`` at a
time), sleeps until the next one is due, a new one is enqueued (:meth:`DeliveryLoop.notify`)
or :data:`POLL_INTERVAL` passes (events enqueued or reopened by another process).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import httpx
import trio

from voxpipe import __version__
from voxpipe.download.api import redact_url
from voxpipe.download.retry import parse_retry_after

from .outbox import MAX_CLAIM, Outbox, OutboxEvent
from .schedule import Decision, Schedule, State, decide
from .signing import Secret, sign

log = logging.getLogger("voxpipe.webhook")

#: Seconds between looks at the outbox when nothing is due sooner (other processes' events).
POLL_INTERVAL = 1.0
#: Seconds a claim outlives the attempt's timeout before another claim may take the event.
LEASE_MARGIN = 5.0
#: Header naming the stream's source type (kept from the seed).
SOURCE_HEADER = "X-Stream-Source"


@dataclass(frozen=True, repr=False)
class Endpoint:
    """Where and how to deliver: URL, signing keys, extra headers, per-attempt timeout (s).

    Its repr shows the URL without query string; keys and header values never appear.
    """

    url: str
    secrets: tuple[Secret, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 15.0

    def __repr__(self) -> str:
        return f"<Endpoint {redact_url(self.url)} secrets={len(self.secrets)}>"

    @property
    def lease(self) -> float:
        return self.timeout + LEASE_MARGIN


@dataclass(frozen=True)
class AttemptResult:
    """One attempt: the event, the HTTP status or the error met, and the recorded decision."""

    event: OutboxEvent
    status: int | None
    error: str | None
    decision: Decision
    seconds: float

    @property
    def state(self) -> State:
        return self.decision.state


def request_headers(endpoint: Endpoint, event: OutboxEvent, timestamp: int) -> dict[str, str]:
    """Headers of one attempt: content type, source, extra headers, then the signature headers."""
    headers = {"content-type": "application/json", "user-agent": f"voxpipe/{__version__}",
               SOURCE_HEADER: event.source}
    headers.update(endpoint.headers)
    headers.update(sign(event.id, timestamp, event.body, endpoint.secrets))
    return headers


def _describe(exc: BaseException, endpoint: Endpoint) -> str:
    text = str(exc) or type(exc).__name__
    text = text.replace(endpoint.url, redact_url(endpoint.url))
    return f"{type(exc).__name__}: {text}"


async def attempt(client: httpx.AsyncClient, endpoint: Endpoint, event: OutboxEvent, *, outbox: Outbox,
                  schedule: Schedule, rng: random.Random | None = None,
                  clock: Callable[[], float] = time.time) -> AttemptResult:
    """POST ``event`` once and record the outcome in ``outbox``.

    Never raises for HTTP or network failures: they are outcomes (see :mod:`.schedule`).
    """
    started = clock()
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    headers = request_headers(endpoint, event, int(started))
    with trio.move_on_after(endpoint.timeout) as scope:
        try:
            async with client.stream("POST", endpoint.url, content=event.body, headers=headers,
                                     timeout=endpoint.timeout) as response:
                status = response.status_code  # the body is not read: only the status matters
                retry_after = parse_retry_after(response.headers.get("retry-after"), now=clock())
        except httpx.HTTPError as exc:
            error = _describe(exc, endpoint)
    if status is None and scope.cancelled_caught:
        error = f"no answer within {endpoint.timeout:g} s"
    now = clock()
    decision = decide(schedule, status=status, error=error, retry_after=retry_after, attempts=event.attempts + 1,
                      created_at=event.created_at, now=now, rng=rng)
    with trio.CancelScope(shield=True):  # an answer that came must be recorded, even during shutdown
        await trio.to_thread.run_sync(lambda: outbox.record(event.id, decision, status=status, error=error, now=now))
    return AttemptResult(event, status, error, decision, now - started)


def log_attempt(result: AttemptResult, endpoint: Endpoint, audit: Any = None) -> None:
    """Log (and audit) one attempt's outcome; never logs secrets or the URL's query."""
    event = result.event
    where = redact_url(endpoint.url)
    text = f"webhook {event.id} (recording {event.recording_id}) to {where}: {result.decision.note}"
    if result.state is State.DELIVERED:
        log.info(text)
    elif result.state is State.PENDING:
        log.warning(text)
    else:
        log.error(text)
    if audit is not None:
        audit.write("webhook", pipeline=event.pipeline, source=event.source, stream=event.recording_id,
                    webhook_id=event.id, endpoint=where, attempt=event.attempts + 1, status=result.status,
                    state=result.state.value, note=result.decision.note)


class DeliveryLoop:
    """Delivers one endpoint's due events from the outbox until cancelled.

    :param max_in_flight: concurrent attempts at most.
    :param audit: an :class:`voxpipe.audit.AuditLog` to record attempts in, or ``None``.
    """

    def __init__(self, outbox: Outbox, endpoint: Endpoint, schedule: Schedule, *, max_in_flight: int = 8,
                 audit: Any = None, rng: random.Random | None = None):
        self.outbox = outbox
        self.endpoint = endpoint
        self.schedule = schedule
        self.max_in_flight = max_in_flight
        self.audit = audit
        self.rng = rng
        self.in_flight = 0
        self.attempts = 0
        self._claiming = False
        self._leased: set[str] = set()  # ids claimed by this loop whose outcome is not recorded yet
        self._wake = trio.Event()

    def notify(self) -> None:
        """Look at the outbox now (an event was enqueued)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        url = self.endpoint.url
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.endpoint.timeout, limits=limits) as client:
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    await self._loop(nursery, client, url)
            finally:
                if self._leased:  # attempts cut short by shutdown: due again now, not when the lease ends
                    leased = list(self._leased)
                    with trio.CancelScope(shield=True):
                        try:
                            await trio.to_thread.run_sync(lambda: self.outbox.release(leased))
                        except sqlite3.Error as exc:
                            log.error("webhook outbox %s: could not release %d claimed events (%s); they are due "
                                      "again when their lease ends", self.outbox.path, len(leased), exc)

    async def _loop(self, nursery: trio.Nursery, client: httpx.AsyncClient, url: str) -> None:
        while True:
            self._wake = trio.Event()
            try:
                wait = await self._dispatch(nursery, client, url)
            except sqlite3.Error as exc:
                # a locked or full disk must not end the run: the events stay in the outbox
                log.error("webhook outbox %s: %s: %s; trying again in %.0f s", self.outbox.path,
                          type(exc).__name__, exc, POLL_INTERVAL)
                self._claiming = False
                wait = POLL_INTERVAL
            with trio.move_on_after(wait):
                await self._wake.wait()

    async def _dispatch(self, nursery: trio.Nursery, client: httpx.AsyncClient, url: str) -> float:
        """Start attempts for due events while there is room; returns seconds until the next look."""
        free = self.max_in_flight - self.in_flight
        if free > 0:
            self._claiming = True  # claimed rows are leased before in_flight counts them
            try:
                claimed = await trio.to_thread.run_sync(
                    lambda: self.outbox.claim(url, limit=free, lease=self.endpoint.lease))
                for event in claimed:
                    self.in_flight += 1
                    self._leased.add(event.id)
                    nursery.start_soon(self._one, client, event)
            finally:
                self._claiming = False
        if self.in_flight >= self.max_in_flight:
            return POLL_INTERVAL  # a finishing attempt wakes us
        due = await trio.to_thread.run_sync(self.outbox.next_due, url)
        return POLL_INTERVAL if due is None else min(POLL_INTERVAL, max(0.01, due - time.time()))

    async def _one(self, client: httpx.AsyncClient, event: OutboxEvent) -> None:
        try:
            result = await attempt(client, self.endpoint, event, outbox=self.outbox, schedule=self.schedule,
                                   rng=self.rng)
            self.attempts += 1
            self._leased.discard(event.id)
            log_attempt(result, self.endpoint, self.audit)
        except sqlite3.Error as exc:
            log.error("webhook %s (recording %s): outcome not recorded (%s: %s); it stays pending and is sent "
                      "again with the same id", event.id, event.recording_id, type(exc).__name__, exc)
        finally:
            self.in_flight -= 1
            self._wake.set()

    async def idle_until(self, deadline: float) -> bool:
        """Wait until nothing is in flight and nothing is due before ``deadline`` (trio time).

        :returns: whether that happened before the deadline.
        """
        while True:
            remaining = deadline - trio.current_time()
            if self.in_flight == 0 and not self._claiming:
                due = await trio.to_thread.run_sync(self.outbox.next_due, self.endpoint.url)
                if due is None or due > time.time() + remaining:
                    return True
            if remaining <= 0:
                return False
            await trio.sleep(min(0.05, remaining))


async def deliver_now(outbox: Outbox, endpoints: Mapping[str, tuple[Endpoint, Schedule]],
                      events: Iterable[OutboxEvent], *, max_in_flight: int = 8,
                      rng: random.Random | None = None) -> list[AttemptResult]:
    """One attempt for each of ``events`` right away (operator redelivery), at most ``max_in_flight`` at once.

    :param endpoints: by URL, the endpoint (keys, headers, timeout) and its retry schedule.
    Events are claimed first, so a running pipeline does not send them at the same time;
    only pending events that are due are attempted (reopen others first). Events whose
    endpoint is not in ``endpoints`` are skipped (the caller reports them).
    """
    results: list[AttemptResult] = []
    limiter = trio.CapacityLimiter(max_in_flight)
    by_endpoint: dict[str, list[str]] = {}
    for event in events:
        if event.endpoint in endpoints:
            by_endpoint.setdefault(event.endpoint, []).append(event.id)
    async with httpx.AsyncClient(follow_redirects=False) as client:
        async with trio.open_nursery() as nursery:
            for url, ids in by_endpoint.items():
                endpoint, schedule = endpoints[url]
                claimed: list[OutboxEvent] = []
                for start in range(0, len(ids), MAX_CLAIM):
                    batch = ids[start:start + MAX_CLAIM]
                    claimed += await trio.to_thread.run_sync(
                        lambda: outbox.claim(url, ids=batch, limit=len(batch), lease=endpoint.lease))

                async def one(event: OutboxEvent, endpoint: Endpoint = endpoint, schedule: Schedule = schedule) -> None:
                    async with limiter:
                        result = await attempt(client, endpoint, event, outbox=outbox, schedule=schedule, rng=rng)
                        log_attempt(result, endpoint)
                        results.append(result)

                for event in claimed:
                    nursery.start_soon(one, event)
    return results
