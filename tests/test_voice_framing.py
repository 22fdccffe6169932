"""FrameAssembler: any split of a stream into messages yields the same frames."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import voxpipe.dsp as dsp
from voxpipe.voice.framing import FrameAssembler, frame_bytes, split_frames

BACKENDS = list(dsp.available_backends())
backends = pytest.mark.parametrize("backend", BACKENDS)


def messages(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(min(c, len(stream)) for c in cuts)
    parts, prev = [], 0
    for p in points + [len(stream)]:
        parts.append(stream[prev:p])
        prev = p
    return parts


@settings(max_examples=200, deadline=None)
@given(
    stream=st.binary(max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=20),
    rate=st.sampled_from([8000, 16000]),
    width=st.sampled_from([1, 2]),
    backend=st.sampled_from(BACKENDS),
)
def test_any_split_yields_the_same_frames(stream, cuts, rate, width, backend):
    asm = FrameAssembler(rate, 20, width, backend=backend)
    fb = asm.frame_bytes
    outs = []
    for msg in messages(stream, cuts):
        out = asm.feed(memoryview(msg))
        assert len(out) % fb == 0
        outs.append(out)
        assert asm.pending < fb
    whole = len(stream) - len(stream) % fb
    assert b"".join(outs) == stream[:whole]
    assert asm.pending == len(stream) % fb
    assert asm.frames_out == whole // fb and asm.bytes_in == len(stream)
    assert asm.stream_offset == whole
    assert asm.flush() == stream[whole:]
    assert asm.pending == 0


@backends
def test_odd_bytes_are_carried(backend):
    asm = FrameAssembler(8000, 20, backend=backend)
    stream = bytes(range(256)) * 3  # 768 bytes
    assert asm.feed(stream[:1]) == b""
    assert asm.feed(stream[1:318]) == b""  # 318 bytes, one short of... still short
    assert asm.pending == 318
    assert asm.feed(stream[318:321]) == stream[:320]  # completes a frame with one odd byte over
    assert asm.pending == 1
    assert asm.feed(stream[321:641]) == stream[320:640]
    assert asm.pending == 1 and asm.stream_offset == 640
    assert asm.feed(b"") == b""
    assert asm.flush(pad=True) == stream[640:641] + bytes(319)
    assert asm.frames_out == 3


def test_frame_sizes():
    assert frame_bytes(8000, 20) == 320
    assert frame_bytes(16000, 20) == 640
    assert frame_bytes(8000, 20, 1) == 160
    assert FrameAssembler(16000, 10).frame_bytes == 320
    with pytest.raises(ValueError, match=r"frame_ms=15 at 11025 Hz is 165.375 samples"):
        frame_bytes(11025, 15)
    with pytest.raises(ValueError, match="sample_width=3"):
        frame_bytes(8000, 20, 3)
    with pytest.raises(ValueError, match="frame_ms=0"):
        frame_bytes(8000, 0)


def test_mulaw_padding_uses_codec_silence():
    asm = FrameAssembler(8000, 20, 1, silence_byte=0xFF)
    assert asm.feed(b"\x01\x02") == b""
    assert asm.flush(pad=True) == b"\x01\x02" + b"\xff" * 158


def test_split_frames_views():
    data = bytes(range(200)) * 8  # 1600 bytes = 5 frames of 320
    frames = split_frames(data, 320)
    assert [bytes(f) for f in frames] == [data[i:i + 320] for i in range(0, 1600, 320)]
    with pytest.raises(ValueError, match="partial frame at byte offset 1600"):
        split_frames(data + b"x", 320)
