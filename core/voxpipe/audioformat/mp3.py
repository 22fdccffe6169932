"""Streaming check of MPEG audio (MP3) recordings.

Sources: ISO/IEC 11172-3 (MPEG-1) and 13818-3 (MPEG-2 LSF) audio frame header,
with the unofficial MPEG-2.5 extension (8/11.025/12 kHz, used for 8 kHz
telephony MP3); id3.org ID3v2.3/2.4 "structure" (10-byte header, syncsafe
size, footer flag) and ID3v1 (128-byte "TAG" trailer); the Xing/Info VBR header
as written by LAME (frame and byte counts) and Fraunhofer's VBRI header;
APEv2 specification (wiki.hydrogenaud.io) for a trailing "APETAGEX" tag.

What is checked: an ID3v2 tag is skipped by its declared size (never buffered;
zero padding after it is tolerated up to :data:`MAX_LEADING_ZEROS`); every
frame header lies exactly where the previous frame's length says and agrees
with the first frame on MPEG version, layer, sample rate and mono/stereo
(bitrate may vary: VBR); the last frame is complete; the frame count reaches
what a Xing/Info/VBRI header declares; after the frames only an APEv2 tag
(with a header) and/or a 128-byte ID3v1 tag may follow. Not checked: frame CRCs,
the audio payload (Huffman data), free-format streams (rejected as
unsupported), an APEv2 tag without a header (its items read as lost sync).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._stream import StructReader, hexbytes
from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["FrameHeader", "parse_frame_header", "Mp3Parser", "MP3_HEAD_FRAMES", "MAX_LEADING_ZEROS"]

#: Consecutive, consistent frames needed before the head counts as MPEG audio
#: (a single 0xFFE sync can occur by chance in other data).
MP3_HEAD_FRAMES = 3
#: Distinct frame headers remembered by the fast path (bitrate × padding ×
#: mode-extension × flag bits; a real stream uses a few dozen).
_HEADER_CACHE_MAX = 1024
_U32 = struct.Struct(">I")
#: Zero bytes tolerated between an ID3v2 tag and the first frame (some taggers
#: leave padding outside the declared tag size).
MAX_LEADING_ZEROS = 64 * 1024

_BITRATES_KBPS = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}
_VERSION_BITS = {0b00: 25, 0b10: 2, 0b11: 1}  # 0b01 reserved
_LAYER_BITS = {0b11: 1, 0b10: 2, 0b01: 3}  # 0b00 reserved
_VERSION_NAMES = {1: "MPEG-1", 2: "MPEG-2", 25: "MPEG-2.5"}


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One MPEG audio frame header (4 bytes).

    ``version`` 1, 2 or 25 (MPEG-2.5); ``layer`` 1-3; ``bitrate`` bit/s;
    ``sample_rate`` Hz; ``channels`` 1 or 2; ``length`` bytes of the whole frame
    including the header; ``samples`` per channel in the frame; ``crc``: a 16-bit
    CRC follows the header.
    """

    version: int
    layer: int
    bitrate: int
    sample_rate: int
    channels: int
    padding: int
    length: int
    samples: int
    crc: bool

    @property
    def codec(self) -> str:
        return f"mp{self.layer}"

    def describe(self) -> str:
        return (
            f"{_VERSION_NAMES[self.version]} Layer {'I' * self.layer if self.layer < 3 else 'III'}, "
            f"{self.sample_rate} Hz, {'mono' if self.channels == 1 else 'stereo'}"
        )

    def same_stream(self, other: FrameHeader) -> bool:
        return (self.version, self.layer, self.sample_rate, self.channels) == (
            other.version,
            other.layer,
            other.sample_rate,
            other.channels,
        )


