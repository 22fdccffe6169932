"""The CXone emulator as an ASGI application (routing and handlers).

Endpoints (all JSON errors are ``{"error": code, "message": text}``):

==========================================  ======  =====================================
``/oauth/token``, ``/auth/token``           POST    token endpoint (:mod:`.auth`)
``/api/v2/recording/{id}``                  GET     metadata (scope ``recording:read``)
``/api/v2/recording/download/{id}``         GET     ranged download (``recording:download``; also HEAD)
``/api/v2/recordings/{id}/stream``          GET     chunked stream (:mod:`.streaming`)
``/media-playback/v1/contacts``             GET     Media Playback discovery (``recording:read``)
``/media-playback/v1/segments/{id}``        GET     the same answer for one segment (id = recording id)
``/media-playback/v1/files/{id}``           GET     signed temporary media URL (:mod:`.urlsign`; also HEAD)
``/_emulator/stats``                        GET     counters (:mod:`.stats`)
``/_emulator/reset``                        POST    zero counters, rate window and fault script
``/_emulator/faults``                       GET/POST/DELETE  scripted faults (:mod:`.faults`)
``/_emulator/recordings/{id}/mutate``       POST    new version of a recording (new ETag)
==========================================  ======  =====================================

Protected endpoints want ``Authorization: Bearer …`` (401 unknown/expired,
403 missing scope). The per-host window (``rate_limit``) applies to every
request except the token endpoint and ``/_emulator``. Downloads follow RFC
9110 ranges (:mod:`.ranges`) with ``ETag``, ``Accept-Ranges: bytes`` and
``If-Range``; when an HMAC key is configured each download response carries
``X-Segment-HMAC`` = HMAC-SHA256(key, 8-byte big-endian first offset ‖ the
body's original bytes) and ``X-Recording-HMAC`` over the whole recording, hex
or base64 per ``hmac_encoding``. Bodies are read from disk in
:data:`BODY_BLOCK` pieces, never whole. The access log (logger
``voxpipe_cxone.emulator.access``) never prints headers, and it redacts
signature and credential query parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Final
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl, quote, urlencode

import trio

from voxpipe.download import ranges
from voxpipe.serving import BodyTooLarge, read_body

from .auth import Credentials, TokenService
from .calls import CallCatalogue, CallRecord
from .extraction import ExtractionJobs
from .tenant import TenantRoutes
from .faults import FaultAction, FaultKind, FaultPlan, RequestKind, drop_point
from .ratelimit import WindowRateLimiter, retry_after_value
from .settings import EmulatorSettings
from .stats import EmulatorStats
from .store import DOWNLOADABLE_STATES, Recording, RecordingStore, RecordingStoreError, UnknownRecording
from .streaming import StreamRequestError, check_codec, parse_max_duration, parse_offsets, plan_stream
from .urlsign import MediaUrlSigner

__all__ = ["CxoneEmulator", "BODY_BLOCK", "MAX_REQUEST_BODY"]

access_log = logging.getLogger("voxpipe_cxone.emulator.access")

BODY_BLOCK: Final = 1 << 20
"""Bytes read from disk and sent per ASGI body message (1 MiB)."""

OPEN_ATTEMPTS: Final = 3
"""Tries to open a recording whose superseded version a concurrent mutation removed."""

MAX_REQUEST_BODY: Final = 1 << 20
"""Largest request body accepted (token forms, fault scripts), in bytes."""

REDACTED_PARAMS: Final = frozenset(
    {"sig", "signature", "access_token", "token", "client_secret", "password", "refresh_token", "id_token", "code"}
)
"""Query parameters whose values the access log replaces with ``REDACTED``."""

BLOB_TIMEOUT_ERROR: Final = {
    "error": "BlobStorageTimeout",
    "message": "The operation timed out while reading the recording from blob storage. Retry the request.",
    "status": 504,
}
"""Body of the JSON-error fault, after the seed's blob-storage timeout."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    headers: dict[str, str]
    client: str
    scheme: str
    server: tuple[str, int] | None
    body: bytes = b""

    @classmethod
    def from_scope(cls, scope: Scope) -> _Request:
        headers: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        raw_query = scope.get("query_string", b"").decode("latin-1")
        client = scope.get("client")
        return cls(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            raw_query=raw_query,
            headers=headers,
            client=f"{client[0]}:{client[1]}" if client else "-",
            scheme=scope.get("scheme", "http"),
            server=tuple(scope["server"]) if scope.get("server") else None,  # type: ignore[arg-type]
        )

    def redacted_target(self) -> str:
        if not self.raw_query:
            return self.path
        pairs = parse_qsl(self.raw_query, keep_blank_values=True)
        return self.path + "?" + urlencode([(k, "REDACTED" if k.lower() in REDACTED_PARAMS else v) for k, v in pairs])

    def base_url(self) -> str:
        """This server's own URL, from the bound address (never from the Host header)."""
        if self.server is None:
            raise RuntimeError("ASGI scope lacks the server address needed to build media URLs")
        h, p = self.server
        host = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        return f"{self.scheme}://{host}"


