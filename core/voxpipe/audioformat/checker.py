"""The streaming audio-format checker (sans-IO): identify, check, and judge a
recording from its bytes as they arrive.

Requirement: the verification issue's audio-format verifier: identify container
and codec from the bytes (not the file name), check the declared format, the
duration against metadata, and size; inspect the head as soon as it arrives so
a wrong or corrupt recording aborts the download early, and the whole at the
end (truncation, sync lost mid-file); never crash on bad input and never hold
the whole recording in memory.
"""

from __future__ import annotations

import os

from ._stream import MAX_CARRY_BYTES
from .detect import DETECT_BYTES, detect_container
from .errors import AudioFormatError
from .formats import DeclaredFormat, parse_declared_format
from .matroska import MatroskaParser
from .model import AudioInfo, HeadInfo
from .mp3 import Mp3Parser
from .mp4 import Mp4Parser
from .ogg import OggParser
from .wav import WavParser

__all__ = [
    "AudioFormatChecker",
    "inspect_bytes",
    "inspect_file",
    "MAX_HEAD_BYTES",
    "DEFAULT_DURATION_TOLERANCE_S",
    "DEFAULT_DURATION_TOLERANCE_FRACTION",
    "FILE_READ_CHUNK_BYTES",
]

#: How far into the recording (bytes, not counting an MP3's ID3v2 tag) the head
#: must be identified: WAV up to the data chunk, MP3 three chained frames, Ogg
#: the first page, Matroska the first Cluster, MP4 the end of ``moov`` (not
#: counting an ``mdat`` before it). Beyond this the recording is
#: rejected rather than downloaded further on trust.
MAX_HEAD_BYTES = 1024 * 1024
#: Duration tolerance: |derived − expected| may be up to the larger of this many
#: seconds (platform metadata often gives whole seconds, truncated or rounded;
#: MP3 adds encoder delay and padding) ...
DEFAULT_DURATION_TOLERANCE_S = 1.0
#: ... and this fraction of the expected duration.
DEFAULT_DURATION_TOLERANCE_FRACTION = 0.02
#: Read size for :func:`inspect_file`.
FILE_READ_CHUNK_BYTES = 1024 * 1024

_Parser = WavParser | Mp3Parser | OggParser | MatroskaParser | Mp4Parser

# Checker states (transition table below).
_DETECTING, _PARSING, _FINISHED, _FAILED = "detecting", "parsing", "finished", "failed"
_TRANSITIONS = {
    (_DETECTING, "container"): _PARSING,
    (_DETECTING, "error"): _FAILED,
    (_DETECTING, "finish"): _FINISHED,
    (_PARSING, "error"): _FAILED,
    (_PARSING, "finish"): _FINISHED,
}


