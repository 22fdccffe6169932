"""Per-call message decoding (sans-IO): WebSocket messages in, whole PCM16 frames out.

Two payload codecs (requirement: issue "Live call audio over WebSocket", item 1):

* ``pcm16``: binary messages of raw PCM16 little-endian mono (the seed's CXone voice
  stream, Sinch); message boundaries need not fall on frames or samples, so bytes go
  through :class:`voxpipe.voice.framing.FrameAssembler`. Each message counts as one
  packet in :class:`voxpipe.voice.jitter.CallQuality` (no sequence numbers: no jitter).
* ``twilio``: Twilio Media Streams JSON events (:mod:`.twilio`). Each ``media`` event's
  μ-law payload goes into a :class:`voxpipe.voice.jitter.JitterBuffer` keyed by the
  event's ``chunk`` counter (from 1, so a lost first packet is concealed too), which
  reorders within ``jitter_depth_ms`` and conceals missing packets with μ-law silence
  (counted); released frames are decoded to PCM16 by :mod:`voxpipe.dsp` in one call
  per batch. A ``both_tracks`` stream (``start.tracks`` lists ``inbound`` and
  ``outbound``) with ``track="both"`` is recorded in stereo: one jitter buffer per
  track, inbound left and outbound right, lined up by each track's first ``timestamp``
  in a :class:`voxpipe.voice.stereo.ChannelJoiner` (then by ``chunk`` numbering).

``feed(message, arrival)`` returns the call's audio released so far in its *wire* codec
(PCM16 whole frames for ``pcm16``; μ-law bytes, one per sample, for ``twilio``), so that
the μ-law decoding can run once per batch of messages: ``to_pcm(wire)`` turns a batch
into PCM16 whole frames, ``finish()`` returns the PCM16 rest at the end of the call.
None of them does I/O or reads a clock.
"""

from __future__ import annotations

from typing import Literal

from voxpipe import dsp
from voxpipe.facts import RecordingFacts
from voxpipe.voice.framing import FrameAssembler
from voxpipe.voice.jitter import CallQuality, JitterBuffer
from voxpipe.voice.stereo import LEFT, RIGHT, ChannelJoiner

from . import twilio

Codec = Literal["pcm16", "twilio", "audiohook", "cxone"]
#: μ-law code word for silence (decodes to PCM 0).
MULAW_SILENCE = 0xFF
#: Twilio's ``chunk`` counter starts here (twilio.com/docs/voice/media-streams/websocket-messages).
TWILIO_FIRST_CHUNK = 1
#: Stereo: audio (ms) both sides must cover before it is interleaved (one call per batch).
JOIN_BATCH_MS = 100
#: Twilio stereo: the channel of each track (customer left, agent right).
TWILIO_TRACK_CHANNELS = {"inbound": LEFT, "outbound": RIGHT}


class CallProtocolError(ValueError):
    """A message does not fit the call's codec (binary where JSON was expected, ...)."""


