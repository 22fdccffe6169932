"""The ``audio-format`` verifier: the bytes are the audio the source says they are.

Wraps :class:`voxpipe.audioformat.AudioFormatChecker` (sans-IO, bounded memory): the
container and codec are identified from the bytes, never the file name -- RIFF/WAVE
(PCM, G.711 μ-law/A-law, ...: format tag, sample rate, channels, data length against
the header), MPEG audio (ID3v2 skipped, frame sync and consistent headers frame after
frame), Ogg (OpusHead / Vorbis identification header, page CRCs and sequence),
WebM/Matroska (EBML structure) and MP4/M4A (ISO BMFF boxes, the audio track, ``mdat``).

- **Early**: every chunk is fed as it arrives; the head (container, codec, declared
  duration and size) is judged within the first
  :data:`~voxpipe.audioformat.MAX_HEAD_BYTES`, and a wrong or corrupt recording raises
  :class:`~voxpipe.errors.VerificationError` at once, which aborts the download.
- **Whole**: at the end, truncation, sync lost mid-file, size against metadata and the
  duration derived from the bytes against the metadata duration (within
  ``max(duration_tolerance, duration_tolerance_fraction × duration)``).

Inputs from ``stream.metadata``: ``format`` (declared format; CXone ``format``,
Genesys ``formatId`` or a MIME type), ``duration`` (seconds), ``size`` (bytes); each
check can be switched off. Reason codes are the checker's
(:data:`voxpipe.audioformat.REASONS`), e.g. ``format-mismatch``, ``truncated``,
``mp3-sync-lost``, ``wav-data-length-mismatch``, ``duration-mismatch``.
"""

from __future__ import annotations

import math
from typing import Any

from voxpipe.audioformat import (DEFAULT_DURATION_TOLERANCE_FRACTION, DEFAULT_DURATION_TOLERANCE_S, AudioFormatChecker,
                                 AudioFormatError)
from voxpipe.components import Verifier, VerifierRun
from voxpipe.errors import VerificationError
from voxpipe.model import Chunk, Stream, Verdict
from voxpipe.settings import Settings, setting

TYPE = "audio-format"


class AudioFormatSettings(Settings):
    check_format: bool = setting(True, description="Fail when the bytes are another container or codec than the "
                                 "metadata field `format_field` declares.")
    format_field: str = setting("format", description="Metadata field with the declared format (e.g. `wav`, "
                                "`wav_ulaw`, `mp3`, `opus`, `webm`, `audio/mpeg`).")
    allowed_formats: list[str] = setting([], description="When not empty, the declared format must be one of these "
                                         "(names as in `format_field`), e.g. to refuse anything but G.711 WAV.",
                                         example=["wav_ulaw", "wav_alaw"])
    check_duration: bool = setting(True, description="Fail when the duration derived from the bytes differs from the "
                                   "metadata `duration` (seconds) beyond the tolerance.")
    duration_tolerance: float = setting(DEFAULT_DURATION_TOLERANCE_S, description="Seconds of duration difference "
                                        "always allowed.", ge=0)
    duration_tolerance_fraction: float = setting(DEFAULT_DURATION_TOLERANCE_FRACTION, description="Fraction of the "
                                                 "metadata duration allowed as difference, if larger.", ge=0, le=1)
    check_size: bool = setting(True, description="Fail when the byte count (or a WAV header's total) differs from the "
                               "metadata `size` (bytes); more bytes than declared fail at once.")
    allow_unfinalized_wav: bool = setting(False, description="Accept WAVs whose RIFF/data sizes are placeholders "
                                          "(written live, never finalised).")


class AudioFormatVerifier(Verifier):
    """Identify container and codec from the bytes; check format, sizes, duration and integrity, aborting early."""

    type = TYPE
    Settings = AudioFormatSettings

    def begin(self, stream: Stream) -> VerifierRun:
        return _Run(self.settings, stream)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _message(exc: AudioFormatError) -> str:
    """The checker's message, naming the byte offset when it has one and does not say it."""
    if exc.offset is not None and f"byte {exc.offset}" not in exc.detail:
        return f"{exc.message} (at byte {exc.offset})"
    return exc.message


class _Run(VerifierRun):
    """The checker is created at the first chunk: sources fill metadata before it."""

    def __init__(self, settings: AudioFormatSettings, stream: Stream):
        self.settings = settings
        self.stream = stream
        self.checker: AudioFormatChecker | None = None
        self.head: dict[str, Any] | None = None
        self.error: AudioFormatError | None = None

    def _make(self) -> AudioFormatChecker:
        s, meta = self.settings, self.stream.metadata
        declared = meta.get(s.format_field)
        declared = str(declared) if declared not in (None, "") else None
        if s.allowed_formats and (declared is None or declared.lower() not in {f.lower() for f in s.allowed_formats}):
            raise VerificationError(f"recording {self.stream.id}: declared format {declared!r} is not one of the "
                                    f"allowed formats {s.allowed_formats}", reason="format-not-allowed")
        size = meta.get("size")
        return AudioFormatChecker(
            declared_format=declared if s.check_format else None,
            expected_duration=_number(meta.get("duration")) if s.check_duration else None,
            duration_tolerance=s.duration_tolerance, duration_tolerance_fraction=s.duration_tolerance_fraction,
            expected_size=size if s.check_size and isinstance(size, int) and not isinstance(size, bool) and size >= 0
            else None,
            recording_id=self.stream.id, allow_unfinalized_wav=s.allow_unfinalized_wav)

    def _raise(self, exc: AudioFormatError) -> None:
        self.error = exc
        raise VerificationError(_message(exc), reason=exc.reason) from None

    def update(self, chunk: Chunk) -> None:
        if self.checker is None:
            self.checker = self._make()
        try:
            head = self.checker.feed(chunk.data)
        except AudioFormatError as exc:
            self._raise(exc)
        if head is not None:
            self.head = head.to_dict()

    def finish(self) -> Verdict:
        try:
            if self.checker is None:
                self.checker = self._make()
            info = self.checker.finish()
        except AudioFormatError as exc:
            self.error = exc
            details = {"offset": exc.offset, **({"head": self.head} if self.head else {})}
            return Verdict(TYPE, False, exc.reason, _message(exc), details)
        except VerificationError as exc:
            return Verdict(TYPE, False, exc.reason, str(exc))
        return Verdict(TYPE, True, details=info.to_dict())
