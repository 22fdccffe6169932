"""Per-host request-rate window for the emulator (sans-IO).

CXone's Media Playback API allows 150 requests per 5 minutes by default
(help.nicecxone.com, Media Playback APIs); over the limit the emulator answers
429 with ``Retry-After`` (RFC 9110 §10.2.3, RFC 6585 §4). The window slides:
a request is admitted when fewer than ``limit`` requests were admitted in the
last ``window`` seconds. Rejected requests do not count.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate

__all__ = ["RateLimit", "WindowRateLimiter", "retry_after_value"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` requests per ``window`` seconds."""

    limit: int
    window: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ValueError(f"rate limit needs limit ≥ 1 and window > 0 s, got {self.limit}/{self.window}")

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        """Parse ``N/WINDOW`` with WINDOW in seconds or suffixed s/m/h: ``150/300``, ``150/5m``."""
        m = _SPEC_RE.match(spec)
        if not m:
            raise ValueError(f"rate limit {spec!r} is not N/WINDOW (e.g. 150/300 or 150/5m)")
        return cls(int(m.group(1)), float(m.group(2)) * _UNITS[m.group(3)])


class WindowRateLimiter:
    """Sliding-window log of admitted request times; memory bounded by ``limit``."""

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate
        self._admitted: deque[float] = deque(maxlen=rate.limit)
        self._lock = threading.Lock()

    def admit(self, now: float) -> float | None:
        """Admit a request at ``now`` (seconds): None if admitted, else seconds until a slot frees."""
        with self._lock:
            while self._admitted and self._admitted[0] <= now - self.rate.window:
                self._admitted.popleft()
            if len(self._admitted) < self.rate.limit:
                self._admitted.append(now)
                return None
            return max(0.0, self._admitted[0] + self.rate.window - now)

    def reset(self) -> None:
        """Forget every admitted request."""
        with self._lock:
            self._admitted.clear()


def retry_after_value(delay: float, now: float, *, http_date: bool) -> str:
    """``Retry-After`` value for ``delay`` seconds from ``now`` (Unix seconds).

    delay-seconds rounded up to a whole second, or an IMF-fixdate
    (RFC 9110 §10.2.3) for the same instant rounded up.
    """
    seconds = max(0, math.ceil(delay))
    if http_date:
        return formatdate(math.ceil(now) + seconds, usegmt=True)
    return str(seconds)