class CallDecoder:
    """Turns one call's messages into PCM16 frames and keeps its quality counters.

    :param codec: ``pcm16`` or ``twilio``.
    :param sample_rate: Hz of the PCM16 stream (Twilio: replaced by the ``start`` event's).
    :param frame_ms: frame length (20 ms = 160 samples at 8 kHz).
    :param jitter_depth_ms: Twilio jitter buffer depth, a multiple of ``frame_ms``.
    :param backend: :mod:`voxpipe.dsp` backend for reassembly and μ-law decoding.
    :param track: Twilio: the track recorded (``inbound`` or ``outbound``), or ``both``:
        stereo when the ``start`` event lists both tracks, else the one track it lists.
    :param max_skew_ms: stereo: how far (ms) one track may run ahead of the other before
        the lagging one is filled with silence.
    :ivar start: the Twilio ``start`` event, once seen.
    :ivar stopped: a Twilio ``stop`` event was seen.
    :ivar channels: 1, or 2 once a ``both_tracks`` start was seen with ``track="both"``.
    """

    def __init__(self, codec: Codec, *, sample_rate: int = 8000, frame_ms: int = 20, jitter_depth_ms: int = 40,
                 backend: str | None = None, call_id: str = "?", track: str = "inbound", max_skew_ms: int = 1000):
        self.codec = codec
        self.track = track
        self.channels = 1
        self.max_skew_ms = max_skew_ms
        self.joiner: ChannelJoiner | None = None
        self.track_quality: dict[str, CallQuality] = {}
        self._track_jitter: dict[str, JitterBuffer] = {}
        self._track_origin: dict[str, int | None] = {}
        self.other_track_packets = 0
        self.call_id = call_id
        self.frame_ms = frame_ms
        self.jitter_depth_ms = jitter_depth_ms
        self.backend = backend
        self.start: twilio.Start | None = None
        self.stopped = False
        self.error: str | None = None  # a protocol error found after replying (AudioHook); Twilio raises
        self.messages = 0
        dsp.backend(backend)  # fail now, naming the backend, if it is unavailable
        self._setup(sample_rate)

    def _setup(self, sample_rate: int, channels: int = 1) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.quality = CallQuality(sample_rate)
        self.assembler = FrameAssembler(sample_rate, self.frame_ms, 2, channels=channels, backend=self.backend)
        self.frame_bytes = self.assembler.frame_bytes
        self._ulaw_per_ms = sample_rate // 1000
        if self.codec == "twilio":
            self.jitter: JitterBuffer | None = self._jitter_buffer(self.quality)
        else:
            self.jitter = None
        if channels == 2:
            self.joiner = ChannelJoiner(1, bytes([MULAW_SILENCE]), self.max_skew_ms * self._ulaw_per_ms,
                                        backend=self.backend, min_take=JOIN_BATCH_MS * self._ulaw_per_ms)
            for track in TWILIO_TRACK_CHANNELS:
                self.track_quality[track] = CallQuality(sample_rate)
                self._track_jitter[track] = self._jitter_buffer(self.track_quality[track])
                self._track_origin[track] = None

    def _jitter_buffer(self, quality: CallQuality) -> JitterBuffer:
        silence = bytes([MULAW_SILENCE]) * (self.sample_rate * self.frame_ms // 1000)
        return JitterBuffer(silence, self.jitter_depth_ms, self.frame_ms, quality=quality,
                            first_seq=TWILIO_FIRST_CHUNK)

    @property
    def concealed(self) -> int:
        return self.quality.frames_concealed

    @property
    def wire_width(self) -> int:
        """Bytes per sample of what :meth:`feed` returns (2 for PCM16, 1 for μ-law)."""
        return 2 if self.jitter is None else 1

    def to_pcm(self, wire: bytes) -> bytes:
        """PCM16 whole frames from a batch of :meth:`feed` output (carrying partial frames)."""
        if self.jitter is None or not wire:
            return wire
        return self.assembler.feed(dsp.mulaw_decode(wire, backend=self.backend))

    def feed(self, message: str | bytes, arrival: float | None = None) -> bytes:
        """Decode one WebSocket message; returns the audio released, in the wire codec
        (see :attr:`wire_width`; maybe ``b""``).

        :raises CallProtocolError: a text message in ``pcm16`` mode, binary in ``twilio``
            mode, or a malformed Twilio event (names the call and the field).
        """
        self.messages += 1
        if self.jitter is None:
            if not isinstance(message, (bytes, bytearray)):
                raise CallProtocolError(f"call {self.call_id}: text message #{self.messages} on a pcm16 stream "
                                        "(expected binary PCM16 little-endian)")
            self.quality.record_packet(len(message), None, arrival)
            return self.assembler.feed(message)
        if not isinstance(message, str):
            raise CallProtocolError(f"call {self.call_id}: binary message #{self.messages} on a Twilio stream "
                                    "(expected JSON text events)")
        try:
            event = twilio.parse_event(message)
        except twilio.TwilioProtocolError as exc:
            raise CallProtocolError(f"call {self.call_id}: message #{self.messages}: {exc}") from None
        if isinstance(event, twilio.Media):
            if self.joiner is not None:
                return self._stereo_media(event, arrival)
            if event.track != self._mono_track:
                # With both tracks, each has its own chunk counter: one jitter buffer per
                # recorded track; the other track's packets are counted, not mixed in.
                self.other_track_packets += 1
                return b""
            frames = self.jitter.push(event.chunk, event.payload, timestamp=event.timestamp * self._ulaw_per_ms,
                                      arrival=arrival)
            return frames[0] if len(frames) == 1 else b"".join(frames)
        if isinstance(event, twilio.Start):
            self.on_start(event)
        elif isinstance(event, twilio.Stop):
            self.stopped = True
        return b""

    def _stereo_media(self, event: twilio.Media, arrival: float | None) -> bytes:
        jitter = self._track_jitter.get(event.track)
        if jitter is None:
            self.other_track_packets += 1
            return b""
        self.quality.record_packet(len(event.payload), None, arrival)
        frames = jitter.push(event.chunk, event.payload, timestamp=event.timestamp * self._ulaw_per_ms,
                             arrival=arrival)
        track = event.track
        if self._track_origin[track] is None:
            # Where chunk 1 of this track sits on the call's timeline: the first packet's
            # timestamp (ms since the stream started) less the chunks before it.
            frame = self.sample_rate * self.frame_ms // 1000
            self._track_origin[track] = max(0, event.timestamp * self._ulaw_per_ms
                                            - (event.chunk - TWILIO_FIRST_CHUNK) * frame)
        if frames:
            self._push_track(track, frames)
            return self.joiner.take()
        return b""

    def _push_track(self, track: str, frames: list[bytes]) -> None:
        channel = TWILIO_TRACK_CHANNELS[track]
        first = self.joiner.pushed(channel) == 0
        self.joiner.push(channel, b"".join(frames), self._track_origin[track] if first else None)

    @property
    def _mono_track(self) -> str:
        if self.track != "both":
            return self.track
        return self.start.tracks[0] if self.start is not None and self.start.tracks else "inbound"

    def on_start(self, event: twilio.Start) -> None:
        """Apply a ``start`` event: check the media format, adopt its sample rate and,
        for a ``both_tracks`` stream recorded with ``track="both"``, go stereo.

        :raises CallProtocolError: unsupported encoding or channel count.
        """
        if event.encoding != twilio.MULAW_ENCODING or event.channels != 1:
            raise CallProtocolError(f"call {self.call_id}: unsupported Twilio media format {event.encoding} "
                                    f"with {event.channels} channels (expected {twilio.MULAW_ENCODING}, mono)")
        stereo = self.track == "both" and set(TWILIO_TRACK_CHANNELS) <= set(event.tracks)
        if self.start is None and (event.sample_rate != self.sample_rate or stereo):
            try:
                self._setup(event.sample_rate, 2 if stereo else 1)
            except ValueError as exc:
                raise CallProtocolError(f"call {self.call_id}: Twilio start event: {exc}") from None
        self.start = event

    def facts(self) -> dict:
        """The call's ids: Twilio's ``start`` (call, stream, account sids, tracks, custom parameters)."""
        st = self.start
        if st is None:
            return {}
        out = {"call_sid": st.call_sid, "stream_sid": st.stream_sid, "account_sid": st.account_sid,
               "tracks": list(st.tracks), "custom_parameters": dict(st.custom_parameters)}
        if self.joiner is not None:
            out["channel_names"] = ["customer (inbound)", "agent (outbound)"]
        return out

    def recording_facts(self) -> RecordingFacts:
        """Twilio's ids as :class:`voxpipe.facts.RecordingFacts` (call SID; the stream SID as
        the session id)."""
        st = self.start
        if st is None:
            return RecordingFacts()
        return RecordingFacts(platform="twilio", call_sid=st.call_sid, session_id=st.stream_sid)

    def quality_report(self) -> dict:
        """The call's quality counters (:meth:`CallQuality.snapshot`), and per channel
        (``channels``: left then right, each with the joiner's gap/fill counters) in stereo."""
        report = self.quality.snapshot().to_dict()
        if self.joiner is not None:
            per = []
            for track, channel in TWILIO_TRACK_CHANNELS.items():
                entry = {"channel": "left" if channel == LEFT else "right", "track": track}
                entry.update(self.track_quality[track].snapshot().to_dict())
                entry.update(self.joiner.counters(channel).to_dict())
                per.append(entry)
            report["channels"] = per
            report.update({k: sum(c[k] for c in per) for k in ("frames_late", "frames_concealed", "frames_dropped",
                                                               "duplicates", "resyncs")})
        return report

    def finish(self) -> bytes:
        """End of call: release the jitter buffer and the carried partial frame (PCM16,
        trimmed to whole samples)."""
        out = b""
        if self.joiner is not None:
            for track, jitter in self._track_jitter.items():
                frames = jitter.flush()
                if frames:
                    self._push_track(track, frames)
            out = self.to_pcm(self.joiner.finish())
        elif self.jitter is not None:
            out = self.to_pcm(b"".join(self.jitter.flush()))
        rest = self.assembler.flush()
        # a call ending mid-sample (or mid sample frame in stereo) drops that part: docs/voice.md
        block = 2 * self.channels
        rest = rest[: len(rest) - len(rest) % block]
        return out + rest
