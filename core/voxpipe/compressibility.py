"""Whether deflate is worth spending on a recording: decided from its first bytes and declared format.

Already-compressed codecs (MP3, AAC in ADTS or MP4/M4A, Opus and Vorbis in Ogg, WebM/
Matroska, FLAC, AMR) shrink by 1-2 % under gzip for the full deflate CPU cost, so the
``gzip`` sink's ``compress: auto`` stores them in stored (uncompressed) deflate blocks;
PCM and G.711 μ-law/A-law WAV (WAVE format tags 1, 3, 6, 7, also inside
WAVE_FORMAT_EXTENSIBLE) compress to about 0.7-0.86 of their size and are deflated, as is
anything unrecognised (the safe default: deflate never loses bytes, only time).

The first bytes win over the declared format (a recording declared ``wav`` whose bytes
are MP3 is stored); the declared format decides only when the bytes are not recognised.
Magic numbers: RIFF/WAVE (Microsoft RIFF spec, 1991; format tags from mmreg.h), ID3v2,
MPEG audio/ADTS frame sync (ISO/IEC 11172-3, 13818-7), Ogg (RFC 3533), EBML (RFC 8794),
ISO BMFF ``ftyp`` (ISO/IEC 14496-12), FLAC (``fLaC``), AMR (RFC 4867 §5).

Pure functions, no I/O: tested synchronously (``tests/test_compress_auto.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: Bytes of a recording's start :func:`decide` looks at (RIFF header, ``fmt `` chunk and
#: the WAVE_FORMAT_EXTENSIBLE sub-format: 12 + 8 + 26 bytes).
SNIFF_BYTES = 46
#: WAVE format tags whose samples deflate well: PCM, IEEE float, G.711 A-law, G.711 μ-law.
COMPRESSIBLE_WAVE_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: Declared formats (``stream.metadata["format"]``, lowercase) of already-compressed codecs.
COMPRESSED_FORMATS = frozenset({"mp3", "mp2", "mpga", "opus", "ogg", "oga", "vorbis", "spx", "aac", "m4a", "mp4",
                                "webm", "weba", "mka", "mkv", "flac", "amr", "wma", "gsm"})

# (offset, magic, what): containers that only ever hold compressed audio.
_COMPRESSED_MAGIC = (
    (0, b"ID3", "mp3"),
    (0, b"OggS", "ogg (opus/vorbis)"),
    (0, b"\x1a\x45\xdf\xa3", "webm/matroska"),
    (4, b"ftyp", "mp4/m4a"),
    (0, b"fLaC", "flac"),
    (0, b"#!AMR", "amr"),
)


@dataclass(frozen=True)
class Decision:
    """Whether to deflate, and why (the manifest's ``compression_note``)."""

    deflate: bool
    note: str


def decide(head: bytes, declared_format: str | None) -> Decision:
    """Deflate or store a recording, from its first bytes (up to :data:`SNIFF_BYTES`) and declared format.

    :param head: the recording's first bytes (fewer than :data:`SNIFF_BYTES` is fine).
    :param declared_format: the source's ``format`` metadata (e.g. ``wav``, ``mp3``), or ``None``.
    :returns: a :class:`Decision`; never raises.
    """
    head = bytes(head[:SNIFF_BYTES])
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wave(head)
    for at, magic, what in _COMPRESSED_MAGIC:
        if head[at:at + len(magic)] == magic:
            return Decision(False, f"stored: {what} is already compressed (first bytes)")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return Decision(False, "stored: mpeg audio/adts frames are already compressed (first bytes)")
    fmt = (declared_format or "").strip().lower().lstrip(".")
    if fmt in COMPRESSED_FORMATS:
        return Decision(False, f"stored: declared format {fmt} is already compressed")
    if fmt:
        return Decision(True, f"deflated: declared format {fmt}")
    return Decision(True, "deflated: format not recognised")


def _wave(head: bytes) -> Decision:
    if head[12:16] != b"fmt " or len(head) < 22:
        return Decision(True, "deflated: wav (format chunk not at the start)")
    tag = struct.unpack_from("<H", head, 20)[0]
    if tag == WAVE_FORMAT_EXTENSIBLE and len(head) >= 46:
        tag = struct.unpack_from("<H", head, 44)[0]  # first two bytes of the sub-format GUID
    if tag in COMPRESSIBLE_WAVE_TAGS:
        return Decision(True, f"deflated: wav format tag {tag:#06x} (pcm/g.711)")
    return Decision(False, f"stored: wav format tag {tag:#06x} is a compressed codec")