@dataclass
class _Exchange:
    """One response under way: what was sent, for stats and the access log."""

    send: Send
    stats: EmulatorStats
    on_complete: Callable[[_Exchange], None]
    logged: bool = False
    finished: bool = False
    status: int | None = None
    body_bytes: int = 0
    dropped: bool = False
    disconnected: bool = False
    recording: str | None = None

    async def start(self, status: int, headers: Sequence[tuple[str, str]]) -> None:
        self.status = status
        self.stats.response(status)
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )

    async def body(self, data: bytes, more: bool, *, audio: bool = False) -> None:
        # Counted (and logged) before the send: hypercorn may deliver http.disconnect
        # while the final message is being written, and the client may act on the
        # complete response before this task runs again.
        self.body_bytes += len(data)
        if audio and self.recording is not None and data:
            self.stats.served(self.recording, len(data))
        if not more:
            self.finished = True
            self.complete()
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    def complete(self) -> None:
        """Write the access-log line once."""
        if not self.logged:
            self.logged = True
            self.on_complete(self)

    async def json(self, status: int, obj: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        payload = json.dumps(obj).encode()
        await self.start(
            status,
            [("content-type", "application/json"), ("content-length", str(len(payload))), ("cache-control", "no-store"), *headers],
        )
        await self.body(payload, False)

    async def error(self, status: int, code: str, message: str, headers: Sequence[tuple[str, str]] = (), **extra: Any) -> None:
        await self.json(status, {"error": code, "message": message, **extra}, headers)


_Handler = Callable[["CxoneEmulator", _Request, _Exchange, re.Match[str]], Awaitable[None]]


class CxoneEmulator(TenantRoutes):
    """ASGI application emulating the CXone recording APIs over a directory of audio files.

    ``clock`` returns Unix seconds; tests may inject one to expire tokens and
    URLs without sleeping. Public attributes for tests and benchmarks:
    :attr:`store` (recordings, ``mutate``/``set_tamper``), :attr:`faults`
    (``schedule``), :attr:`stats` (``snapshot``, ``bytes_served``),
    :attr:`tokens`. Raises :class:`~.store.RecordingStoreError` for a bad
    recordings directory.
    """


    def __init__(self, settings: EmulatorSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.store = RecordingStore(
            settings.recordings,
            hmac_key=settings.hmac_key_bytes,
            tamper=settings.tamper,
            storage_states=settings.storage_states,
        )
        self.tokens = TokenService(
            Credentials(
                client_id=settings.client_id,
                client_secret=settings.client_secret.get_secret_value(),
                access_key_id=settings.access_key_id,
                access_key_secret=settings.access_key_secret.get_secret_value(),
                area=settings.area,
                tenant_id=settings.tenant_id,
            ),
            token_ttl=settings.token_ttl,
        )
        self.faults = FaultPlan(settings.faults, settings.seed)
        self.rate_limiter = WindowRateLimiter(settings.rate_limit) if settings.rate_limit else None
        self.stats = EmulatorStats()
        self.signer = MediaUrlSigner(settings.media_url_ttl)
        self._hmac_key = settings.hmac_key_bytes
        self.calls_end = settings.calls_end if settings.calls_end is not None else float(int(clock()) // 60 * 60)
        self.calls = CallCatalogue({rid: self.store.get(rid).duration or 0.0 for rid in self.store.ids()},
                                   calls_end=self.calls_end, spacing=settings.call_spacing)
        self.extraction = ExtractionJobs(running_polls=settings.extraction_running_polls,
                                         running_seconds=settings.extraction_running_seconds,
                                         result_ttl=settings.extraction_result_ttl,
                                         max_days=settings.extraction_max_days, id_shape=settings.job_id_shape)
        self.extraction.script(*settings.job_fates)
        self.result_signer = MediaUrlSigner(settings.extraction_result_ttl)

    def add_recording(self, rec_id: str, content: bytes, fmt: str, *, started_at: float) -> CallRecord:
        """A new recording of a call that started at ``started_at`` (Unix s): visible to every
        endpoint, including Data Extraction jobs created from now on."""
        rec = self.store.add(rec_id, content, fmt)
        return self.calls.add(rec_id, started_at=started_at, duration=rec.duration or 0.0)

    def _call(self, rec: Recording) -> CallRecord:
        call = self.calls.get(rec.id)
        if call is None:  # a recording without a described call: describe it now
            call = self.calls.add(rec.id, started_at=self.clock(), duration=rec.duration or 0.0)
        return call

    def __repr__(self) -> str:
        return f"CxoneEmulator(recordings={str(self.settings.recordings)!r}, {len(self.store)} recordings)"

    def close(self) -> None:
        """Release runtime files (mutated versions). Idempotent."""
        self.store.close()

    def __enter__(self) -> CxoneEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- ASGI entry ------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is answered by voxpipe.serving.with_lifespan
            return
        req = _Request.from_scope(scope)
        ex = _Exchange(send, self.stats, lambda done: self._log(req, done))
        try:
            try:
                req.body = await read_body(receive, MAX_REQUEST_BODY)
            except BodyTooLarge:
                await ex.error(413, "request_too_large", f"request body exceeds {MAX_REQUEST_BODY} bytes")
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_disconnect, receive, ex)
                try:
                    await self._dispatch(req, ex)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            ex.complete()  # dropped or abandoned responses

    def _log(self, req: _Request, ex: _Exchange) -> None:
        access_log.info(
            '%s "%s %s" %s %d%s',
            req.client,
            req.method,
            req.redacted_target(),
            ex.status if ex.status is not None else "-",
            ex.body_bytes,
            " dropped" if ex.dropped else ("" if ex.finished else " incomplete"),
        )

    async def _dispatch(self, req: _Request, ex: _Exchange) -> None:
        for pattern, route, methods in _ROUTES:
            m = pattern.match(req.path)
            if m is None:
                continue
            self.stats.request(route)
            handler = methods.get(req.method)
            if handler is None:
                allow = ", ".join(sorted(methods))
                await ex.error(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}", [("allow", allow)])
                return
            await handler(self, req, ex, m)
            return
        self.stats.request("unknown")
        await ex.error(404, "not_found", f"no endpoint at {req.path}")

    # -- shared guards -----------------------------------------------------------
    async def _guard(self, req: _Request, ex: _Exchange, kind: RequestKind, scope: str | None) -> FaultAction | None:
        """Rate window, bearer token (when ``scope`` is not None) and fault; None when answered."""
        now = self.clock()
        if self.rate_limiter is not None:
            delay = self.rate_limiter.admit(now)
            if delay is not None:
                self.stats.event("rate_limited")
                await ex.error(
                    429,
                    "rate_limited",
                    f"request rate over {self.rate_limiter.rate.limit} per {self.rate_limiter.rate.window:g} s",
                    [("retry-after", retry_after_value(delay, now, http_date=self.settings.faults.retry_after_http_date))],
                )
                return None
        if scope is not None:
            failure = self.tokens.authenticate(req.headers.get("authorization"), now, scope)
            if failure is not None:
                if failure.status == 401:
                    self.stats.event("unauthorized")
                await ex.error(failure.status, failure.error, failure.description, [("www-authenticate", failure.www_authenticate)])
                return None
        action = self.faults.next_action(kind)
        if action.kind is FaultKind.RATE_LIMIT:
            self.stats.event("rate_limited")
            await ex.error(
                429,
                "rate_limited",
                "too many requests (injected)",
                [("retry-after", retry_after_value(action.retry_after, now, http_date=action.retry_after_http_date))],
            )
            return None
        if action.kind is FaultKind.SERVER_ERROR:
            self.stats.event("server_errors")
            await ex.error(action.status, "server_error", f"injected server error {action.status}")
            return None
        return action

    async def _recording(self, ex: _Exchange, rec_id: str, *, for_download: bool) -> Recording | None:
        try:
            rec = self.store.get(rec_id)
        except UnknownRecording:
            await ex.error(404, "recording_not_found", f"recording {rec_id!r} does not exist", recordingId=rec_id)
            return None
        if for_download and rec.storage_state not in DOWNLOADABLE_STATES:
            status = 410 if rec.storage_state == "purged" else 409
            await ex.error(
                status,
                f"recording_{rec.storage_state}",
                f"recording {rec_id!r} is {rec.storage_state}; only available or stored recordings can be downloaded",
                recordingId=rec_id,
                storageState=rec.storage_state,
            )
            return None
        return rec

    def _encode_mac(self, mac: bytes) -> str:
        return mac.hex() if self.settings.hmac_encoding == "hex" else base64.b64encode(mac).decode("ascii")

    def _metadata(self, rec: Recording) -> dict:
        body: dict[str, Any] = {
            "id": rec.id,
            "acdCallId": rec.id,
            "format": rec.format,
            "contentType": rec.content_type,
            "size": rec.size,
            "duration": rec.duration,
            "status": "completed",
            "storageState": rec.storage_state,
            "etag": rec.etag,
            "fileName": f"{rec.id}.{rec.format}",
            **{k: v for k, v in self._call(rec).json_fields().items() if k != "acdCallId"},
        }
        if self.settings.sha256_in_metadata:
            body["sha256"] = rec.sha256
        if rec.hmac_sha256 is not None:
            body["hmac"] = self._encode_mac(rec.hmac_sha256)
            body["hmacAlgorithm"] = "hmac-sha256"
            body["hmacEncoding"] = self.settings.hmac_encoding
        return body

    # -- handlers ----------------------------------------------------------------
    async def _token(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            await ex.json(400, {"error": "invalid_request", "error_description": "token requests must be application/x-www-form-urlencoded"})
            return
        try:
            form = dict(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            await ex.json(400, {"error": "invalid_request", "error_description": "token request body is not UTF-8"})
            return
        basic = _basic_credentials(req.headers.get("authorization"))
        action = self.faults.next_action(RequestKind.TOKEN)
        if action.kind is FaultKind.RATE_LIMIT:
            self.stats.event("rate_limited")
            now = self.clock()
            await ex.error(429, "rate_limited", "too many requests (injected)",
                           [("retry-after", retry_after_value(action.retry_after, now, http_date=action.retry_after_http_date))])
            return
        if action.kind is FaultKind.SERVER_ERROR:
            self.stats.event("server_errors")
            await ex.error(action.status, "server_error", f"injected server error {action.status}")
            return
        reply = self.tokens.token_request(form, basic, self.clock())
        if reply.status == 200:
            self.stats.event("tokens_issued")
        await ex.json(reply.status, reply.body, [*reply.headers, ("pragma", "no-cache")])

    async def _metadata_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        if await self._guard(req, ex, RequestKind.METADATA, "recording:read") is None:
            return
        rec = await self._recording(ex, m["id"], for_download=False)
        if rec is not None:
            await ex.json(200, self._metadata(rec), [("etag", rec.etag)])

    async def _download_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        action = await self._guard(req, ex, RequestKind.DOWNLOAD, "recording:download")
        if action is not None:
            await self._serve_recording(req, ex, m["id"], action)

    async def _media_file_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        reason = self.signer.check(m["id"], req.query.get("expires"), req.query.get("sig"), self.clock())
        if reason is not None:
            await ex.error(403, "invalid_signature", reason)
            return
        action = await self._guard(req, ex, RequestKind.MEDIA_FILE, None)
        if action is not None:
            await self._serve_recording(req, ex, m["id"], action)

    async def _playback_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        """Contacts lookup by ACD call id (= recording id), or a segment by its id (or recording id)."""
        if await self._guard(req, ex, RequestKind.PLAYBACK, "recording:read") is None:
            return
        segment = m.groupdict().get("segment")
        call_id = (self.calls.recording_of_segment(segment) or segment) if segment else req.query.get("acd-call-id")
        media_type = req.query.get("media-type", "voice-only")
        if not call_id:
            await ex.error(400, "missing_parameter", "acd-call-id query parameter is required")
            return
        if media_type != "voice-only":
            await ex.error(400, "unsupported_media_type", f"media-type {media_type!r} is not supported; use voice-only")
            return
        rec = await self._recording(ex, call_id, for_download=True)
        if rec is None:
            return
        params = self.signer.sign(rec.id, self.clock())
        url = f"{req.base_url()}/media-playback/v1/files/{quote(rec.id)}?{urlencode(params)}"
        call = self._call(rec)
        facts = call.json_fields()
        if segment is not None:
            # a segment answer names no file or format: the container is told by the media's
            # Content-Type and first bytes (as CXone's often is)
            data = {"fileToPlayUrl": url, "size": rec.size, "duration": rec.duration, "etag": rec.etag,
                    "expiresIn": int(self.signer.ttl), **facts}
            shape = self.settings.segment_answer
            if shape == "interactions":
                body: dict[str, Any] = {"segmentId": call.segment_id, "contactId": call.contact_id,
                                        "interactions": [{"mediaType": "voice-only", "data": data}]}
            else:
                body = {**{k: v for k, v in data.items() if k != "fileToPlayUrl"}, shape: url}
            await ex.json(200, body)
            return
        await ex.json(
            200,
            {
                "contactId": rec.id,
                "acdCallId": rec.id,
                "interactions": [
                    {
                        "mediaType": "voice-only",
                        "data": {
                            "fileToPlayUrl": url,
                            "fileName": f"{rec.id}.{rec.format}",
                            "format": rec.format,
                            "contentType": rec.content_type,
                            "size": rec.size,
                            "duration": rec.duration,
                            "etag": rec.etag,
                            "expiresIn": int(self.signer.ttl),
                            "isDownload": req.query.get("isDownload", "false").lower() == "true",
                            **facts,
                        },
                    }
                ],
            },
        )

    async def _serve_recording(self, req: _Request, ex: _Exchange, rec_id: str, action: FaultAction) -> None:
        rec = await self._recording(ex, rec_id, for_download=True)
        if rec is None:
            return
        fmt = req.query.get("format")
        if fmt is not None and fmt.lower() != rec.format:
            await ex.error(
                406,
                "format_unavailable",
                f"recording {rec.id!r} is stored as {rec.format}; the emulator does not transcode to {fmt!r}",
                recordingId=rec.id,
            )
            return
        if action.kind is FaultKind.ETAG_CHANGE:
            self.stats.event("etag_changes")
            rec = await trio.to_thread.run_sync(self.store.mutate, rec.id)
        rec, fd = self._open(rec)
        try:
            await self._serve_open(req, ex, rec, fd, action)
        finally:
            os.close(fd)

    async def _serve_open(self, req: _Request, ex: _Exchange, rec: Recording, fd: int, action: FaultAction) -> None:
        """Answer a download of ``rec``, whose file is open as ``fd`` (ranges, faults, MACs, body)."""
        ex.recording = rec.id
        decision: ranges.RangeDecision = ranges.IGNORE
        if action.ignores_range:
            if "range" in req.headers:
                self.stats.event("ignored_ranges")
        elif ranges.if_range_allows(req.headers.get("if-range"), rec.etag):
            decision = ranges.parse_range(req.headers.get("range"), rec.size)
        if isinstance(decision, ranges.Unsatisfiable):
            await ex.error(
                416,
                "range_not_satisfiable",
                f"range {decision.spec!r} is outside recording {rec.id!r} of {rec.size} bytes",
                [("content-range", ranges.unsatisfied_content_range(rec.size)), ("etag", rec.etag), ("accept-ranges", "bytes")],
                recordingId=rec.id,
                size=rec.size,
            )
            return
        if isinstance(decision, ranges.ByteRange):
            status, first, length = 206, decision.first, decision.length
        else:
            status, first, length = 200, 0, rec.size
        if action.kind is FaultKind.JSON_ERROR:
            self.stats.event("json_errors")
            payload = json.dumps({**BLOB_TIMEOUT_ERROR, "recordingId": rec.id}).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(payload))), ("etag", rec.etag)]
            if status == 206 and first + len(payload) <= rec.size:
                headers.append(("content-range", f"bytes {first}-{first + len(payload) - 1}/{rec.size}"))
            else:
                status = 200
            await ex.start(status, headers)
            await ex.body(payload, False)
            return
        headers = [
            ("content-type", rec.content_type),
            ("content-length", str(length)),
            ("accept-ranges", "bytes"),
            ("etag", rec.etag),
            ("cache-control", "no-store"),
        ]
        if isinstance(decision, ranges.ByteRange):
            headers.append(("content-range", decision.content_range(rec.size)))
        if self._hmac_key is not None:
            segment_mac = await trio.to_thread.run_sync(_mac_range, self._hmac_key, fd, first, length)
            headers.append(("x-segment-hmac", self._encode_mac(segment_mac)))
            assert rec.hmac_sha256 is not None
            headers.append(("x-recording-hmac", self._encode_mac(rec.hmac_sha256)))
        if req.method == "HEAD":  # same headers as GET, no body (RFC 9110 §9.3.2)
            await ex.start(status, headers)
            await ex.body(b"", False)
            return
        drop_at = drop_point(action, length) if action.kind is FaultKind.DROP else None
        await ex.start(status, headers)
        await self._send_span(ex, rec, fd, first, length, drop_at, final=True)

    def _open(self, rec: Recording) -> tuple[Recording, int]:
        """Open the current version's file; a concurrent mutation may have replaced ``rec``."""
        for _ in range(OPEN_ATTEMPTS):
            try:
                return rec, os.open(rec.path, os.O_RDONLY)
            except FileNotFoundError:
                current = self.store.get(rec.id)
                if current.path == rec.path:
                    raise
                rec = current
        raise RecordingStoreError(f"recording {rec.id!r} kept changing while being opened ({OPEN_ATTEMPTS} attempts)")

    async def _send_span(
        self, ex: _Exchange, rec: Recording, fd: int, start: int, length: int, drop_at: int | None, *, final: bool, block: int = BODY_BLOCK
    ) -> bool:
        """Send file bytes ``[start, start+length)``; False when the drop fault cut it short."""
        limit = length if drop_at is None else drop_at
        sent = 0
        while sent < limit:
            if ex.disconnected:
                return False
            n = min(BODY_BLOCK, limit - sent)
            # One thread hop per 1 MiB read; smaller ASGI messages (the stream's
            # chunk size) are sliced from it without touching the disk again.
            data = await trio.to_thread.run_sync(os.pread, fd, n, start + sent)
            if len(data) != n:
                raise RecordingStoreError(
                    f"recording {rec.id!r} ({rec.path}) shrank while being served: short read at byte {start + sent}"
                )
            data = rec.patch(start + sent, data)
            view = memoryview(data)
            for i in range(0, n, block):
                piece = view[i : i + block]
                sent += len(piece)
                await ex.body(bytes(piece) if block < n else data, not (final and sent == length), audio=True)
        if drop_at is not None:
            # Returning without the final body message makes hypercorn close the
            # connection: the client sees a truncated body, not a clean end.
            self.stats.event("drops")
            ex.dropped = True
            return False
        if final and length == 0:
            await ex.body(b"", False)
        return True

    async def _stream_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        action = await self._guard(req, ex, RequestKind.STREAM, "recording:download")
        if action is None:
            return
        rec = await self._recording(ex, m["id"], for_download=True)
        if rec is None:
            return
        try:
            offsets = parse_offsets(req.query.get("offsets"))
            max_duration = parse_max_duration(req.query.get("maxDuration"))
            check_codec(req.query.get("codec"), rec)
        except StreamRequestError as exc:
            await ex.error(exc.status, exc.code, str(exc), recordingId=rec.id)
            return
        if action.kind is FaultKind.ETAG_CHANGE:
            self.stats.event("etag_changes")
            rec = await trio.to_thread.run_sync(self.store.mutate, rec.id)
        ex.recording = rec.id
        rec, fd = self._open(rec)
        try:
            header = os.pread(fd, rec.wav.data_offset, 0) if rec.wav is not None else b""
            try:
                plan = plan_stream(rec, offsets, max_duration, header)
            except StreamRequestError as exc:
                await ex.error(exc.status, exc.code, str(exc), recordingId=rec.id)
                return
            if action.kind is FaultKind.JSON_ERROR:
                # Streaming answers have already committed to 200 when blob storage
                # times out; the error arrives as a JSON body (seed forum thread).
                self.stats.event("json_errors")
                await ex.start(200, [("content-type", "application/json"), ("cache-control", "no-store")])
                await ex.body(json.dumps({**BLOB_TIMEOUT_ERROR, "recordingId": rec.id}).encode(), False)
                return
            await ex.start(
                200,
                [
                    ("content-type", rec.content_type),
                    ("etag", rec.etag),
                    ("cache-control", "no-store"),
                    ("x-stream-offsets", ",".join(map(str, plan.offsets))),
                    ("x-stream-length", str(plan.length)),
                ],
            )
            drop_left = drop_point(action, plan.length) if action.kind is FaultKind.DROP else None
            chunk = self.settings.stream_chunk_size
            if plan.header:
                head = plan.header if drop_left is None else plan.header[:drop_left]
                await ex.body(head, True, audio=True)
                if drop_left is not None:
                    drop_left -= len(head)
                    if drop_left == 0 and len(head) < plan.length:
                        self.stats.event("drops")
                        ex.dropped = True
                        return
            for span in plan.spans:
                span_drop = None
                if drop_left is not None and drop_left < span.length:
                    span_drop = drop_left
                if not await self._send_span(ex, rec, fd, span.start, span.length, span_drop, final=False, block=chunk):
                    return
                if drop_left is not None:
                    drop_left -= span.length
            await ex.body(b"", False)
        finally:
            os.close(fd)

    # -- emulator control --------------------------------------------------------
    async def _stats_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        await ex.json(200, {**self.stats.snapshot(), "fault_seed": self.faults.seed, "faults_pending": len(self.faults.pending())})

    async def _reset_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        self.stats.reset()
        self.faults.clear()
        if self.rate_limiter is not None:
            self.rate_limiter.reset()
        await ex.json(200, {"reset": True})

    async def _faults_get(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        await ex.json(200, {"pending": [_action_json(a) for a in self.faults.pending()]})

    async def _faults_delete(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        self.faults.clear()
        await ex.json(200, {"pending": []})

    async def _faults_post(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        """Body ``{"actions": [{"kind": "drop", "drop_after": 100}, …], "kinds": ["download", …]}``."""
        try:
            doc = json.loads(req.body or b"{}")
            items = doc["actions"]
            if not isinstance(items, list):
                raise TypeError("actions must be a list")
            actions = []
            for i, item in enumerate(items):
                try:
                    actions.append(FaultAction(**item) if isinstance(item, dict) else FaultAction(FaultKind(item)))
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"actions[{i}]: {exc}") from None
            kinds = doc.get("kinds")
            if kinds is None:
                self.faults.schedule(*actions)
            else:
                self.faults.schedule(*actions, kinds=kinds)
        except (ValueError, TypeError, KeyError) as exc:
            await ex.error(400, "invalid_fault_script", f"fault script rejected: {exc}")
            return
        await ex.json(200, {"pending": [_action_json(a) for a in self.faults.pending()]})

    async def _mutate_route(self, req: _Request, ex: _Exchange, m: re.Match[str]) -> None:
        try:
            rec = await trio.to_thread.run_sync(self.store.mutate, m["id"])
        except UnknownRecording:
            await ex.error(404, "recording_not_found", f"recording {m['id']!r} does not exist")
            return
        except RecordingStoreError as exc:
            await ex.error(409, "cannot_mutate", str(exc))
            return
        self.stats.event("etag_changes")
        await ex.json(200, self._metadata(rec))


def _action_json(action: FaultAction) -> dict:
    return {
        "kind": action.kind.value,
        "status": action.status,
        "retry_after": action.retry_after,
        "retry_after_http_date": action.retry_after_http_date,
        "drop_after": action.drop_after,
        "drop_fraction": action.drop_fraction,
        "ignore_range": action.ignore_range,
    }


def _mac_range(key: bytes, fd: int, first: int, length: int) -> bytes:
    """HMAC-SHA256(key, first as 8-byte big-endian ‖ original bytes [first, first+length))."""
    mac = hmac.new(key, first.to_bytes(8, "big"), hashlib.sha256)
    done = 0
    while done < length:
        block = os.pread(fd, min(BODY_BLOCK, length - done), first + done)
        if not block:
            raise RecordingStoreError(f"short read at byte {first + done} while computing a segment HMAC")
        mac.update(block)
        done += len(block)
    return mac.digest()


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _watch_disconnect(receive: Receive, ex: _Exchange) -> None:
    """Flag the exchange when the client goes away, so body loops stop reading the file.

    A flag rather than a cancellation: hypercorn also reports the disconnect
    from inside the final send of a complete response.
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            ex.disconnected = True
            return


_ROUTES: Final[list[tuple[re.Pattern[str], str, dict[str, _Handler]]]] = [
    (re.compile(r"^/(?:oauth|auth)/token$"), "token", {"POST": CxoneEmulator._token}),
    (re.compile(r"^/api/v2/recording/download/(?P<id>[^/]+)$"), "download", {"GET": CxoneEmulator._download_route, "HEAD": CxoneEmulator._download_route}),
    (re.compile(r"^/api/v2/recording/(?P<id>[^/]+)$"), "metadata", {"GET": CxoneEmulator._metadata_route}),
    (re.compile(r"^/api/v2/recordings/(?P<id>[^/]+)/stream$"), "stream", {"GET": CxoneEmulator._stream_route}),
    (re.compile(r"^/media-playback/v1/contacts$"), "playback", {"GET": CxoneEmulator._playback_route}),
    (re.compile(r"^/media-playback/v1/segments/(?P<segment>[^/]+)$"), "playback", {"GET": CxoneEmulator._playback_route}),
    (re.compile(r"^/media-playback/v1/files/(?P<id>[^/]+)$"), "media_file", {"GET": CxoneEmulator._media_file_route, "HEAD": CxoneEmulator._media_file_route}),
    (re.compile(r"^/data-extraction/v1/jobs$"), "extraction", {"POST": CxoneEmulator._job_create_route}),
    (re.compile(r"^/data-extraction/v1/jobs/(?P<job>[^/]+)$"), "extraction", {"GET": CxoneEmulator._job_status_route}),
    (re.compile(r"^/data-extraction/v1/files/(?P<job>[^/]+)$"), "extraction_file", {"GET": CxoneEmulator._job_file_route}),
    (re.compile(r"^/\.well-known/(?P<doc>cxone-configuration|openid-configuration)$"), "well_known", {"GET": CxoneEmulator._well_known_route}),
    (re.compile(r"^/_emulator/stats$"), "emulator", {"GET": CxoneEmulator._stats_route}),
    (re.compile(r"^/_emulator/reset$"), "emulator", {"POST": CxoneEmulator._reset_route}),
    (
        re.compile(r"^/_emulator/faults$"),
        "emulator",
        {"GET": CxoneEmulator._faults_get, "POST": CxoneEmulator._faults_post, "DELETE": CxoneEmulator._faults_delete},
    ),
    (re.compile(r"^/_emulator/recordings/(?P<id>[^/]+)/mutate$"), "emulator", {"POST": CxoneEmulator._mutate_route}),
]
