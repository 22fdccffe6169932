"""Streaming check of WebM/Matroska recordings (lenient).

Sources: RFC 8794 (EBML: variable-size integers, element IDs, unknown sizes);
RFC 9559 (Matroska: Segment, Info/TimestampScale/Duration, Tracks/TrackEntry/
CodecID/Audio, Cluster/Timestamp/SimpleBlock/BlockGroup, which elements may
have an unknown size); webmproject.org WebM container guidelines (DocType
"webm").

What is checked: the EBML header and its DocType ("webm" or "matroska");
every element header (valid ID and size encodings); every known-size element
fits inside its parent; only Segment and Cluster use the unknown size (as live
recorders such as browser MediaRecorder write them); the stream does not end
inside an element or before a known-size Segment/Cluster is complete; when
the Segment Info declares a Duration, the last audio block does not end more
than :data:`BLOCK_GAP_SLACK_S` before it (a recording cut at a cluster
boundary). Reported: DocType, the first audio track's CodecID, sampling
frequency and channels (if within the bounded head), and the duration (Info
Duration × TimestampScale, else the last audio block's timestamp, which
undercounts by one frame). Not checked: block payloads and lacing, Cues,
SeekHead targets, element CRC-32s, elements' values beyond those listed,
whether unknown elements are allowed where they appear.
"""

from __future__ import annotations

import struct

from ._stream import StructReader, hexbytes
from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["MatroskaParser", "MAX_EBML_LEAF_BYTES", "BLOCK_GAP_SLACK_S", "MATROSKA_CODECS"]

#: Largest element whose value is read (strings such as CodecID, numbers).
MAX_EBML_LEAF_BYTES = 1024
#: How far (s) the last audio block may start before the declared Duration
#: (the last block's own length, plus slack for writers' rounding).
BLOCK_GAP_SLACK_S = 1.0
_BLOCK_HEAD_BYTES = 11  # track number (≤ 8-byte vint) + int16 timestamp + flags

EBML, DOCTYPE = 0x1A45DFA3, 0x4282
SEGMENT, SEEKHEAD, INFO, TRACKS, CLUSTER = 0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1F43B675
CUES, CHAPTERS, TAGS, ATTACHMENTS = 0x1C53BB6B, 0x1043A770, 0x1254C367, 0x1941A469
TIMESTAMP_SCALE, DURATION = 0x2AD7B1, 0x4489
TRACK_ENTRY, TRACK_NUMBER, TRACK_TYPE, CODEC_ID, AUDIO = 0xAE, 0xD7, 0x83, 0x86, 0xE1
SAMPLING_FREQUENCY, CHANNELS, BIT_DEPTH = 0xB5, 0x9F, 0x6264
CLUSTER_TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK = 0xE7, 0xA3, 0xA0, 0xA1
VOID, CRC32 = 0xEC, 0xBF

_LEVEL1 = frozenset({SEEKHEAD, INFO, TRACKS, CLUSTER, CUES, CHAPTERS, TAGS, ATTACHMENTS})
_MASTERS = frozenset({EBML, SEGMENT, INFO, TRACKS, TRACK_ENTRY, AUDIO, CLUSTER, BLOCK_GROUP})
_UINTS = frozenset({TIMESTAMP_SCALE, TRACK_NUMBER, TRACK_TYPE, CHANNELS, BIT_DEPTH, CLUSTER_TIMESTAMP})
_FLOATS = frozenset({DURATION, SAMPLING_FREQUENCY})
_STRINGS = frozenset({DOCTYPE, CODEC_ID})
_UNKNOWN_SIZE_OK = frozenset({SEGMENT, CLUSTER})
_AUDIO_TRACK = 2

#: Matroska CodecID -> codec name (RFC 9559 codec registry, audio part).
MATROSKA_CODECS = {
    "A_OPUS": "opus",
    "A_VORBIS": "vorbis",
    "A_MPEG/L3": "mp3",
    "A_MPEG/L2": "mp2",
    "A_FLAC": "flac",
    "A_PCM/INT/LIT": "pcm",
    "A_PCM/FLOAT/IEEE": "pcm_float",
    "A_AAC": "aac",
    "A_AC3": "ac3",
}

