"""Twilio Media Streams messages (sans-IO): parse and serialize the JSON events.

Twilio connects to a WebSocket server and sends one JSON text message per event
(twilio.com/docs/voice/media-streams/websocket-messages): ``connected``, ``start``
(call and stream ids, media format), ``media`` (base64 G.711 μ-law, 8 kHz, 20 ms =
160 bytes per message, with a per-stream ``chunk`` counter and a ``timestamp`` in ms
since the stream started), ``dtmf``, ``mark`` and ``stop``. Numbers arrive as strings.

:func:`parse_event` turns one message into a frozen dataclass and raises
:class:`TwilioProtocolError` naming the field and the message's ``sequenceNumber`` when
it is malformed; :func:`serialize` is its inverse (used by the emulator and the tests).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Longest text message accepted (bytes); a 20 ms media event is about 330 bytes.
MAX_EVENT_BYTES = 64 * 1024
#: The only media encoding Twilio Media Streams sends.
MULAW_ENCODING = "audio/x-mulaw"


class TwilioProtocolError(ValueError):
    """A Twilio message is not valid JSON or lacks a field; the message says which."""


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str = "Call"
    version: str = "1.0.0"


@dataclass(frozen=True, slots=True)
class Start:
    """``start``: ids and media format (``encoding``, ``sample_rate`` Hz, ``channels``)."""

    sequence_number: int
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    encoding: str = MULAW_ENCODING
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    """``media``: ``payload`` is the decoded μ-law bytes; ``chunk`` counts media messages
    from 1; ``timestamp`` is ms since the stream started."""

    sequence_number: int
    stream_sid: str
    chunk: int
    timestamp: int
    payload: bytes
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Stop:
    sequence_number: int
    stream_sid: str
    call_sid: str = ""
    account_sid: str = ""


@dataclass(frozen=True, slots=True)
class Mark:
    sequence_number: int
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    sequence_number: int
    stream_sid: str
    digit: str
    track: str = "inbound_track"


Event = Connected | Start | Media | Stop | Mark | Dtmf


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    try:
        if isinstance(value, bool):
            raise ValueError
        out = int(value)  # Twilio sends numbers as decimal strings
    except (TypeError, ValueError):
        raise TwilioProtocolError(f"{where}: field {key!r} is {value!r}, not an integer") from None
    if out < 0:
        raise TwilioProtocolError(f"{where}: field {key!r} is negative ({out})")
    return out


def _str(obj: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise TwilioProtocolError(f"{where}: field {key!r} is missing or not a string")
    return value


def _obj(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise TwilioProtocolError(f"{where}: field {key!r} is missing or not an object")
    return value


def parse_event(message: str | bytes) -> Event | None:
    """Parse one Twilio Media Streams message.

    Returns the event, or ``None`` for an event type this module does not model
    (``clear`` and future types are ignored, as Twilio's docs ask of receivers).

    :raises TwilioProtocolError: not JSON, not an object, or a required field is
        missing or malformed (the message names the event, sequence number and field).
    """
    if len(message) > MAX_EVENT_BYTES:
        raise TwilioProtocolError(f"Twilio message of {len(message)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        obj = json.loads(message)
    except ValueError as exc:
        raise TwilioProtocolError(f"Twilio message is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise TwilioProtocolError("Twilio message is not a JSON object")
    kind = obj.get("event")
    where = f"Twilio {kind!r} event (sequenceNumber {obj.get('sequenceNumber')!r})"
    if kind == "media":
        media = _obj(obj, "media", where)
        try:
            # binascii directly: base64.b64decode(validate=True) adds a regex pass per message
            payload = binascii.a2b_base64(_str(media, "payload", where), strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise TwilioProtocolError(f"{where}: media.payload is not base64: {exc}") from None
        return Media(_int(obj, "sequenceNumber", where), _str(obj, "streamSid", where),
                     _int(media, "chunk", where), _int(media, "timestamp", where), payload,
                     _str(media, "track", where, "inbound"))
    if kind == "start":
        start = _obj(obj, "start", where)
        fmt = _obj(start, "mediaFormat", where)
        tracks = start.get("tracks", ["inbound"])
        params = start.get("customParameters") or {}
        if not isinstance(tracks, list) or not isinstance(params, dict):
            raise TwilioProtocolError(f"{where}: start.tracks or start.customParameters malformed")
        return Start(_int(obj, "sequenceNumber", where), _str(obj, "streamSid", where),
                     _str(start, "callSid", where), _str(start, "accountSid", where, ""),
                     tuple(str(t) for t in tracks), {str(k): str(v) for k, v in params.items()},
                     _str(fmt, "encoding", where), _int(fmt, "sampleRate", where), _int(fmt, "channels", where))
    if kind == "connected":
        return Connected(_str(obj, "protocol", where, "Call"), _str(obj, "version", where, "1.0.0"))
    if kind == "stop":
        stop = obj.get("stop") if isinstance(obj.get("stop"), dict) else {}
        return Stop(_int(obj, "sequenceNumber", where), _str(obj, "streamSid", where),
                    _str(stop, "callSid", where, ""), _str(stop, "accountSid", where, ""))
    if kind == "mark":
        return Mark(_int(obj, "sequenceNumber", where), _str(obj, "streamSid", where),
                    _str(_obj(obj, "mark", where), "name", where))
    if kind == "dtmf":
        dtmf = _obj(obj, "dtmf", where)
        return Dtmf(_int(obj, "sequenceNumber", where), _str(obj, "streamSid", where),
                    _str(dtmf, "digit", where), _str(dtmf, "track", where, "inbound_track"))
    if not isinstance(kind, str):
        raise TwilioProtocolError("Twilio message has no 'event' field")
    return None


def serialize(event: Event) -> str:
    """The JSON text message for ``event``, as Twilio sends it (numbers as strings)."""
    if isinstance(event, Media):
        return json.dumps({"event": "media", "sequenceNumber": str(event.sequence_number),
                           "media": {"track": event.track, "chunk": str(event.chunk),
                                     "timestamp": str(event.timestamp),
                                     "payload": base64.b64encode(event.payload).decode("ascii")},
                           "streamSid": event.stream_sid}, separators=(",", ":"))
    if isinstance(event, Start):
        return json.dumps({"event": "start", "sequenceNumber": str(event.sequence_number),
                           "start": {"streamSid": event.stream_sid, "accountSid": event.account_sid,
                                     "callSid": event.call_sid, "tracks": list(event.tracks),
                                     "customParameters": dict(event.custom_parameters),
                                     "mediaFormat": {"encoding": event.encoding, "sampleRate": event.sample_rate,
                                                     "channels": event.channels}},
                           "streamSid": event.stream_sid}, separators=(",", ":"))
    if isinstance(event, Connected):
        return json.dumps({"event": "connected", "protocol": event.protocol, "version": event.version})
    if isinstance(event, Stop):
        return json.dumps({"event": "stop", "sequenceNumber": str(event.sequence_number),
                           "stop": {"accountSid": event.account_sid, "callSid": event.call_sid},
                           "streamSid": event.stream_sid})
    if isinstance(event, Mark):
        return json.dumps({"event": "mark", "sequenceNumber": str(event.sequence_number),
                           "streamSid": event.stream_sid, "mark": {"name": event.name}})
    if isinstance(event, Dtmf):
        return json.dumps({"event": "dtmf", "sequenceNumber": str(event.sequence_number),
                           "streamSid": event.stream_sid, "dtmf": {"track": event.track, "digit": event.digit}})
    raise TypeError(f"not a Twilio event: {event!r}")
