"""Streaming check of Ogg recordings (Opus or Vorbis).

Sources: RFC 3533 (Ogg page format, CRC-32 with polynomial 0x04C11DB7, direct
not reflected, initial value 0, no final XOR); RFC 7845 (Ogg Opus: OpusHead
identification header, pre-skip, 48 kHz granule positions); Vorbis I
specification §4.2.2 and §A (identification header, granule = PCM sample
position).

What is checked: every page's capture pattern, version, flags, CRC, that all
pages belong to one logical stream and carry contiguous sequence numbers, that
continuation flags match the previous page's last lacing value, that granule
positions never go backwards; the first page is a beginning-of-stream page
whose packet is an OpusHead or Vorbis identification header with sane values;
the last page has the end-of-stream flag (else the recording was cut at a page
boundary) and nothing follows it. Not checked: the comment/setup headers beyond
their framing, the codec packets themselves, multiplexed or chained streams
(rejected as unsupported).
"""

from __future__ import annotations

import struct
import zlib

from ._stream import StructReader, hexbytes
from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["OggParser", "ogg_crc32", "OGG_PAGE_HEADER_BYTES"]

OGG_PAGE_HEADER_BYTES = 27
OPUS_RATE = 48_000
_BIT_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reverse32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def _crc_update_reflected(reg: int, data: bytes | memoryview) -> int:
    """Advance the *bit-reversed* Ogg CRC register over ``data``.

    Ogg's CRC is the direct (MSB-first) CRC-32 with polynomial 0x04C11DB7, init 0,
    no final XOR. Feeding bit-reversed bytes through zlib's reflected CRC-32 (same
    polynomial, reflected) computes it in C; zlib's built-in init/final XOR of
    0xFFFFFFFF is undone by XORing the register on the way in and out.
    """
    return zlib.crc32(bytes(data).translate(_BIT_REVERSE), reg ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def ogg_crc32(data: bytes | memoryview) -> int:
    """Ogg page CRC-32 of ``data`` (RFC 3533 §6; the page's CRC field must be zeroed)."""
    return _reverse32(_crc_update_reflected(0, data))


# States.
_HDR, _SEGS, _BOS_BODY, _BODY, _AFTER_EOS = range(5)
_STATE_NAMES = {
    _HDR: "an Ogg page header",
    _SEGS: "an Ogg page segment table",
    _BOS_BODY: "the first Ogg page",
    _BODY: "an Ogg page",
    _AFTER_EOS: "the end",
}
_NO_GRANULE = -1


class OggParser(StructReader):
    """Sans-IO Ogg page walker for a single Opus or Vorbis logical stream.

    ``feed`` bytes; ``head`` is set once the first page (with the codec's
    identification header) has passed its CRC; ``finish(total)`` at end of stream.

    Raises (from ``feed``/``finish``): :class:`AudioFormatError` with reasons
    ``ogg-sync-lost``, ``ogg-bad-page``, ``ogg-crc-mismatch``,
    ``ogg-page-sequence-gap``, ``ogg-unsupported-multiplex``,
    ``ogg-unknown-codec``, ``ogg-bad-codec-header``, ``ogg-granule-backwards``,
    ``ogg-data-after-eos``, ``truncated`` (cut inside a page, or no end-of-stream
    page).
    """

    container = "ogg"

    def __init__(self) -> None:
        super().__init__()
        self._state = _HDR
        self._want(OGG_PAGE_HEADER_BYTES)
        self._page_start = 0
        self._page_hdr: tuple[int, int, int, int, int] | None = None  # flags, granule, serial, seq, crc
        self._crc = 0  # bit-reversed register
        self._serial: int | None = None
        self._seq: int | None = None
        self._open_packet = False  # previous page's last lacing value was 255
        self._last_open = False
        self._eos = False
        self._pages = 0
        self._granule = _NO_GRANULE
        self._codec: str | None = None
        self._rate = 0
        self._channels = 0
        self._preskip = 0
        self._input_rate: int | None = None

    def _on_block(self, block: memoryview, start: int) -> None:
        state = self._state
        if state == _HDR:
            self._on_page_header(block, start)
        elif state == _SEGS:
            self._crc = _crc_update_reflected(self._crc, block)
            lacing = bytes(block)
            body = sum(lacing)
            self._last_open = lacing[-1] == 255
            if self._pages == 0:
                if body == 0:
                    raise AudioFormatError(
                        "ogg-bad-page", f"first Ogg page at byte {self._page_start} carries no packet", offset=start
                    )
                first_packet = 0
                for v in lacing:
                    first_packet += v
                    if v < 255:
                        break
                self._first_packet_len = first_packet
                self._state = _BOS_BODY
                self._want(body)
            else:
                self._state = _BODY
                self._pass_over(body)
        elif state == _BOS_BODY:
            self._crc = _crc_update_reflected(self._crc, block)
            self._end_page()
            self._on_id_header(block[: self._first_packet_len])
        elif state == _AFTER_EOS:
            raise AudioFormatError(
                "ogg-data-after-eos",
                f"data at byte {start} after the end-of-stream page (found {hexbytes(block)}; "
                "chained Ogg streams are not supported)",
                offset=start,
            )
        else:  # pragma: no cover
            raise AssertionError(state)

    def _on_skipped(self, data: memoryview) -> None:
        self._crc = _crc_update_reflected(self._crc, data)

    def _skip_done(self) -> None:
        self._end_page()

    def _on_page_header(self, b: memoryview, start: int) -> None:
        if bytes(b[:4]) != b"OggS":
            raise AudioFormatError(
                "ogg-sync-lost",
                f"Ogg page capture pattern lost at byte {start}: expected 'OggS', found {hexbytes(b[:4])}",
                offset=start,
            )
        version, flags, granule, serial, seq, crc, nsegs = struct.unpack_from("<BBqIIIB", b, 4)
        if version != 0:
            raise AudioFormatError(
                "ogg-bad-page", f"Ogg page at byte {start} has stream structure version {version}", offset=start + 4
            )
        if flags & ~0x07:
            raise AudioFormatError(
                "ogg-bad-page", f"Ogg page at byte {start} has undefined header flags 0x{flags:02X}", offset=start + 5
            )
        self._page_start = start
        self._page_hdr = (flags, granule, serial, seq, crc)
        zeroed = bytes(b[:22]) + b"\0\0\0\0" + bytes(b[26:27])
        self._crc = _crc_update_reflected(0, zeroed)
        if nsegs == 0:
            self._last_open = False
            if self._pages == 0:
                raise AudioFormatError(
                    "ogg-bad-page", f"first Ogg page at byte {start} carries no packet", offset=start
                )
            self._state = _BODY
            self._pass_over(0)
        else:
            self._state = _SEGS
            self._want(nsegs)

    def _end_page(self) -> None:
        """Page fully read: check CRC and the page's place in the stream."""
        assert self._page_hdr is not None
        flags, granule, serial, seq, crc = self._page_hdr
        start = self._page_start
        computed = _reverse32(self._crc)
        if computed != crc:
            raise AudioFormatError(
                "ogg-crc-mismatch",
                f"Ogg page at byte {start} (sequence {seq}) has CRC 0x{crc:08X}, its bytes give 0x{computed:08X}",
                offset=start,
            )
        first = self._pages == 0
        bos, eos, continued = bool(flags & 2), bool(flags & 4), bool(flags & 1)
        if first:
            if not bos:
                raise AudioFormatError(
                    "ogg-bad-page", f"first Ogg page at byte {start} lacks the beginning-of-stream flag", offset=start
                )
            if continued:
                raise AudioFormatError(
                    "ogg-bad-page", f"first Ogg page at byte {start} claims to continue a packet", offset=start
                )
            self._serial = serial
        else:
            if serial != self._serial:
                raise AudioFormatError(
                    "ogg-unsupported-multiplex",
                    f"Ogg page at byte {start} belongs to stream serial 0x{serial:08X}, not 0x{self._serial:08X}: "
                    "multiplexed or chained Ogg streams are not supported",
                    offset=start,
                )
            if bos:
                raise AudioFormatError(
                    "ogg-bad-page", f"Ogg page at byte {start} repeats the beginning-of-stream flag", offset=start
                )
            assert self._seq is not None
            if seq != (self._seq + 1) & 0xFFFFFFFF:
                raise AudioFormatError(
                    "ogg-page-sequence-gap",
                    f"Ogg page at byte {start} has sequence number {seq}, expected {self._seq + 1} "
                    f"({'pages lost' if seq > self._seq else 'pages out of order'})",
                    offset=start,
                )
            if continued != self._open_packet:
                raise AudioFormatError(
                    "ogg-bad-page",
                    f"Ogg page at byte {start} {'continues' if continued else 'does not continue'} a packet, but the "
                    f"previous page {'left one open' if self._open_packet else 'ended its packets'}",
                    offset=start + 5,
                )
        if granule != _NO_GRANULE:
            if granule < self._granule or granule < 0:
                raise AudioFormatError(
                    "ogg-granule-backwards",
                    f"Ogg page at byte {start} has granule position {granule}, before the previous {self._granule}",
                    offset=start + 6,
                )
            self._granule = granule
        self._seq = seq
        self._open_packet = self._last_open
        self._pages += 1
        if eos:
            self._eos = True
            self._state = _AFTER_EOS
            self._want(1)
        else:
            self._state = _HDR
            self._want(OGG_PAGE_HEADER_BYTES)

    def _on_id_header(self, p: memoryview) -> None:
        start = self._page_start
        pkt = bytes(p)
        if pkt[:8] == b"OpusHead":
            if len(pkt) < 19:
                raise AudioFormatError(
                    "ogg-bad-codec-header", f"OpusHead at byte {start} is {len(pkt)} bytes", offset=start
                )
            version, channels, preskip, input_rate, _gain, family = struct.unpack_from("<BBHIhB", pkt, 8)
            if version >> 4 != 0 or channels == 0 or (family == 0 and channels > 2):
                raise AudioFormatError(
                    "ogg-bad-codec-header",
                    f"OpusHead at byte {start}: version {version}, {channels} channels, mapping family {family}",
                    offset=start,
                )
            self._codec, self._rate, self._channels = "opus", OPUS_RATE, channels
            self._preskip, self._input_rate = preskip, input_rate or None
        elif pkt[:7] == b"\x01vorbis":
            if len(pkt) < 30:
                raise AudioFormatError(
                    "ogg-bad-codec-header", f"Vorbis header at byte {start} is {len(pkt)} bytes", offset=start
                )
            version, channels, rate = struct.unpack_from("<IBI", pkt, 7)
            blocksizes, framing = pkt[28], pkt[29]
            b0, b1 = blocksizes & 15, blocksizes >> 4
            if version != 0 or channels == 0 or rate == 0 or not 6 <= b0 <= b1 <= 13 or not framing & 1:
                raise AudioFormatError(
                    "ogg-bad-codec-header",
                    f"Vorbis identification header at byte {start}: version {version}, {channels} channels, "
                    f"{rate} Hz, blocksizes 2^{b0}/2^{b1}, framing {framing}",
                    offset=start,
                )
            self._codec, self._rate, self._channels = "vorbis", rate, channels
        else:
            known = {b"Speex   ": "Speex", b"\x7fFLAC": "FLAC", b"fishead\x00": "Ogg Skeleton", b"\x80theora": "Theora"}
            what = next((name for magic, name in known.items() if pkt.startswith(magic)), None)
            raise AudioFormatError(
                "ogg-unknown-codec",
                f"first Ogg packet at byte {start} is "
                + (f"{what}, not Opus or Vorbis" if what else f"not an OpusHead or Vorbis header ({hexbytes(pkt)})"),
                offset=start,
            )
        head = HeadInfo(
            container="ogg",
            codec=self._codec,
            sample_rate=self._rate,
            channels=self._channels,
            header_offset=0,
            input_sample_rate=self._input_rate,
        )
        self._set_head(head)

    def finish(self, total: int) -> dict:
        """End-of-stream checks; returns the AudioInfo fields it knows."""
        partial, skip = self.in_progress
        if partial or skip:
            raise AudioFormatError(
                "truncated",
                f"stream ended at byte {total} inside {_STATE_NAMES[self._state]}"
                + (f" starting at byte {self._page_start}" if self._state != _HDR else ""),
                offset=total,
            )
        if self.head is None:
            raise AudioFormatError("truncated", f"stream ended at byte {total} before the first Ogg page", offset=total)
        if not self._eos:
            raise AudioFormatError(
                "truncated",
                f"stream ended at byte {total} after Ogg page {self._seq} without the end-of-stream flag",
                offset=total,
            )
        granule = max(self._granule, 0)
        if self._codec == "opus":
            duration = max(granule - self._preskip, 0) / OPUS_RATE
        else:
            duration = granule / self._rate
        return dict(
            container="ogg",
            codec=self._codec,
            sample_rate=self._rate,
            channels=self._channels,
            duration=duration,
            input_sample_rate=self._input_rate,
        )