# States.
_HDR, _HDR_MORE, _SIZE_REST, _LEAF, _BLOCK_HEAD, _SKIP = range(6)
_STATE_NAMES = {
    _HDR: "an element header",
    _HDR_MORE: "an element header",
    _SIZE_REST: "an element header",
    _LEAF: "an element",
    _BLOCK_HEAD: "a block",
    _SKIP: "an element",
}
_NAMES = {
    EBML: "EBML header",
    SEGMENT: "Segment",
    CLUSTER: "Cluster",
    INFO: "Info",
    TRACKS: "Tracks",
    TRACK_ENTRY: "TrackEntry",
    AUDIO: "Audio",
    BLOCK_GROUP: "BlockGroup",
    SIMPLE_BLOCK: "SimpleBlock",
    BLOCK: "Block",
    CUES: "Cues",
    SEEKHEAD: "SeekHead",
    TAGS: "Tags",
}


def _name(eid: int) -> str:
    return _NAMES.get(eid, f"element 0x{eid:X}")


class MatroskaParser(StructReader):
    """Sans-IO EBML element walker for WebM/Matroska audio.

    ``feed`` bytes; ``head`` is set when the first Cluster starts;
    ``finish(total)`` at end of stream.

    Raises (from ``feed``/``finish``): :class:`AudioFormatError` with reasons
    ``webm-bad-element`` (invalid ID/size, element overflowing its parent,
    unknown size where not allowed, unexpected top-level element),
    ``webm-bad-doctype``, ``webm-trailing-data``, ``webm-unsupported``
    (a second EBML stream), ``truncated``.
    """

    container = "webm"

    def __init__(self) -> None:
        super().__init__()
        self._state = _HDR
        self._want(2)
        self._hdr = b""
        self._hdr_start = 0
        self._stack: list[tuple[int, int | None, int]] = []  # (id, end or None, start)
        self._elem: tuple[int, int, int] | None = None  # id, size, start (leaf/block/skip in progress)
        self._doctype: str | None = None
        self._ebml_done = False
        self._segment_done = False
        self._scale = 1_000_000
        self._duration: float | None = None  # in TimestampScale units
        self._track: dict[int, object] = {}
        self._audio_track: dict[int, object] | None = None
        self._cluster_ts = 0
        self._last_block: int | None = None
        self._first_cluster: int | None = None

    # -- element headers ---------------------------------------------------------
    def _on_block(self, block: memoryview, start: int) -> None:
        state = self._state
        if state == _HDR:
            self._hdr_start = start
            self._hdr = bytes(block)
            self._parse_header()
        elif state in (_HDR_MORE, _SIZE_REST):
            self._hdr += bytes(block)
            self._parse_header()
        elif state == _LEAF:
            assert self._elem is not None
            eid, size, estart = self._elem
            self._on_leaf(eid, bytes(block), estart)
            self._element_done()
        elif state == _BLOCK_HEAD:
            assert self._elem is not None
            eid, size, estart = self._elem
            self._on_block_head(bytes(block), estart)
            rest = size - len(block)
            self._state = _SKIP
            self._pass_over(rest)
        else:  # pragma: no cover
            raise AssertionError(state)

    def _skip_done(self) -> None:
        self._element_done()

    def _parse_header(self) -> None:
        h = self._hdr
        start = self._hdr_start
        b0 = h[0]
        id_len = 8 - b0.bit_length() + 1 if b0 else 9
        if id_len > 4:
            raise AudioFormatError(
                "webm-bad-element", f"invalid EBML element ID {hexbytes(h)} at byte {start}", offset=start
            )
        if len(h) < id_len + 1:
            self._state = _HDR_MORE
            self._want(id_len + 1 - len(h))
            return
        s0 = h[id_len]
        size_len = 8 - s0.bit_length() + 1 if s0 else 9
        if size_len > 8:
            raise AudioFormatError(
                "webm-bad-element", f"invalid EBML size {hexbytes(h[id_len:])} at byte {start + id_len}", offset=start
            )
        if len(h) < id_len + size_len:
            self._state = _SIZE_REST
            self._want(id_len + size_len - len(h))
            return
        eid = int.from_bytes(h[:id_len], "big")
        marker = 1 << (7 * id_len)
        if eid & (marker - 1) in (0, marker - 1):
            raise AudioFormatError(
                "webm-bad-element", f"reserved EBML element ID 0x{eid:X} at byte {start}", offset=start
            )
        raw = int.from_bytes(h[id_len : id_len + size_len], "big")
        size_marker = 1 << (7 * size_len)
        value = raw & (size_marker - 1)
        size = None if value == size_marker - 1 else value
        self._on_element(eid, size, start, start + id_len + size_len)

    def _on_element(self, eid: int, size: int | None, start: int, body: int) -> None:
        # An unknown-size Cluster ends where a top-level sibling begins.
        while (
            self._stack
            and self._stack[-1][1] is None
            and self._stack[-1][0] == CLUSTER
            and (eid in _LEVEL1 or eid in (EBML, SEGMENT))
        ):
            self._close(self._stack.pop())
        parent = self._stack[-1] if self._stack else None
        if parent is None:
            self._check_top_level(eid, start)
        elif eid == EBML:
            raise AudioFormatError(
                "webm-unsupported",
                f"a second EBML header at byte {start}: chained streams are not supported",
                offset=start,
            )
        if size is None:
            if eid not in _UNKNOWN_SIZE_OK:
                raise AudioFormatError(
                    "webm-bad-element",
                    f"{_name(eid)} at byte {start} has unknown size (only Segment and Cluster may)",
                    offset=start,
                )
            end = None
        else:
            end = body + size
        if parent is not None and parent[1] is not None and (end is None or end > parent[1]):
            raise AudioFormatError(
                "webm-bad-element",
                f"{_name(eid)} at byte {start} ({'unknown' if size is None else size} bytes) runs past the end of its "
                f"parent {_name(parent[0])} at byte {parent[1]}",
                offset=start,
            )
        if eid in _MASTERS:
            self._open(eid, end, start)
            self._element_done()
            return
        assert size is not None
        self._elem = (eid, size, start)
        if eid in _UINTS or eid in _FLOATS or eid in _STRINGS:
            if size > MAX_EBML_LEAF_BYTES or (eid in _UINTS and size > 8) or (eid in _FLOATS and size not in (0, 4, 8)):
                raise AudioFormatError(
                    "webm-bad-element",
                    f"{_name(eid)} at byte {start} has an invalid size of {size} bytes",
                    offset=start,
                )
            if size == 0:
                self._on_leaf(eid, b"", start)
                self._element_done()
                return
            self._state = _LEAF
            self._want(size)
        elif eid in (SIMPLE_BLOCK, BLOCK):
            if size < 4:
                raise AudioFormatError(
                    "webm-bad-element", f"{_name(eid)} at byte {start} is only {size} bytes", offset=start
                )
            self._state = _BLOCK_HEAD
            self._want(min(size, _BLOCK_HEAD_BYTES))
        else:
            self._state = _SKIP
            self._pass_over(size)

    def _check_top_level(self, eid: int, start: int) -> None:
        if not self._ebml_done:
            if eid != EBML:
                raise AudioFormatError(
                    "webm-bad-element", f"{_name(eid)} at byte {start} where the EBML header should be", offset=start
                )
            return
        if eid == SEGMENT and not self._segment_done and not any(e[0] == SEGMENT for e in self._stack):
            return
        if eid == VOID:
            return
        if eid == EBML:
            raise AudioFormatError(
                "webm-unsupported",
                f"a second EBML header at byte {start}: chained streams are not supported",
                offset=start,
            )
        raise AudioFormatError(
            "webm-trailing-data" if self._segment_done else "webm-bad-element",
            f"{_name(eid)} at top level at byte {start}"
            + (" after the end of the Segment" if self._segment_done else " where the Segment should be"),
            offset=start,
        )

    # -- structure ----------------------------------------------------------------
    def _open(self, eid: int, end: int | None, start: int) -> None:
        self._stack.append((eid, end, start))
        if eid == TRACK_ENTRY:
            self._track = {}
        elif eid == CLUSTER:
            self._cluster_ts = 0
            if self._first_cluster is None:
                self._first_cluster = start
                self._set_head(self._make_head(start))

    def _close(self, entry: tuple[int, int | None, int]) -> None:
        eid = entry[0]
        if eid == EBML:
            self._ebml_done = True
            doctype = self._doctype or "matroska"  # RFC 8794: DocType default
            if doctype not in ("webm", "matroska"):
                raise AudioFormatError(
                    "webm-bad-doctype",
                    f"EBML DocType {doctype!r} at byte {entry[2]} is neither 'webm' nor 'matroska'",
                    offset=entry[2],
                )
            self._doctype = doctype
        elif eid == SEGMENT:
            self._segment_done = True
        elif eid == TRACK_ENTRY:
            if self._audio_track is None and self._track.get("type") == _AUDIO_TRACK:
                self._audio_track = self._track

    def _element_done(self) -> None:
        """An element (or a master's header) is consumed: close finished parents,
        then read the next element header."""
        while self._stack and self._stack[-1][1] is not None and self._stack[-1][1] <= self.offset:
            self._close(self._stack.pop())
        self._elem = None
        self._state = _HDR
        self._want(2)

    # -- values -------------------------------------------------------------------
    def _on_leaf(self, eid: int, value: bytes, start: int) -> None:
        if eid in _UINTS:
            n = int.from_bytes(value, "big")
            if eid == TIMESTAMP_SCALE:
                if n == 0:
                    raise AudioFormatError("webm-bad-element", f"TimestampScale 0 at byte {start}", offset=start)
                self._scale = n
            elif eid == CLUSTER_TIMESTAMP:
                self._cluster_ts = n
            elif eid == TRACK_NUMBER:
                self._track["number"] = n
            elif eid == TRACK_TYPE:
                self._track["type"] = n
            elif eid == CHANNELS:
                self._track["channels"] = n
            elif eid == BIT_DEPTH:
                self._track["bits"] = n
        elif eid in _FLOATS:
            f = 0.0 if not value else struct.unpack(">f" if len(value) == 4 else ">d", value)[0]
            if f != f or f < 0 or f == float("inf"):
                raise AudioFormatError("webm-bad-element", f"{_name(eid)} {f} at byte {start}", offset=start)
            if eid == DURATION:
                self._duration = f
            else:
                self._track["rate"] = f
        elif eid == DOCTYPE:
            self._doctype = value.rstrip(b"\0").decode("ascii", "replace")
        elif eid == CODEC_ID:
            self._track["codec_id"] = value.rstrip(b"\0").decode("ascii", "replace")

    def _on_block_head(self, b: bytes, start: int) -> None:
        n = 8 - b[0].bit_length() + 1 if b[0] else 9
        if n > 8 or len(b) < n + 3:
            raise AudioFormatError(
                "webm-bad-element", f"{_name(SIMPLE_BLOCK)} at byte {start} has a bad track number", offset=start
            )
        track = int.from_bytes(b[:n], "big") & ((1 << (7 * n)) - 1)
        rel = struct.unpack_from(">h", b, n)[0]
        audio = self._audio_track
        if audio is None or audio.get("number", 1) == track:
            ts = self._cluster_ts + rel
            if self._last_block is None or ts > self._last_block:
                self._last_block = ts

    # -- results ------------------------------------------------------------------
    def _fields(self) -> dict:
        t = self._audio_track or {}
        codec_id = t.get("codec_id")
        codec = MATROSKA_CODECS.get(codec_id, codec_id.lower() if isinstance(codec_id, str) else None)
        bits = t.get("bits")
        if codec == "pcm":
            codec = {8: "pcm_u8", 16: "pcm_s16le", 24: "pcm_s24le", 32: "pcm_s32le"}.get(bits, "pcm")
        elif codec == "pcm_float":
            codec = {32: "pcm_f32le", 64: "pcm_f64le"}.get(bits, "pcm_float")
        rate = t.get("rate", 8000.0 if t else None)  # RFC 9559: SamplingFrequency default 8000
        return dict(
            container="webm" if self._doctype == "webm" else "matroska",
            codec=codec,
            sample_rate=None if rate is None else int(round(rate)),
            channels=t.get("channels", 1) if t else None,
            bits_per_sample=bits if codec and codec.startswith("pcm") else None,
        )

    def _make_head(self, first_cluster: int | None) -> HeadInfo:
        return HeadInfo(
            **self._fields(),
            header_offset=first_cluster,
            header_duration=None if self._duration is None else self._duration * self._scale / 1e9,
        )

    def finish(self, total: int) -> dict:
        """End-of-stream checks; returns the AudioInfo fields it knows."""
        partial, skip = self.in_progress
        if partial or skip:
            where = f" starting at byte {self._elem[2]}" if self._elem else ""
            raise AudioFormatError(
                "truncated", f"stream ended at byte {total} inside {_STATE_NAMES[self._state]}{where}", offset=total
            )
        for eid, end, start in self._stack:
            if end is not None and end > total:
                raise AudioFormatError(
                    "truncated",
                    f"stream ended at byte {total}, inside the {_name(eid)} that starts at byte {start} and "
                    f"declares its end at byte {end}",
                    offset=total,
                )
        if not self._ebml_done or not (self._segment_done or any(e[0] == SEGMENT for e in self._stack)):
            raise AudioFormatError("truncated", f"stream ended at byte {total} before the Segment", offset=total)
        while self._stack:
            self._close(self._stack.pop())
        if self.head is None:
            self._set_head(self._make_head(None))
        scale_s = self._scale / 1e9
        last = None if self._last_block is None else self._last_block * scale_s
        if self._duration is not None:
            duration = self._duration * scale_s
            if last is not None and last < duration - BLOCK_GAP_SLACK_S:
                raise AudioFormatError(
                    "truncated",
                    f"the Segment declares {duration:.3f} s but the last audio block starts at {last:.3f} s "
                    f"(stream ended at byte {total})",
                    offset=total,
                )
        else:
            duration = last or 0.0
        return dict(**self._fields(), duration=duration)
