"""Test-side builders for the audio-format tests: the example recordings, and
independent writers (RIFF, Ogg pages with a table-driven CRC, EBML, MPEG frame
headers) used to make valid and corrupt variants. Written from the specs, not
from the checker's code, so the tests are a second implementation."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "recordings"


@dataclass(frozen=True)
class Example:
    id: str
    path: Path
    declared: str  # a declared format the platform would send
    container: str
    codec: str
    sample_rate: int
    channels: int
    bits_per_sample: int | None

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


EXAMPLE_LIST = [
    Example("100001", EXAMPLES / "100001.wav", "wav_ulaw", "wav", "pcm_mulaw", 8000, 1, 8),
    Example("100002", EXAMPLES / "100002.wav", "wav", "wav", "pcm_s16le", 8000, 1, 16),
    Example("100003", EXAMPLES / "100003.mp3", "mp3", "mp3", "mp3", 8000, 1, None),
    Example("100004", EXAMPLES / "100004.opus", "ogg_opus", "ogg", "opus", 48000, 1, None),
    Example("100005", EXAMPLES / "100005.wav", "wav_alaw", "wav", "pcm_alaw", 8000, 1, 8),
    Example("100006", EXAMPLES / "100006.ogg", "ogg_vorbis", "ogg", "vorbis", 8000, 1, None),
    Example("100007", EXAMPLES.parent / "media" / "100007.m4a", "m4a", "mp4", "aac", 8000, 1, None),
]
EXAMPLES_BY_ID = {e.id: e for e in EXAMPLE_LIST}


# -- RIFF/WAVE -----------------------------------------------------------------
def wav_header(
    *,
    data_size: int,
    tag: int = 1,
    channels: int = 1,
    rate: int = 8000,
    bits: int = 16,
    riff_size: int | None = None,
    extra_chunks: bytes = b"",
) -> bytes:
    """A canonical 44-byte (plus ``extra_chunks`` before data) WAV header."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", data_size)
    if riff_size is None:
        riff_size = len(body) + data_size + (data_size & 1)
    return b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + body


def riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(id, header offset, size) of each top-level chunk of a WAV."""
    out, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        out.append((cid, pos, size))
        pos += 8 + size + (size & 1)
    return out


# -- Ogg -------------------------------------------------------------------------
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_TABLE = _crc_table()


def reference_ogg_crc(data: bytes) -> int:
    """RFC 3533 CRC, bytewise from the table (slow; the reference)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[((crc >> 24) & 0xFF) ^ b]
    return crc


@dataclass
class OggPage:
    flags: int
    granule: int
    serial: int
    seq: int
    lacing: bytes
    body: bytes
    offset: int = 0

    def encode(self) -> bytes:
        hdr = b"OggS" + struct.pack("<BBqIIIB", 0, self.flags, self.granule, self.serial, self.seq, 0, len(self.lacing))
        raw = hdr + self.lacing + self.body
        crc = reference_ogg_crc(raw)
        return raw[:22] + struct.pack("<I", crc) + raw[26:]


def ogg_pages(data: bytes) -> list[OggPage]:
    """Split an Ogg file into pages (no CRC check: the test side's own reader)."""
    pages, pos = [], 0
    while pos < len(data):
        assert data[pos : pos + 4] == b"OggS", pos
        _v, flags, granule, serial, seq, _crc, n = struct.unpack_from("<BBqIIIB", data, pos + 4)
        lacing = data[pos + 27 : pos + 27 + n]
        blen = sum(lacing)
        body = data[pos + 27 + n : pos + 27 + n + blen]
        pages.append(OggPage(flags, granule, serial, seq, lacing, body, pos))
        pos += 27 + n + blen
    return pages


def ogg_packets(data: bytes) -> list[bytes]:
    """All packets of a single-stream Ogg file, in order."""
    packets, cur = [], b""
    for page in ogg_pages(data):
        pos = 0
        for v in page.lacing:
            cur += page.body[pos : pos + v]
            pos += v
            if v < 255:
                packets.append(cur)
                cur = b""
    return packets


