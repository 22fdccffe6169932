"""JSON bodies the emulator answers with, built from catalogue entries: no I/O.

Field names are those of the official SDK's models (PureCloudPlatformClientV2
``attribute_map``): ``AnalyticsConversationWithoutAttributes`` with
``AnalyticsParticipantWithoutAttributes``, ``AnalyticsSession`` and
``AnalyticsConversationSegment``; ``RecordingMetadata``; ``Recording`` with ``MediaResult``;
``BatchDownloadJobResult``. ``tests/test_genesys_sdk_contract.py`` checks them against the
SDK when it is installed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from .catalogue import Conversation, Recording


def _sub_id(conv: Conversation, role: str) -> str:
    """A stable UUID-shaped id for a participant or session of ``conv`` (cheap: the emulator
    builds thousands per second when paging through generated catalogues)."""
    h = hashlib.md5(f"{conv.conversation_id}:{role}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def iso(moment: datetime) -> str:
    """``2026-11-01T08:00:00.000Z``."""
    m = moment.astimezone(timezone.utc)
    # formatted by hand: strftime dominated the cost of paging through generated catalogues
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
            f"{m.microsecond // 1000:03d}Z")


def conversation_details(conv: Conversation) -> dict[str, Any]:
    """An ``AnalyticsConversationWithoutAttributes``: the customer (ANI/DNIS), the queue (ACD)
    and the agent, each with one voice session."""
    direction = conv.direction
    start, end = iso(conv.start), iso(conv.end)

    def segment(**extra: Any) -> list[dict[str, Any]]:
        return [{"segmentStart": start, "segmentEnd": end, "segmentType": "interact", **extra}]

    customer_session = {"mediaType": "voice", "direction": direction, "ani": conv.ani, "dnis": conv.dnis,
                        "sessionId": _sub_id(conv, "session-customer"),
                        "segments": segment()}
    if direction == "outbound":  # the customer is the one called
        customer_session.update(ani=conv.dnis, dnis=conv.ani)
    participants = [
        {"participantId": _sub_id(conv, "participant-customer"), "participantName": "Customer",
         "purpose": "customer" if direction == "inbound" else "external", "sessions": [customer_session]},
        {"participantId": _sub_id(conv, "participant-acd"), "participantName": conv.queue_name,
         "purpose": "acd", "sessions": [{"mediaType": "voice", "direction": direction,
                                         "sessionId": _sub_id(conv, "session-acd"),
                                         "segments": segment(queueId=conv.queue_id)}]},
        {"participantId": _sub_id(conv, "participant-agent"), "participantName": conv.agent_name,
         "purpose": "agent", "userId": conv.agent_id,
         "sessions": [{"mediaType": "voice", "direction": direction,
                       "sessionId": _sub_id(conv, "session-agent"),
                       "segments": segment(queueId=conv.queue_id)}]},
    ]
    return {"conversationId": conv.conversation_id, "conversationStart": start, "conversationEnd": end, "originatingDirection": direction, "divisionIds": [],
            "participants": participants}


def recording_metadata(rec: Recording, conv: Conversation | None, file_state: str) -> dict[str, Any]:
    """A ``RecordingMetadata`` (no media)."""
    out: dict[str, Any] = {
        "id": rec.recording_id, "name": rec.name, "conversationId": rec.conversation_id, "media": "audio",
        "fileState": file_state, "sessionId": rec.recording_id,
        "selfUri": f"/api/v2/conversations/{rec.conversation_id}/recordings/{rec.recording_id}"}
    if conv is not None:
        out["startTime"], out["endTime"] = iso(conv.start), iso(conv.end)
    if file_state == "ARCHIVED":
        out["archiveMedium"] = "CLOUDARCHIVE"
    return out


def recording(rec: Recording, conv: Conversation | None, file_state: str, media_uri: str | None) -> dict[str, Any]:
    """A ``Recording``; ``mediaUris`` (``{"S": MediaResult}``) only when ``media_uri`` is given."""
    out = recording_metadata(rec, conv, file_state)
    if media_uri is not None:
        out["mediaUris"] = {"S": {"mediaUri": media_uri}}
    return out
