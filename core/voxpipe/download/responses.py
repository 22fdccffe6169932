"""What each HTTP response of a download covered, for verifiers that need per-response data.

Some platforms sign each ranged response (the CXone emulator's ``X-Segment-HMAC``:
HMAC-SHA256 over the response's first byte offset, 8-byte big-endian, followed by the
bytes that response carries). A verifier sees only the stream's bytes, in order; to
check such a MAC it must know which byte range each response covered and what its
headers said. This module is that seam:

- a consumer (a verifier's ``begin``) calls :meth:`ResponseLog.attach` on the stream,
  naming the response headers it wants;
- the source asks :meth:`ResponseLog.of` for the stream's log (``None`` when nobody
  wants one, so nothing is recorded) and passes its :meth:`ResponseLog.record` to
  :class:`~voxpipe.download.downloader.RangedDownload` as ``on_response``;
- the downloader calls it once per accepted ``200``/``206`` response, after its status,
  ETag and ``Content-Range`` were checked and before any of its body bytes are yielded,
  so a consumer that drains the log when it receives a chunk always knows the response
  that chunk came from (causality: record, then yield, then the engine forwards).

The log lives in ``stream.metadata`` under a private key (``_`` prefix: never copied to
results, manifests or reports). ``record`` runs on the event loop and ``drain`` in the
verifier's worker thread; a :class:`collections.deque` makes append/popleft atomic.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping

from ..errors import StreamError

#: Responses recorded but not yet drained by the consumer. The engine's bounded channels
#: keep the consumer within a few chunks of the source, so this is only reached when the
#: consumer stopped draining (a bug); the stream then fails rather than grow memory.
MAX_PENDING_RESPONSES = 10_000

_KEY = "_responses"


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """One accepted response of a download.

    :ivar offset: byte offset, in the resource, of the response body's first byte
        (the ``Content-Range`` start of a ``206``; 0 for a ``200``).
    :ivar length: bytes the response declared it carries (the ``Content-Range`` length,
        or ``Content-Length`` / the known size for a ``200``), or ``None`` when unknown.
        A response cut short delivers fewer; the next response resumes at a later offset.
    :ivar status: the HTTP status (200 or 206).
    :ivar headers: the wanted response headers (lowercase names), when present.
    """

    offset: int
    length: int | None
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


class ResponseLog:
    """A stream's queue of :class:`ResponseInfo`, in the order the responses arrived."""

    def __init__(self, headers: Collection[str] = ()):
        self.wanted: set[str] = {h.lower() for h in headers}
        self._pending: deque[ResponseInfo] = deque()

    @classmethod
    def attach(cls, stream: Any, headers: Collection[str] = ()) -> "ResponseLog":
        """The stream's log, created if needed, also keeping ``headers`` (names, any case)."""
        log = stream.metadata.get(_KEY)
        if not isinstance(log, ResponseLog):
            log = stream.metadata[_KEY] = cls(headers)
        else:
            log.wanted.update(h.lower() for h in headers)
        return log

    @staticmethod
    def of(stream: Any) -> "ResponseLog | None":
        """The stream's log if a consumer attached one, else ``None``."""
        log = stream.metadata.get(_KEY)
        return log if isinstance(log, ResponseLog) else None

    @staticmethod
    def recorder(stream: Any) -> "Callable[[int, int | None, int, Mapping[str, str]], None] | None":
        """What a source passes as a download's ``on_response``: the stream log's
        :meth:`record` when a verifier attached one, else ``None`` (nothing is kept)."""
        log = ResponseLog.of(stream)
        return log.record if log is not None else None

    def record(self, offset: int, length: int | None, status: int, headers: Mapping[str, str]) -> None:
        """Append one response, keeping the wanted ``headers`` (names matched case-insensitively).

        :raises StreamError: reason ``response-log-overflow`` past :data:`MAX_PENDING_RESPONSES`.
        """
        if len(self._pending) >= MAX_PENDING_RESPONSES:
            raise StreamError(f"{MAX_PENDING_RESPONSES} responses recorded and not consumed", reason="response-log-overflow")
        lowered = {str(k).lower(): v for k, v in headers.items() if str(k).lower() in self.wanted}
        kept = {name: lowered[name] for name in self.wanted if lowered.get(name) is not None}
        self._pending.append(ResponseInfo(offset, length, status, kept))

    def drain(self) -> list[ResponseInfo]:
        """Remove and return the responses recorded so far, oldest first."""
        out = []
        while True:
            try:
                out.append(self._pending.popleft())
            except IndexError:
                return out
