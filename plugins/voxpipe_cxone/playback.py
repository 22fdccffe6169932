"""CXone Media Playback API answers, without I/O.

``GET {api_base}/media-playback/v1/contacts?acd-call-id={id}&media-type=voice-only&isDownload=true``
→ JSON whose ``interactions[].data.fileToPlayUrl`` is a temporary URL to the media file
(help.nicecxone.com, Media Playback APIs). The URL carries its own authorisation in its
query string: it is a secret. :class:`MediaFile` keeps it out of ``repr``; callers keep it
out of logs, results and messages (:func:`voxpipe.download.api.redact_url`).

Stream ids (voxpipe's decision): a contact with one voice interaction is the stream
``{acd call id}``; a contact with several is one stream per interaction,
``{acd call id}-{n}`` with ``n`` = 1, 2, … in the order the API lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from voxpipe.facts import EMPTY, RecordingFacts

#: Most voice interactions accepted for one contact.
MAX_INTERACTIONS = 100
#: ``media-type`` asked for and accepted.
VOICE = "voice-only"


class PlaybackAnswerError(ValueError):
    """A Media Playback answer without a usable media file."""


@dataclass(frozen=True)
class MediaFile:
    """One voice interaction's media: the temporary URL (hidden from ``repr``) and what is known.

    :ivar url: ``fileToPlayUrl`` (secret-bearing; never log it).
    :ivar format: lower-case extension such as ``wav`` or ``mp3``, or ``None``.
    :ivar size: bytes, or ``None`` when the API did not say.
    :ivar duration: seconds, or ``None``.
    :ivar etag: the file's validator, if the API gave one.
    :ivar content_type: the media type the API named (``audio/mp4``), if any.
    :ivar facts: what the answer says about the call (:func:`facts_from_answer`).
    """

    url: str = field(repr=False)
    format: str | None = None
    size: int | None = None
    duration: float | None = None
    etag: str | None = None
    content_type: str | None = None
    facts: RecordingFacts = EMPTY


#: Answer keys (CXone recording metadata, Media Playback ``data``) → fact, first present wins.
FACT_KEYS: Mapping[str, tuple[str, ...]] = {
    "started_at": ("startDate", "startTime", "startedAt", "start", "segmentStartTime", "contactStartDate"),
    "ended_at": ("endDate", "endTime", "endedAt", "end", "segmentEndTime", "contactEndDate"),
    "duration_seconds": ("duration", "durationSeconds"),
    "contact_id": ("contactId", "acdCallId", "masterContactId"),
    "segment_id": ("segmentId",),
    "interaction_id": ("interactionId",),
    "agent_id": ("agentId",),
    "agent_name": ("agentName",),
    "skill": ("skillName", "skill", "skillId"),
    "direction": ("direction", "contactDirection"),
    "ani": ("ani", "fromAddress"),
    "dnis": ("dnis", "toAddress"),
    "org_id": ("businessUnitId", "tenantId"),
}


def facts_from_answer(*answers: Mapping[str, Any] | None) -> RecordingFacts:
    """Facts from CXone JSON answers (later answers fill what earlier ones lack).

    Lenient on purpose: a value of the wrong shape is dropped, never an error (the facts
    describe the recording; they must not fail its download).
    """
    fields: dict[str, Any] = {"platform": "cxone"}
    for answer in answers:
        if not isinstance(answer, Mapping):
            continue
        for fact, keys in FACT_KEYS.items():
            if fact in fields:
                continue
            for key in keys:
                value = answer.get(key)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                    fields[fact] = value
                    break
    for fact in ("contact_id", "segment_id", "interaction_id", "agent_id", "org_id"):
        if isinstance(fields.get(fact), (int, float)):
            fields[fact] = str(fields[fact])
    return RecordingFacts.from_json(fields)


def contacts_params(acd_call_id: str) -> dict[str, str]:
    """Query of the contacts lookup for one ACD call id."""
    return {"acd-call-id": acd_call_id, "media-type": VOICE, "isDownload": "true"}


def parse_contacts(body: Any, acd_call_id: str) -> list[MediaFile]:
    """The voice media files of a contacts answer, in API order.

    :raises PlaybackAnswerError: not an object, no voice interaction with a ``fileToPlayUrl``,
        or more than :data:`MAX_INTERACTIONS`.
    """
    where = f"acd call {acd_call_id}: Media Playback answer"
    if not isinstance(body, dict) or not isinstance(body.get("interactions"), list):
        raise PlaybackAnswerError(f"{where} has no interactions list")
    files = []
    for i, item in enumerate(body["interactions"]):
        if not isinstance(item, dict):
            raise PlaybackAnswerError(f"{where}: interactions[{i}] is not an object")
        if str(item.get("mediaType", VOICE)).lower() != VOICE:
            continue
        data = item.get("data")
        url = data.get("fileToPlayUrl") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise PlaybackAnswerError(f"{where}: interactions[{i}].data.fileToPlayUrl is missing or not an http(s) URL")
        files.append(_media(url, data, body, item))
    if not files:
        raise PlaybackAnswerError(f"{where} lists no voice interaction with a media file")
    if len(files) > MAX_INTERACTIONS:
        raise PlaybackAnswerError(f"{where} lists {len(files)} voice interactions; at most {MAX_INTERACTIONS}")
    return files


def _media(url: str, data: Mapping[str, Any], *context: Mapping[str, Any]) -> MediaFile:
    size = data.get("size")
    duration = data.get("duration")
    fmt = data.get("format") or _extension(data.get("fileName"))
    ctype = data.get("contentType")
    return MediaFile(
        url=url, format=str(fmt).lower() if fmt else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
        duration=float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None,
        etag=data.get("etag") if isinstance(data.get("etag"), str) else None,
        content_type=ctype.split(";")[0].strip().lower() if isinstance(ctype, str) and ctype.strip() else None,
        facts=facts_from_answer(data, *context))


def segment_params() -> dict[str, str]:
    """Query of ``GET /media-playback/v1/segments/{segmentId}`` (voice only, no waveforms or QM data)."""
    return {"media-type": VOICE, "exclude-waveforms": "true", "exclude-qm-categories": "true"}


def parse_segment(body: Any, segment_id: str) -> MediaFile:
    """The media file of a segments answer: the URL in ``redirectUrl``, ``fileToPlayUrl`` or
    ``interactions[].data.fileToPlayUrl`` (all three shapes are seen).

    :raises PlaybackAnswerError: not an object, or no http(s) media URL in any of them.
    """
    where = f"segment {segment_id}: Media Playback answer"
    if not isinstance(body, dict):
        raise PlaybackAnswerError(f"{where} is not a JSON object")
    for key in ("redirectUrl", "fileToPlayUrl"):
        url = body.get(key)
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return _media(url, body)
    if isinstance(body.get("interactions"), list):
        files = parse_contacts(body, segment_id)
        return files[0]
    raise PlaybackAnswerError(f"{where} has no redirectUrl, fileToPlayUrl or interactions[].data.fileToPlayUrl")


def pick_segment(files: list[MediaFile], segment_id: str, contact_id: str) -> MediaFile:
    """The file of ``segment_id`` among a contact's (the contacts-endpoint fallback).

    :raises PlaybackAnswerError: several files and none names the segment.
    """
    for media in files:
        if media.facts.segment_id == segment_id:
            return media
    if len(files) == 1:
        return files[0]
    raise PlaybackAnswerError(f"acd call {contact_id}: {len(files)} voice interactions and none is segment "
                              f"{segment_id}")


def stream_ids(acd_call_id: str, count: int) -> list[str]:
    """Stream ids for a contact's ``count`` voice interactions (see module doc)."""
    return [acd_call_id] if count == 1 else [f"{acd_call_id}-{n}" for n in range(1, count + 1)]


def _extension(name: Any) -> str | None:
    if isinstance(name, str) and "." in name:
        return name.rsplit(".", 1)[1]
    return None
