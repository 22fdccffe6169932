"""Sans-IO request rules and byte plan for the streaming endpoint.

``GET /api/v2/recordings/{id}/stream?offsets=0,15,30&codec=opus&maxDuration=180``
(seed forum thread). Rules the emulator enforces, as CXone does:

* ``offsets``: comma-separated non-negative integers, in seconds, strictly
  increasing; default ``0``. A bracketed list (``[0,15,30]``) is a 400; more
  than :data:`MAX_OFFSETS` is a 413; an offset at or past the end is a 416.
* ``maxDuration``: positive integer seconds capping each segment; default none.
* ``codec``: the emulator does not transcode, so it must be omitted, ``original``
  or the recording's format; otherwise 406.

Semantics of the body (the emulator's definition): offset ``t_i`` opens a
segment running to ``min(t_{i+1}, t_i + maxDuration, end)``; the body is the
segments' bytes in order. For WAV the segments are PCM data at
``data_offset + t × byte_rate`` and the body starts with the file's header
(bytes before the data) with its RIFF and ``data`` sizes rewritten to the
bytes that follow, so the body is itself a valid WAV file — and with
``offsets=0`` and no cap it equals the file (when nothing trails the data
chunk). For other formats positions are proportional, ``floor(t / duration ×
size)``, with no header added and no frame alignment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .store import Recording

__all__ = ["MAX_OFFSETS", "StreamRequestError", "StreamSpan", "StreamPlan", "parse_offsets", "parse_max_duration", "check_codec", "plan_stream"]

MAX_OFFSETS: Final = 3
"""Most offsets one stream request may carry (more → 413)."""


class StreamRequestError(ValueError):
    """A stream request the server refuses: HTTP ``status``, error ``code`` and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class StreamSpan:
    """Bytes ``start`` (inclusive) to ``end`` (exclusive) of the recording file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class StreamPlan:
    """What a stream response body is: ``header`` bytes, then each span's file bytes."""

    offsets: tuple[int, ...]
    header: bytes
    spans: tuple[StreamSpan, ...]

    @property
    def length(self) -> int:
        """Total body bytes."""
        return len(self.header) + sum(s.length for s in self.spans)


def parse_offsets(raw: str | None) -> tuple[int, ...]:
    """Offsets in seconds from the ``offsets`` query value; raises :class:`StreamRequestError`."""
    if raw is None or raw.strip() == "":
        return (0,)
    text = raw.strip()
    if text.startswith("[") or text.endswith("]"):
        raise StreamRequestError(
            400, "invalid_offsets", f"offsets must be comma-separated integers such as 0,15,30, not a bracketed list ({raw!r})"
        )
    parts = [p.strip() for p in text.split(",")]
    for p in parts:
        if not (p.isascii() and p.isdigit()):
            raise StreamRequestError(400, "invalid_offsets", f"offset {p!r} in offsets={raw!r} is not a non-negative integer (seconds)")
    if len(parts) > MAX_OFFSETS:
        raise StreamRequestError(413, "too_many_offsets", f"{len(parts)} offsets given; at most {MAX_OFFSETS} per request")
    offsets = tuple(int(p) for p in parts)
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        raise StreamRequestError(400, "invalid_offsets", f"offsets must be strictly increasing, got {raw!r}")
    return offsets


def parse_max_duration(raw: str | None) -> int | None:
    """``maxDuration`` in seconds, or None when absent; raises :class:`StreamRequestError`."""
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise StreamRequestError(400, "invalid_max_duration", f"maxDuration {raw!r} is not a positive integer (seconds)")
    return int(text)


def check_codec(raw: str | None, rec: Recording) -> None:
    """Refuse (406) a ``codec`` the recording is not stored in; the emulator does not transcode."""
    if raw is None or raw.strip() == "" or raw.strip().lower() in ("original", rec.format):
        return
    raise StreamRequestError(
        406,
        "codec_unavailable",
        f"recording {rec.id!r} is stored as {rec.format}; the emulator does not transcode to {raw!r} (omit codec or pass codec={rec.format})",
    )


def plan_stream(rec: Recording, offsets: tuple[int, ...], max_duration: int | None, header: bytes) -> StreamPlan:
    """Byte plan for streaming ``rec`` from ``offsets``.

    ``header`` is the file's bytes ``[0, rec.wav.data_offset)`` for a WAV
    recording (ignored otherwise). Raises :class:`StreamRequestError` 416 when
    an offset is at or past the end, 422 when a non-WAV recording has no
    known duration to map seconds to bytes.
    """
    duration = rec.duration
    if rec.wav is None and not duration:
        raise StreamRequestError(422, "unknown_duration", f"recording {rec.id!r} has no known duration; cannot map offsets to bytes")
    if rec.wav is not None:
        wav = rec.wav
        data_end = wav.data_offset + wav.data_size
        end_seconds = wav.data_size / wav.byte_rate

        def pos(t: int) -> int:
            return min(data_end, wav.data_offset + t * wav.byte_rate)

    else:
        assert duration
        data_end = rec.size
        end_seconds = duration

        def pos(t: int) -> int:
            return min(data_end, int(t / duration * rec.size))

    for t in offsets:
        if t >= end_seconds:
            raise StreamRequestError(
                416, "offset_out_of_range", f"offset {t} s is at or past the end of recording {rec.id!r} ({end_seconds:.3f} s)"
            )
    spans = []
    for i, t in enumerate(offsets):
        stop: float = offsets[i + 1] if i + 1 < len(offsets) else end_seconds
        if max_duration is not None:
            stop = min(stop, t + max_duration)
        end = data_end if stop >= end_seconds else pos(int(stop))
        spans.append(StreamSpan(pos(t), end))
    body_header = b""
    if rec.wav is not None:
        body_header = rewrite_wav_header(header[: rec.wav.data_offset], sum(s.length for s in spans),
                                         data_size_field=rec.wav.data_size_field_offset,
                                         block_align=rec.wav.block_align)
    return StreamPlan(offsets=offsets, header=body_header, spans=tuple(spans))


def rewrite_wav_header(header: bytes, data_len: int, *, data_size_field: int, block_align: int) -> bytes:
    """A WAV header (the bytes before the data) made true for ``data_len`` data bytes.

    Rewrites the RIFF size, the ``data`` chunk size and, when present, the ``fact`` chunk's
    sample count (``dwSampleLength``: sample frames, required for non-PCM formats such as
    G.711 μ-law/A-law; Microsoft "Multimedia Programming Interface and Data Specifications
    1.0", fact chunk), so the streamed answer is a self-consistent WAV.
    """
    hdr = bytearray(header)
    struct.pack_into("<I", hdr, 4, len(hdr) - 8 + data_len)
    struct.pack_into("<I", hdr, data_size_field, data_len)
    pos = 12
    while pos + 8 <= len(hdr):
        cid, size = bytes(hdr[pos:pos + 4]), struct.unpack_from("<I", hdr, pos + 4)[0]
        if cid == b"fact" and size >= 4 and pos + 12 <= len(hdr):
            struct.pack_into("<I", hdr, pos + 8, data_len // max(1, block_align))
        pos += 8 + size + (size & 1)
    return bytes(hdr)
