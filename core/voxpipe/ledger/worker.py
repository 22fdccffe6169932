"""A worker's side of leases: the held-lease registry, the heartbeat, and the shared queue.

Used by the engine (:mod:`voxpipe.engine`); all ledger calls go through
:class:`~voxpipe.ledger.aio.AsyncLedger`, so none blocks the event loop.

- :class:`LeaseKeeper` remembers the lease of every stream in flight and renews them all
  (one ledger call) every ``heartbeat_seconds``. A lease the ledger refuses to renew was
  taken over: the keeper cancels that stream's scope and marks it lost, so the stream
  aborts its sinks without another ledger write. A failed heartbeat (database away) is
  logged and retried at the next period; leases keep their fence, so if the database
  comes back after they expired, whatever another worker took over is safe.
- :func:`drain` claims recordings from the run's queue while slots are free, until the
  run's discovery is done and no recording of the run is open (including those held by
  other live workers: if one dies, its leases expire and this worker takes them over).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import trio

from .aio import AsyncLedger
from .interface import Claim, Lease, LedgerError, RunHandle

log = logging.getLogger("voxpipe.ledger")

#: Seconds between polls of an empty queue (other workers' leases may still expire).
QUEUE_POLL_SECONDS = 0.5
#: Claims per ledger round trip at most.
CLAIM_BATCH = 32
#: Seconds the claim loop keeps retrying an unreachable ledger before the run gives up.
LEDGER_OUTAGE_SECONDS = 300.0
#: Longest pause between those retries, seconds (doubling from QUEUE_POLL_SECONDS).
OUTAGE_RETRY_MAX_SECONDS = 10.0


def worker_id() -> str:
    """This process's worker id: ``host:pid:random`` (unique even when pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def host_of(worker: str | None) -> str | None:
    """The host part of a worker id."""
    return worker.rsplit(":", 2)[0] if worker else None


@dataclass
class Held:
    """A stream's lease while it is in flight."""

    lease: Lease
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    lost: bool = False


class LeaseKeeper:
    """The leases this worker holds; renews them every ``heartbeat_seconds``."""

    def __init__(self, ledger: AsyncLedger, run: RunHandle, *, lease_seconds: float, heartbeat_seconds: float):
        self.ledger, self.run = ledger, run
        self.lease_seconds, self.heartbeat_seconds = lease_seconds, heartbeat_seconds
        self.held: dict[tuple[str, str], Held] = {}
        self.renewals = 0

    def hold(self, lease: Lease) -> Held:
        held = self.held[(lease.source, lease.id)] = Held(lease)
        return held

    def release(self, held: Held) -> None:
        key = (held.lease.source, held.lease.id)
        if self.held.get(key) is held:
            del self.held[key]

    async def beat(self) -> None:
        """One heartbeat: renew every held lease; cancel the streams whose lease was lost."""
        snapshot = list(self.held.values())
        lost = await self.ledger.heartbeat(self.run, [h.lease for h in snapshot], lease_seconds=self.lease_seconds)
        self.renewals += 1
        lost_keys = {(lease.source, lease.id, lease.token) for lease in lost}
        for held in snapshot:
            if (held.lease.source, held.lease.id, held.lease.token) in lost_keys:
                log.warning("recording %s: lease %d lost to another worker; abandoning it", held.lease.id,
                            held.lease.token)
                held.lost = True
                held.scope.cancel()

    async def run_forever(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
            except LedgerError as exc:
                log.warning("heartbeat failed (retrying in %.0f s): %s", self.heartbeat_seconds, exc)


async def drain(ledger: AsyncLedger, run: RunHandle, *, admit: trio.Semaphore, lease_seconds: float,
                start: Callable[[Claim], None], stopping: Callable[[], bool],
                discover: Callable[[], Awaitable[None]] | None, nursery: trio.Nursery) -> None:
    """Claim the run's recordings until its queue is drained (or the run is stopping).

    ``admit`` bounds streams in flight: a slot is taken per claim and ``start(claim)``
    must arrange for its release. ``discover`` (run once, in ``nursery``) takes over the
    run's discovery when the ledger says this worker should (none ran yet, or the
    worker running it died).
    """
    discovering = False

    async def discovery_task() -> None:
        nonlocal discovering
        try:
            await discover()
        finally:
            discovering = False

    async def maybe_discover() -> None:
        nonlocal discovering
        if discover is not None and not discovering and await ledger.begin_discovery(run):
            discovering = True
            nursery.start_soon(discovery_task)

    outage = _Outage()
    check_discovery = True
    while not stopping():
        try:
            if check_discovery:
                await maybe_discover()
                check_discovery = False
            await admit.acquire()
            slots = 1
            while slots < CLAIM_BATCH and admit.value > 0:
                admit.acquire_nowait()
                slots += 1
            try:
                claims = await ledger.claim(run, limit=slots, lease_seconds=lease_seconds)
            except BaseException:
                for _ in range(slots):
                    admit.release()
                raise
            for _ in range(slots - len(claims)):
                admit.release()
            for claim in claims:
                start(claim)
            if claims:
                outage.over()
                continue
            status = await ledger.queue_status(run)
            outage.over()
            if status.drained:
                return
            check_discovery = status.discovery != "done"
        except LedgerError as exc:
            await outage.wait(exc)
            continue
        await trio.sleep(QUEUE_POLL_SECONDS)


class _Outage:
    """Bounded retries while the ledger is unreachable (a database restart, a network cut)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = QUEUE_POLL_SECONDS

    def over(self) -> None:
        if self.since is not None:
            log.warning("ledger reachable again after %.0f s", trio.current_time() - self.since)
        self.since, self.delay = None, QUEUE_POLL_SECONDS

    async def wait(self, exc: LedgerError) -> None:
        """Sleep before the next try. :raises LedgerError: unreachable for LEDGER_OUTAGE_SECONDS."""
        now = trio.current_time()
        if self.since is None:
            self.since = now
        elif now - self.since > LEDGER_OUTAGE_SECONDS:
            raise LedgerError(f"ledger unreachable for {LEDGER_OUTAGE_SECONDS:.0f} s, giving up: {exc}") from None
        log.warning("ledger unreachable (retrying in %.1f s): %s", self.delay, exc)
        await trio.sleep(self.delay)
        self.delay = min(self.delay * 2, OUTAGE_RETRY_MAX_SECONDS)
