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

from dataclasses import dataclass

from voxpipe.download.ranges import ByteRange, Unsatisfiable, if_range_allows, parse_range


@dataclass(frozen=True)
class Decision:
    """What to send: ``status`` (200, 206, 304, 416) and for 206 the ``range``."""

    status: int
    range: ByteRange | None = None


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
    if not if_range_allows(headers.get("if-range"), etag):
        return Decision(200)
    parsed = parse_range(range_value, size)
    if isinstance(parsed, Unsatisfiable):
        return Decision(416)
    if isinstance(parsed, ByteRange):
        return Decision(206, parsed)
    return Decision(200)  # ignored: other unit, several ranges, bad syntax (RFC 9110 §14.2)
