"""Durations written as a count and a unit: ``90d``, ``12h``, ``30m``, ``45s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longest duration accepted (100 years), so typos like ``90000000d`` are caught.
MAX_SECONDS = 100 * 365 * 86400
_DURATION = re.compile(r"^\s*(\d{1,12})\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    """Parse ``<count><unit>`` with unit s, m, h, d or w.

    :raises ValueError: naming the bad text and the expected form; zero and more than
        100 years are refused.
    """
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"invalid duration {text!r}: expected a whole number followed by s, m, h, d or w "
                         "(e.g. 90d, 12h, 30m)")
    seconds = int(m.group(1)) * UNITS[m.group(2)]
    if seconds == 0:
        raise ValueError(f"invalid duration {text!r}: must be more than zero")
    if seconds > MAX_SECONDS:
        raise ValueError(f"invalid duration {text!r}: longer than 100 years")
    return timedelta(seconds=seconds)
