"""Byte ranges without I/O (RFC 9110 §14), both sides of the exchange.

Client side: segment planning, ``Range`` formatting, ``Content-Range`` checking.
Server side (the emulators and the archive retrieval API): deciding how to answer a
``Range`` and ``If-Range`` for one representation of a known size. Only single ``bytes``
ranges are honoured; anything a server may ignore under §14.2 (other units, several
ranges, bad syntax) yields :data:`IGNORE`, meaning "answer 200 with the whole body".

Positions are byte offsets; ends are inclusive as in HTTP (``bytes=0-99`` is 100 bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Union

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


# re.ASCII: RFC 9110 positions are ASCII DIGITs and the separators ASCII spaces; without it
# \d would accept Arabic-Indic or full-width digits and \s an em space.
_SATISFIED = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*$", re.IGNORECASE | re.ASCII)
_UNSATISFIED = re.compile(r"^\s*bytes\s+\*/(\d{1,19})\s*$", re.IGNORECASE | re.ASCII)


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


# --------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable byte range: ``first``..``last`` inclusive, in bytes."""

    first: int
    last: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """``Content-Range`` value for a 206 of a ``size``-byte representation."""
        return f"bytes {self.first}-{self.last}/{size}"


@dataclass(frozen=True)
class Unsatisfiable:
    """A syntactically valid range that no byte of the representation satisfies (416)."""

    spec: str


class _Ignore:
    def __repr__(self) -> str:
        return "IGNORE"


IGNORE: Final = _Ignore()
"""Marker: the ``Range`` header is absent or is to be ignored (answer 200 full)."""

RangeDecision = Union[ByteRange, Unsatisfiable, _Ignore]


def parse_range(header: str | None, size: int) -> RangeDecision:
    """Decide how to answer a ``Range`` header for a representation of ``size`` bytes.

    Returns a :class:`ByteRange` (answer 206), :class:`Unsatisfiable` (answer 416
    with ``Content-Range: bytes */size``) or :data:`IGNORE` (answer 200).
    Forms: ``bytes=a-b`` (``b`` clamped to ``size-1``), ``bytes=a-``, ``bytes=-n``
    (last ``n`` bytes). RFC 9110 §14.1.1–§14.2.
    """
    if header is None:
        return IGNORE
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return IGNORE  # unknown range unit: MUST ignore (RFC 9110 §14.2)
    spec = spec.strip()
    if "," in spec:
        return IGNORE  # several ranges: this server only does single-part answers
    first_s, dash, last_s = spec.partition("-")
    first_s, last_s = first_s.strip(), last_s.strip()
    if not dash or not _is_digits(first_s, allow_empty=True) or not _is_digits(last_s, allow_empty=True):
        return IGNORE
    if first_s == "":
        if last_s == "":
            return IGNORE
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            return Unsatisfiable(spec)
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(first_s)
    if last_s != "":
        last = int(last_s)
        if last < first:
            return IGNORE  # invalid range-spec
    else:
        last = size - 1
    if first >= size:
        return Unsatisfiable(spec)
    return ByteRange(first, min(last, size - 1))


#: Longest byte position accepted in a ``Range`` (digits); longer ones make the header ignored.
MAX_POSITION_DIGITS = 19


def _is_digits(text: str, *, allow_empty: bool) -> bool:
    if text == "":
        return allow_empty
    return text.isascii() and text.isdigit() and len(text) <= MAX_POSITION_DIGITS


def if_range_allows(if_range: str | None, etag: str) -> bool:
    """True when a ``Range`` may be honoured given the request's ``If-Range``.

    No ``If-Range`` → True. An entity-tag must match ``etag`` by strong
    comparison (a weak tag never matches); a date never matches because the
    servers here send no ``Last-Modified``. RFC 9110 §13.1.5.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith("W/"):
        return False
    return value == etag


def unsatisfied_content_range(size: int) -> str:
    """``Content-Range`` value for a 416: ``bytes */size`` (RFC 9110 §15.5.17)."""
    return f"bytes */{size}"
