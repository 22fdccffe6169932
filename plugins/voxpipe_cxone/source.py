"""The ``cxone`` source: NICE CXone call recordings over the recording API.

Contract (the CXone seed documents; ``/work/shared/reference/cxone.md``):

- token: ``POST {token_url}`` (see :mod:`.auth`), cached, refreshed 30 s before expiry,
  one refresh at a time for all streams, and once more after a 401;
- metadata: ``GET {api_base}/api/v2/recording/{id}`` → ``id, format, size, duration,
  status, storageState``; the download only starts when ``storageState`` is
  ``available`` or ``stored`` and ``duration`` ≤ ``max_duration``;
- media: ``GET {api_base}/api/v2/recording/download/{id}[?format=…]`` by ``Range``
  segments of ``chunk_size`` bytes (:class:`voxpipe.download.downloader.RangedDownload`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Mapping
from urllib.parse import quote

import httpx
from pydantic import SecretStr, model_validator

from voxpipe.components import Source
from voxpipe.download.api import request_json
from voxpipe.download.downloader import RangedDownload, read_size_for
from voxpipe.download.responses import ResponseLog
from voxpipe.download.retry import RetryPolicy
from voxpipe.download.tokens import TokenCache
from voxpipe.errors import StreamError, StreamRejected, StreamRestart
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.settings import Settings, setting

from .auth import fetch_token

#: ``storageState`` values that mean the media can be downloaded now.
DOWNLOADABLE_STATES = frozenset({"available", "stored"})
#: Most recording ids one source accepts (a larger backlog is several runs).
MAX_RECORDINGS = 1_000_000
#: Longest recording id accepted (characters).
MAX_ID_LENGTH = 200


class CxoneSettings(Settings):
    api_base: str = setting(description="Base URL of the CXone API (no trailing path).",
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
    chunk_size: int = setting(8 << 20, description="Bytes per ranged request (segment size).",
                              ge=64 << 10, le=1 << 30)
    max_duration: float = setting(4 * 3600.0, description="Longest recording accepted, in seconds "
                                  "(from metadata `duration`); longer ones fail without downloading.", gt=0)
    format: str | None = setting(None, description="Media format to ask for (`?format=`), e.g. `mp3`; "
                                 "default: as stored.", example="mp3")
    max_connections: int = setting(16, description="Most HTTP connections open to the API at once.", ge=1, le=256)
    timeout: float = setting(60.0, description="Seconds to wait for a connection or for the next bytes of a body.",
                             gt=0, le=3600)
    max_attempts: int = setting(6, description="Tries per request (or per segment without progress).", ge=1, le=50)
    max_retry_after: float = setting(300.0, description="Longest `Retry-After` honoured, in seconds.", ge=0)
    retry_base_delay: float = setting(0.5, description="Seconds; exponential backoff (with full jitter) starts here "
                                      "and doubles per failed try, capped at 30 s.", ge=0, le=60)
    verify_tls: bool = setting(True, description="Verify the server's TLS certificate.")

    @model_validator(mode="after")
    def _check(self) -> "CxoneSettings":
        if not self.recordings and self.recordings_file is None:
            raise ValueError("give `recordings` (a list of ids) or `recordings_file`")
        if self.grant == "access_key" and (not self.access_key_id or self.access_key_secret is None):
            raise ValueError("`grant: access_key` needs `access_key_id` and `access_key_secret`")
        return self


class CxoneSource(Source):
    """NICE CXone call recordings: metadata-gated, ranged, resumable downloads."""

    type = "cxone"
    Settings = CxoneSettings
    resumable = True

    def __init__(self, settings: CxoneSettings, context):
        super().__init__(settings, context)
        self.api_base = settings.api_base.rstrip("/")
        self.policy = RetryPolicy(max_attempts=settings.max_attempts, max_retry_after=settings.max_retry_after,
                                  base_delay=settings.retry_base_delay)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            verify=settings.verify_tls, follow_redirects=True,
            headers={"User-Agent": "voxpipe"},
        )
        self.tokens = TokenCache(self._fetch_token)
        self.rng = random.Random()

    async def aclose(self) -> None:
        await self.client.aclose()

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

    async def _fetch_token(self):
        token = await fetch_token(self.client, self.settings.token_url, self._token_form(), policy=self.policy)
        if self.context.audit is not None:
            self.context.audit.write("token-refresh", pipeline=self.context.pipeline, source=self.type,
                                     expires_in=token.expires_in)
        return token

    async def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {await self.tokens.get()}"}

    def on_401(self, sent: Mapping[str, str]) -> None:
        value = sent.get("Authorization", "")
        if value.startswith("Bearer "):
            self.tokens.invalidate(value[7:])

    # ---------------------------------------------------------------- discovery

    async def discover(self) -> AsyncIterator[StreamSpec]:
        seen: set[str] = set()
        for rid in self._recording_ids():
            if rid not in seen:
                seen.add(rid)
                yield StreamSpec(rid)

    def _recording_ids(self) -> list[str]:
        ids = [str(r).strip() for r in self.settings.recordings]
        path = self.settings.recordings_file
        if path is not None:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise StreamError(f"cannot read recordings_file {path}: {exc.strerror}", reason="bad-input") from None
            for lineno, line in enumerate(lines, 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                if len(line) > MAX_ID_LENGTH or any(c.isspace() for c in line):
                    raise StreamError(f"{path}:{lineno}: not a recording id: {line[:40]!r}", reason="bad-input")
                ids.append(line)
        if len(ids) > MAX_RECORDINGS:
            raise StreamError(f"{len(ids)} recording ids given; at most {MAX_RECORDINGS} per run", reason="bad-input")
        return [i for i in ids if i]

    # ---------------------------------------------------------------- one recording

    async def fetch_metadata(self, recording_id: str) -> dict[str, Any]:
        url = f"{self.api_base}/api/v2/recording/{quote(recording_id, safe='')}"
        _, body = await request_json(self.client, "GET", url, auth=self.auth_headers, on_401=self.on_401,
                                     policy=self.policy, rng=self.rng, what=f"recording {recording_id} metadata")
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
        if duration > self.settings.max_duration:
            raise StreamRejected(f"recording {recording_id}: duration {duration:g} s exceeds max_duration "
                                 f"{self.settings.max_duration:g} s", reason="too-long")

    async def read(self, stream: Stream) -> AsyncIterator[Chunk]:
        meta = await self.fetch_metadata(stream.id)
        self.gate(stream.id, meta)
        size = meta.get("size")
        if not isinstance(size, int) or size < 0:
            size = None
        known_size = stream.metadata.get("size")
        if stream.resume_offset and known_size is not None and known_size != size:
            raise StreamRestart(f"recording {stream.id}: size changed from {known_size} to {size} bytes since the "
                                f"checkpoint at byte {stream.resume_offset}", reason="size-changed")
        stream.metadata.update({k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))})
        stream.metadata["format"] = (self.settings.format or str(meta.get("format") or "bin")).lower()
        if size is not None:
            stream.metadata["size"] = size
        url = f"{self.api_base}/api/v2/recording/download/{quote(stream.id, safe='')}"
        responses = ResponseLog.of(stream)  # a verifier wants per-response headers (X-Segment-HMAC)
        download = RangedDownload(
            self.client, url, recording_id=stream.id, size=size, segment_size=self.settings.chunk_size,
            auth=self.auth_headers, on_401=self.on_401, policy=self.policy,
            read_size=read_size_for(self.settings.chunk_size),
            params={"format": self.settings.format} if self.settings.format else None, rng=self.rng,
            on_segment=lambda event: stream.audit("segment", **event),
            start=stream.resume_offset, etag=stream.metadata.get("etag"),
            on_response=responses.record if responses is not None else None)
        async for chunk in download.chunks():
            if download.etag and "etag" not in stream.metadata:
                stream.metadata["etag"] = download.etag  # recorded with checkpoints, checked on resume
            yield chunk
