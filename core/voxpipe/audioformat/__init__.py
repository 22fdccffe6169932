"""Audio-format checking of call recordings from their bytes (sans-IO, streaming).

Identifies the container and codec of a recording from the bytes themselves --
RIFF/WAVE (PCM, G.711 μ-law/A-law, ...), MPEG audio (MP3), Ogg (Opus, Vorbis),
WebM/Matroska -- checks it against the declared format, size and duration, and
finds truncation and corruption, in bounded memory while the recording is still
arriving.

Public API::

    AudioFormatChecker(*, declared_format=None, expected_duration=None,
                       duration_tolerance=1.0, duration_tolerance_fraction=0.02,
                       expected_size=None, recording_id=None,
                       allow_unfinalized_wav=False)
        .feed(data) -> HeadInfo | None      # raises AudioFormatError early
        .finish() -> AudioInfo              # raises AudioFormatError
    inspect_bytes(data, **kw) -> AudioInfo
    inspect_file(path, **kw) -> AudioInfo
    AudioFormatError(reason, detail, *, offset=None, recording_id=None)
    HeadInfo, AudioInfo                     # frozen dataclasses, .to_dict()
"""

from ._stream import MAX_CARRY_BYTES
from .checker import (
    DEFAULT_DURATION_TOLERANCE_FRACTION,
    DEFAULT_DURATION_TOLERANCE_S,
    MAX_HEAD_BYTES,
    AudioFormatChecker,
    inspect_bytes,
    inspect_file,
)
from .errors import REASONS, AudioFormatError
from .formats import DECLARED_FORMATS, parse_declared_format
from .model import AudioInfo, HeadInfo

__all__ = [
    "AudioFormatChecker",
    "AudioFormatError",
    "REASONS",
    "AudioInfo",
    "HeadInfo",
    "inspect_bytes",
    "inspect_file",
    "parse_declared_format",
    "DECLARED_FORMATS",
    "MAX_CARRY_BYTES",
    "MAX_HEAD_BYTES",
    "DEFAULT_DURATION_TOLERANCE_S",
    "DEFAULT_DURATION_TOLERANCE_FRACTION",
]