class AudioFormatChecker:
    """Incremental, bounded-memory check of one recording.

    Usage (sans-IO: the caller does the I/O)::

        checker = AudioFormatChecker(declared_format="wav_ulaw", expected_duration=10.5,
                                     expected_size=84520, recording_id="100001")
        for chunk in chunks:            # any sizes, 1 byte to many MiB
            head = checker.feed(chunk)  # HeadInfo exactly once, when the head is known
        info = checker.finish()         # AudioInfo, or raises

    Args:
        declared_format: the format the platform says the recording is (CXone
            ``format``, Genesys ``formatId``, or a ``Content-Type``); see
            :data:`~voxpipe.audioformat.formats.DECLARED_FORMATS`. ``None``: any
            supported format.
        expected_duration: seconds, from metadata; checked at the head when the
            header declares a duration (WAV, Matroska Duration, MP3 Xing), and
            against the duration derived from the bytes at ``finish``.
        duration_tolerance: seconds; the allowed difference is
            ``max(duration_tolerance, duration_tolerance_fraction × expected)``.
        duration_tolerance_fraction: see above.
        expected_size: bytes, from metadata (or Content-Length). More bytes than
            this raise at once; fewer raise at ``finish``; a WAV header declaring
            another total raises at the head.
        recording_id: named in error messages.
        allow_unfinalized_wav: accept a WAV whose RIFF/data sizes are placeholders
            (written live); otherwise ``wav-header-unfinalized``.

    Every check failure raises :class:`AudioFormatError` (reason codes: see the
    container modules and ``empty``, ``unknown-container``,
    ``unsupported-container``, ``unknown-declared-format``, ``format-mismatch``,
    ``head-not-found``, ``size-mismatch``, ``duration-mismatch``); once raised,
    every later ``feed``/``finish`` raises the same error. Calling ``feed`` after
    ``finish`` returned is a programming error (``RuntimeError``).

    Memory: at most :data:`~voxpipe.audioformat.detect.DETECT_BYTES` +
    :data:`~voxpipe.audioformat._stream.MAX_CARRY_BYTES` bytes are held between
    calls, whatever the recording's size.
    """

    def __init__(
        self,
        *,
        declared_format: str | None = None,
        expected_duration: float | None = None,
        duration_tolerance: float = DEFAULT_DURATION_TOLERANCE_S,
        duration_tolerance_fraction: float = DEFAULT_DURATION_TOLERANCE_FRACTION,
        expected_size: int | None = None,
        recording_id: str | None = None,
        allow_unfinalized_wav: bool = False,
    ) -> None:
        if duration_tolerance < 0 or duration_tolerance_fraction < 0:
            raise ValueError("duration tolerances must be >= 0")
        if expected_size is not None and expected_size < 0:
            raise ValueError("expected_size must be >= 0")
        self.recording_id = recording_id
        self.expected_duration = expected_duration
        self.duration_tolerance = duration_tolerance
        self.duration_tolerance_fraction = duration_tolerance_fraction
        self.expected_size = expected_size
        self.allow_unfinalized_wav = allow_unfinalized_wav
        self.bytes_seen = 0
        self.head: HeadInfo | None = None
        self.info: AudioInfo | None = None
        self._state = _DETECTING
        self._error: AudioFormatError | None = None
        self._detect_buf = bytearray()
        self._parser: _Parser | None = None
        self._parsed = 0  # bytes handed to the parser
        self._new_head: HeadInfo | None = None
        self._declared: DeclaredFormat | None = None
        try:
            self._declared = parse_declared_format(declared_format)
        except AudioFormatError as e:
            self._fail(e)

    # -- state --------------------------------------------------------------------
    def _to(self, event: str) -> None:
        self._state = _TRANSITIONS[(self._state, event)]

    def _fail(self, e: AudioFormatError) -> AudioFormatError:
        if e.recording_id is None and self.recording_id is not None:
            e = e.with_recording_id(self.recording_id)
        self._error = e
        self._state = _FAILED
        return e

    @property
    def state(self) -> str:
        """``"detecting"``, ``"parsing"``, ``"finished"`` or ``"failed"``."""
        return self._state

    @property
    def carry_size(self) -> int:
        """Bytes held between ``feed`` calls (bounded; see the class docstring)."""
        return len(self._detect_buf) + (self._parser.carry_size if self._parser else 0)

    # -- input --------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> HeadInfo | None:
        """Check the next bytes of the recording.

        Returns the :class:`HeadInfo` once, from the call in which the head
        became known; ``None`` otherwise.

        Raises:
            AudioFormatError: as soon as the bytes so far are wrong.
        """
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        if self._state == _FINISHED:
            raise RuntimeError("AudioFormatChecker.feed() after finish()")
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if not len(mv):
            return None
        try:
            return self._feed(mv)
        except AudioFormatError as e:
            raise self._fail(e) from None

    def _feed(self, mv: memoryview) -> HeadInfo | None:
        # Everything is checked in stream order, so the verdict (reason and
        # offset) does not depend on how the bytes were chunked.
        self._new_head = None
        if self.expected_size is not None and self.bytes_seen + len(mv) > self.expected_size:
            self._consume(mv[: max(self.expected_size - self.bytes_seen, 0)])
            raise AudioFormatError(
                "size-mismatch",
                f"received more than the {self.expected_size} bytes the metadata declares "
                f"(byte {self.expected_size} arrived)",
                offset=self.expected_size,
            )
        self._consume(mv)
        return self._new_head

    def _consume(self, mv: memoryview) -> None:
        if not len(mv):
            return
        if self._parser is None:
            take = min(DETECT_BYTES - len(self._detect_buf), len(mv))
            self._detect_buf += mv[:take]
            self.bytes_seen += take
            container = detect_container(bytes(self._detect_buf))
            if container is None:
                return
            self._start_parser(container)
            head_bytes = memoryview(bytes(self._detect_buf))
            self._detect_buf.clear()
            self._feed_parser(head_bytes)
            mv = mv[take:]
        self.bytes_seen += len(mv)
        self._feed_parser(mv)

    def _feed_parser(self, mv: memoryview) -> None:
        """Feed the parser, in slices while the head is unknown so the head
        budget is enforced at the same byte whatever the chunking."""
        parser = self._parser
        assert parser is not None
        pos, end = 0, len(mv)
        while pos < end:
            if self.head is None:
                budget = parser.head_base + MAX_HEAD_BYTES + 1 - self._parsed
                n = min(end - pos, max(budget, 1))
            else:
                n = end - pos
            parser.feed(mv[pos : pos + n])
            pos += n
            self._parsed += n
            if self.head is None and self._parsed > parser.head_base + MAX_HEAD_BYTES:
                raise self._head_not_found()
        assert parser.carry_size <= MAX_CARRY_BYTES

    def _head_not_found(self) -> AudioFormatError:
        parser = self._parser
        assert parser is not None
        limit = parser.head_base + MAX_HEAD_BYTES
        return AudioFormatError(
            "head-not-found",
            f"no complete {parser.container.upper()} head within {MAX_HEAD_BYTES} bytes (by byte {limit})",
            offset=limit,
        )

    def _start_parser(self, container: str) -> None:
        declared = self._declared
        family = "webm" if container == "matroska" else container
        if declared is not None and not declared.allows_container(container):
            raise AudioFormatError(
                "format-mismatch",
                f"declared format {declared.name!r} but the bytes are {family.upper()} "
                "(identified from the first bytes)",
                offset=0,
            )
        parser: _Parser
        if container == "wav":
            parser = WavParser(allow_unfinalized=self.allow_unfinalized_wav)
        elif container == "mp3":
            parser = Mp3Parser(starts_with_id3=bytes(self._detect_buf[:3]) == b"ID3")
        elif container == "ogg":
            parser = OggParser()
        elif container == "mp4":
            parser = Mp4Parser()
        else:
            parser = MatroskaParser()
        parser.head_callback = self._on_head
        self._parser = parser
        self._to("container")

    def _on_head(self, head: HeadInfo) -> None:
        """Called by the parser the moment the head is identified."""
        parser = self._parser
        assert parser is not None and parser.head_found_at is not None
        if parser.head_found_at - parser.head_base > MAX_HEAD_BYTES:
            raise self._head_not_found()
        self._check_head(head)
        self.head = head
        self._new_head = head

    def _check_head(self, head: HeadInfo) -> None:
        declared = self._declared
        if declared is not None and not declared.allows_codec(head.codec):
            raise AudioFormatError(
                "format-mismatch",
                f"declared format {declared.name!r} but the {head.container.upper()} carries "
                f"{head.codec or 'an unidentified codec'}",
                offset=head.header_offset,
            )
        if head.container == "wav" and self.expected_size is not None and isinstance(self._parser, WavParser):
            riff_end = self._parser.riff_end
            # expected - 1: a writer that left the final pad byte out of the RIFF size.
            if riff_end is not None and riff_end not in (self.expected_size, self.expected_size - 1):
                raise AudioFormatError(
                    "size-mismatch",
                    f"the RIFF header declares {riff_end} bytes, the metadata {self.expected_size}",
                    offset=4,
                )
        if head.header_duration is not None:
            self._check_duration(head.header_duration, "the header declares", head.header_offset)

    def _check_duration(self, duration: float, source: str, offset: int | None) -> None:
        expected = self.expected_duration
        if expected is None:
            return
        allowed = max(self.duration_tolerance, self.duration_tolerance_fraction * expected)
        if abs(duration - expected) > allowed:
            raise AudioFormatError(
                "duration-mismatch",
                f"{source} {duration:.3f} s of audio, the metadata {expected:.3f} s "
                f"(difference {abs(duration - expected):.3f} s, allowed {allowed:.3f} s)",
                offset=offset,
            )

    # -- end of stream --------------------------------------------------------------
    def finish(self) -> AudioInfo:
        """End-of-stream checks: size, truncation, structure, duration.

        Returns:
            the :class:`AudioInfo` (again on repeated calls).

        Raises:
            AudioFormatError: ``empty``, ``size-mismatch``, ``truncated``,
                ``duration-mismatch`` or a container-specific reason.
        """
        if self._state == _FAILED:
            assert self._error is not None
            raise self._error
        if self._state == _FINISHED:
            assert self.info is not None
            return self.info
        try:
            info = self._finish()
        except AudioFormatError as e:
            raise self._fail(e) from None
        self.info = info
        self._to("finish")
        return info

    def _finish(self) -> AudioInfo:
        total = self.bytes_seen
        if total == 0:
            raise AudioFormatError("empty", "recording is empty (0 bytes)", offset=0)
        if self.expected_size is not None and total != self.expected_size:
            raise AudioFormatError(
                "size-mismatch",
                f"received {total} bytes, the metadata declares {self.expected_size}",
                offset=total,
            )
        if self._parser is None:
            detect_container(bytes(self._detect_buf), at_eof=True)  # raises
            raise AssertionError("detector returned at EOF")  # pragma: no cover
        fields = self._parser.finish(total)  # may identify the head (calls _on_head)
        assert self.head is not None
        info = AudioInfo(size=total, **fields)
        self._check_duration(info.duration, "the bytes hold", None)
        return info


def inspect_bytes(data: bytes | bytearray | memoryview, **kwargs) -> AudioInfo:
    """Check a whole recording held in memory; keyword arguments as for
    :class:`AudioFormatChecker`. Raises :class:`AudioFormatError`."""
    checker = AudioFormatChecker(**kwargs)
    checker.feed(data)
    return checker.finish()


def inspect_file(path: str | os.PathLike[str], **kwargs) -> AudioInfo:
    """Check a recording file, read in :data:`FILE_READ_CHUNK_BYTES` pieces;
    keyword arguments as for :class:`AudioFormatChecker` (``expected_size``
    defaults to nothing; pass the metadata's). Raises
    :class:`AudioFormatError`, or ``OSError`` if the file cannot be read."""
    checker = AudioFormatChecker(**kwargs)
    with open(path, "rb") as f:
        while chunk := f.read(FILE_READ_CHUNK_BYTES):
            checker.feed(chunk)
    return checker.finish()
