"""Retry timing without I/O: ``Retry-After`` (RFC 9110 §10.2.3) and exponential backoff.

Backoff uses "full jitter" (delay drawn uniformly from 0 to the exponential cap), which
spreads the retries of many concurrent streams instead of synchronising them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date.

    :param now: the current Unix time (seconds), for HTTP-dates.
    :returns: seconds (>= 0), or ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Limits for retrying one request.

    :ivar max_attempts: tries per request (or per segment without progress), the first included.
    :ivar base_delay: seconds; the cap for attempt ``n`` is ``base_delay * 2**(n-1)``.
    :ivar max_delay: seconds; largest backoff delay.
    :ivar max_retry_after: seconds; longest ``Retry-After`` honoured (longer waits fail the stream).
    :ivar max_rate_limited: 429 answers tolerated per request before giving up.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    max_rate_limited: int = 20

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay in seconds before retry number ``attempt`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return (rng or random).uniform(0, cap)
