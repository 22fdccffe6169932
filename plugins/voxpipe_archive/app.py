"""The archive retrieval API: an ASGI app served by hypercorn on trio.

Routes (all ``GET`` and ``HEAD``; every route but ``/healthz`` needs a bearer token):

``GET /recordings/{id}[?source=S][&decompress=1]``
    The stored file of recording ``id``, streamed in blocks: content type by format
    (``application/gzip`` for a gzip-stored file), strong ``ETag`` = the stored file's
    SHA-256, ``Accept-Ranges: bytes``, single ``Range`` (206/416), ``If-Range``,
    ``If-None-Match`` (304), ``Repr-Digest`` (RFC 9530). ``decompress=1`` streams the
    original bytes of a gzip-stored file instead (ETag = original SHA-256, no ranges),
    checking their size and SHA-256 against the manifest as they stream; on a mismatch
    the connection is aborted before the last block, so a client never receives a
    complete corrupted body. Whole-file responses of the stored file are checked the
    same way against ``stored_sha256``.
``GET /archive/retrieve?interactionId=ID[&recordingId=R][&decompress=1]``
    The recording of a platform interaction (Genesys ``conversationId``, CXone
    ``contactId``/``acdCallId``); 300 with the candidates when there are several.
``GET /recordings?source=&from=&to=&limit=&offset=``
    JSON listing filtered by source and recording date, paged (at most :data:`MAX_PAGE`).
``GET /healthz``
    ``{"status": "ok", "recordings": N}``; no authentication, reveals no ids.

Ids are checked by :func:`voxpipe_archive.paths.check_id` after the server's single
percent-decoding of each path segment; stored paths come from manifests and are
resolved inside the real archive root (:func:`voxpipe_archive.paths.resolve_inside`).
Refusals are 400 (malformed id) or 404 (unknown, or resolving outside the archive),
never revealing what lies outside.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

import trio

from .auth import BearerAuth
from .bodies import BodyError, FileBody, GunzipBody
from .conditional import evaluate
from .index import ArchiveIndex, Entry
from voxpipe.manifest import parse_time
from .paths import OutsideArchive, UnsafeId, check_id, resolve_inside

log = logging.getLogger("voxpipe.archive")

#: Largest page of the listing.
MAX_PAGE = 1000
#: Default page size of the listing.
DEFAULT_PAGE = 100
#: Most query parameters parsed from one request.
MAX_QUERY_FIELDS = 16
#: Longest query string accepted, in bytes.
MAX_QUERY_BYTES = 2048
#: Content types by manifest ``format``.
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg", "opus": "audio/ogg",
                 "webm": "audio/webm", "flac": "audio/flac", "m4a": "audio/mp4", "mp4": "audio/mp4",
                 "ulaw": "audio/basic", "au": "audio/basic"}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


class HTTPError(Exception):
    """A refusal: ``status``, a short ``reason`` code and a message for the JSON body."""

    def __init__(self, status: int, message: str, reason: str, headers: list[tuple[bytes, bytes]] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.reason, self.headers, self.extra = status, reason, headers or [], extra or {}


def content_type(fmt: str | None) -> str:
    """The media type for a manifest format (``wav`` → ``audio/wav``)."""
    return CONTENT_TYPES.get((fmt or "").lower(), DEFAULT_CONTENT_TYPE)


def repr_digest(sha256_hex: str) -> bytes:
    """An RFC 9530 ``Repr-Digest`` value for a hex SHA-256."""
    return b"sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)) + b":"


class ArchiveApp:
    """ASGI app serving one archive (see the module docstring).

    :param index: the archive catalogue.
    :param auth: the bearer-token checker.
    """

    def __init__(self, index: ArchiveIndex, auth: BearerAuth):
        self.index = index
        self.auth = auth

    # -- ASGI entry ---------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        method = scope["method"]
        headers = _headers(scope)
        try:
            segments = _segments(scope)
            if segments == ["healthz"]:
                _allow(method)
                await self._refresh()
                await _send_json(send, method, 200, {"status": "ok", "recordings": len(self.index.entries())})
                return
            challenge = self.auth.check(headers.get("authorization-raw"))
            if challenge is not None:
                value = b'Bearer realm="voxpipe"' + (f', error="{challenge}"'.encode() if challenge else b"")
                raise HTTPError(401, "a valid bearer token is required", challenge or "unauthenticated",
                                [(b"www-authenticate", value)])
            query = _query(scope)
            if segments == ["recordings"]:
                _allow(method)
                await self._list(send, method, query)
            elif len(segments) == 2 and segments[0] == "recordings":
                _allow(method)
                rid = _checked(segments[1], "recording id")
                entry = await self._by_recording_id(rid, query)
                await self._serve(send, method, headers, entry, query)
            elif segments == ["archive", "retrieve"]:
                _allow(method)
                entry = await self._by_interaction(query)
                await self._serve(send, method, headers, entry, query)
            else:
                raise HTTPError(404, "no such route", "no-route")
        except HTTPError as exc:
            if exc.status >= 500 or exc.status == 401:
                log.info("archive: %s %s -> %d %s", method, _printable(scope), exc.status, exc.reason)
            else:
                log.debug("archive: %s %s -> %d %s", method, _printable(scope), exc.status, exc.reason)
            await _send_json(send, method, exc.status, {"error": str(exc), "reason": exc.reason, **exc.extra},
                             exc.headers)

    async def _refresh(self) -> None:
        await trio.to_thread.run_sync(self.index.refresh)

    # -- lookups ------------------------------------------------------------------------

    async def _by_recording_id(self, rid: str, query: dict[str, str]) -> Entry:
        await self._refresh()
        entries = self.index.by_recording_id(rid)
        if "source" in query:
            entries = tuple(e for e in entries if e.manifest.source == query["source"])
        if not entries:
            raise HTTPError(404, f"recording {rid} is not in the archive", "not-found")
        if len(entries) > 1:
            raise _ambiguous(f"recording id {rid} is stored by several sources; add ?source=", entries)
        return entries[0]

    async def _by_interaction(self, query: dict[str, str]) -> Entry:
        if "interactionId" not in query:
            raise HTTPError(400, "interactionId query parameter is required", "missing-parameter")
        iid = _checked(query["interactionId"], "interactionId")
        await self._refresh()
        entries = self.index.by_interaction_id(iid)
        if "recordingId" in query:
            rid = _checked(query["recordingId"], "recordingId")
            entries = tuple(e for e in entries if e.manifest.recording_id == rid)
        if not entries:
            raise HTTPError(404, f"no recording of interaction {iid} is in the archive", "not-found")
        if len(entries) > 1:
            raise _ambiguous(f"interaction {iid} has {len(entries)} recordings; add &recordingId=", entries)
        return entries[0]

    # -- listing ------------------------------------------------------------------------

    async def _list(self, send: Callable, method: str, query: dict[str, str]) -> None:
        limit = _int_param(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        offset = _int_param(query, "offset", 0, 0, 10**9)
        since = _time_param(query, "from", end_of_day=False)
        until = _time_param(query, "to", end_of_day=True)
        source = query.get("source")
        await self._refresh()
        selected = [e for e in self.index.entries()
                    if (source is None or e.manifest.source == source)
                    and (since is None or (e.when is not None and e.when >= since))
                    and (until is None or (e.when is not None and e.when < until))]
        page = selected[offset:offset + limit]
        next_url = None
        if offset + limit < len(selected):
            next_url = "/recordings?" + urlencode({**{k: v for k, v in query.items() if k != "offset"},
                                                   "offset": offset + limit, "limit": limit})
        await _send_json(send, method, 200, {"total": len(selected), "offset": offset, "limit": limit,
                                             "next": next_url, "items": [listing_item(e) for e in page]})

    # -- files --------------------------------------------------------------------------

    async def _serve(self, send: Callable, method: str, headers: dict[str, Any], entry: Entry,
                     query: dict[str, str]) -> None:
        m = entry.manifest
        decompress = _bool_param(query, "decompress")
        label = f"recording {m.recording_id}"
        fd = await trio.to_thread.run_sync(self._open, entry)
        try:
            size = os.fstat(fd).st_size
            if size != m.stored_size:
                log.error("archive: %s: stored file %s is %d bytes, its manifest says %d; refused",
                          label, entry.relative, size, m.stored_size)
                raise HTTPError(500, f"{label}: stored file does not match its manifest", "integrity")
            common = [(b"cache-control", b"private, no-cache"), (b"x-content-type-options", b"nosniff"),
                      (b"x-voxpipe-recording-id", m.recording_id.encode())]
            if decompress and m.compression == "gzip":
                await self._send_original(send, method, headers, fd, entry, common, label)
            else:
                await self._send_stored(send, method, headers, fd, entry, common, label)
        finally:
            os.close(fd)

    def _open(self, entry: Entry) -> int:
        """Open the stored file read-only after checking it resolves inside the archive."""
        try:
            resolved = resolve_inside(self.index.root, entry.manifest.stored)
        except OutsideArchive:
            log.warning("archive: recording %s: stored file %s resolves outside the archive; refused",
                        entry.manifest.recording_id, entry.relative)
            raise HTTPError(404, f"recording {entry.manifest.recording_id} is not in the archive", "outside") from None
        try:
            fd = os.open(resolved.real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise HTTPError(404, f"recording {entry.manifest.recording_id} is not in the archive", "gone") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise HTTPError(404, f"recording {entry.manifest.recording_id} is not in the archive", "not-a-file")
        return fd

    async def _send_stored(self, send, method, headers, fd, entry, common, label) -> None:
        m = entry.manifest
        etag = f'"{m.stored_sha256}"'
        ctype = "application/gzip" if m.compression == "gzip" else content_type(m.format)
        decision = evaluate(method, headers, etag=etag, size=m.stored_size)
        base = common + [(b"etag", etag.encode()), (b"accept-ranges", b"bytes"),
                         (b"content-disposition", _disposition(entry.relative.rsplit("/", 1)[-1]))]
        if decision.status == 304:
            await _start(send, 304, base)
            await send({"type": "http.response.body", "body": b""})
            return
        if decision.status == 416:
            raise HTTPError(416, f"{label}: range not satisfiable for {m.stored_size} bytes", "range",
                            [(b"content-range", f"bytes */{m.stored_size}".encode()), (b"accept-ranges", b"bytes")])
        if decision.status == 206:
            r = decision.range
            assert r is not None
            hdrs = base + [(b"content-type", ctype.encode()), (b"content-length", str(r.length).encode()),
                           (b"content-range", r.content_range(m.stored_size).encode())]
            body = FileBody(fd, r.first, r.length, label=label)
            await _stream(send, method, 206, hdrs, body, label)
            return
        hdrs = base + [(b"content-type", ctype.encode()), (b"content-length", str(m.stored_size).encode()),
                       (b"repr-digest", repr_digest(m.stored_sha256))]
        body = FileBody(fd, 0, m.stored_size, label=label, expected_sha256=m.stored_sha256)
        await _stream(send, method, 200, hdrs, body, label)

    async def _send_original(self, send, method, headers, fd, entry, common, label) -> None:
        m = entry.manifest
        ctype = content_type(m.format)
        hdrs = common + [(b"content-type", ctype.encode()), (b"accept-ranges", b"none"),
                         (b"content-disposition", _disposition(f"{m.recording_id}.{m.format or 'bin'}"))]
        if m.original_sha256:
            etag = f'"{m.original_sha256}"'
            hdrs += [(b"etag", etag.encode()), (b"repr-digest", repr_digest(m.original_sha256))]
            if evaluate(method, headers, etag=etag, size=m.original_size or 0, ranges=False).status == 304:
                await _start(send, 304, hdrs)
                await send({"type": "http.response.body", "body": b""})
                return
        if m.original_size is not None:
            hdrs.append((b"content-length", str(m.original_size).encode()))
        body = GunzipBody(fd, label=label, expected_size=m.original_size, expected_sha256=m.original_sha256)
        await _stream(send, method, 200, hdrs, body, label)


def listing_item(entry: Entry) -> dict[str, Any]:
    """The JSON object describing one recording in the listing."""
    m = entry.manifest
    return {"recording_id": m.recording_id, "source": m.source, "pipeline": m.pipeline, "format": m.format,
            "compression": m.compression, "recording_date": m.recording_date, "received_at": m.received_at,
            "stored_at": m.stored_at, "date": entry.when.isoformat() if entry.when else None,
            "date_from": entry.when_key, "stored_size": m.stored_size, "stored_sha256": m.stored_sha256,
            "original_size": m.original_size, "original_sha256": m.original_sha256,
            "interaction_ids": list(m.interaction_ids), "path": entry.relative,
            "url": f"/recordings/{quote(m.recording_id)}?" + urlencode({"source": m.source})}


# -- helpers ------------------------------------------------------------------------------

async def _stream(send: Callable, method: str, status: int, headers: list, body, label: str) -> None:
    """Send the response, its body read block by block in a worker thread.

    The last block is held back until the body's check (:meth:`finish`) passed; on a
    failure the connection is dropped with the body incomplete and the failure logged.
    """
    await _start(send, status, headers)
    if method == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    try:
        held = await trio.to_thread.run_sync(body.read_block)
        while True:
            nxt = await trio.to_thread.run_sync(body.read_block)
            if not nxt:
                break
            await send({"type": "http.response.body", "body": held, "more_body": True})
            held = nxt
        await trio.to_thread.run_sync(body.finish)
    except BodyError as exc:
        log.error("archive: %s; response aborted", exc)
        return  # returning without the final body message makes hypercorn close the connection
    except OSError as exc:
        log.error("archive: %s: reading the stored file failed (%s); response aborted", label, exc.strerror)
        return
    await send({"type": "http.response.body", "body": held, "more_body": False})


async def _start(send: Callable, status: int, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _send_json(send: Callable, method: str, status: int, doc: dict[str, Any],
                     extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(doc, separators=(",", ":")).encode()
    await _start(send, status, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"),
                                *(extra_headers or [])])
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _headers(scope: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key == "authorization":
            # bytes, never logged; a repeated header is malformed (RFC 9110 §5.3), so it fails the check
            out["authorization-raw"] = b"repeated" if "authorization-raw" in out else value
            continue
        out[key] = f"{out[key]}, {value.decode('latin-1')}" if key in out else value.decode("latin-1")
    return out


def _segments(scope: dict) -> list[str]:
    """Path segments of the raw request path, each percent-decoded exactly once.

    Splitting before decoding keeps an encoded ``%2f`` inside its segment, where the id
    check refuses it, instead of turning it into a path separator.
    """
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    if not raw.startswith(b"/"):
        raise HTTPError(400, "request target must be an absolute path", "bad-target")
    parts = raw[1:].split(b"/")
    out = []
    for part in parts:
        try:
            out.append(unquote_to_bytes(part).decode("utf-8"))
        except UnicodeDecodeError:
            raise HTTPError(400, "path is not valid UTF-8 after percent-decoding", "bad-encoding") from None
    if out and out[-1] == "" and len(out) > 1:
        out.pop()  # a single trailing slash: /recordings/ is /recordings
    return out


def _printable(scope: dict) -> str:
    raw: bytes = scope.get("raw_path") or b""
    return raw[:120].decode("ascii", "backslashreplace").encode("unicode_escape").decode("ascii")


def _query(scope: dict) -> dict[str, str]:
    qs: bytes = scope.get("query_string", b"")
    if len(qs) > MAX_QUERY_BYTES:
        raise HTTPError(400, f"query string longer than {MAX_QUERY_BYTES} bytes", "bad-query")
    try:
        pairs = parse_qsl(qs.decode("ascii"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS,
                          encoding="utf-8", errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise HTTPError(400, f"query string is malformed or has more than {MAX_QUERY_FIELDS} parameters",
                        "bad-query") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise HTTPError(400, f"query parameter {key!r} given more than once", "bad-query")
        out[key] = value
    return out


def _allow(method: str) -> None:
    if method not in ("GET", "HEAD"):
        raise HTTPError(405, f"method {method} not allowed; use GET or HEAD", "method", [(b"allow", b"GET, HEAD")])


def _checked(value: str, what: str) -> str:
    try:
        return check_id(value, what=what)
    except UnsafeId as exc:
        raise HTTPError(400, str(exc), f"unsafe-id:{exc.reason}") from None


def _ambiguous(message: str, entries: tuple[Entry, ...]) -> HTTPError:
    return HTTPError(300, message, "ambiguous", extra={"candidates": [listing_item(e) for e in entries[:MAX_PAGE]]})


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    if name not in query:
        return default
    value = query[name]
    if not value.isdigit() or not low <= int(value) <= high:
        raise HTTPError(400, f"{name} must be an integer from {low} to {high}, got {value[:40]!r}", "bad-query")
    return int(value)


def _bool_param(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise HTTPError(400, f"{name} must be 1 or 0, got {value[:40]!r}", "bad-query")


def _time_param(query: dict[str, str], name: str, *, end_of_day: bool) -> datetime | None:
    """``from``/``to``: an ISO 8601 date or date-time (UTC when no offset). A bare date
    as ``to`` includes that whole day; a date-time as ``to`` is exclusive."""
    value = query.get(name)
    if value is None:
        return None
    try:
        parsed = parse_time(value)
    except ValueError:
        raise HTTPError(400, f"{name} must be an ISO 8601 date or date-time, got {value[:40]!r}", "bad-query") from None
    if end_of_day and len(value.strip()) == 10:
        parsed += timedelta(days=1)
    return parsed.astimezone(timezone.utc)


def _disposition(filename: str) -> bytes:
    # Names come from manifests whose ids match paths.ID_PATTERN; quote defensively anyway.
    safe = "".join(c for c in filename if c.isalnum() or c in "._-@+=") or "recording"
    return f'attachment; filename="{safe}"'.encode()
