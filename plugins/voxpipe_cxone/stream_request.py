"""Building requests to CXone's streaming endpoint, without I/O.

``GET {api_base}/api/v2/recordings/{id}/stream?offsets=0,15,30&codec=opus&maxDuration=180``
(the CXone seed forum thread, ``/work/shared/reference/cxone.md``):

- ``offsets`` are integer seconds, comma-separated (``0,15,30``); a JSON-style bracketed
  list (``[0,15,30]``) is answered 400, so it is never sent;
- at most :data:`MAX_OFFSETS_PER_REQUEST` offsets per request (more is a 413): a longer
  offset list is split into consecutive groups of at most three, one request each;
- ``maxDuration`` caps each offset's segment (seconds); ``codec`` asks for a codec.

How groups compose (voxpipe's decision): each group is one stream and one archive file,
because each answer is a complete media body of its own (for WAV, a header sized to that
answer). The stream id is the recording id when there is one group, else
``{recording id}@{first offset of the group}`` (e.g. ``100001@0``, ``100001@45``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import quote

#: Most offsets the endpoint accepts in one request (more is answered 413).
MAX_OFFSETS_PER_REQUEST = 3
#: Most offsets accepted for one recording (groups of three: at most 100 requests).
MAX_OFFSETS = 300
#: Largest offset accepted (seconds; 1 day).
MAX_OFFSET_SECONDS = 86_400


class StreamRequestError(ValueError):
    """Offsets or options that the streaming endpoint would refuse."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """One streaming request: a recording and up to three offsets (seconds).

    :ivar recording_id: the CXone recording id.
    :ivar offsets: 1..3 strictly increasing non-negative integers (seconds).
    :ivar codec: value of ``codec``, or ``None`` to omit it (as stored).
    :ivar max_duration: ``maxDuration`` in seconds, or ``None`` to omit it.
    """

    recording_id: str
    offsets: tuple[int, ...]
    codec: str | None = None
    max_duration: int | None = None

    def __post_init__(self) -> None:
        check_offsets(self.offsets, limit=MAX_OFFSETS_PER_REQUEST)
        if self.max_duration is not None and (type(self.max_duration) is not int or self.max_duration < 1):
            raise StreamRequestError(f"maxDuration must be a positive integer (seconds), got {self.max_duration!r}")
        if self.codec is not None and (not self.codec or not self.codec.isascii() or not self.codec.isalnum()):
            raise StreamRequestError(f"codec must be a short alphanumeric name such as opus, got {self.codec!r}")

    @property
    def path(self) -> str:
        """``/api/v2/recordings/{id}/stream`` with the id percent-encoded."""
        return f"/api/v2/recordings/{quote(self.recording_id, safe='')}/stream"

    def params(self) -> dict[str, str]:
        """Query parameters, ``offsets`` comma-separated (never bracketed)."""
        params = {"offsets": format_offsets(self.offsets)}
        if self.codec is not None:
            params["codec"] = self.codec
        if self.max_duration is not None:
            params["maxDuration"] = str(self.max_duration)
        return params


def check_offsets(offsets: Sequence[int], *, limit: int = MAX_OFFSETS) -> None:
    """Require 1..``limit`` strictly increasing integers in ``0 .. MAX_OFFSET_SECONDS``.

    :raises StreamRequestError: naming the offending offset and its index.
    """
    if not offsets:
        raise StreamRequestError("at least one offset (seconds) is needed")
    if len(offsets) > limit:
        raise StreamRequestError(f"{len(offsets)} offsets given; at most {limit}")
    for i, t in enumerate(offsets):
        if type(t) is not int or not 0 <= t <= MAX_OFFSET_SECONDS:
            raise StreamRequestError(f"offset #{i} ({t!r}) is not an integer number of seconds in "
                                     f"0..{MAX_OFFSET_SECONDS}")
        if i and t <= offsets[i - 1]:
            raise StreamRequestError(f"offsets must be strictly increasing: #{i} ({t}) follows {offsets[i - 1]}")


def format_offsets(offsets: Iterable[int]) -> str:
    """``0,15,30``: the only form the endpoint accepts."""
    return ",".join(str(int(t)) for t in offsets)


def split_offsets(offsets: Sequence[int], size: int = MAX_OFFSETS_PER_REQUEST) -> list[tuple[int, ...]]:
    """Consecutive groups of at most ``size`` offsets, in order (``[0,15,30,45]`` → ``[(0,15,30), (45,)]``).

    :raises StreamRequestError: offsets invalid (see :func:`check_offsets`), ``size`` not 1..3.
    """
    if not 1 <= size <= MAX_OFFSETS_PER_REQUEST:
        raise StreamRequestError(f"group size must be 1..{MAX_OFFSETS_PER_REQUEST}, got {size}")
    check_offsets(offsets)
    return [tuple(offsets[i:i + size]) for i in range(0, len(offsets), size)]


def plan_requests(recording_id: str, offsets: Sequence[int], *, codec: str | None = None,
                  max_duration: int | None = None) -> list[tuple[str, StreamRequest]]:
    """``(stream id, request)`` for each offset group of ``recording_id`` (see module doc for ids)."""
    groups = split_offsets(offsets)
    out = []
    for group in groups:
        stream_id = recording_id if len(groups) == 1 else f"{recording_id}@{group[0]}"
        out.append((stream_id, StreamRequest(recording_id, group, codec=codec, max_duration=max_duration)))
    return out
