"""The one error type the audio-format checker raises for bad input."""

from __future__ import annotations

__all__ = ["AudioFormatError", "REASONS"]

#: Every reason code the checker raises, with what it means. Stable: metrics,
#: alerts and retry policy key on these.
REASONS: dict[str, str] = {
    # any container
    "empty": "the recording has no bytes",
    "truncated": "the stream ends inside a structure, or before what its headers declare",
    "unknown-container": "the first bytes are no known audio container (the message says if they look like JSON/HTML)",
    "unsupported-container": "a recognised format the checker does not accept (FLAC, RF64, AAC ADTS, ...)",
    "unknown-declared-format": "the declared format name is not one the checker knows",
    "format-mismatch": "the bytes are another container or codec than the declared format",
    "head-not-found": "the container head is not complete within MAX_HEAD_BYTES",
    "size-mismatch": "byte count (or the WAV header's total) differs from the metadata size",
    "duration-mismatch": "duration from the bytes or header differs from the metadata beyond the tolerance",
    # WAV
    "wav-bad-chunk": "a RIFF chunk header is invalid or overflows the RIFF",
    "wav-bad-fmt": "the fmt chunk is malformed or inconsistent (channels, rate, block align, byte rate, bits)",
    "wav-unsupported-codec": "a WAV format tag / SubFormat the checker does not know",
    "wav-missing-fmt": "the data chunk comes before any fmt chunk",
    "wav-no-data-chunk": "the RIFF ends without a data chunk",
    "wav-header-unfinalized": "RIFF/data sizes are placeholders (0 or 0xFFFFFFFF): written live, never finalised",
    "wav-data-length-mismatch": "the data chunk's size disagrees with the bytes (past the RIFF, or audio after it)",
    "wav-riff-size-mismatch": "bytes after the end the RIFF size declares",
    "wav-fact-mismatch": "the fact chunk's sample count disagrees with the data size",
    "wav-partial-block": "the data is not a whole number of sample frames (block align)",
    # MP3
    "mp3-bad-id3": "the ID3v2 tag header is invalid",
    "mp3-bad-frame-header": "no valid MPEG audio frame header where the first frame should start",
    "mp3-free-format": "free-format MPEG audio (bitrate index 0) is not supported",
    "mp3-sync-lost": "a frame boundary holds no frame header consistent with the stream",
    "mp3-data-after-tag": "data after a trailing ID3v1/APEv2 tag",
    "mp3-no-frames": "no MPEG audio frame at all (e.g. only an ID3 tag)",
    # Ogg
    "ogg-sync-lost": "no 'OggS' capture pattern where the next page should start",
    "ogg-bad-page": "an Ogg page header is invalid (version, flags, BOS/continuation)",
    "ogg-crc-mismatch": "an Ogg page's CRC-32 does not match its bytes",
    "ogg-page-sequence-gap": "page sequence numbers are not contiguous (pages lost or reordered)",
    "ogg-unsupported-multiplex": "pages of another logical stream (multiplexed/chained Ogg)",
    "ogg-unknown-codec": "the first packet is neither OpusHead nor a Vorbis identification header",
    "ogg-bad-codec-header": "the OpusHead / Vorbis identification header has invalid values",
    "ogg-granule-backwards": "a granule position goes backwards",
    "ogg-data-after-eos": "data after the end-of-stream page",
    # WebM / Matroska
    "mp4-bad-box": "an ISO BMFF box header is invalid, misplaced or overflows its parent",
    "mp4-bad-ftyp": "the file does not start with a well-formed 'ftyp' box",
    "mp4-bad-track": "the audio track's mdhd/hdlr/stsd/stsz is malformed (timescale 0, no sample entry...)",
    "mp4-no-audio-track": "'moov' has no track with handler 'soun'",
    "mp4-mdat-size-mismatch": "the 'mdat' boxes hold fewer bytes than the audio track's samples ('stsz')",
    "mp4-unsupported": "fragmented MP4 (moof/mvex) is not supported",
    "webm-bad-element": "an EBML element is invalid, misplaced or overflows its parent",
    "webm-bad-doctype": "the EBML DocType is neither webm nor matroska",
    "webm-trailing-data": "elements after the end of the Segment",
    "webm-unsupported": "a second EBML stream (chained) is not supported",
}


class AudioFormatError(Exception):
    """A recording's bytes are not what they should be.

    Attributes:
        reason: short stable machine code, e.g. ``"mp3-sync-lost"``,
            ``"wav-data-length-mismatch"``, ``"format-mismatch"``, ``"truncated"``,
            ``"empty"``, ``"unknown-container"``, ``"duration-mismatch"``,
            ``"size-mismatch"``. Codes are part of the API: metrics and alerts key
            on them; the human text may change.
        detail: human description of what was wrong, naming found and expected
            values.
        offset: byte offset in the recording where the problem was found
            (0-based, counted from the first byte fed), or ``None`` when the
            problem is not tied to one place (e.g. a duration disagreement).
        recording_id: the recording this is about, when the caller knows it; it
            is only used to make the message self-contained.

    ``str(error)`` reads like
    ``"recording 100003: mp3 frame sync lost at byte 48213: expected 0xFFE sync, found 0x3A1F [mp3-sync-lost]"``.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        offset: int | None = None,
        recording_id: str | None = None,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.offset = offset
        self.recording_id = recording_id
        super().__init__(reason, detail, offset)

    def __reduce__(self):
        # Exception pickles its args positionally; offset/recording_id are
        # keyword-only, so rebuild explicitly (errors cross process and thread
        # boundaries in the engine).
        return (_rebuild, (self.reason, self.detail, self.offset, self.recording_id))

    def with_recording_id(self, recording_id: str | None) -> AudioFormatError:
        """The same error, naming ``recording_id`` in its message."""
        return AudioFormatError(self.reason, self.detail, offset=self.offset, recording_id=recording_id)

    @property
    def message(self) -> str:
        prefix = f"recording {self.recording_id}: " if self.recording_id is not None else ""
        return f"{prefix}{self.detail} [{self.reason}]"

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"AudioFormatError(reason={self.reason!r}, offset={self.offset!r}, "
            f"recording_id={self.recording_id!r}, detail={self.detail!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AudioFormatError):
            return NotImplemented
        return (self.reason, self.detail, self.offset, self.recording_id) == (
            other.reason,
            other.detail,
            other.offset,
            other.recording_id,
        )

    __hash__ = Exception.__hash__


def _rebuild(reason: str, detail: str, offset: int | None, recording_id: str | None) -> AudioFormatError:
    return AudioFormatError(reason, detail, offset=offset, recording_id=recording_id)
