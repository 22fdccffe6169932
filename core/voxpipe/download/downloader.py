"""Fetching one resource by byte-range segments over a pooled httpx client.

Guarantees (each is tested against the CXone emulator with faults on):

- bytes are yielded in order, each exactly once, whatever the server does;
- a ``206`` must carry exactly the ``Content-Range`` asked for; a ``200`` to a range
  request means the range was ignored: the body is read from its start, the bytes already
  delivered are skipped, and the download finishes from that one response;
- a connection dropped mid-body resumes from the last byte received, with ``If-Range``
  and the ETag, so a changed resource cannot be spliced: a changed ETag raises
  :class:`~voxpipe.errors.StreamRestart` and the stream starts again from byte 0;
- ``429`` waits for ``Retry-After`` and retries the same bytes (the seed skipped the
  segment: data loss); ``5xx``, ``408`` and transport errors back off exponentially with
  jitter; every loop is bounded by :class:`~voxpipe.download.retry.RetryPolicy`;
- a body with ``Content-Type: application/json`` is an error payload, never audio;
- the bearer token travels in the ``Authorization`` header only; a ``401`` refreshes it once;
- with a ``limiter`` (:mod:`.ratelimit`) every request, retries included, waits for the
  credential's request budget, and a ``429`` slows every user of that budget down;
- with ``stop`` only bytes ``start .. stop-1`` are delivered (one span of a parallel
  download, :mod:`.parallel`); a ``200`` answer is then read only up to ``stop``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping

import httpx
import trio

from ..errors import StreamError, StreamRestart
from ..model import Chunk
from .ranges import ContentRangeError, Segment, check_content_range, plan_segments
from .api import install_httpx_log_redaction
from .retry import RetryPolicy
from .status import Action, Decision, RetriesExhausted, RetryBudget, classify

if TYPE_CHECKING:  # pragma: no cover
    from .ratelimit import RateLimiter

log = logging.getLogger("voxpipe.download")

#: Bytes per read from the socket and per yielded chunk.
DEFAULT_READ_SIZE = 1 << 20
#: Largest JSON error body read from a failed response (bytes).
MAX_ERROR_BODY = 64 * 1024

# httpcore reads 64 KiB per socket read; larger reads cost 2-3x less CPU per byte on large
# bodies (measured: docs/operations.md). The attribute is httpcore's own tuning knob.
try:  # pragma: no cover - depends on httpcore's layout
    import httpcore._async.http11 as _h11

    if getattr(_h11.AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < DEFAULT_READ_SIZE:
        _h11.AsyncHTTP11Connection.READ_NUM_BYTES = DEFAULT_READ_SIZE
except (ImportError, AttributeError):
    pass

install_httpx_log_redaction()


def read_size_for(segment_size: int) -> int:
    """Bytes per read for a segment size: an eighth of a segment, at most DEFAULT_READ_SIZE.

    Why: what a crash can cost is the bytes received after the last checkpoint; with the
    engine's channels holding a few reads, keeping reads to 1/8 of a segment (and the
    default checkpoint interval to half a segment) bounds the re-fetch to one segment.
    """
    return max(16 * 1024, min(DEFAULT_READ_SIZE, segment_size // 8))


AuthHeaders = Callable[[], Awaitable[Mapping[str, str]]]
SegmentObserver = Callable[[dict[str, Any]], None]


class HTTPStatusError(StreamError):
    """The server answered with a status that ends the stream (e.g. 404, 403)."""

    reason = "http-error"


@dataclass
class DownloadStats:
    """Counters for one download: requests made, retries, 429s, bytes received."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    bytes: int = 0


class _Retry(Exception):
    """Internal: the current request failed in a way worth retrying (``decision`` says how)."""

    def __init__(self, message: str, decision: Decision = Decision(Action.RETRY, "transport")):
        super().__init__(message)
        self.decision = decision


