"""Genesys Cloud Platform API shapes without I/O: request bodies and parsed answers.

Field names are those of the official Python SDK's models (PureCloudPlatformClientV2,
``attribute_map`` of each model; see ``docs/genesys.md`` for which model confirmed which
field):

- ``ConversationQuery`` (``interval``, ``order``, ``orderBy``, ``segmentFilters``,
  ``paging`` = ``PagingSpec{pageSize, pageNumber}``) →
  ``AnalyticsConversationQueryResponse{conversations[], totalHits}`` with
  ``AnalyticsConversationWithoutAttributes{conversationId, conversationStart, ...}``;
- ``RecordingMetadata{id, conversationId, media, fileState, ...}`` (a JSON list);
- ``BatchDownloadJobSubmission{batchDownloadRequestList[BatchDownloadRequest{conversationId,
  recordingId}]}`` (at most 100 items) → ``BatchDownloadJobSubmissionResult{id, selfUri}``;
- ``BatchDownloadJobStatusResult{id, jobId, expectedResultCount, resultCount, errorCount, status,
  results[BatchDownloadJobResult{conversationId, recordingId, resultUrl, contentType,
  errorMsg}]}``.

Parsers raise :class:`BadResponse` naming the answer and the field (``results[3].recordingId``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from voxpipe.errors import StreamError
from voxpipe.facts import EMPTY as EMPTY_FACTS, RecordingFacts

from .intervals import parse_ms

#: Most items in one batch download request (BatchDownloadJobSubmission: "up to 100").
MAX_BATCH_SIZE = 100
#: Largest analytics details query page (PagingSpec; the API refuses larger pages).
MAX_PAGE_SIZE = 100
#: Longest id accepted from an answer (characters); Genesys ids are 36-character UUIDs.
MAX_ID_LENGTH = 128

#: ``formatId`` values of GET /api/v2/conversations/{id}/recordings[/{recordingId}] → content type served.
FORMAT_CONTENT_TYPES = {"WAV": "audio/wav", "WAV_ULAW": "audio/wav", "WEBM": "audio/webm", "OGG_VORBIS": "audio/ogg",
                        "OGG_OPUS": "audio/ogg; codecs=opus", "MP3": "audio/mpeg"}
FORMAT_IDS = tuple(FORMAT_CONTENT_TYPES) + ("NONE",)

#: Content types → the ``format`` used in stored file names.
_FORMATS = {
    "audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/ogg": "ogg", "audio/opus": "opus",
    "audio/webm": "webm", "video/webm": "webm",
}


class BadResponse(StreamError):
    """An API answer that lacks a field or has one of the wrong type."""

    reason = "bad-response"


# --------------------------------------------------------------------------- small helpers


def _require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise BadResponse(f"{where}: expected a JSON object, got {type(obj).__name__}")
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise BadResponse(f"{where}: field {key!r} is {got}")
    return value


def _id(obj: Any, key: str, where: str) -> str:
    value = _require(obj, key, str, where)
    if not value or len(value) > MAX_ID_LENGTH or any(c.isspace() or c in "/\\" for c in value):
        raise BadResponse(f"{where}: field {key!r} is not an id: {value[:40]!r}")
    return value


def _optional_str(obj: dict, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def format_from_content_type(content_type: str | None, default: str = "bin") -> str:
    """``audio/wav`` → ``wav``, ``audio/ogg; codecs=opus`` → ``opus``; unknown → ``default``."""
    if not content_type:
        return default
    main, _, params = content_type.partition(";")
    main = main.strip().lower()
    if main == "audio/ogg" and "opus" in params.lower():
        return "opus"
    return _FORMATS.get(main, default)


def parse_interval(text: str) -> tuple[datetime, datetime]:
    """An ISO-8601 interval ``start/end`` (ConversationQuery.interval) → aware datetimes (UTC if naive).

    :raises ValueError: not two ISO-8601 date-times separated by ``/``, or end not after start.
    """
    parts = text.strip().split("/")
    if len(parts) != 2:
        raise ValueError(f"interval {text!r} is not START/END (ISO-8601, e.g. 2026-11-01T00:00:00Z/2026-11-02T00:00:00Z)")
    out = []
    for part in parts:
        try:
            moment = datetime.fromisoformat(part.strip())
        except ValueError:
            raise ValueError(f"interval {text!r}: {part!r} is not an ISO-8601 date-time") from None
        out.append(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
    if out[1] <= out[0]:
        raise ValueError(f"interval {text!r}: the end is not after the start")
    return out[0], out[1]


# --------------------------------------------------------------------------- conversations


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation found by the analytics query (or named explicitly), with the facts
    its analytics details give (:func:`conversation_facts`)."""

    conversation_id: str
    conversation_start: str | None = None  # ISO-8601, as the API sent it
    facts: RecordingFacts = field(default=EMPTY_FACTS, compare=False)

    @property
    def start_ms(self) -> int | None:
        """``conversationStart`` in milliseconds since the epoch (``None`` when unknown)."""
        return parse_ms(self.conversation_start) if self.conversation_start else None


