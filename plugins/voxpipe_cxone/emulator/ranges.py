"""Sans-IO HTTP range logic for the emulator's download endpoints.

Parses ``Range`` and ``If-Range`` request headers and formats ``Content-Range``
as RFC 9110 §14 describes, for one representation of a known size in bytes.
Only a single ``bytes`` range is honoured; anything the server may ignore under
RFC 9110 §14.2 (other units, several ranges, bad syntax) yields :data:`IGNORE`
so that the caller answers 200 with the whole representation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Union

__all__ = [
    "ByteRange",
    "Unsatisfiable",
    "IGNORE",
    "RangeDecision",
    "parse_range",
    "if_range_allows",
    "content_range",
    "unsatisfied_content_range",
]


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable byte range: ``first``..``last`` inclusive, in bytes."""

    first: int
    last: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.last - self.first + 1


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


def _is_digits(text: str, *, allow_empty: bool) -> bool:
    if text == "":
        return allow_empty
    return text.isascii() and text.isdigit()


def if_range_allows(if_range: str | None, etag: str) -> bool:
    """True when a ``Range`` may be honoured given the request's ``If-Range``.

    No ``If-Range`` → True. An entity-tag must match ``etag`` by strong
    comparison (a weak tag never matches); a date never matches because the
    emulator sends no ``Last-Modified``. RFC 9110 §13.1.5.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith("W/"):
        return False
    return value == etag


def content_range(byte_range: ByteRange, size: int) -> str:
    """``Content-Range`` value for a 206: ``bytes first-last/size`` (RFC 9110 §14.4)."""
    return f"bytes {byte_range.first}-{byte_range.last}/{size}"


def unsatisfied_content_range(size: int) -> str:
    """``Content-Range`` value for a 416: ``bytes */size`` (RFC 9110 §15.5.17)."""
    return f"bytes */{size}"
