"""An ASGI emulator of the Genesys Cloud Platform API endpoints the ``genesys`` source uses,
and the read endpoints users' own scripts call alongside it.

Endpoints, field names and status codes follow the published API (the official SDK's
models; ``docs/genesys.md``; JSON bodies in :mod:`.bodies`):

- ``POST /oauth/token`` — client-credentials grant, client authenticated by HTTP Basic
  (RFC 6749 §2.3.1); ``{"access_token", "token_type": "bearer", "expires_in"}``; errors
  as RFC 6749 §5.2 ``{"error", "error_description"}``;
- ``POST /api/v2/analytics/conversations/details/query`` — conversations overlapping the
  ``interval`` that started on a day it touches, ``paging`` (``pageSize`` ≤ 100,
  ``pageNumber`` from 1, ``pageSize × pageNumber`` ≤ 100,000, else 400 "Pagination may
  not exceed 100000 results"), ``{"conversations": [...], "totalHits"}`` with participants;
- ``GET /api/v2/analytics/conversations/details?id=…`` — conversations by id;
- ``GET /api/v2/analytics/conversations/{id}/details`` — one conversation;
- ``GET /api/v2/conversations/{id}/recordingmetadata[/{recordingId}]`` — ``RecordingMetadata``
  (a list, or one);
- ``GET /api/v2/conversations/{id}/recordings`` — every ``Recording`` of a conversation
  with ``mediaUris``; 202 until all are prepared; ``formatId=NONE``: metadata only;
- ``GET /api/v2/conversations/{id}/recordings/{recordingId}?formatId=…`` — a ``Recording``
  whose ``mediaUris`` hold a pre-signed URL; ``202`` (still being prepared) for the first
  ``not_ready_polls`` requests of each recording and format. The emulator does not
  transcode: it offers the file's own format only (400 for others; the file's own when
  ``formatId`` is absent);
- ``POST /api/v2/recording/batchrequests`` (≤ 100 items) → ``{"id", "selfUri"}``;
- ``GET /api/v2/recording/batchrequests/{jobId}`` — ``BatchDownloadJobStatusResult`` with
  ``status`` ``InProgress`` then ``Completed``; the job fills in over successive polls
  (``not_ready_polls`` polls with results missing); only the submitting client may read
  it (else 404);
- ``GET /media/{recordingId}?expires=…&signature=…`` — the result URLs: pre-signed,
  expiring (403 ``AccessDenied`` afterwards, as S3), with ``Range``/``206``/``416``,
  ``ETag`` and ``If-Range`` (RFC 9110 §14).

Anything else answers 404 in the API's error schema ``{message, code, status, contextId,
details, errors}``. Every ``/api/v2`` call needs ``Authorization: Bearer``; each token has a
sliding-window budget (``rate_limit`` requests per minute, 429 with ``Retry-After`` beyond
it). Fault switches (:class:`EmulatorConfig`): random 429s, recordings whose batch result
carries ``errorMsg``, every ``fileState`` (UPLOADING and RESTORING for a number of
metadata reads, ARCHIVED, DELETED, ERROR), duplicate results counted late, answers
without ``status``, result URLs issued already expired, and a non-standard ``checksum``
field (SHA-256 hex) in the recording metadata, right or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, quote

from . import bodies
from .http import Send, error_answer, json_answer, s3_error, serve_bytes
from .catalogue import CatalogueLike, Conversation, Recording, to_ms

#: Largest request body accepted (bytes).
MAX_BODY = 1 << 20
#: Most batch jobs kept; the oldest are forgotten beyond it.
MAX_JOBS = 10_000
#: Most tokens kept.
MAX_TOKENS = 10_000
#: Largest page of the analytics query, as the real API.
MAX_PAGE_SIZE = 100
#: Most items of one batch request, as the real API.
MAX_BATCH_ITEMS = 100
#: ``pageSize × pageNumber`` may not exceed this in an analytics query, as the real API.
MAX_QUERY_RESULTS = 100_000
#: ``fileState`` values whose media can be fetched.
DOWNLOADABLE = frozenset({"AVAILABLE", "RESTORED"})

#: ``formatId`` values of the recording endpoint (Genesys Platform API).
FORMAT_IDS_ALL = ("WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3", "NONE")
#: The ``formatId`` naming each file type the emulator serves as it is.
FORMAT_IDS_BY_TYPE = {"audio/wav": "WAV", "audio/mpeg": "MP3", "audio/ogg": "OGG_VORBIS",
                      "audio/ogg; codecs=opus": "OGG_OPUS", "audio/webm": "WEBM"}



@dataclass(frozen=True)
class EmulatorConfig:
    """Credentials, limits and fault switches.

    :ivar not_ready_polls: status polls of each job that still miss results (the first
        shows none, later ones more and more).
    :ivar fail_recordings: recording ids or file names whose batch result has ``errorMsg``.
    :ivar archived: recording ids or file names whose ``fileState`` is ``ARCHIVED``.
    :ivar expire_once: recording ids or file names whose first result URL is already expired.
    :ivar checksums: add a ``checksum`` (SHA-256 hex) to each recording's metadata.
    :ivar bad_checksums: recording ids or file names whose ``checksum`` is wrong.
    :ivar p429: probability of an injected 429 per API or media request (not token requests).
    :ivar retry_after: seconds sent in ``Retry-After`` with injected 429s.
    :ivar rate_limit: requests per ``rate_window`` seconds per token before 429s (Genesys: 300 per 60 s).
    :ivar url_ttl: seconds a result URL stays valid.
    :ivar send_status: include ``status`` (``InProgress``/``Completed``) in batch job status
        answers; ``False`` imitates answers without it (clients fall back to the counts).
    :ivar duplicate_results: recording ids or file names that get a second, failed result
        (``errorMsg``) listed after their good one and counted late: ``expectedResultCount``
        grows by one on the poll after every first result is in, while ``status`` stays
        ``InProgress`` until it does.
    :ivar uploading: recording ids or file names whose ``fileState`` is ``UPLOADING`` for the
        first ``transient_polls`` metadata requests, then ``AVAILABLE``.
    :ivar restoring: the same with ``RESTORING``, then ``RESTORED``.
    :ivar transient_polls: metadata requests answered with the transient state.
    :ivar deleted: recording ids or file names whose ``fileState`` is ``DELETED``.
    :ivar errored: recording ids or file names whose ``fileState`` is ``ERROR``.
    """

    client_id: str = "voxpipe-emulator"
    client_secret: str = "emulator-secret"
    token_ttl: int = 86400
    not_ready_polls: int = 1
    fail_recordings: frozenset[str] = frozenset()
    archived: frozenset[str] = frozenset()
    expire_once: frozenset[str] = frozenset()
    checksums: bool = False
    bad_checksums: frozenset[str] = frozenset()
    p429: float = 0.0
    retry_after: int = 1
    rate_limit: int = 300
    rate_window: float = 60.0
    url_ttl: float = 600.0
    seed: int = 0
    send_status: bool = True
    duplicate_results: frozenset[str] = frozenset()
    uploading: frozenset[str] = frozenset()
    restoring: frozenset[str] = frozenset()
    transient_polls: int = 2
    deleted: frozenset[str] = frozenset()
    errored: frozenset[str] = frozenset()


@dataclass
class _Job:
    job_id: str
    client_id: str
    items: list[tuple[str, str | None, Recording | None]]  # (conversationId, recordingId, recording)
    polls: int = 0


@dataclass
class Stats:
    """What the emulator saw, for tests and the CLI's exit summary."""

    requests: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    injected_429: int = 0
    max_in_window: int = 0

    def count(self, kind: str) -> None:
        self.requests[kind] = self.requests.get(kind, 0) + 1


