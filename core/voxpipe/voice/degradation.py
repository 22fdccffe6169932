"""Call degradation: a bitrate below a threshold for too long (sans-IO, no clock of its own).

The seed asks for a call to be flagged when its bitrate stays below 12 kbps for a
configurable time: the platform is sending little or nothing (a stalled media path, a
one-way audio fault), which the recording alone would not show. :class:`DegradationMonitor`
is fed ``(now, total payload bytes received)`` at most once per ``interval`` seconds (and
at the end of the call); each interval's bitrate is ``Δbytes × 8 / Δt``, so a long pause
between updates is one low interval, not a blind spot. ``degraded`` becomes true (and
stays true) once low intervals add up to ``after`` seconds in a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: The seed's threshold: 12 kbps (G.711 carries 64 kbps).
DEFAULT_THRESHOLD_BPS = 12_000
#: Seconds between bitrate measurements.
DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class DegradationSnapshot:
    """``degraded``: flagged; ``degraded_seconds``: time below the threshold (all runs);
    ``longest_low_seconds``: the longest run; ``bitrate_bps``: the last interval's."""

    degraded: bool
    degraded_seconds: float
    longest_low_seconds: float
    bitrate_bps: float
    threshold_bps: float
    after_seconds: float

    def to_dict(self) -> dict[str, float | bool]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class DegradationMonitor:
    """See the module docstring. ``update(now, total_bytes) -> bool`` (``now`` in seconds
    on any monotonic clock); ``due(now)`` tells whether an update would measure now."""

    __slots__ = ("threshold_bps", "after", "interval", "degraded", "low_total", "low_run", "longest", "bitrate",
                 "_t", "_bytes")

    def __init__(self, threshold_bps: float = DEFAULT_THRESHOLD_BPS, after: float = 10.0,
                 interval: float = DEFAULT_INTERVAL):
        if threshold_bps < 0 or after < 0 or interval <= 0:
            raise ValueError(f"threshold_bps={threshold_bps}, after={after} s and interval={interval} s must be "
                             "non-negative (interval positive)")
        self.threshold_bps = float(threshold_bps)
        self.after = float(after)
        self.interval = float(interval)
        self.degraded = False
        self.low_total = 0.0
        self.low_run = 0.0
        self.longest = 0.0
        self.bitrate = 0.0
        self._t: float | None = None
        self._bytes = 0

    def due(self, now: float) -> bool:
        return self._t is None or now - self._t >= self.interval

    def update(self, now: float, total_bytes: int, *, final: bool = False) -> bool:
        if self._t is None:
            self._t, self._bytes = now, total_bytes
            return self.degraded
        dt = now - self._t
        if dt <= 0 or (dt < self.interval and not final):
            return self.degraded
        self.bitrate = (total_bytes - self._bytes) * 8 / dt
        self._t, self._bytes = now, total_bytes
        if self.bitrate < self.threshold_bps:
            self.low_run += dt
            self.low_total += dt
            self.longest = max(self.longest, self.low_run)
            if self.low_run >= self.after:
                self.degraded = True
        else:
            self.low_run = 0.0
        return self.degraded

    def snapshot(self) -> DegradationSnapshot:
        return DegradationSnapshot(self.degraded, self.low_total, self.longest, self.bitrate, self.threshold_bps,
                                   self.after)