# -- EBML / WebM -------------------------------------------------------------------
def ebml_size(n: int | None, width: int | None = None) -> bytes:
    if n is None:
        return b"\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size, 8 bytes
    for length in range(1, 9):
        if width is not None and length != width:
            continue
        if n < (1 << (7 * length)) - 1:
            return ((1 << (7 * length)) | n).to_bytes(length, "big")
    raise ValueError(n)


def el(eid: int, payload: bytes, *, unknown: bool = False) -> bytes:
    idb = eid.to_bytes((eid.bit_length() + 7) // 8, "big")
    return idb + ebml_size(None if unknown else len(payload)) + payload


def uint_el(eid: int, v: int) -> bytes:
    return el(eid, v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big"))


def float_el(eid: int, v: float) -> bytes:
    return el(eid, struct.pack(">d", v))


def webm_from_opus(
    opus: bytes,
    *,
    live: bool = False,
    doctype: str = "webm",
    with_duration: bool = True,
    frame_ms: int = 20,
    cluster_ms: int = 1000,
) -> tuple[bytes, float]:
    """A WebM with one Opus audio track carrying the packets of the Ogg Opus file
    ``opus`` (each ``frame_ms`` long). ``live``: unknown-size Segment and Clusters
    and no Duration, as a browser MediaRecorder writes. Returns (bytes, duration s)."""
    packets = ogg_packets(opus)
    head, audio = packets[0], packets[2:]
    duration_ms = len(audio) * frame_ms
    header = el(
        0x1A45DFA3,
        uint_el(0x4286, 1)
        + uint_el(0x42F7, 1)
        + el(0x4282, doctype.encode())
        + uint_el(0x4287, 4)
        + uint_el(0x4285, 2),
    )
    info_children = uint_el(0x2AD7B1, 1_000_000) + el(0x4D80, b"voxpipe-tests") + el(0x5741, b"voxpipe-tests")
    if with_duration and not live:
        info_children += float_el(0x4489, float(duration_ms))
    info = el(0x1549A966, info_children)
    track = el(
        0xAE,
        uint_el(0xD7, 1)
        + uint_el(0x73C5, 1)
        + uint_el(0x83, 2)
        + el(0x86, b"A_OPUS")
        + el(0x63A2, head)
        + el(0xE1, float_el(0xB5, 48000.0) + uint_el(0x9F, 1)),
    )
    tracks = el(0x1654AE6B, track)
    clusters = b""
    per_cluster = cluster_ms // frame_ms
    for c in range(0, len(audio), per_cluster):
        body = uint_el(0xE7, c * frame_ms)
        for i, pkt in enumerate(audio[c : c + per_cluster]):
            body += el(0xA3, b"\x81" + struct.pack(">h", i * frame_ms) + b"\x80" + pkt)
        clusters += el(0x1F43B675, body, unknown=live)
    segment = el(0x18538067, info + tracks + clusters, unknown=live)
    return header + segment, duration_ms / 1000


# -- MPEG audio ----------------------------------------------------------------------
def mpeg1_frame(*, bitrate_index: int = 9, padding: int = 0, mono: bool = True, payload_byte: int = 0) -> bytes:
    """An MPEG-1 Layer III frame at 44.1 kHz with a zero payload (valid header,
    silent-ish body: the checker does not decode)."""
    br = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[bitrate_index] * 1000
    length = 144 * br // 44100 + padding
    hdr = bytes([0xFF, 0xFB, (bitrate_index << 4) | (0 << 2) | (padding << 1), 0xC4 if mono else 0x44])
    return hdr + bytes([payload_byte]) * (length - 4)


def xing_frame(frames: int, *, mono: bool = True) -> bytes:
    """An MPEG-1 Layer III Info frame declaring ``frames`` audio frames."""
    f = bytearray(mpeg1_frame(bitrate_index=9, mono=mono))
    at = 4 + (17 if mono else 32)
    f[at : at + 12] = b"Info" + struct.pack(">II", 1, frames)
    return bytes(f)


def id3v2(size: int = 100) -> bytes:
    ss = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + ss + b"\x00" * size
