"""Declared formats (from platform metadata or a Content-Type) and what they allow.

Platforms name recording formats in their metadata: NICE CXone ``format`` (e.g.
``"wav"``, ``"mp3"``), Genesys Cloud ``formatId`` (``WAV``, ``WEBM``,
``WAV_ULAW``, ``OGG_VORBIS``, ``OGG_OPUS``, ``MP3``), or an HTTP
``Content-Type`` such as ``audio/mpeg``. Each name maps to the containers, and
optionally the codecs, the bytes may turn out to be.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AudioFormatError

__all__ = ["DeclaredFormat", "parse_declared_format", "DECLARED_FORMATS"]


@dataclass(frozen=True, slots=True)
class DeclaredFormat:
    """A declared format: ``name`` as given; ``containers`` the bytes may be;
    ``codecs`` they may carry (``None``: any)."""

    name: str
    containers: frozenset[str]
    codecs: frozenset[str] | None = None

    def allows_container(self, container: str) -> bool:
        return container in self.containers

    def allows_codec(self, codec: str | None) -> bool:
        return self.codecs is None or codec in self.codecs


_WAV = frozenset({"wav"})
_MP3 = frozenset({"mp3"})
_OGG = frozenset({"ogg"})
_MKV = frozenset({"webm", "matroska"})
_MP4 = frozenset({"mp4"})

#: Lower-cased declared name -> (containers, codecs or None).
DECLARED_FORMATS: dict[str, tuple[frozenset[str], frozenset[str] | None]] = {
    "wav": (_WAV, None),
    "wave": (_WAV, None),
    "wav_pcm": (_WAV, frozenset({"pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le"})),
    "wav_ulaw": (_WAV, frozenset({"pcm_mulaw"})),
    "wav_mulaw": (_WAV, frozenset({"pcm_mulaw"})),
    "wav_alaw": (_WAV, frozenset({"pcm_alaw"})),
    "audio/wav": (_WAV, None),
    "audio/wave": (_WAV, None),
    "audio/x-wav": (_WAV, None),
    "audio/vnd.wave": (_WAV, None),
    "mp3": (_MP3, frozenset({"mp3"})),
    "audio/mpeg": (_MP3, None),
    "audio/mp3": (_MP3, frozenset({"mp3"})),
    "ogg": (_OGG, None),
    "audio/ogg": (_OGG, None),
    "opus": (_OGG, frozenset({"opus"})),
    "ogg_opus": (_OGG, frozenset({"opus"})),
    "audio/opus": (_OGG, frozenset({"opus"})),
    "vorbis": (_OGG, frozenset({"vorbis"})),
    "ogg_vorbis": (_OGG, frozenset({"vorbis"})),
    "webm": (_MKV, None),
    "audio/webm": (_MKV, None),
    "matroska": (_MKV, None),
    "mkv": (_MKV, None),
    "mka": (_MKV, None),
    "audio/x-matroska": (_MKV, None),
    "mp4": (_MP4, None),
    "m4a": (_MP4, None),
    "aac": (_MP4, frozenset({"aac"})),
    "audio/mp4": (_MP4, None),
    "audio/m4a": (_MP4, None),
    "audio/x-m4a": (_MP4, None),
    "audio/aac": (_MP4, frozenset({"aac"})),
    "video/mp4": (_MP4, None),
}


def parse_declared_format(name: str | None) -> DeclaredFormat | None:
    """The :class:`DeclaredFormat` for ``name`` (case-insensitive; MIME parameters
    such as ``; codecs=opus`` are ignored), ``None`` for ``None`` or ``""``.

    Raises:
        AudioFormatError: ``unknown-declared-format`` when the name is not one of
            :data:`DECLARED_FORMATS` (the name comes from remote metadata, so it
            is bad input, not a programming error).
    """
    if name is None:
        return None
    key = name.split(";", 1)[0].strip().lower()
    if not key:
        return None
    try:
        containers, codecs = DECLARED_FORMATS[key]
    except KeyError:
        known = ", ".join(sorted(k for k in DECLARED_FORMATS if "/" not in k))
        raise AudioFormatError(
            "unknown-declared-format",
            f"declared format {name!r} is not one the checker knows (known: {known}, or an audio/* type)",
        ) from None
    return DeclaredFormat(name, containers, codecs)
