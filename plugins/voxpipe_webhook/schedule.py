"""When to try a webhook delivery again, and what an answer means. Sans-IO.

Source: Standard Webhooks specification, "Delivery behaviour" (see
``/work/shared/reference/standard-webhooks.md``):

- a 2xx answer is success; anything else (3xx included; redirects are not followed) is
  a failed attempt;
- ``410 Gone`` disables the endpoint: no more attempts until an operator re-enables it;
- other 4xx answers except ``408 Request Timeout`` and ``429 Too Many Requests`` cannot
  succeed by repeating the same request: the event fails permanently (recorded);
- 429, 502, 503 and 504 throttle: ``Retry-After`` (RFC 9110 §10.2.3) is honoured when
  longer than the scheduled delay;
- retries follow the example schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
  10 h), the last delay repeating until the retry horizon (3 days by default) has
  passed, each delay spread by ±``jitter`` so receivers recovering from an outage are
  not hit by every sender at the same second.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

#: Delays in seconds before attempt 1, 2, 3, ... (the specification's example schedule).
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
#: Seconds after an event was enqueued past which no attempt is scheduled.
DEFAULT_HORIZON = 3 * 24 * 3600.0
#: Each delay is multiplied by a factor drawn uniformly from [1 - jitter, 1 + jitter].
DEFAULT_JITTER = 0.2
#: Attempts per event, whatever the schedule and horizon (a bound on the retry loop).
MAX_ATTEMPTS = 100


class State(str, enum.Enum):
    """An event's delivery state in the outbox."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"


class Outcome(enum.Enum):
    """What one delivery attempt's answer means."""

    DELIVERED = "delivered"    # 2xx
    RETRY = "retry"            # 3xx, 408, 5xx, no answer (refused, reset, timeout)
    THROTTLED = "throttled"    # 429, 502, 503, 504: retry, honouring Retry-After
    PERMANENT = "permanent"    # other 4xx: repeating the request cannot help
    GONE = "gone"              # 410: disable the endpoint


#: Statuses that ask the sender to slow down (Retry-After honoured).
THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
#: 4xx statuses that are worth repeating.
RETRYABLE_4XX = frozenset({408, 429})

#: The transition table: (state before the attempt, outcome) -> state after. Only
#: pending events are attempted; a retryable outcome keeps the event pending unless the
#: schedule is exhausted (then :func:`decide` moves it to FAILED).
TRANSITIONS: dict[tuple[State, Outcome], State] = {
    (State.PENDING, Outcome.DELIVERED): State.DELIVERED,
    (State.PENDING, Outcome.RETRY): State.PENDING,
    (State.PENDING, Outcome.THROTTLED): State.PENDING,
    (State.PENDING, Outcome.PERMANENT): State.FAILED,
    (State.PENDING, Outcome.GONE): State.DISABLED,
}


def classify(status: int | None) -> Outcome:
    """The outcome of an attempt from its HTTP status (``None``: no answer at all)."""
    if status is None:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    if status in THROTTLE_STATUSES:
        return Outcome.THROTTLED
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome.PERMANENT
    return Outcome.RETRY


@dataclass(frozen=True)
class Schedule:
    """A retry schedule.

    :ivar delays: seconds before attempt 1, 2, ...; the last repeats until the horizon.
    :ivar horizon: seconds after enqueueing past which no attempt is scheduled.
    :ivar jitter: fraction (0–1) by which each delay is randomly spread either way.
    :ivar max_attempts: attempts per event at most.
    """

    delays: tuple[float, ...] = DEFAULT_SCHEDULE
    horizon: float = DEFAULT_HORIZON
    jitter: float = DEFAULT_JITTER
    max_attempts: int = MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if not self.delays or any(d < 0 for d in self.delays):
            raise ValueError("retry schedule must be a non-empty list of delays >= 0 s")
        if len(self.delays) > 1 and self.delays[-1] <= 0:
            raise ValueError("the last delay of a retry schedule must be > 0 s (it repeats until the horizon)")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.horizon < 0:
            raise ValueError("retry horizon must be >= 0 s")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number ``attempt`` (1-based), jitter applied."""
        base = self.delays[min(max(attempt, 1), len(self.delays)) - 1]
        if not base or not self.jitter:
            return float(base)
        return base * (rng or random).uniform(1 - self.jitter, 1 + self.jitter)


@dataclass(frozen=True)
class Decision:
    """What to record after an attempt.

    :ivar state: the event's new state.
    :ivar outcome: how the answer was classified.
    :ivar next_attempt_at: Unix seconds of the next attempt, for PENDING; else ``None``.
    :ivar note: short human text (``"HTTP 500; next attempt in 5.2 s"``).
    """

    state: State
    outcome: Outcome
    next_attempt_at: float | None = None
    note: str = field(default="")


def decide(schedule: Schedule, *, status: int | None, error: str | None = None, retry_after: float | None = None,
           attempts: int, created_at: float, now: float, rng: random.Random | None = None) -> Decision:
    """Apply an attempt's answer to a pending event.

    :param status: the HTTP status, or ``None`` when no answer came (``error`` says why).
    :param retry_after: seconds from a ``Retry-After`` header, if any.
    :param attempts: attempts made so far, this one included.
    :param created_at: Unix seconds when the event was enqueued (the horizon's origin).
    :param now: Unix seconds now.
    """
    outcome = classify(status)
    state = TRANSITIONS[(State.PENDING, outcome)]
    what = f"HTTP {status}" if status is not None else (error or "no answer")
    if state is not State.PENDING:
        notes = {State.DELIVERED: what, State.FAILED: f"{what}: permanent failure, not retried",
                 State.DISABLED: f"{what}: endpoint disabled"}
        return Decision(state, outcome, None, notes[state])
    wait = schedule.delay(attempts + 1, rng)
    if outcome is Outcome.THROTTLED and retry_after is not None:
        wait = max(wait, retry_after)
    when = now + wait
    if attempts >= schedule.max_attempts or when > created_at + schedule.horizon:
        return Decision(State.FAILED, outcome, None,
                        f"{what}: gave up after {attempts} attempt(s) (retry horizon {schedule.horizon:g} s)")
    return Decision(State.PENDING, outcome, when, f"{what}; next attempt in {wait:.1f} s")


def first_attempt_at(schedule: Schedule, now: float, rng: random.Random | None = None) -> float:
    """Unix seconds of an event's first attempt (the schedule's first delay, normally 0)."""
    return now + schedule.delay(1, rng)
