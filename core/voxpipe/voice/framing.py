"""Frame reassembly for live call audio (sans-IO).

WebSocket messages are arbitrary slices of the audio stream: their
boundaries need not fall on frame or even sample boundaries (the seed's
CXone voice stream, Sinch).  :class:`FrameAssembler` turns any sequence of
messages into exact frames of ``frame_ms`` — 20 ms = 160 samples = 320 bytes
of PCM16 at 8 kHz, 640 bytes at 16 kHz, 160 bytes of G.711 at 8 kHz —
carrying a partial frame (including an odd byte) to the next message.
Whatever the split, the frames out are the same.  The copy work runs in the
selected :mod:`voxpipe.dsp` backend (one native call per message).
Requirement: issue "Live call audio over WebSocket", item 2.
"""

from __future__ import annotations

from types import ModuleType

from voxpipe import dsp

#: Longest frame accepted; the carried remainder is always < one frame, so
#: this bounds the assembler's memory.
MAX_FRAME_MS = 1000
#: Bytes per sample: 2 for PCM16, 1 for G.711 μ-law/A-law.
SAMPLE_WIDTHS = (1, 2)


def frame_bytes(sample_rate: int, frame_ms: int, sample_width: int = 2, channels: int = 1) -> int:
    """Bytes in one frame: ``sample_rate * frame_ms / 1000 * sample_width * channels``
    (a stereo frame holds both channels' samples, interleaved).

    Raises ``ValueError`` if a parameter is out of range or the frame would
    not hold a whole number of samples (e.g. 15 ms at 11025 Hz).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not (
        dsp.MIN_SAMPLE_RATE <= sample_rate <= dsp.MAX_SAMPLE_RATE
    ):
        raise ValueError(
            f"sample_rate={sample_rate!r} must be an integer in "
            f"[{dsp.MIN_SAMPLE_RATE}, {dsp.MAX_SAMPLE_RATE}] Hz"
        )
    if isinstance(frame_ms, bool) or not isinstance(frame_ms, int) or not 1 <= frame_ms <= MAX_FRAME_MS:
        raise ValueError(f"frame_ms={frame_ms!r} must be an integer in [1, {MAX_FRAME_MS}] ms")
    if sample_width not in SAMPLE_WIDTHS:
        raise ValueError(f"sample_width={sample_width!r} bytes must be one of {SAMPLE_WIDTHS}")
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= dsp.MAX_CHANNELS:
        raise ValueError(f"channels={channels!r} must be an integer in [1, {dsp.MAX_CHANNELS}]")
    samples, rest = divmod(sample_rate * frame_ms, 1000)
    if rest:
        raise ValueError(
            f"frame_ms={frame_ms} at {sample_rate} Hz is {sample_rate * frame_ms / 1000} "
            "samples, not a whole number"
        )
    return samples * sample_width * channels


class FrameAssembler:
    """Reassembles a byte stream, delivered in arbitrary messages, into whole frames.

    ``feed(data) -> bytes``: append a message (bytes-like, any length,
    including 0 or odd) and return every frame completed so far,
    concatenated (a multiple of :attr:`frame_bytes`; ``b""`` if none).  The
    remainder (< one frame) is carried to the next call.
    ``flush(pad=False) -> bytes``: at end of stream, return the carried
    remainder, optionally padded with ``silence_byte`` to one whole frame.

    Counters: ``bytes_in`` (all bytes fed), ``frames_out`` (whole frames
    returned, padded final frame included), ``stream_offset`` of the next
    frame (bytes), for error messages that name where in a call they are.
    """

    __slots__ = ("frame_bytes", "sample_rate", "frame_ms", "sample_width", "channels",
                 "silence_byte", "bytes_in", "frames_out", "_r", "backend_name")

    def __init__(
        self,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        sample_width: int = 2,
        *,
        silence_byte: int | None = None,
        channels: int = 1,
        backend: str | ModuleType | None = None,
    ):
        impl = dsp.backend(backend)
        self.frame_bytes = frame_bytes(sample_rate, frame_ms, sample_width, channels)
        self.channels = channels
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.sample_width = sample_width
        # PCM16 silence is 0; for G.711 the caller names the codec's silence
        # (0xFF μ-law, 0xD5 A-law).
        self.silence_byte = 0 if silence_byte is None else silence_byte
        if not 0 <= self.silence_byte <= 255:
            raise ValueError(f"silence_byte={silence_byte!r} must be in [0, 255]")
        self.bytes_in = 0
        self.frames_out = 0
        self.backend_name: str = impl.NAME
        self._r = impl.Reassembler(self.frame_bytes)

    @property
    def pending(self) -> int:
        """Bytes carried towards the next frame (0 <= pending < frame_bytes)."""
        return self._r.pending

    @property
    def stream_offset(self) -> int:
        """Byte offset in the stream of the first byte not yet returned."""
        return self.bytes_in - self._r.pending

    def feed(self, data) -> bytes:
        out = self._r.feed(data)
        self.bytes_in += memoryview(data).nbytes
        self.frames_out += len(out) // self.frame_bytes
        return out

    def flush(self, pad: bool = False) -> bytes:
        rest = self._r.take_pending()
        if pad and rest:
            rest += bytes([self.silence_byte]) * (self.frame_bytes - len(rest))
            self.frames_out += 1
        return rest

    def __repr__(self) -> str:
        return (
            f"FrameAssembler(sample_rate={self.sample_rate}, frame_ms={self.frame_ms}, "
            f"sample_width={self.sample_width}, frame_bytes={self.frame_bytes}, "
            f"pending={self.pending})"
        )


def split_frames(data, frame_bytes: int) -> list[memoryview]:
    """Views (no copies) of each ``frame_bytes`` frame in ``data``.

    Raises ``ValueError`` if ``len(data)`` is not a multiple of ``frame_bytes``
    (naming the length and the offset of the partial frame).
    """
    mv = memoryview(data).cast("B")
    n = mv.nbytes
    if n % frame_bytes:
        raise ValueError(
            f"{n} bytes is not a whole number of {frame_bytes}-byte frames "
            f"(partial frame at byte offset {n - n % frame_bytes})"
        )
    return [mv[i:i + frame_bytes] for i in range(0, n, frame_bytes)]
