"""Identifying the container from a recording's first bytes (magic numbers).

Sources: RIFF/WAVE (Microsoft "Multimedia Programming Interface and Data
Specifications 1.0", 1991), ID3v2 (id3.org ID3v2.3/2.4 structure), MPEG audio
frame header (ISO/IEC 11172-3, 13818-3), Ogg page capture pattern (RFC 3533),
EBML header (RFC 8794), ISO BMFF ``ftyp`` box (ISO/IEC 14496-12). File names and declared formats are not consulted.
"""

from __future__ import annotations

from ._stream import hexbytes
from .errors import AudioFormatError
from .mp3 import parse_frame_header

__all__ = ["DETECT_BYTES", "detect_container"]

#: Bytes needed to tell every supported container apart ("RIFF" size "WAVE").
DETECT_BYTES = 12

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"

# Recognised but not supported: (prefix, offset, what it is).
_UNSUPPORTED = (
    (b"fLaC", 0, "FLAC"),
    (b"RIFX", 0, "big-endian RIFF (RIFX)"),
    (b"RF64", 0, "RF64/BW64 (64-bit WAV)"),
    (b"FORM", 0, "IFF/AIFF"),
    (b"#!AMR", 0, "AMR"),
    (b".snd", 0, "Sun/NeXT AU"),
    (b"MThd", 0, "MIDI"),
)


def _prefix_of(data: bytes, sig: bytes, at: int = 0) -> bool:
    """True when ``data`` is consistent with ``sig`` at offset ``at`` so far."""
    seg = data[at : at + len(sig)]
    return sig[: len(seg)] == seg


def detect_container(head: bytes, *, at_eof: bool = False) -> str | None:
    """The container ``head`` (the first bytes of a recording) starts.

    Returns ``"wav"``, ``"mp3"``, ``"ogg"``, ``"mp4"`` or ``"matroska"`` (WebM is decided
    later from the DocType), or ``None`` when more bytes are needed (never once
    ``len(head) >= DETECT_BYTES``).

    Raises:
        AudioFormatError: ``empty`` (no bytes at EOF), ``truncated`` (EOF while
            the bytes still match the start of a known container),
            ``unsupported-container`` (a known non-supported format: FLAC,
            RF64, …), ``unknown-container`` (anything else; the message shows
            the first bytes, and says when they look like a text/JSON/HTML error
            body rather than audio).
    """
    n = len(head)
    if n == 0:
        if at_eof:
            raise AudioFormatError("empty", "recording is empty (0 bytes)", offset=0)
        return None
    candidates = []
    # WAV: "RIFF" <size> "WAVE".
    if _prefix_of(head, b"RIFF"):
        if n >= 12:
            if head[8:12] == b"WAVE":
                return "wav"
            raise AudioFormatError(
                "unsupported-container",
                f"RIFF file of form type {bytes(head[8:12])!r}, not WAVE (bytes 8-11)",
                offset=8,
            )
        candidates.append("RIFF/WAVE")
    if _prefix_of(head, b"OggS"):
        if n >= 4:
            return "ogg"
        candidates.append("Ogg")
    if _prefix_of(head, _EBML_MAGIC):
        if n >= 4:
            return "matroska"
        candidates.append("EBML (WebM/Matroska)")
    # ISO BMFF (MP4/M4A): a first box whose type is "ftyp" (ISO/IEC 14496-12 §4.3), whose
    # 32-bit size is small (under 4 KiB: its first bytes are 0x00 0x00 0x0?).
    if n >= 4 and _prefix_of(head, b"ftyp", 4):
        if n >= 8:
            return "mp4"
        candidates.append("MP4/M4A (ftyp box)")
    elif n < 4 and head[0] == 0 and (n < 2 or head[1] == 0) and (n < 3 or head[2] < 0x10):
        candidates.append("MP4/M4A (an ftyp box's size)")
    if _prefix_of(head, b"ID3"):
        if n >= 3:
            return "mp3"
        candidates.append("ID3 (MP3)")
    if head[0] == 0xFF and (n < 2 or head[1] & 0xE0 == 0xE0):
        if n >= 4:
            if parse_frame_header(head[:4]) is not None:
                return "mp3"
            if head[1] & 0xF6 == 0xF0:
                raise AudioFormatError(
                    "unsupported-container", "AAC in ADTS framing (MPEG sync with layer 0)", offset=0
                )
        else:
            candidates.append("an MPEG audio frame header")
    for sig, at, what in _UNSUPPORTED:
        if n >= at + len(sig) and head[at : at + len(sig)] == sig:
            raise AudioFormatError(
                "unsupported-container", f"the bytes are {what}, not a supported recording container", offset=at
            )
        if at < n < at + len(sig) and _prefix_of(head, sig, at):
            candidates.append(what)
    if not at_eof and n < DETECT_BYTES:
        # Even when nothing can match any more, wait for DETECT_BYTES so the
        # error shows the same bytes however the stream was chunked.
        return None
    if candidates:
        raise AudioFormatError(
            "truncated",
            f"stream ended after {n} bytes ({hexbytes(head, 12)}), inside the signature of {candidates[0]}",
            offset=n,
        )
    raise AudioFormatError("unknown-container", _describe_unknown(head), offset=0)