def parse_frame_header(b: bytes | memoryview) -> FrameHeader | None:
    """The :class:`FrameHeader` in the 4 bytes ``b``, or ``None`` when they are not
    a valid header (no 11-bit sync, reserved version/layer/sample-rate, bad or
    free-format bitrate index)."""
    if len(b) < 4 or b[0] != 0xFF or b[1] & 0xE0 != 0xE0:
        return None
    version = _VERSION_BITS.get((b[1] >> 3) & 3)
    layer = _LAYER_BITS.get((b[1] >> 1) & 3)
    br_index = b[2] >> 4
    sr_index = (b[2] >> 2) & 3
    if version is None or layer is None or br_index in (0, 15) or sr_index == 3:
        return None
    bitrate = _BITRATES_KBPS[(1 if version == 1 else 2, layer)][br_index] * 1000
    sample_rate = _SAMPLE_RATES[version][sr_index]
    padding = (b[2] >> 1) & 1
    channels = 1 if b[3] >> 6 == 3 else 2
    if layer == 1:
        length = (12 * bitrate // sample_rate + padding) * 4
        samples = 384
    elif layer == 2 or version == 1:
        length = 144 * bitrate // sample_rate + padding
        samples = 1152
    else:
        length = 72 * bitrate // sample_rate + padding
        samples = 576
    return FrameHeader(version, layer, bitrate, sample_rate, channels, padding, length, samples, not b[1] & 1)


def _is_free_format(b: bytes | memoryview) -> bool:
    return len(b) >= 3 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0 and b[2] >> 4 == 0


def _vbr_frame_count(frame: memoryview, h: FrameHeader) -> int | None:
    """Frames declared by a Xing/Info or VBRI header in the first frame, or None."""
    if h.layer == 3:
        side = (17 if h.channels == 1 else 32) if h.version == 1 else (9 if h.channels == 1 else 17)
        at = 4 + (2 if h.crc else 0) + side
        tag = bytes(frame[at : at + 4])
        if tag in (b"Xing", b"Info") and len(frame) >= at + 8:
            flags = struct.unpack_from(">I", frame, at + 4)[0]
            if flags & 1 and len(frame) >= at + 12:
                return struct.unpack_from(">I", frame, at + 8)[0]
            return -1  # a Xing frame without a frame count: still not audio
    if bytes(frame[36:40]) == b"VBRI" and len(frame) >= 36 + 18:
        return struct.unpack_from(">I", frame, 36 + 14)[0]
    return None


# States.
_ID3, _ID3_BODY, _LEAD, _HDR_REST, _HDR, _FIRST_BODY, _BODY, _APE, _APE_BODY, _ID3V1, _END = range(11)
_STATE_NAMES = {
    _ID3: "the ID3v2 tag header",
    _ID3_BODY: "the ID3v2 tag",
    _LEAD: "padding before the first frame",
    _HDR_REST: "the first frame header",
    _HDR: "a frame header",
    _FIRST_BODY: "the first frame",
    _BODY: "a frame",
    _APE: "the APEv2 tag header",
    _APE_BODY: "the APEv2 tag",
    _ID3V1: "the ID3v1 tag",
    _END: "the end",
}


class Mp3Parser(StructReader):
    """Sans-IO MPEG audio frame walker: ``feed`` bytes, read ``head`` once
    :data:`MP3_HEAD_FRAMES` frames chain, call ``finish(total)`` at end of stream.

    Args:
        starts_with_id3: the stream begins with "ID3" (decided by the detector).

    Raises (from ``feed``/``finish``): :class:`AudioFormatError` with reasons
    ``mp3-bad-id3``, ``mp3-bad-frame-header``, ``mp3-free-format``,
    ``mp3-sync-lost`` (a frame boundary holds no consistent frame header; the
    offset is that boundary), ``mp3-data-after-tag``, ``mp3-no-frames``,
    ``truncated``.
    """

    container = "mp3"

    def __init__(self, *, starts_with_id3: bool) -> None:
        super().__init__()
        self._first: FrameHeader | None = None
        self._first_offset: int | None = None
        self._first_byte = 0
        self._zeros = 0
        self._frames = 0  # audio frames (a Xing/Info frame is not audio)
        self._chained = 0
        self._samples = 0
        self._declared_frames: int | None = None
        self._frame_start = 0
        self._frame_len = 0
        self._after_ape = False  # an APEv2 tag was passed: only ID3v1 may follow
        self._header_cache: dict[int, FrameHeader] = {}  # 32-bit header -> parsed, same stream only
        if starts_with_id3:
            self._state = _ID3
            self._want(10)
        else:
            self._state = _HDR
            self._want(4)

    # -- fast path --------------------------------------------------------------
    def feed(self, data: memoryview) -> None:
        """As :meth:`StructReader.feed`, but runs of whole, consistent frames
        inside ``data`` are walked in a tight loop (a frame of 8 kHz telephony
        MP3 is only ~100 bytes). Anything else -- the head, tags, a partial or
        unexpected frame -- goes through the generic reader one structure at a
        time, so both paths give the same results at the same offsets."""
        pos, end = 0, len(data)
        while pos < end:
            if self.head is not None and self._state == _HDR and not self._buf and not self._after_ape:
                pos = self._walk_frames(data, pos, end)
                if pos >= end:
                    return
            # One structure step through the generic reader.
            carried, skip = self.in_progress
            step = skip if skip else self._need - carried
            step = min(step, end - pos)
            super().feed(data[pos : pos + step])
            pos += step

    def _walk_frames(self, data: memoryview, pos: int, end: int) -> int:
        first = self._first
        assert first is not None
        cache = self._header_cache
        unpack = _U32.unpack_from
        frames = samples = 0
        start = pos
        last_start, last_len = self._frame_start, self._frame_len
        while end - pos >= 4:
            word = unpack(data, pos)[0]
            h = cache.get(word)
            if h is None:
                h = parse_frame_header(data[pos : pos + 4])
                if h is None or not h.same_stream(first) or len(cache) >= _HEADER_CACHE_MAX:
                    break  # the generic reader reports it (or handles a tag)
                cache[word] = h
            if end - pos < h.length:
                break  # incomplete frame: the generic reader carries/skips it
            last_start, last_len = pos, h.length
            pos += h.length
            frames += 1
            samples += h.samples
        if frames:
            self.offset += pos - start
            self._frames += frames
            self._chained += frames
            self._samples += samples
            self._frame_start = self.offset - (pos - last_start)
            self._frame_len = last_len
        return pos

    def _on_block(self, block: memoryview, start: int) -> None:
        state = self._state
        if state == _HDR:
            self._on_header(block, start)
        elif state == _FIRST_BODY:
            self._on_first_frame(block)
        elif state == _ID3:
            self._on_id3(block, start)
        elif state == _LEAD:
            if block[0] == 0:
                self._zeros += 1
                if self._zeros > MAX_LEADING_ZEROS:
                    raise AudioFormatError(
                        "mp3-bad-frame-header",
                        f"more than {MAX_LEADING_ZEROS} zero bytes after the ID3v2 tag and no frame",
                        offset=start,
                    )
                return
            self._first_byte = block[0]
            self._state = _HDR_REST
            self._want(3)
        elif state == _HDR_REST:
            self._on_header(memoryview(bytes([self._first_byte]) + bytes(block)), start - 1)
        elif state == _APE:
            self._on_ape(block, start)
        elif state == _ID3V1:
            self._state = _END
            self._want(1)
        elif state == _END:
            raise AudioFormatError(
                "mp3-data-after-tag",
                f"data at byte {start} after the ID3v1 tag that should end the file (found {hexbytes(block)})",
                offset=start,
            )
        else:  # pragma: no cover
            raise AssertionError(state)

    def _skip_done(self) -> None:
        if self._state == _ID3_BODY:
            self._state = _LEAD
            self._want(1)
        elif self._state == _APE_BODY:
            self._state = _HDR  # only an ID3v1 tag may follow; _on_header handles "TAG"
            self._after_ape = True
            self._want(4)
        else:
            self._state = _HDR
            self._want(4)

    def _on_id3(self, b: memoryview, start: int) -> None:
        major, flags = b[3], b[5]
        size_bytes = bytes(b[6:10])
        if major not in (2, 3, 4) or b[4] == 0xFF:
            raise AudioFormatError(
                "mp3-bad-id3", f"ID3v2 tag version 2.{major}.{b[4]} at byte {start} is not 2.2-2.4", offset=start + 3
            )
        undefined = {2: 0x3F, 3: 0x1F, 4: 0x0F}[major]
        if flags & undefined:
            raise AudioFormatError(
                "mp3-bad-id3",
                f"ID3v2.{major} tag at byte {start} has undefined flag bits 0x{flags:02X}",
                offset=start + 5,
            )
        if any(x & 0x80 for x in size_bytes):
            raise AudioFormatError(
                "mp3-bad-id3",
                f"ID3v2 tag size {hexbytes(size_bytes)} at byte {start + 6} is not a syncsafe integer",
                offset=start + 6,
            )
        size = (size_bytes[0] << 21) | (size_bytes[1] << 14) | (size_bytes[2] << 7) | size_bytes[3]
        if major == 4 and flags & 0x10:
            size += 10  # footer
        self.head_base = start + 10 + size  # a large tag (cover art) does not count against the head budget
        self._state = _ID3_BODY
        self._pass_over(size)

    def _on_header(self, b: memoryview, start: int) -> None:
        h = parse_frame_header(b)
        first = self._first
        if first is None:
            if h is None:
                if _is_free_format(b):
                    raise AudioFormatError(
                        "mp3-free-format",
                        f"free-format MPEG audio frame at byte {start} is not supported",
                        offset=start,
                    )
                raise AudioFormatError(
                    "mp3-bad-frame-header",
                    f"no valid MPEG audio frame header at byte {start} (found {hexbytes(b)})",
                    offset=start,
                )
            self._first = h
            self._first_offset = start
            self.head_base = start
            self._frame_start, self._frame_len = start, h.length
            self._state = _FIRST_BODY
            self._want(h.length - 4)
            return
        if h is None or not h.same_stream(first):
            tag = bytes(b)
            if tag[:3] == b"TAG":
                self._state = _ID3V1
                self._want(124)
                return
            if tag == b"APET" and not self._after_ape:
                self._state = _APE
                self._want(28)
                return
            if self._after_ape:
                raise AudioFormatError(
                    "mp3-data-after-tag",
                    f"data at byte {start} after the APEv2 tag (found {hexbytes(b)}); only an ID3v1 tag may follow",
                    offset=start,
                )
            if h is None:
                found = f"0x{(b[0] << 4) | (b[1] >> 4):03X}"
                raise AudioFormatError(
                    "mp3-sync-lost",
                    f"mp3 frame sync lost at byte {start} after {self._chained} frames: expected 0xFFE sync and a "
                    f"valid header, found {hexbytes(b)} (sync bits {found})",
                    offset=start,
                )
            raise AudioFormatError(
                "mp3-sync-lost",
                f"mp3 frame sync lost at byte {start} after {self._chained} frames: header says {h.describe()}, "
                f"the stream is {first.describe()}",
                offset=start,
            )
        if self._after_ape:
            raise AudioFormatError(
                "mp3-data-after-tag", f"MPEG frame at byte {start} after the APEv2 tag", offset=start
            )
        self._count_frame(h)
        self._frame_start, self._frame_len = start, h.length
        self._state = _BODY
        self._pass_over(h.length - 4)

    def _on_first_frame(self, body: memoryview) -> None:
        h = self._first
        assert h is not None
        declared = _vbr_frame_count(memoryview(b"\xff\xff\xff\xff" + bytes(body)), h)
        if declared is None:
            self._count_frame(h)
        else:
            self._chained += 1
            self._declared_frames = declared if declared >= 0 else None
        self._state = _HDR
        self._want(4)

    def _count_frame(self, h: FrameHeader) -> None:
        self._frames += 1
        self._chained += 1
        self._samples += h.samples
        if self.head is None and self._chained >= MP3_HEAD_FRAMES:
            self._set_head(self._make_head())

    def _make_head(self) -> HeadInfo:
        first = self._first
        assert first is not None
        declared = self._declared_frames
        return HeadInfo(
            container="mp3",
            codec=first.codec,
            sample_rate=first.sample_rate,
            channels=first.channels,
            header_offset=self._first_offset,
            header_duration=None if declared is None else declared * first.samples / first.sample_rate,
        )

    def _on_ape(self, b: memoryview, start: int) -> None:
        full = b"APET" + bytes(b)
        if full[:8] != b"APETAGEX":
            raise AudioFormatError(
                "mp3-sync-lost", f"mp3 frame sync lost at byte {start - 4}: found {hexbytes(full)}", offset=start - 4
            )
        version, size, _items, flags = struct.unpack_from("<IIII", full, 8)
        if not flags & (1 << 29):
            raise AudioFormatError(
                "mp3-sync-lost",
                f"APEv2 footer at byte {start - 4} without a header before it; the bytes before it did not sync",
                offset=start - 4,
            )
        self._state = _APE_BODY
        self._pass_over(size)

    def finish(self, total: int) -> dict:
        """End-of-stream checks; returns the AudioInfo fields it knows."""
        partial, skip = self.in_progress
        state = self._state
        if partial or skip or state == _HDR_REST:
            if state in (_BODY, _FIRST_BODY):
                raise AudioFormatError(
                    "truncated",
                    f"stream ended at byte {total} inside the frame at byte {self._frame_start} "
                    f"(frame length {self._frame_len} bytes, {total - self._frame_start} present)",
                    offset=total,
                )
            raise AudioFormatError(
                "truncated", f"stream ended at byte {total} inside {_STATE_NAMES[state]}", offset=total
            )
        if state == _APE_BODY or state == _ID3V1:  # pragma: no cover - covered by partial/skip
            raise AudioFormatError("truncated", f"stream ended at byte {total} inside a tag", offset=total)
        first = self._first
        if first is None:
            raise AudioFormatError(
                "mp3-no-frames",
                f"no MPEG audio frame in {total} bytes (stream ended {_STATE_NAMES[state]})",
                offset=total,
            )
        if self._declared_frames is not None and self._frames < self._declared_frames:
            raise AudioFormatError(
                "truncated",
                f"the Xing/Info/VBRI header declares {self._declared_frames} frames, the stream ends at byte "
                f"{total} after {self._frames}",
                offset=total,
            )
        if self.head is None:
            self._set_head(self._make_head())
        return dict(
            container="mp3",
            codec=first.codec,
            sample_rate=first.sample_rate,
            channels=first.channels,
            duration=self._samples / first.sample_rate,
        )
