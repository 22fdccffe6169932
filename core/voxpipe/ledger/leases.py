"""Lease rules: claim, renew, expire, fence and resume decisions, without I/O.

Both ledger backends follow these rules; the SQLite backend calls them directly, the
PostgreSQL backend states the same conditions in SQL (its ``WHERE`` clauses), and
``tests/test_ledger_leases.py`` checks both against the table below.

A lease is a ``(worker, token, until)`` triple on a recording's row (the pattern of job
queues on PostgreSQL such as procrastinate, Oban or graphile-worker; see
``shared/reference/postgres.md``)::

    event      lease before            condition                     lease after
    ---------  ----------------------  ----------------------------  --------------------------
    claim      none (queued)           state claimable               (me, token+1, now+L)
    claim      (w, t, u), u < now      state open (takeover)         (me, t+1, now+L)
    claim      (w, t, u), u >= now     -                             refused (busy)
    renew      (me, t, u)              token matches                 (me, t, now+L)
    renew      (w', t', u)             token differs                 refused (lost)
    change     (me, t, u)              token matches                 applied (renewal not needed)
    change     (w', t', u)             token differs                 refused (lost): LeaseLost
    finish     (me, t, u)              token matches                 released (me, t, None)

The token is the fence: a takeover increments it, so every later change from the
previous holder matches no row. An expired lease that nobody took over still fences
nothing: its holder may finish (it did the work; no one else started).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .interface import OPEN_STATES

#: Default lease length, seconds: how long a silent worker keeps its recordings.
DEFAULT_LEASE_SECONDS = 60.0
#: Default heartbeat period, seconds (a third of the lease: two heartbeats may be lost).
DEFAULT_HEARTBEAT_SECONDS = 20.0
#: The heartbeat must fit this many times into the lease.
MIN_HEARTBEATS_PER_LEASE = 2


class Decision(enum.Enum):
    """The outcome of a claim attempt."""

    CLAIM = "claim"  # free: take it
    TAKEOVER = "takeover"  # held, lease expired: take it, the previous holder is fenced off
    BUSY = "busy"  # held by a live lease
    SETTLED = "settled"  # stored or failed: nothing to claim


@dataclass(frozen=True)
class LeaseRow:
    """The lease columns of a row (``until`` in Unix seconds, ``None``: released)."""

    state: str
    worker: str | None
    token: int
    until: float | None


def claim_decision(row: LeaseRow | None, now: float) -> Decision:
    """Whether a worker may claim a recording whose row is ``row`` (``None``: no row yet)."""
    if row is None:
        return Decision.CLAIM
    if row.state not in OPEN_STATES:
        return Decision.SETTLED
    if row.until is None:
        return Decision.CLAIM if row.state == "queued" or row.worker is None else Decision.TAKEOVER
    if row.until < now:
        return Decision.TAKEOVER
    return Decision.BUSY


def acquire_decision(row: LeaseRow | None, now: float) -> Decision:
    """Like :func:`claim_decision`, for a recording a worker discovered itself: a settled
    row (stored, failed) may be acquired again (the engine decided it needs an attempt)."""
    if row is not None and row.state not in OPEN_STATES:
        return Decision.BUSY if row.until is not None and row.until >= now else Decision.CLAIM
    return claim_decision(row, now)


def next_token(row: LeaseRow | None) -> int:
    """The token a new lease on ``row`` gets."""
    return (row.token if row is not None else 0) + 1


def fenced(row: LeaseRow | None, worker: str, token: int) -> bool:
    """Whether a change under lease ``(worker, token)`` may apply to ``row``."""
    return row is not None and row.token == token and row.worker == worker


def check_terms(lease_seconds: float, heartbeat_seconds: float) -> None:
    """:raises ValueError: the heartbeat does not fit :data:`MIN_HEARTBEATS_PER_LEASE` times in the lease."""
    if lease_seconds <= 0 or heartbeat_seconds <= 0:
        raise ValueError("lease and heartbeat must be positive")
    if heartbeat_seconds * MIN_HEARTBEATS_PER_LEASE > lease_seconds:
        raise ValueError(f"heartbeat ({heartbeat_seconds:g} s) must fit at least {MIN_HEARTBEATS_PER_LEASE} times "
                         f"into the lease ({lease_seconds:g} s), so one late heartbeat does not lose every lease")


def worker_alive(heartbeat_at: float | None, finished_at: float | None, now: float, lease_seconds: float) -> bool:
    """A worker counts as alive while it has not left and its heartbeat is younger than a lease."""
    return finished_at is None and heartbeat_at is not None and now - heartbeat_at <= lease_seconds


class Resume(enum.Enum):
    """What to do with a checkpoint found when an attempt begins."""

    RESUME = "resume"  # continue from resume_offset
    DISCARD = "discard"  # restart from byte 0 and delete the partial state (it is ours to delete)
    ABANDON = "abandon"  # restart from byte 0 and leave the partial state alone (another host's)


def resume_plan(*, checkpoint_host: str | None, my_host: str, takeover: bool, sinks_share_state: bool,
                can_resume: bool, first_attempt: bool, entries_match: bool) -> Resume:
    """Decide how an attempt treats a checkpoint.

    - the sinks' partial state is visible to every worker (``sinks_share_state``, e.g. an
      S3 multipart upload): resume wherever the checkpoint was made;
    - a takeover from another worker otherwise restarts at byte 0: the previous holder may
      only be paused and still append to its local temporary files, so they are neither
      resumed nor deleted here (orphan cleanup on that host removes them later); a
      checkpoint written on another host is likewise left alone;
    - a checkpoint this host wrote in an earlier run (a crash) resumes as on one machine.
    """
    foreign = checkpoint_host is not None and checkpoint_host != my_host
    usable = can_resume and first_attempt and entries_match
    if sinks_share_state:
        return Resume.RESUME if usable else Resume.DISCARD
    if foreign or takeover:
        return Resume.ABANDON
    return Resume.RESUME if usable else Resume.DISCARD
