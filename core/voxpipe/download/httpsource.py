"""What every HTTP recording source shares: settings, client, range probe, signed-URL refresh.

A source of recordings over HTTP (CXone, Genesys Cloud, the next one) declares its
settings as a subclass of :class:`HTTPSourceSettings`, derives from :class:`HTTPSource`
and gets, built the same way for all:

- the pooled :class:`httpx.AsyncClient` (:func:`make_client`: timeouts, pool size, TLS,
  redirects, ``User-Agent``) and the :class:`~voxpipe.download.retry.RetryPolicy`;
- a bearer-token cache (:class:`~voxpipe.download.tokens.BearerTokens`) around the
  source's own ``fetch_token``;
- JSON API calls with retries (:meth:`HTTPSource.call`, :func:`~voxpipe.download.api.request_json`);
- the range probe :func:`probe_range` (``GET`` with ``Range: bytes=0-0``: a pre-signed
  URL cannot be asked ``HEAD``), whose status handling is :mod:`.status`'s decision table;
- :meth:`HTTPSource.download`: ranged (optionally parallel) downloads that continue on a
  fresh URL when a temporary signed URL expires mid-file (403), bounded by ``max_refreshes``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, TypeVar

import httpx
import trio

from ..components import ConnectCheck, Source
from ..errors import StreamError
from ..model import Chunk, Stream
from ..settings import ByteSize, Settings, setting
from .api import redact_url, request_json
from .downloader import AuthHeaders, HTTPStatusError, RangedDownload, read_size_for
from .parallel import ParallelDownload, effective_connections
from .ranges import ContentRangeError, parse_content_range
from .responses import ResponseLog
from .retry import RetryPolicy
from .status import Action, RetriesExhausted, RetryBudget, classify
from .tokens import BearerTokens, Token

if TYPE_CHECKING:  # pragma: no cover
    from .ratelimit import RateLimiter

log = logging.getLogger("voxpipe.download")
T = TypeVar("T")

#: Fresh signed URLs fetched per stream after 403s (expired temporary URLs), by default.
DEFAULT_MAX_REFRESHES = 3


class HTTPSourceSettings(Settings):
    """Settings every HTTP recording source accepts (declared once, documented per source)."""

    chunk_size: ByteSize = setting(8 << 20, description="Bytes per ranged request (segment size).",
                              ge=64 << 10, le=1 << 30)
    max_connections: int = setting(16, description="Most HTTP connections open at once (the global cap, across "
                                   "all streams and their parallel segment requests).", ge=1, le=256)
    timeout: float = setting(60.0, description="Seconds to wait for a connection or for the next bytes of a body.",
                             gt=0, le=3600)
    max_attempts: int = setting(6, description="Tries per request (or per segment without progress).", ge=1, le=50)
    max_retry_after: float = setting(300.0, description="Longest `Retry-After` honoured, in seconds.", ge=0)
    retry_base_delay: float = setting(0.5, description="Seconds; exponential backoff (with full jitter) starts here "
                                      "and doubles per failed try, capped at 30 s.", ge=0, le=60)
    verify_tls: bool = setting(True, description="Verify the servers' TLS certificates.")


def make_client(settings: HTTPSourceSettings) -> httpx.AsyncClient:
    """The source's pooled client: ``max_connections`` connections (all kept alive), ``timeout``
    per connect/read, TLS verification per ``verify_tls``, redirects followed."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout),
        limits=httpx.Limits(max_connections=settings.max_connections,
                            max_keepalive_connections=settings.max_connections),
        verify=settings.verify_tls, follow_redirects=True, headers={"User-Agent": "voxpipe"})


def retry_policy(settings: HTTPSourceSettings) -> RetryPolicy:
    """The :class:`RetryPolicy` of ``max_attempts``, ``max_retry_after`` and ``retry_base_delay``."""
    return RetryPolicy(max_attempts=settings.max_attempts, max_retry_after=settings.max_retry_after,
                       base_delay=settings.retry_base_delay)


