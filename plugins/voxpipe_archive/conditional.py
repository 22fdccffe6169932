"""Sans-IO server side of RFC 9110 conditional and range requests, for one representation.

:func:`evaluate` takes the request's method and headers (``If-None-Match``, ``Range``,
``If-Range``) and the representation's strong ETag and size in bytes, and decides the
response: 200 with the whole body, 206 with one byte range, 304 Not Modified or 416
Range Not Satisfiable. Only single ranges are served; a multi-range or syntactically
invalid ``Range`` is ignored and the whole representation sent, as RFC 9110 §14.2
allows. ``If-Range`` carrying a date is treated as not matching (the server sends no
``Last-Modified``, and §13.1.5 requires a strong validator), so the whole body is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d{0,19})\s*-\s*(\d{0,19})\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte positions ``first``..``last`` of a representation (RFC 9110 §14.1.1)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.first}-{self.last}/{size}"


@dataclass(frozen=True)
class Decision:
    """What to send: ``status`` (200, 206, 304, 416) and for 206 the ``range``."""

    status: int
    range: ByteRange | None = None


def parse_range(value: str, size: int) -> ByteRange | None | bool:
    """Parse a single ``bytes=`` range against a representation of ``size`` bytes.

    :returns: the :class:`ByteRange`; ``None`` when the header is to be ignored (other
        unit, several ranges, bad syntax); ``False`` when it is valid but unsatisfiable.
    """
    m = _RANGE.match(value)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = int(last) if last != "" else size - 1
    if last != "" and end < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        return False
    return ByteRange(start, min(end, size - 1))


def _etags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _weak_match(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2)."""
    plain = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == plain for t in _etags(header))


def evaluate(method: str, headers: dict[str, str], *, etag: str, size: int, ranges: bool = True) -> Decision:
    """Decide the response to a GET/HEAD of one representation.

    :param headers: request headers, names lower-case.
    :param etag: the representation's strong entity tag, quoted (``"<sha256>"``).
    :param size: its length in bytes.
    :param ranges: whether byte ranges may be served for it.
    """
    inm = headers.get("if-none-match")
    if inm is not None and _weak_match(inm, etag):
        return Decision(304)
    range_value = headers.get("range")
    if not ranges or range_value is None or method not in ("GET", "HEAD"):
        return Decision(200)
    if_range = headers.get("if-range")
    if if_range is not None:
        tag = if_range.strip()
        if tag.startswith("W/") or tag != etag:  # strong comparison; a date never matches
            return Decision(200)
    parsed = parse_range(range_value, size)
    if parsed is None:
        return Decision(200)
    if parsed is False:
        return Decision(416)
    return Decision(206, parsed)
