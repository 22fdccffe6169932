"""A client-side request-rate limiter: at most N requests per sliding window, slowing down on 429.

Vendor APIs publish per-token budgets (Genesys Cloud: 300 requests per minute per
client-credentials token; NICE CXone Media Playback: 150 per 5 minutes). Staying under
the budget is cheaper than being told off by 429s, and a 429 that arrives anyway
(another client shares the budget) must slow every task using the token, not only the
one that received it.

Two layers, h11-style:

- :class:`WindowBudget`: the sans-IO core. Time is an argument (seconds, any monotonic
  origin); it answers "how long until the next request may go" and records sends and
  429s. Memory is bounded by ``max_requests`` timestamps.
- :class:`RateLimiter`: the trio wrapper. ``await limiter.acquire()`` before each request
  (FIFO through a :class:`trio.Lock`, so waiters are served in arrival order);
  ``limiter.on_rate_limited(retry_after)`` when a 429 arrives.

Behaviour on 429 (additive-increase/multiplicative-decrease, as TCP congestion control):
every request waits until ``Retry-After`` has passed (or :data:`DEFAULT_PAUSE` when the
server gave none), and the effective budget halves (not below :data:`MIN_BUDGET_FRACTION`
of ``max_requests``); each full window without a 429 then restores a tenth of
``max_requests``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import trio

#: Seconds every request pauses after a 429 that carried no usable ``Retry-After``.
DEFAULT_PAUSE = 1.0
#: Longest pause accepted from ``Retry-After`` (seconds); longer values are clamped.
MAX_PAUSE = 600.0
#: The effective budget never drops below this fraction of ``max_requests`` (at least 1).
MIN_BUDGET_FRACTION = 0.1
#: Fraction of ``max_requests`` restored per quiet window after a slowdown.
RECOVERY_FRACTION = 0.1


class WindowBudget:
    """Sliding-window request budget without I/O.

    :param max_requests: requests allowed in any window of ``per_seconds`` (e.g. 300).
    :param per_seconds: window length in seconds (e.g. 60.0).
    :raises ValueError: ``max_requests < 1`` or ``per_seconds <= 0``.
    """

    def __init__(self, max_requests: int, per_seconds: float):
        if max_requests < 1 or not per_seconds > 0:
            raise ValueError(f"rate limit needs max_requests >= 1 and per_seconds > 0, got "
                             f"{max_requests}/{per_seconds}")
        self.max_requests = max_requests
        self.per_seconds = float(per_seconds)
        self.limit = max_requests  # effective budget, lowered by 429s
        self.paused_until = -math.inf
        self.rate_limited = 0  # 429s reported
        self._sent: deque[float] = deque(maxlen=max_requests)
        self._quiet_since = -math.inf  # when the budget last changed

    @property
    def min_limit(self) -> int:
        return max(1, int(self.max_requests * MIN_BUDGET_FRACTION))

    def _recover(self, now: float) -> None:
        if self.limit >= self.max_requests:
            return
        windows = int((now - self._quiet_since) // self.per_seconds)
        if windows > 0:
            step = max(1, int(self.max_requests * RECOVERY_FRACTION))
            self.limit = min(self.max_requests, self.limit + windows * step)
            self._quiet_since += windows * self.per_seconds

    def delay(self, now: float) -> float:
        """Seconds to wait before a request may be sent at ``now`` (0.0: send now)."""
        self._recover(now)
        wait = max(0.0, self.paused_until - now)
        cutoff = now - self.per_seconds
        while self._sent and self._sent[0] <= cutoff:
            self._sent.popleft()
        excess = len(self._sent) - self.limit
        if excess >= 0:
            # the (excess+1)-th oldest send must leave the window first
            wait = max(wait, self._sent[excess] + self.per_seconds - now)
        return wait

    def record(self, now: float) -> None:
        """Note a request sent at ``now``."""
        self._sent.append(now)

    def on_rate_limited(self, now: float, retry_after: float | None) -> None:
        """Note a 429 received at ``now``: pause everyone and halve the budget.

        :param retry_after: seconds from the response's ``Retry-After``, or ``None``.
        """
        self.rate_limited += 1
        pause = DEFAULT_PAUSE if retry_after is None or retry_after < 0 else min(retry_after, MAX_PAUSE)
        self.paused_until = max(self.paused_until, now + pause)
        self.limit = max(self.min_limit, self.limit // 2)
        self._quiet_since = now


class RateLimiter:
    """Async (trio) limiter of the requests made with one credential.

    :param max_requests: requests allowed per window (Genesys: 300; CXone playback: 150).
    :param per_seconds: the window in seconds (Genesys: 60; CXone playback: 300).
    :param clock: seconds, monotonic; defaults to :func:`trio.current_time` (so trio's
        ``MockClock`` drives it in tests).
    """

    def __init__(self, max_requests: int, per_seconds: float, *, clock: Callable[[], float] | None = None):
        self.budget = WindowBudget(max_requests, per_seconds)
        self._clock = clock or trio.current_time
        self._lock = trio.Lock()
        self.waited = 0.0  # total seconds spent waiting, for stats

    async def acquire(self) -> None:
        """Wait until one more request fits the budget, then count it as sent."""
        async with self._lock:
            while True:
                wait = self.budget.delay(self._clock())
                if wait <= 0:
                    break
                self.waited += wait
                await trio.sleep(wait)
            self.budget.record(self._clock())

    def on_rate_limited(self, retry_after: float | None) -> None:
        """Report a 429 (with its ``Retry-After`` in seconds, if any); slows every caller."""
        self.budget.on_rate_limited(self._clock(), retry_after)
