"""Byte ranges without I/O: segment planning and Range/Content-Range handling (RFC 9110 §14).

Positions are byte offsets, ``end`` is inclusive as in HTTP (``bytes=0-99`` is 100 bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Largest segment the planner accepts (bytes); larger requests make retries too costly.
MAX_SEGMENT_SIZE = 1 << 31


class ContentRangeError(ValueError):
    """A ``Content-Range`` header that is malformed or not what was asked for."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes ``start`` to ``end`` inclusive of a resource."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def range_header(self) -> str:
        """The ``Range`` header value, ``bytes=start-end``."""
        return f"bytes={self.start}-{self.end}"


def plan_segments(size: int, segment_size: int) -> list[Segment]:
    """Split ``size`` bytes into consecutive segments of at most ``segment_size`` bytes.

    Every byte ``0 .. size-1`` is covered exactly once, in order; ``size == 0`` gives no
    segments.

    :raises ValueError: negative ``size`` or ``segment_size`` outside ``1 .. MAX_SEGMENT_SIZE``.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0 bytes, got {size}")
    if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment size must be 1..{MAX_SEGMENT_SIZE} bytes, got {segment_size}")
    return [Segment(start, min(start + segment_size, size) - 1) for start in range(0, size, segment_size)]


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A parsed satisfied ``Content-Range``: ``bytes start-end/complete_length``.

    ``complete_length`` is ``None`` when the server sent ``*`` (unknown length).
    """

    start: int
    end: int
    complete_length: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


_SATISFIED = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d{1,19})\s*$", re.IGNORECASE)


def parse_content_range(value: str | None) -> ContentRange:
    """Parse a 206 response's ``Content-Range`` (RFC 9110 §14.4).

    :raises ContentRangeError: missing, malformed, ``start > end``, or ``end`` beyond the
        complete length.
    """
    if value is None:
        raise ContentRangeError("206 response without Content-Range")
    m = _SATISFIED.match(value)
    if not m:
        raise ContentRangeError(f"malformed Content-Range {value!r}")
    start, end = int(m.group(1)), int(m.group(2))
    complete = None if m.group(3) == "*" else int(m.group(3))
    if start > end:
        raise ContentRangeError(f"Content-Range {value!r}: first byte after last byte")
    if complete is not None and end >= complete:
        raise ContentRangeError(f"Content-Range {value!r}: last byte beyond the complete length")
    return ContentRange(start, end, complete)


def parse_unsatisfied_range(value: str | None) -> int | None:
    """The complete length from a 416's ``Content-Range: bytes */N``, or ``None``."""
    m = _UNSATISFIED.match(value or "")
    return int(m.group(1)) if m else None


def check_content_range(value: str | None, asked: Segment, size: int | None) -> ContentRange:
    """Parse ``value`` and require it to be exactly the range asked for.

    :raises ContentRangeError: the server sent other bytes than asked, or another length.
    """
    cr = parse_content_range(value)
    if cr.start != asked.start or cr.end != asked.end:
        raise ContentRangeError(f"asked for {asked.range_header()}, server sent bytes {cr.start}-{cr.end}")
    if size is not None and cr.complete_length is not None and cr.complete_length != size:
        raise ContentRangeError(f"server reports a complete length of {cr.complete_length} bytes, expected {size}")
    return cr