@dataclass(frozen=True)
class RangeProbe:
    """What ``Range: bytes=0-0`` told about a resource.

    :ivar size: complete length in bytes (from ``Content-Range``), or ``None`` when the
        server ignored the range (200): download with one streaming GET then.
    :ivar etag: the validator, if the server sent one.
    :ivar content_type: the ``Content-Type`` media type (lower case), or ``None``.
    :ivar head: the first body bytes received (at most one for a 206; up to
        :data:`PROBE_HEAD_BYTES` of a 200), for sniffing the container.
    """

    size: int | None
    etag: str | None
    content_type: str | None = None
    head: bytes = b""

    @property
    def ranged(self) -> bool:
        return self.size is not None


#: Most body bytes a probe reads from a 200 answer (it then closes the connection).
PROBE_HEAD_BYTES = 64


async def get_with_retries(client: httpx.AsyncClient, url: str, on_answer: Callable[[httpx.Response], Awaitable[T]],
                           *, what: str, policy: RetryPolicy | None = None, rng: random.Random | None = None,
                           limiter: "RateLimiter | None" = None, headers: Mapping[str, str] | None = None,
                           ok: tuple[int, ...] = (200,)) -> T:
    """``GET url`` (streamed) until an answer in ``ok`` arrives, then ``await on_answer(response)``.

    Statuses follow :func:`voxpipe.download.status.classify`; transient failures (5xx, 408,
    429 with ``Retry-After``, transport errors, also while ``on_answer`` reads the body) are
    retried within ``policy``. No bearer token is sent: for signed URLs that authorise
    themselves. ``what`` names the resource in messages; the URL never does.

    :raises HTTPStatusError: a final status (reason ``http-403`` for an expired signed URL).
    :raises StreamError: retries exhausted (``download-failed``, ``http-429-exhausted``).
    """
    budget = RetryBudget(policy or RetryPolicy(), rng, can_refresh=False)
    while True:
        if limiter is not None:
            await limiter.acquire()
        try:
            async with client.stream("GET", url, headers=dict(headers or {})) as response:
                status = response.status_code
                decision = classify(status, response.headers, now=time.time(), ok=ok)
                if decision.action is Action.ACCEPT:
                    return await on_answer(response)
                if decision.action is Action.RATE_LIMITED and limiter is not None:
                    limiter.on_rate_limited(decision.wait)
                if not decision.retryable:
                    raise HTTPStatusError(f"{what}: HTTP {status} {response.reason_phrase}", reason=decision.reason)
                try:
                    wait = budget.next_wait(decision)
                except RetriesExhausted as exc:
                    raise StreamError(f"{what}: HTTP {status}: {exc}", reason=exc.reason) from None
        except httpx.TransportError as exc:
            try:
                wait = budget.transient()
            except RetriesExhausted:
                raise StreamError(f"{what}: unreachable ({type(exc).__name__}) after {budget.failures} attempts",
                                  reason="download-failed") from None
        log.info("%s: GET %s retrying in %.2f s", what, redact_url(url), wait)
        await trio.sleep(wait)


async def probe_range(client: httpx.AsyncClient, url: str, *, what: str, policy: RetryPolicy | None = None,
                      rng: random.Random | None = None, limiter: "RateLimiter | None" = None,
                      headers: Mapping[str, str] | None = None, head_bytes: int = 1) -> RangeProbe:
    """Ask ``url`` for its first byte(s) to learn whether it honours ranges, its size and ETag.

    Whether CXone's media URLs and Genesys' result URLs honour ranges is not documented;
    a 206 gives the size for ranged (resumable, parallel) downloads, a 200 means one
    streaming GET. Statuses and retries as :func:`get_with_retries`.

    :param what: context for messages, e.g. ``"recording 42: media URL"`` (the URL itself is
        never put in a message: a signed URL's query is a secret).
    :param head_bytes: bytes asked for (``Range: bytes=0-{head_bytes-1}``, at most
        :data:`PROBE_HEAD_BYTES`), kept in :attr:`RangeProbe.head` to sniff the container.
    :raises HTTPStatusError: a final status (reason ``http-403`` for an expired signed URL).
    :raises StreamError: retries exhausted (``download-failed``, ``http-429-exhausted``) or a
        malformed ``Content-Range`` (``bad-content-range``).
    """
    head_bytes = max(1, min(head_bytes, PROBE_HEAD_BYTES))

    async def answer(response: httpx.Response) -> RangeProbe:
        status = response.status_code
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
        size = None
        if status == 206:
            try:
                size = parse_content_range(response.headers.get("content-range")).complete_length
            except ContentRangeError as exc:
                raise StreamError(f"{what}: {exc}", reason="bad-content-range") from None
        head = b""
        if head_bytes > 1 or status == 200:
            async for data in response.aiter_raw(PROBE_HEAD_BYTES):
                head += data
                if len(head) >= head_bytes:
                    break
        return RangeProbe(size, response.headers.get("etag"), ctype,
                          head[:head_bytes if status == 206 else PROBE_HEAD_BYTES])

    sent = {"Range": f"bytes=0-{head_bytes - 1}", "Accept-Encoding": "identity", **(headers or {})}
    return await get_with_retries(client, url, answer, what=what, policy=policy, rng=rng, limiter=limiter,
                                  headers=sent, ok=(200, 206))


