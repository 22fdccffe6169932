"""What the checker reports about a recording: frozen value objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["HeadInfo", "AudioInfo"]


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """What the head of a recording says, known before the rest arrives.

    Fields:
        container: ``"wav"``, ``"mp3"`` (MPEG audio elementary stream, any layer),
            ``"ogg"``, ``"webm"``, ``"matroska"`` or ``"mp4"`` (ISO BMFF: MP4/M4A).
        codec: ``"pcm_u8"``, ``"pcm_s16le"``, ``"pcm_s24le"``, ``"pcm_s32le"``,
            ``"pcm_f32le"``, ``"pcm_f64le"``, ``"pcm_mulaw"``, ``"pcm_alaw"``,
            ``"gsm_ms"``, ``"adpcm_ima_wav"``, ``"adpcm_ms"``, ``"g722"``,
            ``"g729"``, ``"mp3"``, ``"mp2"``, ``"mp1"``, ``"opus"``,
            ``"vorbis"``, ``"aac"``, ``"flac"``, ``"alac"``, ``"amr_nb"``...; ``None``
            when a Matroska head names no track within the bounded head.
        sample_rate: Hz. For Opus this is 48000, the rate Opus decodes at and
            granule positions count in; the encoder's input rate is
            ``input_sample_rate``.
        channels: channel count.
        bits_per_sample: bits per coded sample for PCM and G.711 WAV (8 for
            μ-law/A-law), else ``None``.
        header_offset: bytes of container header before the first audio byte/frame/page
            that carries audio (WAV: start of the data payload; MP3: first frame;
            Ogg: 0; Matroska: first Cluster if reached, else ``None``).
        header_duration: seconds the container header itself declares (WAV data
            size / byte rate; Matroska Segment Info Duration; MP3 Xing/Info frame
            count), or ``None`` when the header declares none.
        input_sample_rate: Opus only: the original input rate from OpusHead (Hz).
    """

    container: str
    codec: str | None
    sample_rate: int | None
    channels: int | None
    bits_per_sample: int | None = None
    header_offset: int | None = None
    header_duration: float | None = None
    input_sample_rate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """The verdict on a whole recording that passed every check.

    Fields as in :class:`HeadInfo`, plus:
        duration: seconds, derived from the bytes: WAV data bytes / byte rate; MP3
            audio frames × samples per frame / sample rate (a Xing/Info frame is
            not audio); Ogg last granule position (minus the Opus pre-skip) / 48000
            or the Vorbis rate; Matroska Segment Info Duration × TimestampScale, or
            the last block's timestamp when there is no Duration element.
        size: bytes in the recording.
    """

    container: str
    codec: str | None
    sample_rate: int | None
    channels: int | None
    duration: float
    size: int
    bits_per_sample: int | None = None
    input_sample_rate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
