"""The ``cxone`` source: NICE CXone call recordings over the recording and Media Playback APIs.

Contract (the CXone seed documents and CXone's public docs; ``/work/shared/reference/cxone.md``):

- token: ``POST {token_url}`` (see :mod:`.auth`; ``client_credentials`` or the documented
  access-key ``password`` grant), cached, refreshed 30 s before expiry, one refresh at a
  time for all streams, and once more after a 401. With ``api_base`` configured the access
  key's ``id_token`` ``area`` claim is not used (the configured host wins);
- metadata: ``GET {api_base}/api/v2/recording/{id}`` → ``id, format, size, duration,
  status, storageState``; the download only starts when ``storageState`` is
  ``available`` or ``stored`` and ``duration`` ≤ ``max_duration``;
- media: ``GET {api_base}/api/v2/recording/download/{id}[?format=…]`` by ``Range``
  segments of ``chunk_size`` bytes (:class:`voxpipe.download.downloader.RangedDownload`),
  by up to ``connections`` concurrent segment requests per recording
  (:class:`voxpipe.download.parallel.ParallelDownload`);
- Media Playback discovery (``acd_call_ids``): ``GET {api_base}/media-playback/v1/contacts
  ?acd-call-id=…&media-type=voice-only&isDownload=true`` → ``interactions[].data.fileToPlayUrl``,
  a temporary URL fetched by the same ranged machinery without the bearer token (the URL
  authorises itself; the token must not travel to a storage host); a 403 on it (expired)
  fetches a fresh URL and continues from the current byte, at most
  :data:`MAX_URL_REFRESHES` times per stream (:mod:`.playback`);
- stream mode: ``GET {api_base}/api/v2/recordings/{id}/stream?offsets=…`` read
  incrementally as chunked transfer, offsets in groups of at most three (:mod:`.stream_request`);
- every request but the token's waits for the source's request budget (``rate_limit``,
  :mod:`voxpipe.download.ratelimit`), which slows down when 429s arrive.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Mapping
from urllib.parse import quote

from pydantic import SecretStr, field_validator, model_validator

from voxpipe.download.api import request_json
from voxpipe.download.httpsource import HTTPSource, HTTPSourceSettings
from voxpipe.download.parallel import MAX_CONNECTIONS_PER_STREAM
from voxpipe.download.ratelimit import RateLimiter
from voxpipe.idlists import read_ids
from voxpipe.errors import StreamError, StreamRejected, StreamRestart
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.settings import setting

from .auth import fetch_token
from .playback import MediaFile, PlaybackAnswerError, contacts_params, parse_contacts, stream_ids
from .stream_request import StreamRequestError, check_offsets, plan_requests

#: ``storageState`` values that mean the media can be downloaded now.
DOWNLOADABLE_STATES = frozenset({"available", "stored"})
#: Most recording ids one source accepts (a larger backlog is several runs).
MAX_RECORDINGS = 1_000_000
#: Fresh temporary URLs fetched per stream after 403s (expired ``fileToPlayUrl``).
MAX_URL_REFRESHES = 3
#: CXone Media Playback API's default budget (help.nicecxone.com): requests per window.
PLAYBACK_RATE_LIMIT = (150, 300.0)
#: Metadata keys that describe the stored file, not a stream-mode answer (not copied then).
FILE_ONLY_FIELDS = frozenset({"size", "sha256", "hmac", "hmacAlgorithm", "hmacEncoding"})

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_RATE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate_limit(spec: str) -> tuple[int, float] | None:
    """``"150/5m"`` → ``(150, 300.0)``; ``"off"`` → ``None``. Window units: s (default), m, h.

    :raises ValueError: anything else, or a zero count/window.
    """
    if spec.strip().lower() == "off":
        return None
    m = _RATE_RE.match(spec)
    if not m:
        raise ValueError(f"rate_limit {spec!r} is not REQUESTS/WINDOW such as 150/5m, 300/60 or off")
    count, window = int(m.group(1)), float(m.group(2)) * _RATE_UNITS[m.group(3)]
    if count < 1 or window <= 0:
        raise ValueError(f"rate_limit {spec!r} needs at least 1 request per a window longer than 0 s")
    return count, window


class CxoneSettings(HTTPSourceSettings):
    api_base: str = setting(description="Base URL of the CXone API (no trailing path). When set, the `area` claim "
                            "of an access-key login's id token is not used to pick the host.",
                            example="https://api-c32.nice-incontact.com", pattern=r"^https?://")
    token_url: str = setting(description="OAuth 2.0 token endpoint.",
                             example="https://cxone.niceincontact.com/auth/token", pattern=r"^https?://")
    grant: Literal["client_credentials", "access_key"] = setting(
        "client_credentials", description="`client_credentials` (the recording API's app credentials) or "
        "`access_key` (CXone's documented password grant with an access key plus the app's client id/secret).")
    client_id: str = setting(description="OAuth client id of the registered application.", example="${CXONE_CLIENT_ID}")
    client_secret: SecretStr = setting(description="OAuth client secret (use `${VAR}`; never logged).",
                                       example="${CXONE_CLIENT_SECRET}")
    access_key_id: str | None = setting(None, description="Access-key id, for `grant: access_key`.",
                                        example="${CXONE_ACCESS_KEY_ID}")
    access_key_secret: SecretStr | None = setting(None, description="Access-key secret, for `grant: access_key`.",
                                                  example="${CXONE_ACCESS_KEY_SECRET}")
    scope: str = setting("recording:download recording:read", description="OAuth scopes requested.")
    recordings: list[str] = setting([], description="Recording ids to archive.", example=["100001", "100002"])
    recordings_file: Path | None = setting(None, description="File with one recording id per line "
                                           "(blank lines and `#` comments ignored).", example="./ids.txt")
    acd_call_ids: list[str] = setting([], description="ACD call ids to archive through the Media Playback API "
                                      "(`/media-playback/v1/contacts`), instead of `recordings`. Stream id: the call "
                                      "id, or `{call id}-{n}` for each of a contact's several voice interactions.",
                                      example=["584930211"])
    acd_call_ids_file: Path | None = setting(None, description="File with one ACD call id per line (blank lines "
                                             "and `#` comments ignored).", example="./calls.txt")
    mode: Literal["download", "stream"] = setting(
        "download", description="`download`: ranged downloads of the recording file. `stream`: the streaming "
        "endpoint `/api/v2/recordings/{id}/stream` read as chunked transfer (needs `recordings`).")
    stream_offsets: tuple[int, ...] = setting((0,), description="Stream mode: offsets in seconds, sent comma-separated in "
                                        "groups of at most 3 per request; each group is one stream "
                                        "(`{id}` for one group, else `{id}@{first offset}`).", example=[0, 15, 30])
    stream_codec: str | None = setting(None, description="Stream mode: `codec` to ask for (default: omitted, "
                                       "as stored).", example="opus")
    stream_max_duration: int | None = setting(None, description="Stream mode: `maxDuration` in seconds capping each "
                                              "offset's segment.", example=180, ge=1)
    connections: int = setting(1, description="Concurrent ranged requests per recording (split download, like "
                               "aria2). Each holds up to `chunk_size` bytes in memory; all streams together "
                               "stay within `max_connections`.", ge=1, le=MAX_CONNECTIONS_PER_STREAM)
    rate_limit: str | None = setting(None, description="Request budget of the credentials: `REQUESTS/WINDOW` "
                                     "(window in s, m or h), or `off`. Shared by all streams, applied to every "
                                     "request but the token's; 429s slow it down further. Default: off with "
                                     "`recordings`, `150/5m` (CXone Media Playback's default) with `acd_call_ids`.",
                                     example="150/5m")
    max_duration: float = setting(4 * 3600.0, description="Longest recording accepted, in seconds "
                                  "(from metadata `duration`); longer ones fail without downloading.", gt=0)
    format: str | None = setting(None, description="Media format to ask for (`?format=`), e.g. `mp3`; "
                                 "default: as stored.", example="mp3")

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> "CxoneSettings":
        by_recording = bool(self.recordings) or self.recordings_file is not None
        by_call = bool(self.acd_call_ids) or self.acd_call_ids_file is not None
        if not by_recording and not by_call:
            raise ValueError("give `recordings`/`recordings_file` (recording ids) or `acd_call_ids`/"
                             "`acd_call_ids_file` (Media Playback discovery)")
        if by_recording and by_call:
            raise ValueError("give recording ids or ACD call ids, not both (one discovery per source)")
        if self.mode == "stream" and by_call:
            raise ValueError("`mode: stream` reads the recording API's streaming endpoint: give `recordings`")
        if self.grant == "access_key" and (not self.access_key_id or self.access_key_secret is None):
            raise ValueError("`grant: access_key` needs `access_key_id` and `access_key_secret`")
        try:
            check_offsets(self.stream_offsets)
        except StreamRequestError as exc:
            raise ValueError(f"stream_offsets: {exc}") from None
        if self.stream_codec is not None and not (self.stream_codec.isascii() and self.stream_codec.isalnum()):
            raise ValueError(f"stream_codec {self.stream_codec!r} is not a codec name such as opus")
        return self

    @property
    def request_budget(self) -> tuple[int, float] | None:
        """``(requests, window seconds)`` in force, or ``None`` (no client-side limit)."""
        if self.rate_limit is not None:
            return parse_rate_limit(self.rate_limit)
        if self.acd_call_ids or self.acd_call_ids_file is not None:
            return PLAYBACK_RATE_LIMIT
        return None


class CxoneSource(HTTPSource):
    """NICE CXone call recordings: metadata-gated, ranged (optionally parallel), resumable downloads."""

    type = "cxone"
    Settings = CxoneSettings
    resumable = True
    max_refreshes = MAX_URL_REFRESHES

    def __init__(self, settings: CxoneSettings, context):
        super().__init__(settings, context)
        self.api_base = settings.api_base.rstrip("/")
        budget = settings.request_budget
        #: The credentials' request budget shared by every stream (None: unlimited).
        self.limiter = RateLimiter(*budget) if budget else None

    @property
    def shareable(self) -> bool:  # type: ignore[override]
        """Download and Media Playback specs queue in a shared ledger; stream mode's request
        plans are not JSON, so stream mode keeps its own streams."""
        return self.settings.mode == "download"

    def identity(self) -> str:
        """``cxone <api base> client=<client id>`` (plus the access-key id): the tenant, no secret."""
        s = self.settings
        key = f" key={s.access_key_id}" if s.grant == "access_key" else ""
        return f"cxone {self.api_base} client={s.client_id}{key}"

    # ---------------------------------------------------------------- auth

    def _token_form(self) -> dict[str, str]:
        s = self.settings
        form = {"client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
        if s.grant == "access_key":
            form.update(grant_type="password", username=s.access_key_id or "",
                        password=s.access_key_secret.get_secret_value() if s.access_key_secret else "")
        else:
            form.update(grant_type="client_credentials", scope=s.scope)
        return form

    async def fetch_token(self):
        token = await fetch_token(self.client, self.settings.token_url, self._token_form(), policy=self.policy)
        self._audit("token-refresh", expires_in=token.expires_in)
        return token

    # ---------------------------------------------------------------- discovery

    async def discover(self) -> AsyncIterator[StreamSpec]:
        s = self.settings
        seen: set[str] = set()
        if s.acd_call_ids or s.acd_call_ids_file is not None:
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
            if s.mode == "stream":
                for stream_id, request in plan_requests(rid, s.stream_offsets, codec=s.stream_codec,
                                                        max_duration=s.stream_max_duration):
                    yield StreamSpec(stream_id, {"recording_id": rid, "stream_offsets": ",".join(map(str, request.offsets)),
                                                 "_request": request})
            else:
                yield StreamSpec(rid)

    async def _discover_call(self, call_id: str) -> AsyncIterator[StreamSpec]:
        """One spec per voice interaction; a failed lookup yields one spec whose ``read`` retries and reports it."""
        try:
            files = await self.lookup_media(call_id)
        except StreamError:
            yield StreamSpec(call_id, {"acd_call_id": call_id, "_interaction": 0, "_interactions": 1})
            return
        for index, (stream_id, media) in enumerate(zip(stream_ids(call_id, len(files)), files)):
            yield StreamSpec(stream_id, {"acd_call_id": call_id, "_interaction": index, "_interactions": len(files),
                                         "_media": media})

    # ---------------------------------------------------------------- recording API

    async def fetch_metadata(self, recording_id: str) -> dict[str, Any]:
        url = f"{self.api_base}/api/v2/recording/{quote(recording_id, safe='')}"
        _, body = await request_json(self.client, "GET", url, auth=self.auth_headers, on_401=self.on_401,
                                     policy=self.policy, rng=self.rng, what=f"recording {recording_id} metadata",
                                     limiter=self.limiter)
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
        url = f"{self.api_base}/media-playback/v1/contacts"
        _, body = await request_json(self.client, "GET", url, params=contacts_params(call_id), auth=self.auth_headers,
                                     on_401=self.on_401, policy=self.policy, rng=self.rng, limiter=self.limiter,
                                     what=f"acd call {call_id} media playback lookup")
        try:
            return parse_contacts(body, call_id)
        except PlaybackAnswerError as exc:
            raise StreamError(str(exc), reason="bad-playback-answer") from None

    async def _media_for(self, stream: Stream) -> MediaFile:
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
        elif "acd_call_id" in stream.metadata:
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
        self.gate(stream.id, meta)
        size = meta.get("size")
        if not isinstance(size, int) or size < 0:
            size = None
        self._check_resume_size(stream, size)
        self._check_resume_etag(stream, meta.get("etag"))
        stream.metadata.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
        stream.metadata["format"] = (self.settings.format or str(meta.get("format") or "bin")).lower()
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
        if media.duration is not None:
            self._check_duration(stream.id, media.duration)
            stream.metadata["duration"] = media.duration
        stream.metadata["format"] = (self.settings.format or media.format or "bin").lower()

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
        self.gate(rid, meta)
        duration = float(meta["duration"])  # numeric: checked by the gate
        late = [t for t in request.offsets if t >= duration]
        if late:
            raise StreamRejected(f"recording {rid}: stream offset {late[0]} s is at or past the end of the recording "
                                 f"({duration:g} s)", reason="offset-out-of-range")
        # size, sha256 and MACs describe the stored file, not this answer's bytes
        stream.metadata.update({k: v for k, v in meta.items()
                                if isinstance(v, (str, int, float, bool)) and k not in FILE_ONLY_FIELDS and k != "id"})
        codec = (request.codec or "").lower()
        stream.metadata["format"] = (codec if codec and codec != "original" else str(meta.get("format") or "bin")).lower()
        async for chunk in self._download(stream, f"{self.api_base}{request.path}", size=None, params=request.params(),
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
