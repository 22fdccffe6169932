"""DSP transforms for call audio: ``gain``, ``noise-gate`` and the G.711 codecs.

Each wraps :mod:`voxpipe.dsp` (native C core or its bit-identical pure-Python twin,
chosen by the ``backend`` setting; see docs/native.md) as a pipeline transform. PCM is
PCM16 little-endian, mono or interleaved stereo (``channels`` in the stream's metadata);
a chunk may end mid-sample, so a partial sample (for the gate: a partial sample frame)
is carried to the next chunk and any split of a stream gives the same output as
processing it whole. ``gain`` is the same per sample whatever the channel;
``noise-gate`` keeps its envelope, hold and gain per stream and channel (one
:class:`voxpipe.dsp.NoiseGate` per call, keyed per channel). Requirement: issue "Live call audio over
WebSocket", item 3.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Literal

from voxpipe import dsp
from voxpipe.components import Transform, TransformRun
from voxpipe.errors import StreamError
from voxpipe.model import Stream
from voxpipe.settings import Settings, setting

Backend = Literal["auto", "native", "python"]
_BACKEND_DOC = "DSP backend: `auto` (native if built), `native` or `python` (see docs/native.md)."


def _backend(name: str) -> str | None:
    return None if name == "auto" else name


def _sample_rate(stream: Stream, default: int = 8000) -> int:
    rate = stream.metadata.get("sample_rate", default)
    if not isinstance(rate, int) or isinstance(rate, bool) or not dsp.MIN_SAMPLE_RATE <= rate <= dsp.MAX_SAMPLE_RATE:
        raise StreamError(f"call {stream.id}: metadata sample_rate {rate!r} is not a sample rate in Hz",
                          reason="bad-sample-rate")
    return rate


def _channels(stream: Stream) -> int:
    channels = stream.metadata.get("channels", 1)
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= dsp.MAX_CHANNELS:
        raise StreamError(f"call {stream.id}: metadata channels {channels!r} is not 1..{dsp.MAX_CHANNELS}",
                          reason="bad-channels")
    return channels


class _PcmRun(TransformRun):
    """Applies ``fn`` to whole ``block``-byte units (a PCM16 sample, or a sample frame of
    all channels for the per-channel gate), carrying a partial one to the next chunk."""

    __slots__ = ("fn", "carry", "stream_id", "offset", "block")

    def __init__(self, fn: Callable[[bytes], bytes], stream_id: str, block: int = 2):
        self.fn = fn
        self.carry = b""
        self.stream_id = stream_id
        self.offset = 0
        self.block = block

    def process(self, data: bytes) -> bytes:
        if self.carry:
            data = self.carry + data
            self.carry = b""
        rest = len(data) % self.block
        if rest:
            self.carry = data[-rest:]
            data = data[:-rest]
        self.offset += len(data)
        return self.fn(data) if data else b""

    def flush(self) -> bytes:
        if self.carry:
            what = "half a sample" if self.block == 2 else f"a partial {self.block}-byte sample frame"
            raise StreamError(f"call {self.stream_id}: PCM16 stream ends with {what} at byte offset "
                              f"{self.offset}", reason="odd-pcm-length")
        return b""


class _BytesRun(TransformRun):
    """Applies a per-byte codec function (G.711 decode): no carry needed."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[bytes], bytes]):
        self.fn = fn

    def process(self, data: bytes) -> bytes:
        return self.fn(data) if data else b""


class GainSettings(Settings):
    db: float = setting(description="Gain in dB (negative attenuates), saturating to int16.", example=6.0,
                        ge=dsp.MIN_GAIN_DB, le=dsp.MAX_GAIN_DB)
    backend: Backend = setting("auto", description=_BACKEND_DOC)


class Gain(Transform):
    """Multiply PCM16 samples by a gain in dB, clamped to int16."""

    type = "gain"
    Settings = GainSettings

    def begin(self, stream: Stream) -> TransformRun:
        db, backend = self.settings.db, _backend(self.settings.backend)
        return _PcmRun(lambda pcm: dsp.gain(pcm, db, backend=backend), stream.id)


class NoiseGateSettings(Settings):
    threshold_db: float = setting(-48.0, description="Level (dBFS) at or above which the gate opens.",
                                  ge=dsp.MIN_LEVEL_DB, le=0.0)
    attack_ms: float = setting(2.0, description="Ramp time (ms) from closed to open.", ge=0,
                               le=dsp.MAX_GATE_TIME_MS)
    hold_ms: float = setting(80.0, description="Time (ms) the gate stays open after the level drops.", ge=0,
                             le=dsp.MAX_GATE_TIME_MS)
    release_ms: float = setting(150.0, description="Ramp time (ms) from open to closed.", ge=0,
                                le=dsp.MAX_GATE_TIME_MS)
    floor_db: float = setting(-math.inf, description="Gain (dB) applied while closed; `-.inf` (default) is "
                              "silence.", le=0.0)
    makeup_db: float = setting(0.0, description="Gain (dB) applied after the gate, in the same pass.",
                               ge=dsp.MIN_GAIN_DB, le=dsp.MAX_GAIN_DB)
    backend: Backend = setting("auto", description=_BACKEND_DOC)


class NoiseGateTransform(Transform):
    """Silence PCM16 below a threshold, with attack, hold and release ramps (one gate per call
    and channel: in stereo each side opens on its own level)."""

    type = "noise-gate"
    Settings = NoiseGateSettings

    def begin(self, stream: Stream) -> TransformRun:
        s = self.settings
        channels = _channels(stream)
        try:
            gate = dsp.NoiseGate(_sample_rate(stream), s.threshold_db, s.attack_ms, s.hold_ms, s.release_ms,
                                 s.floor_db, s.makeup_db, channels=channels, backend=_backend(s.backend))
        except ValueError as exc:
            raise StreamError(f"call {stream.id}: noise-gate: {exc}", reason="bad-settings") from None
        return _PcmRun(gate.process, stream.id, 2 * channels)


class CodecSettings(Settings):
    backend: Backend = setting("auto", description=_BACKEND_DOC)


class _G711Transform(Transform):
    """One ``voxpipe.dsp`` G.711 function as a transform (subclasses name it)."""

    Settings = CodecSettings
    #: the ``voxpipe.dsp`` function, and whether its input is PCM16 (odd bytes carried)
    _function: ClassVar[str]
    _pcm_input: ClassVar[bool]

    def begin(self, stream: Stream) -> TransformRun:
        backend = _backend(self.settings.backend)
        function = getattr(dsp, self._function)

        def convert(data):
            return function(data, backend=backend)

        return _PcmRun(convert, stream.id) if self._pcm_input else _BytesRun(convert)


class MulawDecode(_G711Transform):
    """Decode G.711 μ-law bytes to PCM16 (ITU-T G.711)."""

    type = "mulaw-decode"
    _function, _pcm_input = "mulaw_decode", False


class MulawEncode(_G711Transform):
    """Encode PCM16 to G.711 μ-law bytes (ITU-T G.711)."""

    type = "mulaw-encode"
    _function, _pcm_input = "mulaw_encode", True


class AlawDecode(_G711Transform):
    """Decode G.711 A-law bytes to PCM16 (ITU-T G.711)."""

    type = "alaw-decode"
    _function, _pcm_input = "alaw_decode", False


class AlawEncode(_G711Transform):
    """Encode PCM16 to G.711 A-law bytes (ITU-T G.711)."""

    type = "alaw-encode"
    _function, _pcm_input = "alaw_encode", True


TRANSFORMS = (Gain, NoiseGateTransform, MulawDecode, MulawEncode, AlawDecode, AlawEncode)