class GenesysEmulator:
    """The ASGI application. Thread-safe: tests may read :attr:`stats` while it serves."""

    def __init__(self, catalogue: CatalogueLike, config: EmulatorConfig | None = None):
        self.catalogue = catalogue
        self.config = config or EmulatorConfig()
        self.stats = Stats()
        self._rng = random.Random(self.config.seed)
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, tuple[str, float]] = {}  # token → (client id, expiry)
        self._windows: dict[str, deque[float]] = {}
        self._jobs: dict[str, _Job] = {}
        self._prepared: dict[tuple[str, str], int] = {}  # (recording, formatId) → requests so far
        self._expired_in: dict[str, str] = {}  # recording id → the job whose URLs are expired
        self._lock = threading.Lock()
        c = self.config
        self._failing = self._resolve(c.fail_recordings)
        self._expire_once = self._resolve(c.expire_once)
        self._bad_checksums = self._resolve(c.bad_checksums)
        self._duplicates = self._resolve(c.duplicate_results)
        self._states: dict[str, tuple[str, str | None]] = {}  # recording id → (state, state after transient_polls)
        for keys, state, then in ((c.uploading, "UPLOADING", "AVAILABLE"), (c.restoring, "RESTORING", "RESTORED"),
                                  (c.deleted, "DELETED", None), (c.errored, "ERROR", None),
                                  (c.archived, "ARCHIVED", None)):
            for rid in self._resolve(keys):
                self._states[rid] = (state, then)
        self._state_polls: dict[str, int] = {}  # recording id → metadata requests seen

    def _resolve(self, keys: frozenset[str]) -> frozenset[str]:
        out = set()
        for key in keys:
            rec = self.catalogue.find(key)
            if rec is None:
                raise ValueError(f"fault switch names {key!r}, which is no recording id or file name in the catalogue")
            out.add(rec.recording_id)
        return frozenset(out)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return await error_answer(send, 413, "Request body too large", "request.too.large")
            if not message.get("more_body"):
                break
        try:
            if path == "/oauth/token" and method == "POST":
                return await self._token(send, headers, body)
            if path.startswith("/media/") and method in ("GET", "HEAD"):
                return await self._media(send, method, path[len("/media/"):], dict(query), headers)
            if path.startswith("/api/v2/"):
                return await self._api(send, method, path, query, headers, body)
            return await error_answer(send, 404, f"No resource at {path}", "not.found")
        except _Answer as answer:
            return await error_answer(send, answer.status, answer.message, answer.code, answer.headers)

    # ------------------------------------------------------------------ OAuth

    async def _token(self, send: Send, headers: dict[str, str], body: bytes) -> None:
        self.stats.count("token")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return await json_answer(send, 400, {"error": "unsupported_grant_type",
                                           "error_description": "grant_type must be client_credentials"})
        client = _basic_client(headers.get("authorization", ""))
        if client is None or not (hmac.compare_digest(client[0], self.config.client_id)
                                  and hmac.compare_digest(client[1], self.config.client_secret)):
            return await json_answer(send, 401, {"error": "invalid_client",
                                           "error_description": "client authentication failed"},
                               [("www-authenticate", 'Basic realm="genesys-emulator"')])
        token = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._tokens) >= MAX_TOKENS:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[token] = (client[0], time.monotonic() + self.config.token_ttl)
        await json_answer(send, 200, {"access_token": token, "token_type": "bearer", "expires_in": self.config.token_ttl})

    def _authorise(self, headers: dict[str, str]) -> tuple[str, str]:
        value = headers.get("authorization", "")
        if not value.startswith("Bearer "):
            raise _Answer(401, "No authentication bearer token specified in authorization header.",
                          "authentication.required")
        token = value[7:]
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[1] < time.monotonic():
            raise _Answer(401, "Invalid login credentials.", "bad.credentials")
        return token, entry[0]

    def _admit(self, token: str | None, kind: str) -> None:
        """Per-token sliding window, then random 429 injection."""
        self.stats.count(kind)
        now = time.monotonic()
        with self._lock:
            if token is not None:
                window = self._windows.setdefault(token, deque())
                span = self.config.rate_window
                while window and window[0] <= now - span:
                    window.popleft()
                if len(window) >= self.config.rate_limit:
                    self.stats.rate_limited += 1
                    wait = max(1, math.ceil(window[0] + span - now))
                    raise _Answer(429, f"Rate limit exceeded the maximum. [{self.config.rate_limit}] requests for "
                                  f"[{span:g}] seconds", "too.many.requests", [("retry-after", str(wait))])
                window.append(now)
                self.stats.max_in_window = max(self.stats.max_in_window, len(window))
            if self.config.p429 and self._rng.random() < self.config.p429:
                self.stats.injected_429 += 1
                raise _Answer(429, "Rate limit exceeded the maximum.", "too.many.requests",
                              [("retry-after", str(self.config.retry_after))])

    # ------------------------------------------------------------------ API

    async def _api(self, send: Send, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
                   body: bytes) -> None:
        token, client_id = self._authorise(headers)
        base = f"{scope_scheme(headers)}://{headers.get('host', '127.0.0.1')}"
        parts = path.split("/")[3:]  # after /api/v2/
        params = dict(query)
        if parts == ["analytics", "conversations", "details", "query"] and method == "POST":
            self._admit(token, "analytics-query")
            return await json_answer(send, 200, self._query(_json_body(body)))
        if parts == ["analytics", "conversations", "details"] and method == "GET":
            self._admit(token, "analytics-get")
            ids = [i for k, v in query if k == "id" for i in v.split(",") if i]
            found = [bodies.conversation_details(c) for c in map(self.catalogue.conversation, ids) if c is not None]
            return await json_answer(send, 200, {"conversations": found} if found else {})
        if len(parts) == 4 and parts[:2] == ["analytics", "conversations"] and parts[3] == "details" \
                and method == "GET":
            self._admit(token, "analytics-conversation")
            return await json_answer(send, 200, bodies.conversation_details(self._conversation(parts[2])))
        if len(parts) in (3, 4) and parts[0] == "conversations" and parts[2] == "recordingmetadata" and method == "GET":
            self._admit(token, "recordingmetadata")
            conv = self._conversation(parts[1])
            if len(parts) == 4:
                rec = self._recording_of(conv, parts[3])
                return await json_answer(send, 200, bodies.recording_metadata(rec, conv, self.file_state(rec)))
            return await json_answer(send, 200, [self._metadata_json(r, conv) for r in conv.recordings])
        if len(parts) == 3 and parts[0] == "conversations" and parts[2] == "recordings" and method == "GET":
            self._admit(token, "recordings")
            return await self._recordings(send, self._conversation(parts[1]), params, base)
        if len(parts) == 4 and parts[0] == "conversations" and parts[2] == "recordings" and method == "GET":
            self._admit(token, "recording")
            return await self._recording(send, parts[1], parts[3], params, base)
        if parts == ["recording", "batchrequests"] and method == "POST":
            self._admit(token, "batch-submit")
            job = self._submit(_json_body(body), client_id)
            return await json_answer(send, 202, {"id": job.job_id, "selfUri": f"/api/v2/recording/batchrequests/{job.job_id}"})
        if len(parts) == 3 and parts[:2] == ["recording", "batchrequests"] and method == "GET":
            self._admit(token, "batch-status")
            with self._lock:
                job = self._jobs.get(parts[2])
            if job is None or job.client_id != client_id:  # only the submitting client sees its jobs
                raise _Answer(404, f"Batch request {parts[2]} not found", "not.found")
            return await json_answer(send, 200, self._status(job, base))
        raise _Answer(404, f"No resource at {method} {path}", "not.found")

    def _conversation(self, cid: str) -> Conversation:
        conv = self.catalogue.conversation(cid)
        if conv is None:
            raise _Answer(404, f"Conversation {cid} not found", "not.found")
        return conv

    @staticmethod
    def _recording_of(conv: Conversation, rid: str) -> Recording:
        rec = next((r for r in conv.recordings if r.recording_id == rid), None)
        if rec is None:
            raise _Answer(404, f"Recording {rid} of conversation {conv.conversation_id} not found", "not.found")
        return rec

    def file_state(self, rec: Recording, *, count: bool = True) -> str:
        """The recording's ``fileState`` now; with ``count``, this request is one more metadata poll."""
        state, then = self._states.get(rec.recording_id, ("AVAILABLE", None))
        if then is None:
            return state
        with self._lock:
            polls = self._state_polls.get(rec.recording_id, 0) + (1 if count else 0)
            self._state_polls[rec.recording_id] = polls
        return state if polls <= self.config.transient_polls else then

    def _format_for(self, rec: Recording, query: dict[str, str]) -> str:
        """The ``formatId`` asked (the file's own when absent: the emulator does not transcode).

        :raises _Answer: 400 for an unknown format, or one other than the file's own.
        """
        own = FORMAT_IDS_BY_TYPE.get(rec.content_type, "NONE")
        asked = query.get("formatId", own).upper()
        if asked not in FORMAT_IDS_ALL:
            raise _Answer(400, f"formatId {asked!r} is not one of {', '.join(FORMAT_IDS_ALL)}", "bad.request")
        if asked not in (own, "NONE"):
            raise _Answer(400, f"formatId {asked} is not available for recording {rec.recording_id}: the emulator "
                          f"serves it as {own} only (it does not transcode)", "bad.request")
        return asked

    def _prepare(self, rec: Recording, format_id: str) -> bool:
        """Whether the recording is prepared in ``format_id`` (after ``not_ready_polls`` requests)."""
        with self._lock:
            key = (rec.recording_id, format_id)
            self._prepared[key] = self._prepared.get(key, 0) + 1
            return self._prepared[key] > self.config.not_ready_polls

    async def _recordings(self, send: Send, conv: Conversation, query: dict[str, str], base: str) -> None:
        """``GET /api/v2/conversations/{id}/recordings``: every recording as a ``Recording``,
        202 until all are prepared (``formatId=NONE``: metadata only, never 202)."""
        out, ready = [], True
        for rec in conv.recordings:
            format_id = self._format_for(rec, query)
            state = self.file_state(rec)
            uri = None
            if format_id != "NONE" and state in DOWNLOADABLE:
                ready = self._prepare(rec, format_id) and ready
                uri = self.sign_url(base, rec.recording_id)
            out.append(bodies.recording(rec, conv, state, uri))
        if not ready:
            out = [{k: v for k, v in item.items() if k != "mediaUris"} for item in out]
        await json_answer(send, 200 if ready else 202, out)

    async def _recording(self, send: Send, cid: str, rid: str, query: dict[str, str], base: str) -> None:
        rec = self.catalogue.recording(rid)
        if rec is None or rec.conversation_id != cid:
            raise _Answer(404, f"Recording {rid} of conversation {cid} not found", "not.found")
        state = self.file_state(rec)
        if state == "ARCHIVED":
            raise _Answer(404, f"Recording {rid} is archived; restore it first", "recording.archived")
        if state not in DOWNLOADABLE:
            raise _Answer(404, f"Recording {rid} is not available (fileState {state})", "recording.not.available")
        asked = self._format_for(rec, query)
        conv = self.catalogue.conversation(cid)
        if asked == "NONE":
            return await json_answer(send, 200, bodies.recording(rec, conv, state, None))
        if not self._prepare(rec, asked):
            return await json_answer(send, 202, bodies.recording(rec, conv, state, None))
        await json_answer(send, 200, bodies.recording(rec, conv, state, self.sign_url(base, rid)))

    def _metadata_json(self, rec: Recording, conv: Conversation | None = None) -> dict[str, Any]:
        out = bodies.recording_metadata(rec, conv, self.file_state(rec))
        if self.config.checksums:
            digest = rec.sha256
            if rec.recording_id in self._bad_checksums:
                digest = hashlib.sha256(b"not " + rec.data).hexdigest()
            out["checksum"] = digest
        return out

    def _query(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("interval"), str):
            raise _Answer(400, "interval is required (ISO-8601 start/end)", "bad.request")
        try:
            start, end = (to_ms(_parse_time(p)) for p in body["interval"].split("/"))
        except ValueError:
            raise _Answer(400, f"interval {body['interval']!r} is not an ISO-8601 interval", "bad.request") from None
        paging = body.get("paging") or {}
        size, number = paging.get("pageSize", 25), paging.get("pageNumber", 1)
        if not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE or not isinstance(number, int) or number < 1:
            raise _Answer(400, f"paging: pageSize must be 1..{MAX_PAGE_SIZE} and pageNumber >= 1", "bad.request")
        if size * number > MAX_QUERY_RESULTS:
            raise _Answer(400, f"Pagination may not exceed {MAX_QUERY_RESULTS} results", "bad.request")
        matching = self.catalogue.query(start, end)
        total = len(matching)
        indices = range((number - 1) * size, min(number * size, total))
        if body.get("order") == "desc":
            indices = range(total - 1 - indices.start, total - 1 - indices.stop, -1) if indices else indices
        out: dict[str, Any] = {"totalHits": total}
        if indices:  # the API omits empty lists
            out["conversations"] = [bodies.conversation_details(matching[i]) for i in indices]
        return out

    def _submit(self, body: Any, client_id: str) -> _Job:
        items = body.get("batchDownloadRequestList") if isinstance(body, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise _Answer(400, f"batchDownloadRequestList must hold 1..{MAX_BATCH_ITEMS} items", "bad.request")
        resolved: list[tuple[str, str | None, Recording | None]] = []
        for item in items:
            cid = item.get("conversationId") if isinstance(item, dict) else None
            if not isinstance(cid, str):
                raise _Answer(400, "every batchDownloadRequestList item needs a conversationId", "bad.request")
            rid = item.get("recordingId")
            conv = self.catalogue.conversation(cid)
            if rid is None and conv is not None:  # no recordingId: every recording of the conversation
                resolved.extend((cid, r.recording_id, r) for r in conv.recordings)
            else:
                rec = self.catalogue.recording(rid) if isinstance(rid, str) else None
                resolved.append((cid, rid, rec if rec is not None and rec.conversation_id == cid else None))
        job = _Job(str(uuid.uuid4()), client_id, resolved)
        with self._lock:
            for _, _, rec in resolved:  # the first job of an expire_once recording hands out an expired URL
                if rec is not None and rec.recording_id in self._expire_once:
                    self._expired_in.setdefault(rec.recording_id, job.job_id)
            if len(self._jobs) >= MAX_JOBS:
                self._jobs.pop(next(iter(self._jobs)))
            self._jobs[job.job_id] = job
        return job

    def _status(self, job: _Job, base: str) -> dict[str, Any]:
        """A ``BatchDownloadJobStatusResult``. Polls 1..``not_ready_polls`` show a growing share
        of the results; then every first result; with duplicates, one more poll counts and
        lists them (``expectedResultCount`` grows) and only then is the job ``Completed``."""
        with self._lock:
            job.polls += 1
            polls = job.polls
        items = job.items
        extras = [(cid, rid, rec) for cid, rid, rec in items if rec is not None and rec.recording_id in self._duplicates]
        ready = self.config.not_ready_polls
        if polls <= ready:
            shown, expected, done = items[:len(items) * (polls - 1) // (ready + 1)], len(items), False
        elif extras and polls == ready + 1:
            shown, expected, done = items, len(items), False
        else:
            shown, expected, done = items, len(items) + len(extras), True
        results = [self._result(job, base, cid, rid, rec) for cid, rid, rec in shown]
        if done:
            results += [{"conversationId": cid, "recordingId": rid,
                         "errorMsg": f"Recording {rid} was already processed for this job"} for cid, rid, _ in extras]
        out: dict[str, Any] = {"id": job.job_id, "jobId": job.job_id, "expectedResultCount": expected,
                               "resultCount": len(results), "errorCount": sum(1 for r in results if "errorMsg" in r),
                               "selfUri": f"/api/v2/recording/batchrequests/{job.job_id}"}
        if self.config.send_status:
            out["status"] = "Completed" if done else "InProgress"
        if results:
            out["results"] = results
        return out

    def _result(self, job: _Job, base: str, cid: str, rid: str | None, rec: Recording | None) -> dict[str, Any]:
        out: dict[str, Any] = {"conversationId": cid, "recordingId": rid}
        state = self.file_state(rec, count=False) if rec is not None else None
        if rec is None:
            out["errorMsg"] = f"Recording {rid} of conversation {cid} was not found"
        elif rec.recording_id in self._failing:
            out["errorMsg"] = f"Failed to transcode recording {rec.recording_id}"
        elif state not in DOWNLOADABLE:
            out["errorMsg"] = f"Recording {rec.recording_id} is not available (fileState {state})"
        else:
            expired = self._expired_in.get(rec.recording_id) == job.job_id
            out["resultUrl"] = self.sign_url(base, rec.recording_id, expired=expired)
            out["contentType"] = rec.content_type
        return out

    # ------------------------------------------------------------------ media

    def sign_url(self, base: str, recording_id: str, *, expired: bool = False, now: float | None = None) -> str:
        """A pre-signed, expiring result URL for a recording's bytes under ``base`` (``http://host:port``)."""
        now = time.time() if now is None else now
        expires = int(now - 1) if expired else int(math.ceil(now + self.config.url_ttl))
        signature = hmac.new(self._key, f"{recording_id}\n{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{base}/media/{quote(recording_id)}?expires={expires}&signature={signature}"

    async def _media(self, send: Send, method: str, rid: str, query: dict[str, str], headers: dict[str, str]) -> None:
        rec = self.catalogue.recording(rid)
        try:
            expires = int(query.get("expires", ""))
        except ValueError:
            expires = -1
        good = hmac.new(self._key, f"{rid}\n{expires}".encode(), hashlib.sha256).hexdigest()
        if rec is None or not hmac.compare_digest(good, query.get("signature", "")):
            return await s3_error(send, "SignatureDoesNotMatch", "The request signature we calculated does not match")
        if expires < time.time():
            return await s3_error(send, "AccessDenied", "Request has expired")
        self._admit(None, "media")
        await serve_bytes(send, method, rec.data, rec.content_type.split(";")[0], rec.etag, headers)


# ---------------------------------------------------------------------- helpers


class _Answer(Exception):
    def __init__(self, status: int, message: str, code: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or []


def scope_scheme(headers: dict[str, str]) -> str:
    """``http`` (the emulator serves plain HTTP on loopback; a TLS proxy sets X-Forwarded-Proto)."""
    return headers.get("x-forwarded-proto", "http")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise _Answer(400, "The request body is not valid JSON", "bad.request") from None


def _basic_client(value: str) -> tuple[str, str] | None:
    import base64
    import binascii

    if not value.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client, sep, secret = decoded.partition(":")
    return (client, secret) if sep else None
