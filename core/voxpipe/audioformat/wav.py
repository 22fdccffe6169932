"""Streaming check of RIFF/WAVE recordings.

Sources: Microsoft/IBM "Multimedia Programming Interface and Data Specifications
1.0" (1991) for RIFF chunks, ``fmt `` and ``fact``; Microsoft "Multiple Channel
Audio Data and WAVE Files" for WAVE_FORMAT_EXTENSIBLE (tag 0xFFFE, SubFormat
GUID); format tags from mmreg.h: 1 PCM, 3 IEEE float, 6 A-law and 7 μ-law
(ITU-T G.711), 2 MS ADPCM, 0x11 IMA ADPCM, 0x31 GSM 6.10, 0x64 G.726, 0x65 G.722.

What is checked: the RIFF header; every chunk header (printable id, size inside
the RIFF size); ``fmt `` consistency (channels, rate, block align and byte rate
agree for PCM/float/G.711); ``fact`` sample count against the data size (PCM
and G.711); the data chunk's declared size against the bytes actually present
(truncated, or a size that lies: audio bytes read as a chunk header, or a data
chunk larger than the RIFF); bytes after the RIFF end; a data size that is not
a whole number of blocks. Not checked: sample values; chunks other than
``fmt ``/``fact``/``data`` beyond their headers; RF64 (rejected as unsupported
by the detector).
"""

from __future__ import annotations

import struct

from ._stream import UNBOUNDED, StructReader, hexbytes
from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["WavParser", "WAV_FORMAT_TAGS", "MAX_FMT_BYTES"]

#: Largest ``fmt `` chunk accepted (WAVE_FORMAT_EXTENSIBLE is 40 bytes; codec
#: extra data for ADPCM etc. is a few dozen more).
MAX_FMT_BYTES = 1024
MAX_CHANNELS = 32
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
#: Size fields a live writer leaves before it knows the length (0 or all ones).
SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF)

#: Format tag -> codec name (PCM and float are refined by bits per sample).
WAV_FORMAT_TAGS: dict[int, str] = {
    0x0001: "pcm",
    0x0002: "adpcm_ms",
    0x0003: "pcm_float",
    0x0006: "pcm_alaw",
    0x0007: "pcm_mulaw",
    0x0011: "adpcm_ima_wav",
    0x0031: "gsm_ms",
    0x0064: "g726",
    0x0065: "g722",
}
_PCM_CODECS = {8: "pcm_u8", 16: "pcm_s16le", 24: "pcm_s24le", 32: "pcm_s32le"}
_FLOAT_CODECS = {32: "pcm_f32le", 64: "pcm_f64le"}
#: Bytes 4-15 of every KSDATAFORMAT_SUBTYPE_* GUID built from a format tag.
_SUBFORMAT_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_EXTENSIBLE = 0xFFFE

# States.
_RIFF, _CHUNK_HDR, _FMT, _FACT, _CHUNK_BODY, _DATA, _PAD, _TRAILING, _SHORT_TAIL = range(9)
_STATE_NAMES = {
    _RIFF: "the RIFF header",
    _CHUNK_HDR: "a chunk header",
    _FMT: "the fmt chunk",
    _FACT: "the fact chunk",
    _CHUNK_BODY: "a chunk",
    _DATA: "the data chunk",
    _PAD: "a chunk pad byte",
    _TRAILING: "bytes after the RIFF chunk",
    _SHORT_TAIL: "the last bytes of the RIFF chunk",
}


def _printable_id(cid: bytes) -> bool:
    return all(0x20 <= b <= 0x7E for b in cid)


