"""Streaming check of MP4/M4A (ISO base media file format) recordings.

Sources: ISO/IEC 14496-12 (ISO BMFF: box header with 32-bit size, 64-bit ``largesize``
when the size is 1, "to the end of the file" when it is 0; ``ftyp``; ``moov``/``trak``/
``mdia``/``minf``/``stbl`` containers; ``mdhd`` timescale and duration in versions 0 and 1;
``hdlr`` handler type ``soun``; ``stsd`` AudioSampleEntry; ``stsz`` sample sizes; ``mdat``),
ISO/IEC 14496-14 (MP4 file format; ``esds`` ES_Descriptor / DecoderConfigDescriptor
objectTypeIndication), Apple's QuickTime File Format (sound sample description
versions 1 and 2, ``ulaw``/``alaw`` sample entries).

What is checked, in bounded memory (``mdat`` payloads and sample tables are passed over,
never buffered): every box header is valid and every box fits inside its parent; the
file starts with a well-formed ``ftyp``; exactly one ``moov`` holds at least one
``trak`` whose ``hdlr`` is ``soun`` with a sane ``mdhd`` (timescale > 0) and an audio
sample entry (channels, rate); at least one ``mdat`` exists and its payload is at least
the bytes the audio track's ``stsz`` declares; the stream ends exactly at the end of
the last box (not inside one). Either box order works: ``moov`` before ``mdat`` (fast
start) or after it (written while the call went on); an ``mdat`` before ``moov`` does not
count against the head budget. Reported: the audio track's codec (``aac``, ``mp3``,
``alac``, ``opus``, ``flac``, ``pcm_mulaw``, ``pcm_alaw``, ``amr_nb``, ``amr_wb``...), sample
rate and channels from its sample entry, and its duration ``mdhd.duration / timescale``.
Not checked: the media samples themselves, chunk offsets (``stco``), edit lists, other
tracks. Fragmented MP4 (``moof``/``mvex``) is refused as unsupported.
"""

from __future__ import annotations

import struct

from ._stream import UNBOUNDED, StructReader, hexbytes
from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["Mp4Parser", "MP4_CODECS", "MAX_LEAF_BYTES"]

#: Container boxes descended into.
CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"})
#: Largest ``ftyp``/``mvhd``/``tkhd``/``mdhd``/``hdlr``/``stsd`` read whole (bytes).
MAX_LEAF_BYTES = 16 * 1024
#: Leaf boxes read (their payload is parsed).
LEAVES = frozenset({b"ftyp", b"mdhd", b"hdlr", b"stsd"})
#: Sample sizes read per block from ``stsz`` (4 bytes each).
STSZ_BLOCK_ENTRIES = 4096
#: Boxes of fragmented MP4, refused.
FRAGMENTED = frozenset({b"moof", b"mvex", b"mfra"})

#: Sample-entry format → codec name.
MP4_CODECS = {
    b"mp4a": "aac", b"alac": "alac", b"Opus": "opus", b"fLaC": "flac", b"ulaw": "pcm_mulaw",
    b"alaw": "pcm_alaw", b"samr": "amr_nb", b"sawb": "amr_wb", b".mp3": "mp3", b"ac-3": "ac3",
    b"ec-3": "eac3", b"sowt": "pcm_s16le", b"twos": "pcm_s16be", b"lpcm": "pcm", b"raw ": "pcm_u8",
}
#: objectTypeIndication (ISO/IEC 14496-1 table 5) values that are MPEG audio Layer III, not AAC.
_OTI_MP3 = frozenset({0x69, 0x6B})

# States.
_HEADER, _LARGESIZE, _LEAF, _STSZ_HEAD, _STSZ_ENTRIES = range(5)


class _Box:
    __slots__ = ("type", "start", "end")

    def __init__(self, type_: bytes, start: int, end: int | None):
        self.type, self.start, self.end = type_, start, end

    @property
    def name(self) -> str:
        return self.type.decode("latin-1")


class _Track:
    __slots__ = ("handler", "timescale", "duration", "codec", "sample_rate", "channels", "sample_bytes")

    def __init__(self) -> None:
        self.handler: bytes | None = None
        self.timescale = 0
        self.duration: int | None = None
        self.codec: str | None = None
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.sample_bytes: int | None = None