class RangedDownload:
    """Downloads one resource of known (or unknown) size.

    :param client: the source's pooled :class:`httpx.AsyncClient`.
    :param url: the resource URL (never carries a bearer token).
    :param recording_id: for messages.
    :param size: bytes, from metadata; ``None`` downloads with one streaming GET.
    :param segment_size: bytes per ranged request.
    :param auth: returns the headers that authenticate a request (``Authorization``).
    :param on_401: called with the refused headers, to invalidate a cached token.
    :param on_segment: receives one dict per response (offset, length, status, attempt, ms)
        for the audit log.
    :param on_response: called as ``on_response(offset, length, status, headers)`` for each
        accepted 200/206 response, before its first body byte is yielded: ``offset`` is the
        body's first byte in the resource (0 for a 200), ``length`` the bytes it declares
        (or ``None``); e.g. :meth:`voxpipe.download.responses.ResponseLog.record`, for
        per-response MACs.
    :param etag: the validator from metadata or a checkpoint, if known.
    :param start: first byte to deliver (resuming a checkpoint); the server must still
        have the same ``etag`` or :class:`StreamRestart` is raised.
    :param stop: byte offset (exclusive) after which to stop; ``None``: the end. Needs ``size``.
    :param limiter: the credential's request budget, acquired before every request.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, *, recording_id: str, size: int | None,
                 segment_size: int, auth: AuthHeaders | None = None,
                 on_401: Callable[[Mapping[str, str]], None] | None = None,
                 on_segment: SegmentObserver | None = None, policy: RetryPolicy | None = None,
                 read_size: int = DEFAULT_READ_SIZE, etag: str | None = None, params: Mapping[str, str] | None = None,
                 rng: random.Random | None = None, start: int = 0, stop: int | None = None,
                 limiter: "RateLimiter | None" = None,
                 on_response: Callable[[int, int | None, int, Mapping[str, str]], None] | None = None):
        if stop is not None and (size is None or not start <= stop <= size):
            raise ValueError(f"recording {recording_id}: stop={stop} needs a known size and start <= stop <= size "
                             f"(start={start}, size={size})")
        self.client = client
        self.on_response = on_response
        self.params = dict(params or {})
        # params are merged into the URL once: httpx's params= replaces the URL's own query,
        # which would strip a pre-signed URL's signature
        self.url = str(httpx.URL(url).copy_merge_params(self.params)) if self.params else url
        self.recording_id = recording_id
        self.size = size
        self.segment_size = segment_size
        self.auth = auth
        self.on_401 = on_401
        self.on_segment = on_segment
        self.policy = policy or RetryPolicy()
        self.read_size = read_size
        self.etag = etag
        self.rng = rng or random.Random()
        self.limiter = limiter
        self.stop = stop
        self.stats = DownloadStats()
        #: Next byte to deliver; ``start`` > 0 resumes (with ``If-Range: etag``).
        self.position = start

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield the resource's bytes in order as chunks of at most ``read_size`` bytes.

        :raises StreamRestart: the resource changed (ETag) or its size did (416).
        :raises HTTPStatusError: a non-retryable status (4xx other than 401/408/429).
        :raises StreamError: retries exhausted (reason ``download-failed``) or a malformed
            answer persisted.
        """
        if not self.size:
            async for chunk in self._fetch(None):
                yield chunk
            return
        stop = self.size if self.stop is None else self.stop
        for segment in plan_segments(self.size, self.segment_size):
            if segment.end < self.position:
                continue  # already delivered by a 200 whole-body answer
            if self.position >= stop:
                return
            if segment.end >= stop:
                segment = Segment(segment.start, stop - 1)
            async for chunk in self._fetch(segment):
                yield chunk

    async def _fetch(self, segment: Segment | None) -> AsyncIterator[Chunk]:
        """Deliver ``segment`` (or the whole resource) from ``self.position``, retrying."""
        budget = RetryBudget(self.policy, self.rng, can_refresh=self.auth is not None)
        while True:
            start_position = self.position
            try:
                async for chunk in self._request(segment):
                    yield chunk
                return
            except _Retry as retry:
                if self.position > start_position:
                    budget.progress()  # count failures afresh from here
                decision = retry.decision
                try:
                    wait = budget.next_wait(decision)
                except RetriesExhausted as exc:
                    if exc.reason == "http-401":
                        raise HTTPStatusError(f"recording {self.recording_id}: {exc}", reason="http-401") from None
                    if exc.reason == "http-429-exhausted":
                        raise StreamError(f"recording {self.recording_id}: {exc} at byte {self.position}",
                                          reason=exc.reason, retryable=False) from None
                    raise StreamError(f"recording {self.recording_id}: {retry} ({exc} at byte {self.position})",
                                      reason="download-failed") from None
                if decision.action is Action.RATE_LIMITED:
                    self.stats.rate_limited += 1
                if decision.action is not Action.REFRESH_TOKEN:
                    self.stats.retries += 1
                    log.info("recording %s: %s; retrying in %.2f s", self.recording_id, retry, wait)
                    await trio.sleep(wait)

    async def _request(self, segment: Segment | None) -> AsyncIterator[Chunk]:
        headers = {"Accept-Encoding": "identity"}
        if self.auth is not None:
            headers.update(await self.auth())
        asked: Segment | None = None
        if segment is not None:
            asked = Segment(self.position, segment.end)
            headers["Range"] = asked.range_header()
            if self.position > 0 and self.etag:
                headers["If-Range"] = self.etag
        if self.limiter is not None:
            await self.limiter.acquire()
        self.stats.requests += 1
        t0 = time.perf_counter()
        status = 0
        try:
            async with self.client.stream("GET", self.url, headers=headers) as response:
                status = response.status_code
                await self._check_status(response, headers)
                etag = response.headers.get("etag")
                if self.etag and etag and etag != self.etag:
                    raise StreamRestart(f"recording {self.recording_id}: the resource changed on the server "
                                        f"(ETag {self.etag} became {etag}) at byte {self.position}",
                                        reason="etag-changed")
                self.etag = self.etag or etag
                if status == 206 and asked is not None:
                    try:
                        check_content_range(response.headers.get("content-range"), asked, self.size)
                    except ContentRangeError as exc:
                        raise _Retry(f"bad 206 answer: {exc}") from None
                    skip, end, cut = 0, asked.end + 1, None
                elif status == 206:
                    raise _Retry("206 answer to a request without Range")
                else:  # 200: the whole body from byte 0 (a range request was ignored)
                    if "If-Range" in headers and not etag:
                        # RFC 9110 §13.1.5: a 200 to If-Range means "changed" unless the
                        # validator proves it is the same representation; it cannot here.
                        raise StreamRestart(f"recording {self.recording_id}: server answered 200 to a resumed "
                                            f"request at byte {self.position} without an ETag", reason="etag-changed")
                    skip, end = self.position, self.size
                    # a span download reads a whole-body answer only as far as it needs
                    cut = self.stop if self.stop is not None and self.stop < (self.size or 0) else None
                    declared = response.headers.get("content-length")
                    if self.size is not None and declared is not None and int(declared) != self.size:
                        raise StreamRestart(f"recording {self.recording_id}: server sent {declared} bytes, "
                                            f"metadata says {self.size}", reason="size-changed")
                if self.on_response is not None:
                    if status == 206 and asked is not None:
                        self.on_response(asked.start, asked.length, status, response.headers)
                    else:
                        declared = response.headers.get("content-length")
                        self.on_response(0, int(declared) if declared and declared.isdigit() else self.size, status,
                                         response.headers)
                async for data in response.aiter_raw(self.read_size):
                    if skip:
                        if len(data) <= skip:
                            skip -= len(data)
                            continue
                        data, skip = data[skip:], 0
                    if cut is not None and self.position + len(data) >= cut:
                        data = data[:cut - self.position]
                        chunk = Chunk(self.position, data)
                        self.position += len(data)
                        self.stats.bytes += len(data)
                        if data:
                            yield chunk
                        return  # the rest of the body belongs to other spans: close the response
                    if end is not None and self.position + len(data) > end:
                        raise StreamError(f"recording {self.recording_id}: server sent more than the "
                                          f"{end} bytes expected", reason="overlong-body")
                    chunk = Chunk(self.position, data)
                    self.position += len(data)
                    self.stats.bytes += len(data)
                    yield chunk
                if end is not None and self.position < end:
                    raise _Retry(f"body ended at byte {self.position}, expected {end}")
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__} at byte {self.position}") from None
        finally:
            if self.on_segment is not None:
                self.on_segment({"offset": asked.start if asked else 0,
                                 "length": asked.length if asked else self.size,
                                 "status": status, "received_to": self.position,
                                 "ms": round((time.perf_counter() - t0) * 1000, 3)})

    async def _check_status(self, response: httpx.Response, sent: Mapping[str, str]) -> None:
        status = response.status_code
        decision = classify(status, response.headers, now=time.time(), ok=(200, 206), media=True,
                            range_asked="Range" in sent)
        if decision.action is Action.ACCEPT:
            return
        detail = await _error_detail(response)
        if decision.reason == "json-error-body":
            raise _Retry(f"server sent a JSON error payload instead of audio at byte {self.position}: {detail}",
                         decision)
        if decision.action is Action.REFRESH_TOKEN:
            if self.on_401 is not None:
                self.on_401(sent)
            raise _Retry("401 Unauthorized", decision)
        if decision.action is Action.RATE_LIMITED:
            if self.limiter is not None:
                self.limiter.on_rate_limited(decision.wait)
            raise _Retry(f"429 Too Many Requests at byte {self.position}", decision)
        if decision.action is Action.RESTART:
            raise StreamRestart(f"recording {self.recording_id}: 416 Range Not Satisfiable at byte {self.position} "
                                f"(the recording's size changed); re-reading metadata", reason=decision.reason)
        if decision.action is Action.RETRY:
            raise _Retry(f"HTTP {status} at byte {self.position}: {detail}", decision)
        raise HTTPStatusError(f"recording {self.recording_id}: HTTP {status} {response.reason_phrase}: {detail}",
                              reason=decision.reason)


async def _error_detail(response: httpx.Response) -> str:
    """A short, printable description of an error body (bounded read)."""
    body = b""
    async for data in response.aiter_raw(MAX_ERROR_BODY):
        body += data
        if len(body) >= MAX_ERROR_BODY:
            break
    body = body[:MAX_ERROR_BODY]
    try:
        payload = json.loads(body)
        if isinstance(payload, dict):
            for key in ("message", "error_description", "error", "errorMsg", "detail"):
                if key in payload:
                    return str(payload[key])[:300]
        return json.dumps(payload)[:300]
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"
