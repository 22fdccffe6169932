"""The ``cxone`` source: NICE CXone call recordings, found by date or by id.

Contract (CXone's public docs and integration code, the seed documents;
``/work/shared/reference/cxone.md``; modes: :mod:`.settings`):

- login: ``POST {token_url}`` (:mod:`.auth`: the access-key ``password`` grant, or
  ``client_credentials``), cached, refreshed 30 s before expiry, one refresh at a time for
  all streams, and once more after a 401. Without ``api_base`` the API host comes from the
  login (:mod:`.hosts`): ``GET {login host}/.well-known/cxone-configuration?tenantId=`` of
  the id token's tenant, else the id token's ``area`` claim (``https://api-{area}.niceincontact.com``);
- ``data-extraction``: the recordings of a time window through Data Extraction jobs
  (:mod:`.discovery`, :mod:`.extraction`); each segment's media URL from
  ``GET /media-playback/v1/segments/{segmentId}`` (or the contacts lookup by its contact id);
- ``playback``: ``GET /media-playback/v1/contacts?acd-call-id=…&media-type=voice-only&isDownload=true``
  → ``interactions[].data.fileToPlayUrl``;
- Media Playback URLs are temporary signed URLs fetched without the bearer token (the URL
  authorises itself; the token must not travel to a storage host), probed for ranges, and
  renewed on a 403 (expired) to continue from the current byte, at most
  :data:`MAX_URL_REFRESHES` times per stream. A file without a name or format gets its
  container from the Content-Type and its first bytes;
- ``recording-v2`` (seed): metadata ``GET /api/v2/recording/{id}`` → ``id, format, size,
  duration, status, storageState``, downloaded only when ``storageState`` is ``available``
  or ``stored`` and ``duration`` ≤ ``max_duration``, from ``GET /api/v2/recording/download/{id}``
  by ``Range`` segments of ``chunk_size`` bytes, up to ``connections`` at a time;
- ``stream`` (seed): ``GET /api/v2/recordings/{id}/stream?offsets=…`` read incrementally as
  chunked transfer, offsets in groups of at most three (:mod:`.stream_request`);
- every API request but the token's waits for the source's request budget (``rate_limit``,
  150 per 5 minutes by default with Media Playback), which slows down when 429s arrive.

Every mode fills the stream's :class:`~voxpipe.facts.RecordingFacts` from what CXone says
(the Data Extraction row, the Media Playback answer, the recording metadata).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import quote

from voxpipe.audioformat.detect import guess_extension
from voxpipe.download.api import APIError
from voxpipe.download.httpsource import HTTPSource
from voxpipe.download.ratelimit import RateLimiter
from voxpipe.idlists import read_ids
from voxpipe.errors import StreamError, StreamRejected, StreamRestart
from voxpipe.model import Chunk, Stream, StreamSpec

from .auth import Login, fetch_token, token_request
from .discovery import ExtractionDiscovery
from .hosts import (HostDiscoveryError, WELL_KNOWN_PATH, api_base_from_configuration, api_host_for_area,
                    auth_base_of, id_token_claims, tenant_of)
from .playback import (MediaFile, PlaybackAnswerError, contacts_params, facts_from_answer, parse_contacts,
                       parse_segment, pick_segment, segment_params, stream_ids)
from .settings import PLAYBACK_RATE_LIMIT, CxoneSettings, parse_rate_limit
from .stream_request import plan_requests

__all__ = ["CxoneSource", "CxoneSettings", "parse_rate_limit", "PLAYBACK_RATE_LIMIT"]

#: ``storageState`` values that mean the media can be downloaded now.
DOWNLOADABLE_STATES = frozenset({"available", "stored"})
#: Most recording ids one source accepts (a larger backlog is several runs).
MAX_RECORDINGS = 1_000_000
#: Fresh temporary URLs fetched per stream after 403s (expired ``fileToPlayUrl``).
MAX_URL_REFRESHES = 3
#: First bytes asked for when only the bytes can tell the container (ftyp box, RIFF header...).
HEAD_BYTES = 64
#: Metadata keys that describe the stored file, not a stream-mode answer (not copied then).
FILE_ONLY_FIELDS = frozenset({"size", "sha256", "hmac", "hmacAlgorithm", "hmacEncoding"})


def streamed_seconds(offsets: tuple[int, ...], max_duration: int | None, duration: float) -> float:
    """Seconds of audio a stream-mode answer holds: each offset's segment runs to the next
    offset of the request, ``maxDuration`` after it, or the end (the seed's streaming contract)."""
    total = 0.0
    for i, start in enumerate(offsets):
        stop = float(offsets[i + 1]) if i + 1 < len(offsets) else duration
        if max_duration is not None:
            stop = min(stop, start + max_duration)
        total += max(0.0, min(stop, duration) - start)
    return total


class CxoneSource(HTTPSource):
    """NICE CXone call recordings found by date (Data Extraction) or by id, with their facts; ranged, resumable downloads."""

    type = "cxone"
    Settings = CxoneSettings
    resumable = True
    max_refreshes = MAX_URL_REFRESHES

    def __init__(self, settings: CxoneSettings, context):
        super().__init__(settings, context)
        #: The API host: configured, or learnt at login (see :meth:`base`).
        self.api_base: str | None = settings.api_base.rstrip("/") if settings.api_base else None
        self.extraction: ExtractionDiscovery | None = None
        budget = settings.request_budget
        #: The credentials' request budget shared by every stream (None: unlimited).
        self.limiter = RateLimiter(*budget) if budget else None

    @property
    def shareable(self) -> bool:  # type: ignore[override]
        """Data Extraction, Media Playback and recording-v2 specs queue in a shared ledger; stream
        mode's request plans are not JSON, so stream mode keeps its own streams."""
        return self.settings.effective_mode != "stream"

    def identity(self) -> str:
        """``cxone <api base> client=<client id>`` (plus the access-key id): the tenant, no secret.
        Without ``api_base`` (the host is learnt at login, later) the login host stands for it."""
        s = self.settings
        key = f" key={s.access_key_id}" if s.grant == "access_key" else ""
        host = s.api_base.rstrip("/") if s.api_base else auth_base_of(s.token_url)
        return f"cxone {host} client={s.client_id}{key}"

    # ---------------------------------------------------------------- auth

    def _token_request(self):
        s = self.settings
        return token_request(grant=s.grant, client_id=s.client_id, client_secret=s.client_secret.get_secret_value(),
                             client_auth=s.client_auth, access_key_id=s.access_key_id,
                             access_key_secret=s.access_key_secret.get_secret_value() if s.access_key_secret else None,
                             scope=s.scope)

    async def fetch_token(self):
        login = await fetch_token(self.client, self.settings.token_url, self._token_request(), policy=self.policy)
        self._audit("token-refresh", expires_in=login.token.expires_in)
        if self.api_base is None:
            self.api_base = await self._discover_host(login)
        return login.token

    async def base(self) -> str:
        """The API base URL, logging in first when the host is learnt from the login.

        :raises StreamError: ``auth-failed``, or ``host-discovery-failed`` when neither the
            tenant's configuration nor the id token names the host.
        """
        if self.api_base is None:
            await self.tokens.get()
        assert self.api_base is not None
        return self.api_base

    async def _discover_host(self, login: Login) -> str:
        """The API host from the login (:mod:`.hosts`): the tenant's ``.well-known`` configuration,
        else the id token's ``area`` claim."""
        problems = []
        claims: dict[str, Any] = {}
        if login.id_token:
            try:
                claims = id_token_claims(login.id_token)
            except HostDiscoveryError as exc:
                problems.append(str(exc))
        else:
            problems.append("the token answer has no id_token")
        tenant = tenant_of(claims)
        if tenant:
            url = auth_base_of(self.settings.token_url) + WELL_KNOWN_PATH
            try:
                _, doc = await self.api_request("GET", url, auth=False, params={"tenantId": tenant},
                                                what="tenant configuration", headers={"Accept": "application/json"})
                base = api_base_from_configuration(doc)
                self._audit("api-host", host=base, found_by="well-known", tenant=tenant)
                return base
            except (StreamError, HostDiscoveryError) as exc:
                problems.append(f"{WELL_KNOWN_PATH}: {exc}")
        if claims.get("area"):
            try:
                base = api_host_for_area(claims["area"])
                self._audit("api-host", host=base, found_by="area-claim", area=claims["area"])
                return base
            except HostDiscoveryError as exc:
                problems.append(str(exc))
        raise StreamError("cannot tell the CXone API host from the login (" + "; ".join(problems or ["no area claim"])
                          + "); set api_base", reason="host-discovery-failed")

    # ---------------------------------------------------------------- discovery

    async def discover(self) -> AsyncIterator[StreamSpec]:
        s = self.settings
        mode = s.effective_mode
        seen: set[str] = set()
        if mode == "data-extraction":
            self.extraction = ExtractionDiscovery(self)
            await self.base()
            async for segment in self.extraction.segments():
                yield StreamSpec(segment.segment_id, {"segment_id": segment.segment_id,
                                                      "contact_id": segment.contact_id}, facts=segment.facts)
            return
        if mode == "playback":
            for call_id in read_ids(s.acd_call_ids, s.acd_call_ids_file, "ACD call id", max_ids=MAX_RECORDINGS):
                if call_id in seen:
                    continue
                seen.add(call_id)
                async for spec in self._discover_call(call_id):
                    yield spec
            return
        for rid in read_ids(s.recordings, s.recordings_file, "recording id", max_ids=MAX_RECORDINGS):
            if rid in seen:
                continue
            seen.add(rid)
            if mode == "stream":
                for stream_id, request in plan_requests(rid, s.stream_offsets, codec=s.stream_codec,
                                                        max_duration=s.stream_max_duration):
                    yield StreamSpec(stream_id, {"recording_id": rid, "stream_offsets": ",".join(map(str, request.offsets)),
                                                 "_request": request})
            else:
                yield StreamSpec(rid)

    async def aclose(self) -> None:
        try:
            if self.extraction is not None:
                await self.extraction.settle()
        finally:
            await super().aclose()

    async def _discover_call(self, call_id: str) -> AsyncIterator[StreamSpec]:
        """One spec per voice interaction; a failed lookup yields one spec whose ``read`` retries and reports it."""
        try:
            files = await self.lookup_media(call_id)
        except StreamError:
            yield StreamSpec(call_id, {"acd_call_id": call_id, "_interaction": 0, "_interactions": 1})
            return
        for index, (stream_id, media) in enumerate(zip(stream_ids(call_id, len(files)), files)):
            yield StreamSpec(stream_id, {"acd_call_id": call_id, "_interaction": index, "_interactions": len(files),
                                         "_media": media}, facts=media.facts)

    # ---------------------------------------------------------------- recording API

    async def fetch_metadata(self, recording_id: str) -> dict[str, Any]:
        url = f"{await self.base()}/api/v2/recording/{quote(recording_id, safe='')}"
        _, body = await self.api_request("GET", url, what=f"recording {recording_id} metadata")
        if not isinstance(body, dict):
            raise StreamError(f"recording {recording_id}: metadata is not a JSON object", reason="bad-metadata")
        return body

    def gate(self, recording_id: str, meta: Mapping[str, Any]) -> None:
        """Refuse recordings that are not downloadable now or are too long.

        :raises StreamRejected: reason ``not-available`` or ``too-long`` (or ``bad-metadata``).
        """
        state = str(meta.get("storageState", "")).lower()
        if state not in DOWNLOADABLE_STATES:
            raise StreamRejected(f"recording {recording_id}: storageState {meta.get('storageState')!r} is not "
                                 f"downloadable (needs {' or '.join(sorted(DOWNLOADABLE_STATES))})",
                                 reason="not-available")
        try:
            duration = float(meta.get("duration"))
        except (TypeError, ValueError):
            raise StreamRejected(f"recording {recording_id}: metadata has no numeric duration",
                                 reason="bad-metadata") from None
        self._check_duration(recording_id, duration)

    def _check_duration(self, what: str, duration: float) -> None:
        if duration > self.settings.max_duration:
            raise StreamRejected(f"recording {what}: duration {duration:g} s exceeds max_duration "
                                 f"{self.settings.max_duration:g} s", reason="too-long")

    # ---------------------------------------------------------------- Media Playback API

    async def lookup_media(self, call_id: str) -> list[MediaFile]:
        """The voice media files of ACD call ``call_id`` (fresh temporary URLs).

        :raises StreamError: the lookup failed (reason from the HTTP status) or the answer has no
            usable media file (reason ``bad-playback-answer``).
        """
        url = f"{await self.base()}/media-playback/v1/contacts"
        _, body = await self.api_request("GET", url, params=contacts_params(call_id),
                                         what=f"acd call {call_id} media playback lookup")
        try:
            return parse_contacts(body, call_id)
        except PlaybackAnswerError as exc:
            raise StreamError(str(exc), reason="bad-playback-answer") from None

    async def lookup_segment(self, segment_id: str, contact_id: str | None) -> MediaFile:
        """The media file of one recording segment (a fresh temporary URL).

        ``media_lookup: segments`` asks ``/media-playback/v1/segments/{id}`` and falls back to
        the contacts lookup by ``contact_id`` on a 404; ``contacts`` asks the latter directly.

        :raises StreamError: the lookups failed, or no usable media file (``bad-playback-answer``).
        """
        if self.settings.media_lookup == "segments" or not contact_id:
            url = f"{await self.base()}/media-playback/v1/segments/{quote(segment_id, safe='')}"
            try:
                _, body = await self.api_request("GET", url, params=segment_params(),
                                                 what=f"segment {segment_id} media playback lookup")
                return parse_segment(body, segment_id)
            except PlaybackAnswerError as exc:
                if not contact_id:
                    raise StreamError(str(exc), reason="bad-playback-answer") from None
            except APIError as exc:
                if exc.status != 404 or not contact_id:
                    raise
        assert contact_id is not None
        try:
            return pick_segment(await self.lookup_media(contact_id), segment_id, contact_id)
        except PlaybackAnswerError as exc:
            raise StreamError(str(exc), reason="bad-playback-answer") from None

    async def _media_for(self, stream: Stream) -> MediaFile:
        if "segment_id" in stream.metadata:
            return await self.lookup_segment(str(stream.metadata["segment_id"]), stream.metadata.get("contact_id"))
        call_id = str(stream.metadata.get("acd_call_id", stream.id))
        index = int(stream.metadata.get("_interaction", 0))
        files = await self.lookup_media(call_id)
        expected = int(stream.metadata.get("_interactions", 1))
        if len(files) != expected:
            raise StreamError(f"acd call {call_id}: the contact now lists {len(files)} voice interactions, "
                              f"{expected} when discovered; run again to rediscover", reason="contact-changed")
        return files[index]

    # ---------------------------------------------------------------- reading

    async def read(self, stream: Stream) -> AsyncIterator[Chunk]:
        if "_request" in stream.metadata:
            source = self._read_stream_mode(stream)
        elif "acd_call_id" in stream.metadata or "segment_id" in stream.metadata:
            source = self._read_playback(stream)
        else:
            source = self._read_recording(stream)
        async with contextlib.aclosing(source) as chunks:
            async for chunk in chunks:
                yield chunk

    def _check_resume_size(self, stream: Stream, size: int | None) -> None:
        known_size = stream.metadata.get("size")
        if stream.resume_offset and known_size is not None and known_size != size:
            raise StreamRestart(f"recording {stream.id}: size changed from {known_size} to {size} bytes since the "
                                f"checkpoint at byte {stream.resume_offset}", reason="size-changed")

    def _check_resume_etag(self, stream: Stream, etag: Any) -> None:
        # the checkpoint's validator must survive the metadata refresh, else a resumed
        # request would send If-Range with the new ETag and splice two versions
        known = stream.metadata.get("etag")
        if stream.resume_offset and known and isinstance(etag, str) and etag != known:
            raise StreamRestart(f"recording {stream.id}: ETag changed from {known} to {etag} since the checkpoint "
                                f"at byte {stream.resume_offset}", reason="etag-changed")

    async def _read_recording(self, stream: Stream) -> AsyncIterator[Chunk]:
        meta = await self.fetch_metadata(stream.id)
        stream.update_facts(facts_from_answer(meta))  # known even when the gate refuses the recording
        self.gate(stream.id, meta)
        size = meta.get("size")
        if not isinstance(size, int) or size < 0:
            size = None
        self._check_resume_size(stream, size)
        self._check_resume_etag(stream, meta.get("etag"))
        stream.metadata.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
        stream.metadata["format"] = (self.settings.format or str(meta.get("format") or "")).lower() or \
            guess_extension(content_type=meta.get("contentType")) or "bin"
        if size is not None:
            stream.metadata["size"] = size
        url = f"{self.api_base}/api/v2/recording/download/{quote(stream.id, safe='')}"
        params = {"format": self.settings.format} if self.settings.format else None
        async for chunk in self._download(stream, url, size=size, params=params, auth=self.auth_headers):
            yield chunk

    async def _read_playback(self, stream: Stream) -> AsyncIterator[Chunk]:
        media: MediaFile | None = stream.metadata.pop("_media", None)
        if media is None or stream.resume_offset or stream.attempt > 1:
            # a checkpoint is old (its URL has likely expired); a restart means the file changed
            # since discovery (the discovered ETag and size are stale)
            media = await self._media_for(stream)
        stream.update_facts(media.facts.merged(stream.facts))  # what discovery said wins
        duration = media.duration if media.duration is not None else stream.facts.duration
        if duration is not None:
            self._check_duration(stream.id, duration)
            stream.metadata["duration"] = duration
        fmt = (self.settings.format or media.format or "").lower() or guess_extension(content_type=media.content_type)
        if fmt is None:
            # no file name, format or telling Content-Type: ask for the first bytes
            probe = await self.probe(media.url, what=f"recording {stream.id}: media URL", head_bytes=HEAD_BYTES)
            fmt = guess_extension(probe.head, content_type=probe.content_type)
            if media.size is None and probe.size is not None:
                media = dataclasses.replace(media, size=probe.size, etag=media.etag or probe.etag)
        stream.metadata["format"] = fmt or "bin"

        def settle(size: int | None, etag: str | None) -> None:
            self._check_resume_size(stream, size)
            if size is not None:
                stream.metadata["size"] = size
            self._check_resume_etag(stream, etag)
            if etag and not stream.metadata.get("etag"):
                stream.metadata["etag"] = etag

        if media.size is not None:
            settle(media.size, media.etag)

        async def fresh_url(position: int) -> str:
            return (await self._media_for(stream)).url

        async with contextlib.aclosing(self.download(
                stream, media.url, size=media.size, auth=None, connections=self.settings.connections,
                refresh_url=fresh_url, on_probe=lambda probe: settle(probe.size, media.etag or probe.etag))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _read_stream_mode(self, stream: Stream) -> AsyncIterator[Chunk]:
        request = stream.metadata["_request"]
        rid = request.recording_id
        meta = await self.fetch_metadata(rid)
        stream.update_facts(facts_from_answer(meta))
        self.gate(rid, meta)
        duration = float(meta["duration"])  # numeric: checked by the gate
        late = [t for t in request.offsets if t >= duration]
        if late:
            raise StreamRejected(f"recording {rid}: stream offset {late[0]} s is at or past the end of the recording "
                                 f"({duration:g} s)", reason="offset-out-of-range")
        # size, sha256 and MACs describe the stored file, not this answer's bytes
        stream.metadata.update({k: v for k, v in meta.items()
                                if isinstance(v, (str, int, float, bool)) and k not in FILE_ONLY_FIELDS and k != "id"})
        # the answer holds each offset's segment, not the whole recording: its duration is theirs
        stream.metadata["recording_duration"] = duration
        stream.metadata["duration"] = streamed_seconds(request.offsets, request.max_duration, duration)
        codec = (request.codec or "").lower()
        stream.metadata["format"] = (codec if codec and codec != "original" else str(meta.get("format") or "bin")).lower()
        async for chunk in self._download(stream, f"{await self.base()}{request.path}", size=None, params=request.params(),
                                          auth=self.auth_headers):
            yield chunk

    async def _download(self, stream: Stream, url: str, *, size: int | None, params: Mapping[str, str] | None = None,
                        auth: Callable[[], Awaitable[Mapping[str, str]]] | None,
                        refresh_url: Callable[[int], Awaitable[str]] | None = None) -> AsyncIterator[Chunk]:
        async with contextlib.aclosing(self.download(stream, url, size=size, auth=auth, params=params,
                                                     connections=self.settings.connections,
                                                     refresh_url=refresh_url)) as chunks:
            async for chunk in chunks:
                yield chunk