class WavParser(StructReader):
    """Sans-IO RIFF/WAVE walker: ``feed`` bytes, read ``head`` once known,
    call ``finish(total)`` at end of stream.

    Args:
        allow_unfinalized: accept a data (and RIFF) size left as a placeholder
            (0 or 0xFFFFFFFF, a WAV still being written); the data is then
            everything to the end of the stream. Otherwise that raises
            ``wav-header-unfinalized`` as soon as the data chunk header arrives.

    Raises (from ``feed``/``finish``): :class:`AudioFormatError` with reasons
    ``wav-bad-chunk``, ``wav-bad-fmt``, ``wav-unsupported-codec``,
    ``wav-missing-fmt``, ``wav-header-unfinalized``, ``wav-data-length-mismatch``,
    ``wav-riff-size-mismatch``, ``wav-fact-mismatch``, ``wav-partial-block``,
    ``wav-no-data-chunk``, ``truncated``.
    """

    container = "wav"

    def __init__(self, *, allow_unfinalized: bool = False) -> None:
        super().__init__()
        self.allow_unfinalized = allow_unfinalized
        self._state = _RIFF
        self._want(12)
        self._riff_end: int | None = None
        self._fmt: tuple[int, int, int, int, int, int] | None = None  # tag, ch, rate, byte_rate, align, bits
        self._codec: str | None = None
        self._fact_samples: int | None = None
        self._data_start: int | None = None
        self._data_size: int | None = None  # None: placeholder (open-ended)
        self._chunk: tuple[bytes, int, int] | None = None  # id, start, size
        self._pad_allowance = 0

    # -- walking ----------------------------------------------------------------
    def _on_block(self, block: memoryview, start: int) -> None:
        state = self._state
        if state == _RIFF:
            riff_size = struct.unpack_from("<I", block, 4)[0]
            self._riff_end = None if riff_size in SIZE_PLACEHOLDERS else riff_size + 8
            self._next_chunk()
        elif state == _CHUNK_HDR:
            self._on_chunk_header(bytes(block[:4]), struct.unpack_from("<I", block, 4)[0], start)
        elif state == _FMT:
            self._on_fmt(block, start)
            self._next_chunk()
        elif state == _FACT:
            self._fact_samples = struct.unpack_from("<I", block, 0)[0]
            self._next_chunk()
        elif state == _TRAILING:
            if self._pad_allowance and block[0] == 0:
                self._pad_allowance -= 1
                return
            raise AudioFormatError(
                "wav-riff-size-mismatch",
                f"bytes after the end of the RIFF chunk at byte {start} "
                f"(RIFF header declares {self._riff_end} bytes in all, found {hexbytes(block)})",
                offset=start,
            )
        elif state == _SHORT_TAIL:
            if self._data_start is not None and self._data_size is not None:
                raise AudioFormatError(
                    "wav-data-length-mismatch",
                    f"data chunk declares {self._data_size} bytes from byte {self._data_start}, leaving "
                    f"{len(block)} bytes ({hexbytes(block)}) at byte {start} before the RIFF end that are no chunk: "
                    "the data size is wrong",
                    offset=start,
                )
            raise AudioFormatError(
                "wav-bad-chunk",
                f"{len(block)} bytes at byte {start} before the RIFF end are too few for a chunk header",
                offset=start,
            )
        else:  # pragma: no cover - states _CHUNK_BODY/_DATA/_PAD only skip
            raise AssertionError(state)

    def _skip_done(self) -> None:
        if self._state in (_CHUNK_BODY, _DATA):
            assert self._chunk is not None
            cid, cstart, size = self._chunk
            if size % 2:
                # RIFF pads odd chunks to an even size; some writers leave the pad
                # byte out of the RIFF size, so it may also be the last byte.
                if self._riff_end is not None and self.offset == self._riff_end:
                    self._pad_allowance = 1
                    self._state = _TRAILING
                    self._want(1)
                    return
                self._state = _PAD
                self._pass_over(1)
                return
        self._next_chunk()

    def _next_chunk(self) -> None:
        if self._riff_end is not None and self.offset >= self._riff_end:
            self._state = _TRAILING
            self._want(1)
        elif self._riff_end is not None and self._riff_end - self.offset < 8:
            # Too few bytes left in the RIFF for a chunk header.
            self._state = _SHORT_TAIL
            self._want(self._riff_end - self.offset)
        else:
            self._state = _CHUNK_HDR
            self._want(8)

    def _on_chunk_header(self, cid: bytes, size: int, start: int) -> None:
        body = start + 8
        after_data = self._data_start is not None
        overflow = cid != b"data" and self._riff_end is not None and body + size > self._riff_end
        if not _printable_id(cid) or overflow:
            if after_data and self._data_size is not None:
                raise AudioFormatError(
                    "wav-data-length-mismatch",
                    f"data chunk declares {self._data_size} bytes from byte {self._data_start}, but the bytes "
                    f"after them at byte {start} are not a chunk header (found "
                    f"{hexbytes(cid + struct.pack('<I', size))}): the data size is wrong",
                    offset=start,
                )
            if overflow:
                raise AudioFormatError(
                    "wav-bad-chunk",
                    f"chunk {cid!r} at byte {start} declares {size} bytes, running past the end of "
                    f"the RIFF chunk at byte {self._riff_end}",
                    offset=start,
                )
            raise AudioFormatError(
                "wav-bad-chunk", f"invalid RIFF chunk id {hexbytes(cid)} at byte {start}", offset=start
            )
        if cid == b"data":
            self._on_data_header(size, start)
            return
        self._chunk = (cid, start, size)
        if cid == b"fmt ":
            if self._fmt is not None:
                raise AudioFormatError("wav-bad-fmt", f"second fmt chunk at byte {start}", offset=start)
            if not 16 <= size <= MAX_FMT_BYTES:
                raise AudioFormatError(
                    "wav-bad-fmt",
                    f"fmt chunk at byte {start} declares {size} bytes (expected 16 to {MAX_FMT_BYTES})",
                    offset=start,
                )
            self._state = _FMT
            self._want(size + (size & 1))
        elif cid == b"fact" and size >= 4 and not after_data:
            if size > MAX_FMT_BYTES:
                raise AudioFormatError(
                    "wav-bad-chunk", f"fact chunk at byte {start} declares {size} bytes", offset=start
                )
            self._state = _FACT
            self._want(size + (size & 1))
        else:
            self._state = _CHUNK_BODY
            self._pass_over(size)

    def _on_fmt(self, body: memoryview, start: int) -> None:
        size = self._chunk[2] if self._chunk else 16
        tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", body, 0)
        where = f"fmt chunk at byte {start - 8}"
        if size >= 18:
            cb_size = struct.unpack_from("<H", body, 16)[0]
            if cb_size > size - 18:
                raise AudioFormatError(
                    "wav-bad-fmt",
                    f"{where}: cbSize {cb_size} exceeds the {size - 18} extra bytes the chunk has",
                    offset=start + 16,
                )
        if tag == _EXTENSIBLE:
            if size < 40 or struct.unpack_from("<H", body, 16)[0] < 22:
                raise AudioFormatError(
                    "wav-bad-fmt", f"{where}: WAVE_FORMAT_EXTENSIBLE with a {size}-byte fmt chunk", offset=start
                )
            sub = bytes(body[24:40])
            if sub[4:] != _SUBFORMAT_GUID_TAIL or struct.unpack_from("<I", sub, 0)[0] > 0xFFFF:
                raise AudioFormatError(
                    "wav-unsupported-codec",
                    f"{where}: WAVE_FORMAT_EXTENSIBLE SubFormat GUID {sub.hex()} is not a format-tag GUID",
                    offset=start + 24,
                )
            tag = struct.unpack_from("<H", sub, 0)[0]
        kind = WAV_FORMAT_TAGS.get(tag)
        if kind is None:
            raise AudioFormatError(
                "wav-unsupported-codec", f"{where}: format tag 0x{tag:04X} is not a supported codec", offset=start
            )
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioFormatError("wav-bad-fmt", f"{where}: {channels} channels", offset=start + 2)
        if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise AudioFormatError("wav-bad-fmt", f"{where}: sample rate {rate} Hz", offset=start + 4)
        if kind == "pcm":
            codec = _PCM_CODECS.get(bits)
        elif kind == "pcm_float":
            codec = _FLOAT_CODECS.get(bits)
        elif kind in ("pcm_alaw", "pcm_mulaw"):
            codec = kind if bits == 8 else None
        else:
            codec = kind
        if codec is None:
            raise AudioFormatError(
                "wav-bad-fmt", f"{where}: {bits} bits per sample for format tag 0x{tag:04X}", offset=start + 14
            )
        if kind in ("pcm", "pcm_float", "pcm_alaw", "pcm_mulaw"):
            expected_align = channels * (bits // 8)
            if align != expected_align:
                raise AudioFormatError(
                    "wav-bad-fmt",
                    f"{where}: block align {align}, expected {expected_align} for {channels} channel(s) of {bits} bits",
                    offset=start + 12,
                )
            if byte_rate != rate * align:
                raise AudioFormatError(
                    "wav-bad-fmt",
                    f"{where}: byte rate {byte_rate}, expected {rate * align} ({rate} Hz × block align {align})",
                    offset=start + 8,
                )
        elif align == 0 or byte_rate == 0:
            raise AudioFormatError(
                "wav-bad-fmt", f"{where}: block align {align}, byte rate {byte_rate}", offset=start + 8
            )
        self._fmt = (tag, channels, rate, byte_rate, align, bits)
        self._codec = codec

    def _on_data_header(self, size: int, start: int) -> None:
        if self._fmt is None:
            raise AudioFormatError("wav-missing-fmt", f"data chunk at byte {start} before any fmt chunk", offset=start)
        if self._data_start is not None:
            raise AudioFormatError("wav-bad-chunk", f"second data chunk at byte {start}", offset=start)
        body = start + 8
        self._data_start = body
        open_ended = size == 0xFFFFFFFF or (size == 0 and self._riff_end is None)
        if open_ended:
            if not self.allow_unfinalized:
                raise AudioFormatError(
                    "wav-header-unfinalized",
                    f"data chunk at byte {start} has placeholder size 0x{size:08X} (RIFF size "
                    f"{'placeholder' if self._riff_end is None else self._riff_end - 8}): the WAV header was never "
                    "finalised (written live by a recorder that stopped or is still writing)",
                    offset=start + 4,
                )
            self._data_size = None
        else:
            if self._riff_end is not None and body + size > self._riff_end:
                raise AudioFormatError(
                    "wav-data-length-mismatch",
                    f"data chunk at byte {start} declares {size} bytes, running past the end of the RIFF chunk "
                    f"(byte {self._riff_end}) by {body + size - self._riff_end} bytes",
                    offset=start + 4,
                )
            self._data_size = size
        self._chunk = (b"data", start, size)
        tag, channels, rate, byte_rate, align, bits = self._fmt
        head = HeadInfo(
            container="wav",
            codec=self._codec,
            sample_rate=rate,
            channels=channels,
            bits_per_sample=bits if self._codec and self._codec.startswith("pcm") else None,
            header_offset=body,
            header_duration=None if self._data_size is None else self._duration(self._data_size),
        )
        self._set_head(head)
        self._state = _DATA
        self._pass_over(UNBOUNDED if self._data_size is None else size)

    @property
    def riff_end(self) -> int | None:
        """Total bytes the RIFF header declares (RIFF size + 8), ``None`` for a placeholder."""
        return self._riff_end

    def _duration(self, data_bytes: int) -> float:
        assert self._fmt is not None
        tag, channels, rate, byte_rate, align, bits = self._fmt
        if self._codec and not self._codec.startswith("pcm") and self._fact_samples:
            return self._fact_samples / rate
        return data_bytes / byte_rate

    # -- end of stream ----------------------------------------------------------
    def finish(self, total: int) -> dict:
        """End-of-stream checks; ``total`` is the byte count fed. Returns the
        fields of :class:`~voxpipe.audioformat.model.AudioInfo` it knows."""
        partial, skip = self.in_progress
        state = self._state
        if state == _PAD and skip == 1 and not partial:
            pass  # the final pad byte is missing: harmless
        elif state == _DATA and self._data_size is None:
            pass  # open-ended data runs to the end
        elif partial or skip:
            if state == _DATA:
                assert self._data_start is not None and self._data_size is not None
                got = total - self._data_start
                raise AudioFormatError(
                    "truncated",
                    f"stream ended at byte {total}, {self._data_size - got} bytes short of the data chunk's "
                    f"declared {self._data_size} bytes (data starts at byte {self._data_start})",
                    offset=total,
                )
            raise AudioFormatError(
                "truncated", f"stream ended at byte {total} inside {_STATE_NAMES[state]}", offset=total
            )
        if self._riff_end is not None and total < self._riff_end:
            raise AudioFormatError(
                "truncated",
                f"stream ended at byte {total}, but the RIFF header declares {self._riff_end} bytes",
                offset=total,
            )
        if self._data_start is None:
            raise AudioFormatError("wav-no-data-chunk", f"no data chunk in {total} bytes of RIFF/WAVE", offset=total)
        assert self._fmt is not None and self.head is not None
        tag, channels, rate, byte_rate, align, bits = self._fmt
        data_bytes = self._data_size if self._data_size is not None else total - self._data_start
        if data_bytes % align:
            raise AudioFormatError(
                "wav-partial-block",
                f"data chunk holds {data_bytes} bytes, not a whole number of {align}-byte blocks "
                f"({data_bytes % align} bytes over)",
                offset=self._data_start + data_bytes - data_bytes % align,
            )
        if (
            self._fact_samples is not None
            and self._data_size is not None
            and self._codec in ("pcm_mulaw", "pcm_alaw", *_PCM_CODECS.values(), *_FLOAT_CODECS.values())
            and self._fact_samples != data_bytes // align
        ):
            raise AudioFormatError(
                "wav-fact-mismatch",
                f"fact chunk declares {self._fact_samples} samples per channel, the data chunk holds "
                f"{data_bytes // align}",
                offset=None,
            )
        return dict(
            container="wav",
            codec=self._codec,
            sample_rate=rate,
            channels=channels,
            bits_per_sample=self.head.bits_per_sample,
            duration=self._duration(data_bytes),
        )
