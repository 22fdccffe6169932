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
from typing import Any

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
    """

    url: str = field(repr=False)
    format: str | None = None
    size: int | None = None
    duration: float | None = None
    etag: str | None = None


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
        size = data.get("size")
        duration = data.get("duration")
        fmt = data.get("format") or _extension(data.get("fileName"))
        files.append(MediaFile(
            url=url, format=str(fmt).lower() if fmt else None,
            size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            duration=float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else None,
            etag=data.get("etag") if isinstance(data.get("etag"), str) else None))
    if not files:
        raise PlaybackAnswerError(f"{where} lists no voice interaction with a media file")
    if len(files) > MAX_INTERACTIONS:
        raise PlaybackAnswerError(f"{where} lists {len(files)} voice interactions; at most {MAX_INTERACTIONS}")
    return files


def stream_ids(acd_call_id: str, count: int) -> list[str]:
    """Stream ids for a contact's ``count`` voice interactions (see module doc)."""
    return [acd_call_id] if count == 1 else [f"{acd_call_id}-{n}" for n in range(1, count + 1)]


def _extension(name: Any) -> str | None:
    if isinstance(name, str) and "." in name:
        return name.rsplit(".", 1)[1]
    return None
