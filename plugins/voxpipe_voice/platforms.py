"""Per-call decoders for Genesys AudioHook and CXone Agent Assist (sans-IO).

Both follow :class:`.decoder.CallDecoder`'s interface (``feed(message, arrival)``
returns wire audio, ``to_pcm(wire)`` PCM16 whole frames, ``finish()`` the rest,
``quality_report()``, ``facts()``, ``channels``, ``stopped``, ``error``) so the
``websocket-voice`` source runs them the same way; neither does I/O or reads a clock.

* :class:`AudioHookDecoder`: drives :class:`.audiohook.ServerSession`; replies to send
  collect in ``outbox``; binary audio (PCMU or L16, interleaved when stereo) passes
  through. A pause, and audio the client reports ``discarded``, is recorded as silence
  of the reported duration (``pause_mode="silence"``: the recording keeps the call's
  timeline) or left out (``"gap"``); either way counted (``pauses``, ``paused_ms``,
  ``discarded_ms``, ``silence_ms``).
* :class:`CxoneDecoder`: one CXone Agent Assist contact. Each WebSocket carries raw
  G.711 μ-law of one ``streamPerspective`` after an initial JSON message: ``TX`` (what
  the agent hears: the contact) goes left, ``RX`` (the agent speaking) right, joined by a
  :class:`voxpipe.voice.stereo.ChannelJoiner`; ``MIX`` is a mono call. A connection of
  the same perspective that comes back (reconnect, or the new connection CXone opens
  after a hold) continues its channel after a gap of the wall time it was away,
  recorded as silence and counted (``gaps``, ``gap_samples``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from voxpipe import dsp
from voxpipe.facts import RecordingFacts
from voxpipe.voice.framing import FrameAssembler
from voxpipe.voice.jitter import CallQuality
from voxpipe.voice.stereo import LEFT, RIGHT, ChannelJoiner

from . import audiohook
from .decoder import JOIN_BATCH_MS, MULAW_SILENCE, CallProtocolError

#: Longest initial CXone JSON message accepted (bytes).
MAX_CXONE_HELLO_BYTES = 16 * 1024
#: CXone perspectives and their stereo channel: the contact left, the agent right.
CXONE_CHANNELS = {"TX": LEFT, "RX": RIGHT}
CXONE_PERSPECTIVES = ("RX", "TX", "MIX")
#: Keys of the contact id in CXone's initial message, tried in order (the documented
#: message names only ``streamPerspective``; the id otherwise comes from the URL path).
CXONE_CONTACT_KEYS = ("contactId", "ContactId", "contactID", "contact_id")
PauseMode = Literal["silence", "gap"]


class _Base:
    """What both decoders share: framing of the wire audio into PCM16 frames."""

    def _setup(self, wire_width: int, channels: int) -> None:
        self.wire_width = wire_width
        self.channels = channels
        self.assembler = FrameAssembler(self.sample_rate, self.frame_ms, 2, channels=channels, backend=self.backend)
        self.frame_bytes = self.assembler.frame_bytes
        self.silence = bytes([MULAW_SILENCE]) if wire_width == 1 else b"\x00\x00"

    def to_pcm(self, wire: bytes) -> bytes:
        if not wire:
            return b""
        if self.wire_width == 1:
            wire = dsp.mulaw_decode(wire, backend=self.backend)
        return self.assembler.feed(wire)

    def _tail(self) -> bytes:
        rest = self.assembler.flush()
        block = 2 * self.channels  # a call ending mid sample frame drops that part (docs/voice.md)
        return rest[: len(rest) - len(rest) % block]

    @property
    def concealed(self) -> int:
        return self.quality.frames_concealed


class AudioHookDecoder(_Base):
    """One AudioHook session (see the module docstring).

    :param session: the protocol state machine (authorization decided by the caller).
    :ivar outbox: server messages (JSON text) to send, in order; the caller empties it.
    :ivar opened: the :class:`.audiohook.Opened` event once the session is open.
    :ivar refused: why the session was refused (unauthorized, no medium), if it was.
    """

    codec = "audiohook"

    def __init__(self, session: audiohook.ServerSession, *, frame_ms: int = 20, pause_mode: PauseMode = "silence",
                 backend: str | None = None, call_id: str = "?"):
        self.session = session
        self.frame_ms = frame_ms
        self.pause_mode = pause_mode
        self.backend = backend
        self.call_id = call_id
        self.sample_rate = audiohook.RATE
        self.quality = CallQuality(self.sample_rate)
        self.outbox: list[str] = []
        self.opened: audiohook.Opened | None = None
        self.refused: str | None = None
        self.error: str | None = None
        self.stopped = False
        self.start = None
        self.messages = 0
        self.counters = {"pauses": 0, "paused_ms": 0, "discarded_ms": 0, "silence_ms": 0, "ignored": 0,
                         "client_errors": 0, "updates": 0, "pings": 0}
        self.close_reason: str | None = None
        self.language: str | None = None
        dsp.backend(backend)
        self._setup(1, 1)

    def _silence(self, seconds: float) -> bytes:
        samples = round(seconds * self.sample_rate)
        self.counters["silence_ms"] += round(seconds * 1000)
        return self.silence * (samples * self.channels)

    def feed(self, message: str | bytes, arrival: float | None = None) -> bytes:
        self.messages += 1
        if not isinstance(message, str):
            for event in self.session.receive_audio(len(message)):
                self._apply(event)
            if self.error:
                return b""
            self.quality.record_packet(len(message), None, arrival)
            return bytes(message)
        out = b""
        for event in self.session.receive_text(message):
            out += self._apply(event)
        return out

    def _apply(self, event: audiohook.Event) -> bytes:
        c = self.counters
        if isinstance(event, audiohook.Send):
            self.outbox.append(event.text)
            if event.type == "pong":
                c["pings"] += 1
            elif event.type == "disconnect" and self.opened is None and self.error is None:
                self.refused = event.parameters.get("info") or "refused"
        elif isinstance(event, audiohook.Opened):
            self.opened = event
            self._setup(event.media.sample_width, len(event.media.channels))
            self.language = event.open.get("language")
        elif isinstance(event, audiohook.Paused):
            c["pauses"] += 1
        elif isinstance(event, (audiohook.Resumed, audiohook.Discarded)):
            key = "paused_ms" if isinstance(event, audiohook.Resumed) else "discarded_ms"
            c[key] += round(event.discarded * 1000)
            if self.pause_mode == "silence" and event.discarded > 0:
                return self._silence(event.discarded)
        elif isinstance(event, audiohook.Closing):
            self.stopped = True
            self.close_reason = event.reason
        elif isinstance(event, audiohook.Ignored):
            c["ignored"] += 1
        elif isinstance(event, audiohook.ClientError):
            c["client_errors"] += 1
        elif isinstance(event, audiohook.Updated):
            c["updates"] += 1
            self.language = event.parameters.get("language", self.language)
        elif isinstance(event, audiohook.Violation):
            if self.opened is not None:
                self.error = f"call {self.call_id}: AudioHook protocol violation: {event.info}"
            else:
                self.refused = event.info
        return b""

    def finish(self) -> bytes:
        return self._tail()

    def quality_report(self) -> dict[str, Any]:
        report = self.quality.snapshot().to_dict()
        report.update(self.counters)
        report["close_reason"] = self.close_reason
        return report

    def facts(self) -> dict[str, Any]:
        """Stream metadata from ``open``: the medium, channel names, language (the ids are
        :meth:`recording_facts`)."""
        if self.opened is None:
            return {}
        media = self.opened.media
        names = {"external": "customer (external)", "internal": "agent (internal)"}
        return {"media": media.to_json(), "language": self.language,
                "channel_names": [names.get(c, c) for c in media.channels]}

    def recording_facts(self) -> RecordingFacts:
        """The call's ids from ``open``: AudioHook session id, conversation id, organization
        id, participant id and numbers (ANI, DNIS: personal data, kept/hashed/dropped by the
        pipeline's phone-number policy)."""
        if self.opened is None:
            return RecordingFacts()
        p = self.opened.open
        participant = p.get("participant") if isinstance(p.get("participant"), dict) else {}
        pid = participant.get("id")
        return RecordingFacts(platform="audiohook", session_id=self.opened.session_id,
                              conversation_id=p.get("conversationId"), org_id=p.get("organizationId"),
                              ani=participant.get("ani") or None, dnis=participant.get("dnis") or None,
                              participants=(str(pid),) if pid else ())


def parse_cxone_hello(message: str | bytes, path_id: str) -> tuple[str, str, dict[str, Any]]:
    """CXone's initial JSON message → ``(perspective, contact id, the message)``.

    The contact id is the message's ``contactId`` (see :data:`CXONE_CONTACT_KEYS`), else
    ``path_id`` (the WebSocket URL's last path segment, e.g. ``/cxone/<contactId>``).

    :raises CallProtocolError: binary, not a JSON object, no or an unknown
        ``streamPerspective``, or no contact id anywhere.
    """
    if not isinstance(message, str):
        raise CallProtocolError("CXone stream: the first message is binary; expected the initial JSON message "
                                "with streamPerspective")
    if len(message) > MAX_CXONE_HELLO_BYTES:
        raise CallProtocolError(f"CXone initial message of {len(message)} bytes exceeds {MAX_CXONE_HELLO_BYTES}")
    try:
        obj = json.loads(message)
    except ValueError as exc:
        raise CallProtocolError(f"CXone initial message is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CallProtocolError("CXone initial message is not a JSON object")
    perspective = obj.get("streamPerspective")
    if perspective not in CXONE_PERSPECTIVES:
        raise CallProtocolError(f"CXone initial message: streamPerspective is {perspective!r}, not one of "
                                f"{', '.join(CXONE_PERSPECTIVES)}")
    contact = next((str(obj[k]) for k in CXONE_CONTACT_KEYS if obj.get(k) not in (None, "")), path_id)
    if not contact:
        raise CallProtocolError("CXone initial message has no contactId and the URL path names none")
    return perspective, contact, obj


class CxoneDecoder(_Base):
    """One CXone contact: its perspectives' connections joined into one call.

    ``connect(perspective, arrival)`` before a connection's audio (returns ``b""``),
    ``feed_from(perspective, message, arrival)`` per message, ``disconnect(perspective)``
    when its connection ends; ``feed`` is unused (audio is per perspective). The gap
    of a reconnect is the time from the old connection's last message to the new
    connection's initial message.

    :param stereo: ``True`` for an RX/TX call (two channels), ``False`` for MIX (mono).
    :param max_skew_ms: how far one side may run ahead before the other is filled.
    """

    codec = "cxone"

    def __init__(self, *, stereo: bool, frame_ms: int = 20, max_skew_ms: int = 1000, backend: str | None = None,
                 call_id: str = "?"):
        self.frame_ms = frame_ms
        self.backend = backend
        self.call_id = call_id
        self.sample_rate = 8000
        self.quality = CallQuality(self.sample_rate)
        self.perspective_quality: dict[str, CallQuality] = {}
        self.error: str | None = None
        self.stopped = False
        self.start = None
        self.messages = 0
        self.hello: dict[str, Any] = {}
        self.connections: dict[str, int] = {}
        self.gaps: dict[str, int] = {}
        self._left_at: dict[str, tuple[float, int]] = {}  # perspective -> (when its connection ended, its end)
        self._resume_at: dict[str, float | None] = {}
        self._mono_end = 0
        self._gap_samples = 0
        self._last_arrival: dict[str, float] = {}
        dsp.backend(backend)
        self._setup(1, 2 if stereo else 1)
        self.joiner = ChannelJoiner(1, self.silence, max_skew_ms * self.sample_rate // 1000, backend=backend,
                                    min_take=JOIN_BATCH_MS * self.sample_rate // 1000) if stereo else None

    def _channel(self, perspective: str) -> int:
        return CXONE_CHANNELS.get(perspective, LEFT)

    def _end(self, perspective: str) -> int:
        return self._mono_end if self.joiner is None else self.joiner.end(self._channel(perspective))

    def connect(self, perspective: str, arrival: float) -> None:
        """A connection of ``perspective`` starts (its initial message arrived)."""
        self.connections[perspective] = self.connections.get(perspective, 0) + 1
        self.perspective_quality.setdefault(perspective, CallQuality(self.sample_rate))
        self._resume_at[perspective] = arrival if perspective in self._left_at else None

    def disconnect(self, perspective: str) -> None:
        """The connection of ``perspective`` ended (closed, dropped or put on hold): its
        absence is timed from its last message's arrival."""
        last = self._last_arrival.get(perspective, self._resume_at.get(perspective) or 0.0)
        self._left_at[perspective] = (last, self._end(perspective))

    def feed(self, message: str | bytes, arrival: float | None = None) -> bytes:
        raise CallProtocolError(f"call {self.call_id}: CXone audio must name its perspective")

    def feed_from(self, perspective: str, message: str | bytes, arrival: float) -> bytes:
        self.messages += 1
        if isinstance(message, str):
            # CXone sends one JSON message per connection, then only audio.
            raise CallProtocolError(f"call {self.call_id}: {perspective} connection: text message #{self.messages} "
                                    "after the initial message (expected binary μ-law)")
        self.quality.record_packet(len(message), None, arrival)
        self.perspective_quality[perspective].record_packet(len(message), None, arrival)
        self._last_arrival[perspective] = arrival
        position = None
        resume = self._resume_at.get(perspective)
        if resume is not None:
            left_at, end = self._left_at[perspective]
            gap = max(0, round((resume - left_at) * self.sample_rate))
            position = end + gap
            self.gaps[perspective] = self.gaps.get(perspective, 0) + 1
            self._resume_at[perspective] = None
        if self.joiner is None:
            out = b""
            if position is not None and position > self._mono_end:
                out = self.silence * (position - self._mono_end)
                self._gap_samples += position - self._mono_end
            self._mono_end += len(out) + len(message)
            return out + bytes(message)
        self.joiner.push(self._channel(perspective), message, position)
        return self.joiner.take()

    def finish(self) -> bytes:
        out = b""
        if self.joiner is not None:
            out = self.to_pcm(self.joiner.finish())
        return out + self._tail()

    def quality_report(self) -> dict[str, Any]:
        report = self.quality.snapshot().to_dict()
        per = []
        for perspective, q in sorted(self.perspective_quality.items(), key=lambda kv: self._channel(kv[0])):
            entry: dict[str, Any] = {"perspective": perspective, "connections": self.connections.get(perspective, 0),
                                     "gaps": self.gaps.get(perspective, 0)}
            if self.joiner is not None:
                entry["channel"] = "left" if self._channel(perspective) == LEFT else "right"
                entry.update(q.snapshot().to_dict())
                entry.update(self.joiner.counters(self._channel(perspective)).to_dict())
            else:
                entry.update(q.snapshot().to_dict())
                entry["gap_samples"] = self._gap_samples
            per.append(entry)
        report["channels"] = per
        report["gaps"] = sum(self.gaps.values())
        return report

    def recording_facts(self) -> RecordingFacts:
        """The CXone contact id (the ACD call id)."""
        return RecordingFacts(platform="agent-assist", contact_id=self.call_id)

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"perspectives": sorted(self.connections, key=self._channel)}
        if self.joiner is not None:
            out["channel_names"] = ["customer (TX)", "agent (RX)"]
        extra = {k: v for k, v in self.hello.items() if k != "streamPerspective" and isinstance(v, (str, int))}
        if extra:
            out["cxone"] = extra
        return out