def _describe_unknown(head: bytes) -> str:
    text = bytes(head).lstrip(b" \t\r\n\xef\xbb\xbf")
    if text[:1] in (b"{", b"["):
        kind = " (looks like a JSON body, e.g. a service error, not audio)"
    elif text[:1] == b"<":
        kind = " (looks like an HTML/XML body, e.g. an error page, not audio)"
    else:
        kind = ""
    return f"no known audio container starts with {hexbytes(head, 12)}{kind}"


#: Content-Type (media type, lower case) → file extension, for :func:`guess_extension`.
CONTENT_TYPE_EXTENSIONS = {
    "audio/wav": "wav", "audio/wave": "wav", "audio/x-wav": "wav", "audio/vnd.wave": "wav",
    "audio/mpeg": "mp3", "audio/mp3": "mp3",
    "audio/ogg": "ogg", "audio/opus": "opus", "audio/webm": "webm", "audio/x-matroska": "mka",
    "audio/mp4": "m4a", "audio/x-m4a": "m4a", "audio/m4a": "m4a", "video/mp4": "mp4",
    "audio/flac": "flac", "audio/x-flac": "flac",
}


def guess_extension(head: bytes = b"", *, content_type: str | None = None) -> str | None:
    """The file extension of a recording from its first bytes, else its ``Content-Type``.

    For media served without a file name or format (CXone Media Playback URLs). The bytes
    win when they are recognised: ``wav`` (RIFF/WAVE), ``mp3`` (ID3 or an MPEG audio frame
    header), ``opus``/``ogg`` (Ogg; ``opus`` when the first page is ``OpusHead``),
    ``webm`` (EBML), ``m4a`` (ISO BMFF ``ftyp``; ``mp4`` for a video brand), ``flac``.
    Returns ``None`` when neither tells (never guesses ``bin``: the caller decides).
    """
    h = bytes(head[:64])
    if h[:4] == b"RIFF" and h[8:12] == b"WAVE":
        return "wav"
    if h[:4] == b"OggS":
        return "opus" if b"OpusHead" in h else "ogg"
    if h[:4] == _EBML_MAGIC:
        return "webm"
    if h[4:8] == b"ftyp":
        brand = h[8:12]
        return "mp4" if brand in (b"avc1", b"mp41") and b"M4A " not in h[8:32] else "m4a"
    if h[:4] == b"fLaC":
        return "flac"
    if h[:3] == b"ID3" or (len(h) >= 4 and h[0] == 0xFF and parse_frame_header(h[:4]) is not None):
        return "mp3"
    if content_type:
        return CONTENT_TYPE_EXTENSIONS.get(content_type.split(";")[0].strip().lower())
    return None
