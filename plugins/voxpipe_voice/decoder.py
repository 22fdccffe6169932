"""Per-call message decoding (sans-IO): WebSocket messages in, whole PCM16 frames out.

Two payload codecs (requirement: issue "Live call audio over WebSocket", item 1):

* ``pcm16``: binary messages of raw PCM16 little-endian mono (the seed's CXone voice
  stream, Sinch); message boundaries need not fall on frames or samples, so bytes go
  through :class:`voxpipe.voice.framing.FrameAssembler`. Each message counts as one
  packet in :class:`voxpipe.voice.jitter.CallQuality` (no sequence numbers: no jitter).
* ``twilio``: Twilio Media Streams JSON events (:mod:`.twilio`). Each ``media`` event's
  μ-law payload goes into a :class:`voxpipe.voice.jitter.JitterBuffer` keyed by the
  event's ``chunk`` counter, which reorders within ``jitter_depth_ms`` and conceals
  missing packets with μ-law silence (counted); released frames are decoded to PCM16
  by :mod:`voxpipe.dsp` in one call per message.

``feed(message, arrival)`` returns the call's audio released so far in its *wire* codec
(PCM16 whole frames for ``pcm16``; μ-law bytes, one per sample, for ``twilio``), so that
the μ-law decoding can run once per batch of messages: ``to_pcm(wire)`` turns a batch
into PCM16 whole frames, ``finish()`` returns the PCM16 rest at the end of the call.
None of them does I/O or reads a clock.
"""

from __future__ import annotations

from typing import Literal

from voxpipe import dsp
from voxpipe.voice.framing import FrameAssembler
from voxpipe.voice.jitter import CallQuality, JitterBuffer

from . import twilio

Codec = Literal["pcm16", "twilio"]
#: μ-law code word for silence (decodes to PCM 0).
MULAW_SILENCE = 0xFF


class CallProtocolError(ValueError):
    """A message does not fit the call's codec (binary where JSON was expected, ...)."""


class CallDecoder:
    """Turns one call's messages into PCM16 frames and keeps its quality counters.

    :param codec: ``pcm16`` or ``twilio``.
    :param sample_rate: Hz of the PCM16 stream (Twilio: replaced by the ``start`` event's).
    :param frame_ms: frame length (20 ms = 160 samples at 8 kHz).
    :param jitter_depth_ms: Twilio jitter buffer depth, a multiple of ``frame_ms``.
    :param backend: :mod:`voxpipe.dsp` backend for reassembly and μ-law decoding.
    :param track: Twilio: the track recorded (``inbound`` or ``outbound``).
    :ivar start: the Twilio ``start`` event, once seen.
    :ivar stopped: a Twilio ``stop`` event was seen.
    """

    def __init__(self, codec: Codec, *, sample_rate: int = 8000, frame_ms: int = 20, jitter_depth_ms: int = 40,
                 backend: str | None = None, call_id: str = "?", track: str = "inbound"):
        self.codec = codec
        self.track = track
        self.other_track_packets = 0
        self.call_id = call_id
        self.frame_ms = frame_ms
        self.jitter_depth_ms = jitter_depth_ms
        self.backend = backend
        self.start: twilio.Start | None = None
        self.stopped = False
        self.messages = 0
        dsp.backend(backend)  # fail now, naming the backend, if it is unavailable
        self._setup(sample_rate)

    def _setup(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.quality = CallQuality(sample_rate)
        self.assembler = FrameAssembler(sample_rate, self.frame_ms, 2, backend=self.backend)
        self.frame_bytes = self.assembler.frame_bytes
        self._ulaw_per_ms = sample_rate // 1000
        if self.codec == "twilio":
            silence = bytes([MULAW_SILENCE]) * (self.frame_bytes // 2)
            self.jitter: JitterBuffer | None = JitterBuffer(silence, self.jitter_depth_ms, self.frame_ms,
                                                            quality=self.quality)
        else:
            self.jitter = None

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
            if event.track != self.track:
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

    def on_start(self, event: twilio.Start) -> None:
        """Apply a ``start`` event: check the media format, adopt its sample rate.

        :raises CallProtocolError: unsupported encoding or channel count.
        """
        if event.encoding != twilio.MULAW_ENCODING or event.channels != 1:
            raise CallProtocolError(f"call {self.call_id}: unsupported Twilio media format {event.encoding} "
                                    f"with {event.channels} channels (expected {twilio.MULAW_ENCODING}, mono)")
        if self.start is None and event.sample_rate != self.sample_rate:
            try:
                self._setup(event.sample_rate)
            except ValueError as exc:
                raise CallProtocolError(f"call {self.call_id}: Twilio start event: {exc}") from None
        self.start = event

    def finish(self) -> bytes:
        """End of call: release the jitter buffer and the carried partial frame (PCM16,
        trimmed to whole samples)."""
        out = b""
        if self.jitter is not None:
            out = self.to_pcm(b"".join(self.jitter.flush()))
        rest = self.assembler.flush()
        rest = rest[: len(rest) - len(rest) % 2]
        return out + rest