class HTTPSource(Source):
    """Base of HTTP recording sources: client, retry policy, token cache, downloads.

    Subclasses implement ``fetch_token() -> Token`` (called by the shared
    :class:`BearerTokens` cache, one refresh at a time) and set :attr:`limiter` when the
    credentials have a request budget.

    :ivar client: the pooled :class:`httpx.AsyncClient` (:func:`make_client`).
    :ivar policy: :func:`retry_policy` of the settings.
    :ivar tokens: the bearer-token cache; ``auth_headers``/``on_401`` are its hooks.
    :ivar limiter: the credentials' request budget, or ``None``.
    :ivar segment_slots: global cap on in-flight parallel segment requests (the pool's size).
    """

    Settings = HTTPSourceSettings
    #: Fresh URLs fetched per stream after 403s on a temporary signed URL.
    max_refreshes: int = DEFAULT_MAX_REFRESHES
    #: Whether media requests (range probe, segments) count against :attr:`limiter`. A
    #: source whose media comes from pre-signed storage URLs outside the platform's API
    #: (Genesys batch results) sets it false, so downloads neither spend nor halve the
    #: API budget.
    media_uses_api_budget: bool = True

    def __init__(self, settings: HTTPSourceSettings, context):
        super().__init__(settings, context)
        self.policy = retry_policy(settings)
        self.client = make_client(settings)
        self.tokens = BearerTokens(self.fetch_token)
        self.auth_headers: AuthHeaders = self.tokens.headers
        self.on_401 = self.tokens.refused
        self.rng = random.Random()
        self.limiter: "RateLimiter | None" = None
        self.segment_slots = trio.CapacityLimiter(settings.max_connections)
        self._nursery: trio.Nursery | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery  # runs the reassembly tasks of parallel downloads

    async def aclose(self) -> None:
        await self.client.aclose()

    async def check_connect(self) -> list[ConnectCheck]:
        """``voxpipe check --connect``: obtain a token (the credentials are accepted), then
        read the first stream of discovery (:meth:`Source.check_connect`)."""
        try:
            await self.tokens.headers()
        except StreamError as exc:  # refused credentials, unreachable token endpoint: discovery cannot work
            return [ConnectCheck("token", False, str(exc))]
        return [ConnectCheck("token", True, "credentials accepted, bearer token obtained"),
                *await super().check_connect()]

    async def fetch_token(self) -> Token:  # pragma: no cover - abstract
        raise NotImplementedError

    def _audit(self, event: str, **fields: Any) -> None:
        """One source-level audit event (no stream), if the run keeps an audit log."""
        if self.context.audit is not None:
            self.context.audit.write(event, pipeline=self.context.pipeline, source=self.type, **fields)

    async def api_request(self, method: str, url: str, *, what: str, ok: tuple[int, ...] = (200,),
                          auth: bool = True, **kwargs: Any) -> tuple[int, Any]:
        """One JSON API request under the source's budget and retry policy: ``(status, JSON)``.

        :raises voxpipe.download.api.APIError: a final status or retries exhausted.
        """
        return await request_json(self.client, method, url, auth=self.auth_headers if auth else None,
                                  on_401=self.on_401 if auth else None, policy=self.policy, rng=self.rng, what=what,
                                  ok=ok, limiter=self.limiter, **kwargs)

    def _limiter_for(self, auth: AuthHeaders | None) -> "RateLimiter | None":
        """The budget an API request (``auth``) always spends; media from signed URLs only when
        :attr:`media_uses_api_budget`."""
        return self.limiter if auth is not None or self.media_uses_api_budget else None

    async def probe(self, url: str, *, what: str, head_bytes: int = 1) -> RangeProbe:
        """:func:`probe_range` of a signed URL with the source's client, policy and budget."""
        return await probe_range(self.client, url, what=what, policy=self.policy, rng=self.rng,
                                 limiter=self._limiter_for(None), head_bytes=head_bytes)

    def make_download(self, stream: Stream, url: str, *, size: int | None, start: int, etag: str | None,
                      auth: AuthHeaders | None, params: Mapping[str, str] | None = None,
                      connections: int = 1) -> RangedDownload | ParallelDownload:
        """A ranged download of ``url`` for ``stream`` from byte ``start``; parallel when
        ``connections`` > 1, the size is known and the source has been started."""
        s = self.settings
        common = dict(recording_id=stream.id, segment_size=s.chunk_size, auth=auth,
                      on_401=self.on_401 if auth else None, policy=self.policy, read_size=read_size_for(s.chunk_size),
                      params=params, rng=self.rng, on_segment=lambda event: stream.audit("segment", **event),
                      start=start, etag=etag, limiter=self._limiter_for(auth),
                      on_response=ResponseLog.recorder(stream))
        connections = effective_connections(size, s.chunk_size, connections, start)
        if connections > 1 and size is not None and self._nursery is not None:
            return ParallelDownload(self.client, url, size=size, connections=connections, nursery=self._nursery,
                                    slots=self.segment_slots, **common)
        return RangedDownload(self.client, url, size=size, **common)

    async def download(self, stream: Stream, url: str, *, size: int | None, auth: AuthHeaders | None,
                       params: Mapping[str, str] | None = None, connections: int = 1,
                       refresh_url: Callable[[int], Awaitable[str]] | None = None,
                       on_probe: Callable[[RangeProbe], None] | None = None,
                       start: int | None = None) -> AsyncIterator[Chunk]:
        """The bytes of ``url`` from ``start`` (default: ``stream.resume_offset``).

        With ``size`` unknown and ``on_probe`` given, the URL is probed first
        (:func:`probe_range`); ``on_probe`` sees the answer before any byte is read (it may
        raise, e.g. :class:`~voxpipe.errors.StreamRestart` when a checkpoint's size no longer
        matches) and a known size makes the download ranged.

        A 403 with ``refresh_url`` (an expired temporary URL, on the probe or mid-file)
        asks ``refresh_url(position)`` for a fresh URL and continues from the current byte
        (``If-Range`` with the ETag keeps a changed file from being spliced), at most
        :attr:`max_refreshes` times; the ETag first seen is kept in ``stream.metadata["etag"]``
        (checked on resume).

        :raises HTTPStatusError: a final status, or a 403 after ``max_refreshes`` refreshes.
        """
        position = stream.resume_offset if start is None else start
        etag = stream.metadata.get("etag")
        refreshes = 0
        while True:
            download = None
            try:
                if size is None and on_probe is not None:
                    probe = await self.probe(url, what=f"recording {stream.id}: media URL")
                    if not probe.ranged:
                        stream.audit("range-probe", ranged=False)
                    on_probe(probe)
                    size, etag = probe.size, etag or probe.etag
                    on_probe = None
                download = self.make_download(stream, url, size=size, start=position, etag=etag, auth=auth,
                                              params=params, connections=connections)
                async with contextlib.aclosing(download.chunks()) as chunks:
                    async for chunk in chunks:
                        if download.etag and "etag" not in stream.metadata:
                            stream.metadata["etag"] = download.etag
                        position = chunk.end
                        yield chunk
                return
            except HTTPStatusError as exc:
                if refresh_url is None or exc.reason != "http-403" or refreshes >= self.max_refreshes:
                    raise
                etag = (download.etag if download is not None else None) or etag
                # without a known size the fresh URL's single GET is read from byte 0 and the bytes
                # already delivered skipped: only an ETag proves it is the same file
                if size is None and position > 0 and not etag:
                    raise
                refreshes += 1
                log.info("recording %s: signed URL refused at byte %d (expired?); fetching a fresh one",
                         stream.id, position)
                stream.audit("media-url-refresh", at=position, refresh=refreshes)
                url = await refresh_url(position)