def conversation_query(interval: str, page_number: int, page_size: int, *, voice_only: bool = True) -> dict[str, Any]:
    """The body of ``POST /api/v2/analytics/conversations/details/query`` for one page (1-based)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
    body: dict[str, Any] = {"interval": interval, "order": "asc", "orderBy": "conversationStart",
                            "paging": {"pageSize": page_size, "pageNumber": page_number}}
    if voice_only:
        body["segmentFilters"] = [{"type": "and", "predicates": [
            {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": "voice"}]}]
    return body


def parse_conversation_page(payload: Any, where: str) -> tuple[list[Conversation], int]:
    """An ``AnalyticsConversationQueryResponse`` → (conversations, totalHits).

    An empty page has no ``conversations`` key at all (the API omits empty lists).
    """
    if not isinstance(payload, dict):
        raise BadResponse(f"{where}: expected a JSON object")
    total = payload.get("totalHits", 0)
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise BadResponse(f"{where}: field 'totalHits' is not a count: {total!r}")
    items = payload.get("conversations") or []
    if not isinstance(items, list):
        raise BadResponse(f"{where}: field 'conversations' is not a list")
    out = []
    for i, item in enumerate(items):
        here = f"{where}: conversations[{i}]"
        start = _optional_str(item, "conversationStart")
        if start is not None:
            try:
                parse_ms(start)
            except ValueError:
                raise BadResponse(f"{here}: field 'conversationStart' is not an ISO-8601 date-time: "
                                  f"{start[:40]!r}") from None
        cid = _id(item, "conversationId", here)
        out.append(Conversation(cid, start, conversation_facts(item)))
    return out, total


def _number(value: Any) -> str | None:
    """``tel:+15551234567`` → ``+15551234567`` (the analytics API's addresses are URIs)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    return text[4:] if text.lower().startswith("tel:") else text


def _voice_sessions(participant: dict) -> list[dict]:
    sessions = participant.get("sessions")
    return [x for x in sessions if isinstance(x, dict) and x.get("mediaType", "voice") == "voice"] \
        if isinstance(sessions, list) else []


def conversation_facts(item: Any) -> RecordingFacts:
    """:class:`~voxpipe.facts.RecordingFacts` from an ``AnalyticsConversationWithoutAttributes``.

    - ``conversation_id``, ``started_at``/``ended_at`` (``conversationStart``/``End``),
      ``direction`` (``originatingDirection``), ``participants`` (their ``participantId``);
    - ``ani``/``dnis``: the customer's (purpose ``customer`` or ``external``) voice session,
      else the first voice session that has them, ``tel:`` removed;
    - ``queue``: the ``acd`` participant's name (Genesys names it after the queue), else the
      first segment's ``queueId``;
    - ``agent_id``/``agent_name``: the first ``agent`` participant's ``userId`` and name.

    Lenient: a field of the wrong shape is left out (facts describe, they never fail a recording).
    """
    if not isinstance(item, dict):
        return EMPTY_FACTS
    participants = [p for p in item.get("participants") or [] if isinstance(p, dict)]
    doc: dict[str, Any] = {"platform": "genesys", "conversation_id": item.get("conversationId"),
                           "started_at": item.get("conversationStart"), "ended_at": item.get("conversationEnd"),
                           "direction": item.get("originatingDirection"),
                           "participants": [p["participantId"] for p in participants
                                            if isinstance(p.get("participantId"), str)][:50]}
    purpose = {}
    for p in participants:
        purpose.setdefault(str(p.get("purpose", "")).lower(), p)
    customer = purpose.get("customer") or purpose.get("external")
    candidates = _voice_sessions(customer) if customer else []
    candidates += [x for p in participants for x in _voice_sessions(p)]
    for session in candidates:
        if _number(session.get("ani")) or _number(session.get("dnis")):
            doc["ani"], doc["dnis"] = _number(session.get("ani")), _number(session.get("dnis"))
            break
    queue_ids = [seg.get("queueId") for p in participants for x in _voice_sessions(p)
                 for seg in (x.get("segments") or []) if isinstance(seg, dict) and isinstance(seg.get("queueId"), str)]
    acd = purpose.get("acd")
    doc["queue"] = (acd.get("participantName") if acd else None) or (queue_ids[0] if queue_ids else None)
    agent = purpose.get("agent")
    if agent:
        doc["agent_id"], doc["agent_name"] = agent.get("userId"), agent.get("participantName")
    return RecordingFacts.from_json({k: v for k, v in doc.items() if v not in (None, "", [])})


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """One entry of ``GET /api/v2/conversations/{id}/recordingmetadata``."""

    recording_id: str
    conversation_id: str
    media: str | None
    file_state: str | None
    checksum: str | None = None


def parse_recording_metadata(payload: Any, conversation_id: str, *, checksum_field: str | None = None,
                             where: str = "") -> list[RecordingInfo]:
    """A JSON list of ``RecordingMetadata`` → :class:`RecordingInfo` per recording.

    :param checksum_field: a non-standard field carrying the recording's SHA-256 (the seed
        document's ``Checksum``), when the org's integration adds one.
    """
    where = where or f"conversation {conversation_id} recording metadata"
    if not isinstance(payload, list):
        raise BadResponse(f"{where}: expected a JSON list")
    out = []
    for i, item in enumerate(payload):
        here = f"{where}[{i}]"
        rid = _id(item, "id", here)
        conv = _optional_str(item, "conversationId") or conversation_id
        if conv != conversation_id:
            raise BadResponse(f"{here}: recording {rid} belongs to conversation {conv}, not {conversation_id}")
        checksum = _optional_str(item, checksum_field) if checksum_field else None
        out.append(RecordingInfo(rid, conversation_id, _optional_str(item, "media"), _optional_str(item, "fileState"),
                                 checksum))
    return out


# --------------------------------------------------------------------------- batch downloads


def batch_submission(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The body of ``POST /api/v2/recording/batchrequests`` for (conversationId, recordingId) pairs.

    :raises ValueError: no pairs, or more than :data:`MAX_BATCH_SIZE`.
    """
    if not 1 <= len(pairs) <= MAX_BATCH_SIZE:
        raise ValueError(f"a batch request holds 1..{MAX_BATCH_SIZE} recordings, got {len(pairs)}")
    return {"batchDownloadRequestList": [{"conversationId": c, "recordingId": r} for c, r in pairs]}


def parse_job_id(payload: Any) -> str:
    """The job id of a ``BatchDownloadJobSubmissionResult``."""
    return _id(payload, "id", "batch request submission answer")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One ``BatchDownloadJobResult``: a pre-signed ``result_url`` or an ``error_msg``.

    ``result_url`` is a bearer credential in itself (a signed URL): it is hidden from
    ``repr`` and must never be logged or stored.
    """

    conversation_id: str
    recording_id: str
    result_url: str | None = field(default=None, repr=False)
    content_type: str | None = None
    error_msg: str | None = None
    checksum: str | None = None

    @property
    def ok(self) -> bool:
        return self.result_url is not None and self.error_msg is None


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A ``BatchDownloadJobStatusResult``; ``status`` is ``InProgress``/``Completed`` or ``None``
    when the answer has none (whether it is finished: :func:`.batch.job_finished`)."""

    job_id: str
    expected_result_count: int | None
    result_count: int
    error_count: int
    results: tuple[BatchResult, ...] = ()
    status: str | None = None


def parse_batch_status(payload: Any, job_id: str, *, checksum_field: str | None = None) -> BatchStatus:
    """A ``BatchDownloadJobStatusResult`` → :class:`BatchStatus`."""
    where = f"batch job {job_id} status"
    if not isinstance(payload, dict):
        raise BadResponse(f"{where}: expected a JSON object")
    counts = []
    for key in ("expectedResultCount", "resultCount", "errorCount"):
        value = payload.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise BadResponse(f"{where}: field {key!r} is not a count: {value!r}")
        counts.append(value)
    items = payload.get("results") or []
    if not isinstance(items, list):
        raise BadResponse(f"{where}: field 'results' is not a list")
    results = []
    for i, item in enumerate(items):
        here = f"{where}: results[{i}]"
        url = _optional_str(item, "resultUrl")
        error = _optional_str(item, "errorMsg")
        if url is None and error is None:
            raise BadResponse(f"{here}: neither 'resultUrl' nor 'errorMsg'")
        results.append(BatchResult(_id(item, "conversationId", here), _id(item, "recordingId", here), url,
                                   _optional_str(item, "contentType"), error,
                                   _optional_str(item, checksum_field) if checksum_field else None))
    result_count = counts[1] if counts[1] is not None else len(results)
    state = payload.get("status")
    if state is not None and not isinstance(state, str):
        raise BadResponse(f"{where}: field 'status' is not a string: {state!r}")
    return BatchStatus(job_id, counts[0], result_count, counts[2] or 0, tuple(results), state or None)


def parse_recording_media(payload: Any, recording_id: str, format_id: str) -> BatchResult:
    """A ``Recording`` (GET …/recordings/{recordingId}?formatId=) → its media URL as a result.

    ``mediaUris`` maps a key (``"S"`` for the whole recording) to ``MediaResult{mediaUri}``;
    ``"S"`` is preferred, else the first key in sorted order.
    """
    where = f"recording {recording_id} ({format_id})"
    uris = _require(payload, "mediaUris", dict, where)
    key = "S" if "S" in uris else (sorted(uris)[0] if uris else None)
    if key is None:
        raise BadResponse(f"{where}: field 'mediaUris' is empty")
    url = _require(uris[key], "mediaUri", str, f"{where}: mediaUris[{key!r}]")
    return BatchResult(_id(payload, "conversationId", where), recording_id, url, FORMAT_CONTENT_TYPES.get(format_id))


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
