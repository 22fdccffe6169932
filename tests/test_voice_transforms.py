"""DSP transforms: any split of a stream gives the same bytes as processing it whole."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from voxpipe import dsp
from voxpipe.components import PipelineContext
from voxpipe.errors import StreamError
from voxpipe.model import Stream, StreamSpec
from voxpipe_voice.transforms import (AlawDecode, AlawEncode, Gain, MulawDecode, MulawEncode, NoiseGateTransform)

BACKENDS = ["python"] + (["native"] if "native" in dsp.available_backends() else [])


def _stream(**metadata):
    return Stream(StreamSpec("call-1", metadata), source="websocket-voice", pipeline="p", audit=None)


def _make(cls, **settings):
    return cls(cls.Settings(**settings), PipelineContext("p", state_dir=None))


def _run(transform, pieces, stream=None):
    run = transform.begin(stream or _stream(sample_rate=8000))
    return b"".join(run.process(p) for p in pieces) + run.flush()


def _split(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


pcm = st.binary(min_size=0, max_size=1200).map(lambda b: b[: len(b) & ~1])
cuts = st.lists(st.integers(0, 10_000), max_size=12)


@settings(max_examples=60, deadline=None)
@given(data=pcm, cuts=cuts, db=st.floats(-30, 30), backend=st.sampled_from(BACKENDS))
def test_gain_any_split(data, cuts, db, backend):
    t = _make(Gain, db=db, backend=backend)
    assert _run(t, _split(data, cuts)) == dsp.gain(data, db, backend="python")


@settings(max_examples=60, deadline=None)
@given(data=pcm, cuts=cuts, threshold=st.floats(-80, -10), hold=st.floats(0, 50), backend=st.sampled_from(BACKENDS))
def test_noise_gate_any_split_is_stateful_per_stream(data, cuts, threshold, hold, backend):
    t = _make(NoiseGateTransform, threshold_db=threshold, attack_ms=1.0, hold_ms=hold, release_ms=5.0,
              backend=backend)
    whole = dsp.NoiseGate(8000, threshold, 1.0, hold, 5.0, backend="python").process(data)
    assert _run(t, _split(data, cuts)) == whole
    assert _run(t, [data]) == whole  # a second stream starts with a fresh gate


@settings(max_examples=40, deadline=None)
@given(data=pcm, cuts=cuts, backend=st.sampled_from(BACKENDS))
def test_g711_encoders_and_decoders_any_split(data, cuts, backend):
    pieces = _split(data, cuts)
    assert _run(_make(MulawEncode, backend=backend), pieces) == dsp.mulaw_encode(data)
    assert _run(_make(AlawEncode, backend=backend), pieces) == dsp.alaw_encode(data)
    assert _run(_make(MulawDecode, backend=backend), pieces) == dsp.mulaw_decode(data)
    assert _run(_make(AlawDecode, backend=backend), pieces) == dsp.alaw_decode(data)


def test_gate_uses_the_stream_sample_rate():
    t = _make(NoiseGateTransform, threshold_db=-30, hold_ms=10, release_ms=10)
    loud = (12000).to_bytes(2, "little", signed=True) * 100 + bytes(4000)
    at16k = _run(t, [loud], _stream(sample_rate=16000))
    assert at16k == dsp.NoiseGate(16000, -30, 2.0, 10, 10).process(loud)
    assert at16k != dsp.NoiseGate(8000, -30, 2.0, 10, 10).process(loud)


def test_half_sample_at_the_end_is_an_error_naming_the_offset():
    run = _make(Gain, db=3).begin(_stream())
    run.process(b"\x01\x02\x03")
    with pytest.raises(StreamError, match="call call-1: PCM16 stream ends with half a sample at byte offset 2"):
        run.flush()


def test_bad_sample_rate_metadata_fails_the_stream():
    with pytest.raises(StreamError, match="sample_rate 'x'"):
        _make(NoiseGateTransform).begin(_stream(sample_rate="x"))


def test_settings_are_validated():
    with pytest.raises(ValueError):
        Gain.Settings(db=100)
    assert NoiseGateTransform.Settings().floor_db == -math.inf
    with pytest.raises(ValueError):
        Gain.Settings(db=1, backend="fortran")