class Mp4Parser(StructReader):
    """Sans-IO box walker for MP4/M4A audio recordings.

    ``feed`` bytes; ``head`` is set when the ``moov`` box has been read (its audio track
    known); ``finish(total)`` at end of stream.

    Raises (from ``feed``/``finish``): :class:`AudioFormatError` with reasons
    ``mp4-bad-box``, ``mp4-bad-ftyp``, ``mp4-bad-track``, ``mp4-no-audio-track``,
    ``mp4-mdat-size-mismatch``, ``mp4-unsupported``, ``truncated`` (cut inside a box, or
    at a box boundary before the ``moov``, the ``mdat`` or all the samples arrived).
    """

    container = "mp4"

    def __init__(self) -> None:
        super().__init__()
        self._state = _HEADER
        self._want(8)
        self._stack: list[_Box] = []  # open container boxes
        self._box: _Box | None = None  # the box whose header or payload is being read
        self._top_boxes = 0
        self._moov_seen = False
        self._mdat_payload = 0
        self._mdat_open_from: int | None = None  # payload start of an mdat running to the end
        self._first_mdat_payload: int | None = None
        self._track: _Track | None = None
        self._audio: _Track | None = None
        self._stsz_left = 0
        self._stsz_sum = 0
        self._last_top: bytes | None = None
        self._mdat_before_moov = False

    # -- box headers -----------------------------------------------------------------
    def _parent_end(self) -> int | None:
        return self._stack[-1].end if self._stack else None

    def _on_block(self, block: memoryview, start: int) -> None:
        state = self._state
        if state == _HEADER:
            size, type_ = struct.unpack(">I4s", block)
            if size == 1:
                self._box = _Box(type_, start, None)
                self._state = _LARGESIZE
                self._want(8)
                return
            self._open(type_, start, size, 8)
        elif state == _LARGESIZE:
            assert self._box is not None
            (size,) = struct.unpack(">Q", block)
            self._open(self._box.type, self._box.start, size, 16)
        elif state == _LEAF:
            self._on_leaf(block, start)
            self._next()
        elif state == _STSZ_HEAD:
            self._on_stsz_head(block, start)
        elif state == _STSZ_ENTRIES:
            n = len(block) // 4
            self._stsz_sum += sum(struct.unpack(f">{n}I", block))
            self._stsz_left -= n
            self._stsz_more()
        else:  # pragma: no cover
            raise AssertionError(state)

    def _open(self, type_: bytes, start: int, size: int, header: int) -> None:
        name = type_.decode("latin-1")
        if not all(32 <= c < 127 for c in type_):
            raise AudioFormatError("mp4-bad-box", f"box at byte {start} has a type that is not text "
                                   f"({hexbytes(type_, 4)}): not an MP4 box boundary", offset=start)
        parent_end = self._parent_end()
        if size == 0:  # to the end of the file (only the last top-level box may do this)
            if self._stack or type_ not in (b"mdat", b"free", b"skip"):
                raise AudioFormatError("mp4-bad-box", f"box '{name}' at byte {start} has size 0 (to the end of "
                                       "the file), allowed only for a last top-level mdat", offset=start)
            end = None
        else:
            if size < header:
                raise AudioFormatError("mp4-bad-box", f"box '{name}' at byte {start} declares {size} bytes, less "
                                       f"than its {header}-byte header", offset=start)
            end = start + size
            if parent_end is not None and end > parent_end:
                parent = self._stack[-1]
                raise AudioFormatError("mp4-bad-box", f"box '{name}' at byte {start} ({size} bytes) overflows its "
                                       f"parent '{parent.name}' ending at byte {parent_end}", offset=start)
        box = _Box(type_, start, end)
        self._box = box
        payload = None if end is None else end - start - header
        if not self._stack:
            self._top_boxes += 1
            self._last_top = type_
            if self._top_boxes == 1 and type_ != b"ftyp":
                raise AudioFormatError("mp4-bad-ftyp", f"the first box is '{name}', not 'ftyp'", offset=start)
        if type_ in FRAGMENTED:
            raise AudioFormatError("mp4-unsupported", f"box '{name}' at byte {start}: fragmented MP4 is not "
                                   "supported", offset=start)
        if type_ == b"moov":
            if self._stack:
                raise AudioFormatError("mp4-bad-box", f"'moov' at byte {start} is not a top-level box", offset=start)
            if self._moov_seen:
                raise AudioFormatError("mp4-bad-box", f"a second 'moov' box at byte {start}", offset=start)
        if type_ == b"trak":
            self._track = _Track()
        if type_ in CONTAINERS:
            if type_ in (b"trak", b"mdia", b"minf", b"stbl") and (not self._stack or self._stack[-1].type not in
                                                                    _PARENTS[type_]):
                where = self._stack[-1].name if self._stack else "the top level"
                raise AudioFormatError("mp4-bad-box", f"'{name}' at byte {start} inside {where}", offset=start)
            if payload == 0:
                self._stack.append(box)
                self._next()
                return
            self._stack.append(box)
            self._state = _HEADER
            self._want(8)
            return
        if type_ == b"mdat":
            if self._stack:
                raise AudioFormatError("mp4-bad-box", f"'mdat' at byte {start} is not a top-level box", offset=start)
            payload_start = start + header
            if self._first_mdat_payload is None:
                self._first_mdat_payload = payload_start
            self._mdat_before_moov = self._mdat_before_moov or not self._moov_seen
            if self.head is None:
                # media before the moov (a recording written as the call went on): it does not
                # count against the budget for finding the head
                self.head_base += (payload if payload is not None else 0) + header
            if payload is None:
                self._mdat_open_from = payload_start
                self._pass_over(UNBOUNDED)
                return
            self._mdat_payload += payload
            self._skip_payload(payload)
            return
        if type_ == b"stsz" and self._track is not None and payload is not None:
            if payload < 12:
                raise AudioFormatError("mp4-bad-track", f"'stsz' at byte {start} is {payload} bytes, less than 12",
                                       offset=start)
            self._state = _STSZ_HEAD
            self._stsz_payload = payload
            self._want(12)
            return
        if type_ in LEAVES and payload is not None and 0 < payload <= MAX_LEAF_BYTES:
            self._state = _LEAF
            self._want(payload)
            return
        if type_ == b"ftyp":
            raise AudioFormatError("mp4-bad-ftyp", f"'ftyp' at byte {start} is {size} bytes", offset=start)
        if type_ in LEAVES and type_ != b"ftyp":
            raise AudioFormatError("mp4-bad-track", f"'{name}' at byte {start} is {size} bytes (at most "
                                   f"{MAX_LEAF_BYTES} are read)", offset=start)
        if payload is None:
            self._pass_over(UNBOUNDED)
            return
        self._skip_payload(payload)

    def _skip_payload(self, n: int) -> None:
        self._state = _HEADER
        if n == 0:
            self._next()
        else:
            self._pass_over(n)

    def _skip_done(self) -> None:
        self._next()

    def _next(self) -> None:
        """A box ended at ``self.offset``: close the containers ending here, then read the next header."""
        while self._stack and self._stack[-1].end == self.offset:
            self._close(self._stack.pop())
        self._state = _HEADER
        self._want(8)

    def _close(self, box: _Box) -> None:
        if box.type == b"trak":
            track, self._track = self._track, None
            if track is not None and track.handler == b"soun" and self._audio is None:
                if not track.timescale:
                    raise AudioFormatError("mp4-bad-track", f"audio 'trak' at byte {box.start} has no 'mdhd' "
                                           "with a timescale", offset=box.start)
                if track.codec is None:
                    raise AudioFormatError("mp4-bad-track", f"audio 'trak' at byte {box.start} has no audio sample "
                                           "entry ('stsd')", offset=box.start)
                self._audio = track
        elif box.type == b"moov":
            self._moov_seen = True
            audio = self._audio
            if audio is None:
                raise AudioFormatError("mp4-no-audio-track", f"'moov' at byte {box.start} has no audio track "
                                       "(no 'trak' with handler 'soun')", offset=box.start)
            self._set_head(HeadInfo(container="mp4", codec=audio.codec, sample_rate=audio.sample_rate,
                                    channels=audio.channels, header_offset=self._first_mdat_payload,
                                    header_duration=self._duration(audio)))

    @staticmethod
    def _duration(track: _Track) -> float | None:
        return track.duration / track.timescale if track.duration is not None and track.timescale else None

    # -- leaves ----------------------------------------------------------------------
    def _on_leaf(self, b: memoryview, start: int) -> None:
        box = self._box
        assert box is not None
        t = box.type
        if t == b"ftyp":
            if len(b) < 8 or len(b) % 4:
                raise AudioFormatError("mp4-bad-ftyp", f"'ftyp' payload is {len(b)} bytes: not a major brand, "
                                       "minor version and whole compatible brands", offset=box.start)
            return
        track = self._track
        if track is None:
            return  # an mdhd/hdlr/stsd outside a trak (e.g. a meta handler): not the audio track's
        if t == b"hdlr":
            if len(b) < 12:
                raise AudioFormatError("mp4-bad-track", f"'hdlr' at byte {box.start} is too short", offset=box.start)
            if self._stack and self._stack[-1].type == b"mdia":
                track.handler = bytes(b[8:12])
        elif t == b"mdhd":
            version = b[0]
            if version == 1 and len(b) >= 32:
                timescale, duration = struct.unpack_from(">IQ", b, 20)
            elif version == 0 and len(b) >= 20:
                timescale, duration = struct.unpack_from(">II", b, 12)
                duration = None if duration == 0xFFFFFFFF else duration
            else:
                raise AudioFormatError("mp4-bad-track", f"'mdhd' at byte {box.start}: version {version} with "
                                       f"{len(b)} bytes", offset=box.start)
            if timescale == 0:
                raise AudioFormatError("mp4-bad-track", f"'mdhd' at byte {box.start} has timescale 0",
                                       offset=box.start)
            track.timescale, track.duration = timescale, duration
        elif t == b"stsd":
            self._on_stsd(b, box.start, track)

    def _on_stsd(self, b: memoryview, start: int, track: _Track) -> None:
        if track.handler not in (None, b"soun"):
            return
        if len(b) < 8:
            raise AudioFormatError("mp4-bad-track", f"'stsd' at byte {start} is too short", offset=start)
        (count,) = struct.unpack_from(">I", b, 4)
        if count < 1 or len(b) < 16:
            raise AudioFormatError("mp4-bad-track", f"'stsd' at byte {start} holds no sample entry", offset=start)
        size, fmt = struct.unpack_from(">I4s", b, 8)
        if size < 36 or 8 + size > len(b):
            raise AudioFormatError("mp4-bad-track", f"sample entry '{fmt.decode('latin-1')}' at byte {start + 16} "
                                   f"declares {size} bytes, not an audio sample entry within its 'stsd'",
                                   offset=start + 16)
        entry = b[8:8 + size]
        version, = struct.unpack_from(">H", entry, 16)
        channels, _bits = struct.unpack_from(">HH", entry, 24)
        rate = struct.unpack_from(">I", entry, 32)[0] >> 16
        children = 36
        if version == 2 and len(entry) >= 72:  # QuickTime sound description v2: 64-bit float rate
            rate = int(round(struct.unpack_from(">d", entry, 40)[0]))
            channels = struct.unpack_from(">I", entry, 48)[0]
            children = 72
        elif version == 1:
            children = 52
        codec = MP4_CODECS.get(bytes(fmt))
        if codec is None:
            codec = bytes(fmt).decode("latin-1").strip().lower() or None
        if fmt == b"mp4a":
            oti = _object_type(bytes(entry[children:]))
            if oti in _OTI_MP3:
                codec = "mp3"
        if not channels or not 0 < rate <= 768_000:
            raise AudioFormatError("mp4-bad-track", f"audio sample entry '{fmt.decode('latin-1')}' at byte "
                                   f"{start + 16}: {channels} channels at {rate} Hz", offset=start + 16)
        track.codec, track.sample_rate, track.channels = codec, rate, channels

    # -- stsz ------------------------------------------------------------------------
    def _on_stsz_head(self, b: memoryview, start: int) -> None:
        _flags, sample_size, count = struct.unpack(">III", b)
        box = self._box
        assert box is not None and self._track is not None
        if sample_size:
            self._track.sample_bytes = sample_size * count
            self._skip_payload(self._stsz_payload - 12)
            return
        if self._stsz_payload != 12 + 4 * count:
            raise AudioFormatError("mp4-bad-track", f"'stsz' at byte {box.start} lists {count} sample sizes in "
                                   f"{self._stsz_payload - 12} bytes", offset=box.start)
        self._stsz_left, self._stsz_sum = count, 0
        self._stsz_more()

    def _stsz_more(self) -> None:
        if self._stsz_left:
            self._state = _STSZ_ENTRIES
            self._want(4 * min(self._stsz_left, STSZ_BLOCK_ENTRIES))
            return
        assert self._track is not None
        self._track.sample_bytes = self._stsz_sum
        self._next()

    # -- end -------------------------------------------------------------------------
    def finish(self, total: int) -> dict:
        """End-of-stream checks; returns the AudioInfo fields it knows."""
        partial, skip = self.in_progress
        open_mdat = skip == UNBOUNDED and self._mdat_open_from is not None
        if partial and self._state == _HEADER:
            raise AudioFormatError("truncated", f"stream ended at byte {total} inside a box header starting at byte "
                                   f"{total - partial}", offset=total)
        if partial or (skip and not open_mdat) or (self._state != _HEADER and not open_mdat):
            where = self._box.name if self._box is not None else "a box header"
            raise AudioFormatError("truncated", f"stream ended at byte {total} inside box '{where}'"
                                   + (f" starting at byte {self._box.start}" if self._box is not None else ""),
                                   offset=total)
        if self._stack:
            box = self._stack[-1]
            raise AudioFormatError("truncated", f"stream ended at byte {total} inside box '{box.name}' starting at "
                                   f"byte {box.start}", offset=total)
        if open_mdat:
            assert self._mdat_open_from is not None
            self._mdat_payload += total - self._mdat_open_from
        # A cut at a box boundary leaves whole boxes: what is missing tells it was cut. (Media
        # before the index is whole when the index follows it: too few bytes there are corrupt.)
        if not self._moov_seen:
            hint = " (media without its index: cut, or never finalised)" if self._first_mdat_payload else ""
            raise AudioFormatError("truncated", f"stream ended at byte {total} without a 'moov' box{hint}",
                                   offset=total)
        if self._first_mdat_payload is None:
            raise AudioFormatError("truncated", f"stream ended at byte {total} without an 'mdat' box (no media)",
                                   offset=total)
        audio = self._audio
        assert audio is not None
        if audio.sample_bytes is not None and audio.sample_bytes > self._mdat_payload:
            detail = (f"the audio track's samples are {audio.sample_bytes} bytes ('stsz'), the 'mdat' boxes hold "
                      f"{self._mdat_payload}")
            if self._last_top == b"mdat" and not self._mdat_before_moov:
                raise AudioFormatError("truncated", f"stream ended at byte {total}: {detail}", offset=total)
            raise AudioFormatError("mp4-mdat-size-mismatch", detail, offset=total)
        duration = self._duration(audio)
        return dict(container="mp4", codec=audio.codec, sample_rate=audio.sample_rate, channels=audio.channels,
                    duration=duration if duration is not None else 0.0)


_PARENTS = {b"trak": (b"moov",), b"mdia": (b"trak",), b"minf": (b"mdia",), b"stbl": (b"minf",)}


def _object_type(children: bytes) -> int | None:
    """objectTypeIndication of the ``esds`` box among a sample entry's children, if found."""
    i = children.find(b"esds")
    if i < 4:
        return None
    data = children[i + 8:]  # after type and version/flags
    pos = 0
    for tag in (0x03, 0x04):
        if pos >= len(data) or data[pos] != tag:
            return None
        pos += 1
        for _ in range(4):  # expandable size (ISO/IEC 14496-1 §8.3.3)
            if pos >= len(data):
                return None
            more = data[pos] & 0x80
            pos += 1
            if not more:
                break
        if tag == 0x03:
            if pos + 3 > len(data):
                return None
            flags = data[pos + 2]
            pos += 3
            if flags & 0x80:
                pos += 2
            if flags & 0x40:
                pos += 1 + (data[pos] if pos < len(data) else 0)
            if flags & 0x20:
                pos += 2
    return data[pos] if pos < len(data) else None
