"""The ``genesys`` source: Genesys Cloud call recordings through batch download jobs.

Contract (Genesys Cloud Platform API; ``docs/genesys.md``, ``/work/shared/reference/genesys.md``):

- token: client-credentials grant at ``{login_base}/oauth/token`` (:mod:`.auth`), cached
  and refreshed 30 s before expiry by one task for all streams, and once after a 401;
- discovery (:mod:`.discovery`): conversations by id and/or every conversation that
  started in ``interval`` (analytics details query, split past its 100,000-result paging
  limit by :mod:`.intervals`); recordings from ``recordingmetadata``, only ``media`` in
  ``media``; UPLOADING/RESTORING recordings waited for, then deferred to the next run
  (:mod:`.filestates`); other states that cannot be downloaded fail with their own reason
  (``archived``, ``deleted``, ``recording-error``, ``not-available``);
- media: ``POST /api/v2/recording/batchrequests`` for up to ``batch_size`` recordings at
  a time, then ``GET /api/v2/recording/batchrequests/{jobId}`` every ``poll_interval``
  (doubling up to ``max_poll_interval``) until the job is finished (:mod:`.batch`:
  ``status`` Completed, or the counts without it) or ``max_batch_wait`` passes; each result's pre-signed
  ``resultUrl`` is downloaded by ``Range`` segments (:class:`RangedDownload`); a result
  with ``errorMsg`` fails that recording only (``batch-result-error``). An expired URL
  (403) is renewed by a one-recording batch job and the download resumes where it was;
- with ``format_id``, each recording instead comes from
  ``GET /api/v2/conversations/{id}/recordings/{recordingId}?formatId=…`` (Genesys
  transcodes; 202 while preparing, polled as above) and its ``mediaUris`` URL;
- every API request waits for the token's budget (:class:`RateLimiter`,
  ``max_requests_per_minute``, 300 by default as Genesys allows per client-credentials
  token) and a 429 honours ``Retry-After`` and slows the whole source down; a refused
  request is audited (``api-error``) with Genesys' error ``code`` and ``contextId``.

Stream id: the recording id (file-name safe); metadata: ``conversationId``,
``recordingId``, ``format``, ``contentType``, ``date`` (conversation start, ISO-8601),
``media``, ``fileState`` and ``sha256`` when the answer carries a checksum
(``checksum_field``). The result URL is never logged, audited or put in metadata.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Literal
from urllib.parse import quote

import trio
from pydantic import SecretStr, field_validator, model_validator

from voxpipe.download.api import APIError
from voxpipe.download.httpsource import HTTPSource, HTTPSourceSettings, RangeProbe
from voxpipe.download.ratelimit import RateLimiter
from voxpipe.errors import StreamError
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.settings import setting

from . import api, batch
from .auth import fetch_token
from .discovery import Discovery
from .regions import endpoints, region_host

log = logging.getLogger("voxpipe.genesys")

#: Most times one recording's result URL is renewed (expired pre-signed URL).
MAX_URL_RENEWALS = 2


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


class GenesysSettings(HTTPSourceSettings):
    region: str | None = setting(None, description="The org's region: host (`mypurecloud.ie`, `usw2.pure.cloud`) "
                                 "or AWS name (`eu-west-1`); gives `https://api.{host}` and `https://login.{host}`.",
                                 example="mypurecloud.ie")
    api_base: str | None = setting(None, description="Explicit API base URL (emulator, proxy); overrides `region`.",
                                   example="http://127.0.0.1:8098")
    login_base: str | None = setting(None, description="Explicit OAuth base URL (token at `{login_base}/oauth/token`); "
                                     "overrides `region`.", example="http://127.0.0.1:8098")
    client_id: str = setting(description="OAuth client id (client-credentials grant).", example="${GENESYS_CLIENT_ID}")
    client_secret: SecretStr = setting(description="OAuth client secret (use `${VAR}`; never logged).",
                                       example="${GENESYS_CLIENT_SECRET}")
    conversations: list[str] = setting([], description="Conversation ids whose recordings to archive.",
                                       example=["0f4d5c2e-8a51-4d8b-9c55-1f0a2b3c4d5e"])
    conversations_file: Path | None = setting(None, description="File with one conversation id per line "
                                              "(blank lines and `#` comments ignored).", example="./conversations.txt")
    interval: str | None = setting(None, description="ISO-8601 interval `START/END`: archive every conversation "
                                   "started in it (analytics conversation details query).",
                                   example="2026-11-01T00:00:00Z/2026-11-02T00:00:00Z")
    media: list[str] = setting(["audio"], description="Recording `media` types to archive (audio, chat, email, "
                               "message, screen).")
    page_size: int = setting(100, description="Conversations per analytics query page.", ge=1, le=api.MAX_PAGE_SIZE)
    batch_size: int = setting(100, description="Recordings per batch download job.", ge=1, le=api.MAX_BATCH_SIZE)
    poll_interval: float = setting(2.0, description="Seconds before the first batch job status poll; doubles per "
                                   "poll up to `max_poll_interval`.", gt=0, le=300)
    max_poll_interval: float = setting(15.0, description="Longest wait between two status polls (seconds).",
                                       gt=0, le=600)
    transient_wait: float = setting(600.0, description="Seconds discovery waits for a recording whose `fileState` is "
                                    "UPLOADING or RESTORING (re-reading its metadata every `poll_interval`, doubling "
                                    "to `max_poll_interval`) before leaving it for the next run, which looks it up "
                                    "again (`genesys-deferred.json` in the state directory) without counting a "
                                    "failed attempt.", ge=0, le=86400)
    max_batch_wait: float = setting(900.0, description="Seconds a batch job may take before its unfinished "
                                    "recordings fail (`batch-timeout`).", gt=0, le=86400)
    max_requests_per_minute: int = setting(300, description="API requests per minute with one token (Genesys: 300 "
                                           "per client-credentials token); 429s lower it further.", ge=1, le=100_000)
    format_id: Literal["WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3"] | None = setting(
        None, description="Media format (`formatId`) to fetch each recording in, through `GET /api/v2/conversations/"
        "{id}/recordings/{recordingId}` (Genesys transcodes; 202 until ready) instead of batch jobs; default: batch "
        "download in the recording's stored format.", example="WAV")
    checksum_field: str | None = setting(None, description="Field of the recording metadata or batch result holding "
                                         "the recording's SHA-256 (hex or base64), copied to metadata `sha256` for the "
                                         "sha256 verifier. The published API has none; the seed's `Checksum`, an "
                                         "integration's field or the emulator's `checksum`.", example="checksum")

    _blanks = field_validator("region", "api_base", "login_base", "interval", "checksum_field",
                              mode="before")(_blank_to_none)

    @field_validator("api_base", "login_base")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("region")
    @classmethod
    def _check_region(cls, value: str | None) -> str | None:
        if value is not None:
            region_host(value)
        return value

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: str | None) -> str | None:
        if value is not None:
            api.parse_interval(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> "GenesysSettings":
        if not self.conversations and self.conversations_file is None and self.interval is None:
            raise ValueError("give `interval`, `conversations` or `conversations_file`")
        endpoints(self.region, api_base=self.api_base, login_base=self.login_base)
        if self.max_poll_interval < self.poll_interval:
            raise ValueError("`max_poll_interval` is shorter than `poll_interval`")
        return self


@dataclass(frozen=True)
class _Pending:
    """What discovery learnt about a recording, kept until ``read`` (never in metadata)."""

    conversation_id: str
    result: api.BatchResult | None = None
    error: StreamError | None = None


class GenesysSource(HTTPSource):
    """Genesys Cloud recordings by conversation ids or interval, through batch download jobs."""

    type = "genesys"
    Settings = GenesysSettings
    max_refreshes = MAX_URL_RENEWALS
    # result URLs are pre-signed storage URLs, outside the Platform API's 300/min per token
    media_uses_api_budget = False

    def __init__(self, settings: GenesysSettings, context):
        super().__init__(settings, context)
        self.endpoints = endpoints(settings.region, api_base=settings.api_base, login_base=settings.login_base)
        self.limiter = RateLimiter(settings.max_requests_per_minute, 60.0)
        self._pending: dict[str, _Pending] = {}
        self.stats = {"batches": 0, "polls": 0, "renewals": 0}

    # ---------------------------------------------------------------- auth and API calls

    async def fetch_token(self):
        s = self.settings
        with self._api_errors_audited("token request"):
            token = await fetch_token(self.client, self.endpoints.token_url, s.client_id,
                                      s.client_secret.get_secret_value(), policy=self.policy)
        self._audit("token-refresh", expires_in=token.expires_in)
        return token

    async def call(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """One API request under the token's rate budget; returns the decoded JSON answer."""
        with self._api_errors_audited(what):
            _, body = await self.api_request(method, self.endpoints.api_base + path, what=what, ok=ok,
                                             headers={"Accept": "application/json"}, **kwargs)
        return body

    @contextlib.contextmanager
    def _api_errors_audited(self, what: str) -> Iterator[None]:
        """Audit a refused API request with the platform's error ``code`` and ``contextId``
        (what Genesys support asks for), then let the error go on."""
        try:
            yield
        except APIError as exc:
            if not getattr(exc, "audited", False):  # a token failure surfaces through the call that needed it
                exc.audited = True
                self._audit("api-error", request=what, status=exc.status, reason=exc.reason, code=exc.code,
                            context_id=exc.context_id)
            raise

    # ---------------------------------------------------------------- discovery (:mod:`.discovery`)

    async def discover(self) -> AsyncIterator[StreamSpec]:
        async with contextlib.aclosing(Discovery(self).specs()) as specs:
            async for spec in specs:
                yield spec

    def conversations(self) -> AsyncIterator[api.Conversation]:
        """The conversations discovery works through (explicit, deferred, the interval's), each once."""
        return Discovery(self).conversations()

    def audit(self, event: str, **fields: Any) -> None:
        """An audit line of this source (never a URL or secret)."""
        self._audit(event, **fields)

    def fail(self, stream_id: str, conversation_id: str, error: StreamError) -> None:
        """Discovery found the stream cannot be read: ``read`` raises ``error``."""
        self._pending[stream_id] = _Pending(conversation_id, error=error)

    def expect(self, recording_id: str, conversation_id: str, result: api.BatchResult | None = None) -> None:
        """A recording ``read`` will fetch: by its batch ``result``, or (``None``) by ``format_id``."""
        self._pending[recording_id] = _Pending(conversation_id, result=result)

    @staticmethod
    def result_metadata(result: api.BatchResult) -> dict[str, Any]:
        """Stream metadata from a batch result: ``contentType``, ``format``, ``sha256``."""
        meta: dict[str, Any] = {}
        if result.content_type:
            meta["contentType"] = result.content_type
            meta["format"] = api.format_from_content_type(result.content_type)
        if result.checksum:
            meta["sha256"] = result.checksum
        return meta

    async def run_batch(self, pairs: list[tuple[str, str]]) -> dict[str, api.BatchResult]:
        """Submit one batch download job and poll it until it is finished (:mod:`.batch`:
        ``status`` when sent, else the counts).

        :returns: one result per recording (:func:`.batch.settle`: a URL beats an error,
            the last URL listed beats earlier ones); a job that timed out returns those
            it has plus an error result for each missing recording.
        :raises StreamError: the submission was refused (reason ``http-…``) or the job
            produced nothing within ``max_batch_wait`` seconds (``batch-timeout``).
        """
        s = self.settings
        body = await self.call("POST", "/api/v2/recording/batchrequests", json=api.batch_submission(pairs),
                               ok=(200, 202), what=f"batch request for {len(pairs)} recordings")
        job_id = api.parse_job_id(body)
        self.stats["batches"] += 1
        self._audit("batch-submitted", job=job_id, recordings=len(pairs))
        started = trio.current_time()
        wait, polls, expected = s.poll_interval, 0, None
        status: api.BatchStatus | None = None
        while True:
            await trio.sleep(min(wait, max(0.0, started + s.max_batch_wait - trio.current_time())))
            polls += 1
            self.stats["polls"] += 1
            payload = await self.call("GET", f"/api/v2/recording/batchrequests/{quote(job_id, safe='')}",
                                      what=f"batch job {job_id} status")
            status = api.parse_batch_status(payload, job_id, checksum_field=s.checksum_field)
            grown = status.expected_result_count
            if expected is not None and grown is not None and grown > expected:
                self._audit("batch-expected-grew", job=job_id, before=expected, after=grown, poll=polls)
            expected = grown if grown is not None else expected
            finished = batch.job_finished(status)
            if finished or trio.current_time() - started >= s.max_batch_wait:
                break
            wait = min(wait * 2, s.max_poll_interval)
        settled = batch.settle(pairs, status.results)
        results = settled.results
        if settled.duplicates or settled.unrequested:
            log.info("batch job %s: %d recordings with several results, %d results not asked for", job_id,
                     len(settled.duplicates), len(settled.unrequested))
        self._audit("batch-complete" if finished else "batch-timeout", job=job_id, polls=polls, status=status.status,
                    results=status.result_count, expected=status.expected_result_count, errors=status.error_count,
                    duplicates=list(settled.duplicates), unrequested=len(settled.unrequested),
                    seconds=round(trio.current_time() - started, 3))
        if not finished:
            missing = [(cid, rid) for cid, rid in pairs if rid not in results]
            log.warning("batch job %s: %d of %d results after %.0f s; giving up on the others", job_id,
                        len(results), len(pairs), s.max_batch_wait)
            if not results:
                raise StreamError(f"batch job {job_id}: no result within {s.max_batch_wait:g} s "
                                  f"({len(missing)} recordings)", reason="batch-timeout")
            for cid, rid in missing:
                results[rid] = api.BatchResult(cid, rid, error_msg=f"no result within {s.max_batch_wait:g} s "
                                               f"(batch job {job_id})")
        return results

    # ---------------------------------------------------------------- one recording

    async def fetch_formatted(self, recording_id: str, conversation_id: str) -> api.BatchResult:
        """The media URL of one recording in ``format_id``, polling while Genesys answers 202.

        :raises StreamError: ``not-ready-timeout`` after ``max_batch_wait`` seconds of 202s,
            or the API's refusal (e.g. ``http-400`` for a format it cannot produce).
        """
        s = self.settings
        assert s.format_id is not None
        path = (f"/api/v2/conversations/{quote(conversation_id, safe='')}/recordings/"
                f"{quote(recording_id, safe='')}")
        started = trio.current_time()
        wait = s.poll_interval
        while True:
            with self._api_errors_audited(f"recording {recording_id} as {s.format_id}"):
                status, body = await self.api_request(
                    "GET", self.endpoints.api_base + path, ok=(200, 202),
                    what=f"recording {recording_id} as {s.format_id}",
                    params={"formatId": s.format_id, "download": "false"}, headers={"Accept": "application/json"})
            if status == 200:
                return api.parse_recording_media(body, recording_id, s.format_id)
            if trio.current_time() - started + wait > s.max_batch_wait:
                raise StreamError(f"recording {recording_id} (conversation {conversation_id}): still being prepared "
                                  f"as {s.format_id} after {s.max_batch_wait:g} s", reason="not-ready-timeout")
            self.stats["polls"] += 1
            await trio.sleep(wait)
            wait = min(wait * 2, s.max_poll_interval)

    async def _renew(self, stream: Stream, conversation_id: str) -> api.BatchResult:
        """A fresh result (URL) for one recording: a one-item batch job, or the formatted recording."""
        self.stats["renewals"] += 1
        if self.settings.format_id is not None:
            return await self.fetch_formatted(stream.id, conversation_id)
        results = await self.run_batch([(conversation_id, stream.id)])
        result = results.get(stream.id)
        if result is None:
            raise StreamError(f"recording {stream.id} (conversation {conversation_id}): the batch job returned no "
                              "result for it", reason="batch-no-result")
        return result

    async def read(self, stream: Stream) -> AsyncIterator[Chunk]:
        pending = self._pending.pop(stream.id, None)
        if pending is None:  # a restarted attempt: the first result was consumed
            cid = stream.metadata.get("conversationId")
            if not cid:
                raise StreamError(f"recording {stream.id}: unknown to this source", reason="internal-error")
            pending = _Pending(cid, result=await self._renew(stream, cid))
        if pending.error is not None:
            raise pending.error
        result = pending.result
        if result is None:  # format_id: one request per recording
            result = await self.fetch_formatted(stream.id, pending.conversation_id)
        self._usable(stream, pending.conversation_id, result)

        async def renew(position: int) -> str:
            fresh = await self._renew(stream, pending.conversation_id)
            return self._usable(stream, pending.conversation_id, fresh)

        def on_probe(probe: RangeProbe) -> None:
            if probe.size is not None:
                stream.metadata["size"] = probe.size

        async with contextlib.aclosing(self.download(stream, result.result_url, size=None, auth=None, start=0,
                                                     refresh_url=renew, on_probe=on_probe)) as chunks:
            async for chunk in chunks:
                yield chunk

    def _usable(self, stream: Stream, conversation_id: str, result: api.BatchResult) -> str:
        """The result's URL, after copying what it says into the metadata.

        :raises StreamError: ``batch-result-error`` when the result carries an error instead.
        """
        if result.error_msg is not None or result.result_url is None:
            raise StreamError(f"recording {stream.id} (conversation {conversation_id}): batch download "
                              f"failed: {result.error_msg}", reason="batch-result-error")
        stream.metadata.update(self.result_metadata(result))
        return result.result_url
