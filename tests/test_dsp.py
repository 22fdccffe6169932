"""voxpipe.dsp: native and pure-Python backends agree bit for bit; values are right."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import warnings

import pytest
from hypothesis import given, settings, strategies as st

import voxpipe.dsp as dsp
from voxpipe.dsp import NativeBackendUnavailable

PY = dsp.backend("python")
try:
    NATIVE = dsp.backend("native")
except NativeBackendUnavailable as exc:  # pragma: no cover - depends on the build
    NATIVE = None
    NATIVE_MISSING = str(exc)
else:
    NATIVE_MISSING = ""

needs_native = pytest.mark.skipif(
    NATIVE is None, reason=f"native DSP core not built: {NATIVE_MISSING}"
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # stdlib until 3.12
    except ImportError:  # pragma: no cover - Python >= 3.13
        audioop = None

ALL_BACKENDS = [PY] + ([NATIVE] if NATIVE is not None else [])
backends = pytest.mark.parametrize("impl", ALL_BACKENDS, ids=lambda b: b.NAME)

ALL_PCM16 = struct.pack("<65536h", *range(-32768, 32768))
ALL_BYTES = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


even_bytes = st.binary(max_size=2000).map(lambda b: b[: len(b) & ~1])
gain_db = st.floats(min_value=-60.0, max_value=40.0, allow_nan=False)
gate_kwargs = st.fixed_dictionaries(
    {
        "sample_rate": st.sampled_from([8000, 16000]),
        "threshold_db": st.floats(-90.0, 0.0),
        "attack_ms": st.floats(0.0, 50.0),
        "hold_ms": st.floats(0.0, 200.0),
        "release_ms": st.floats(0.0, 500.0),
        "floor_db": st.one_of(st.just(-math.inf), st.floats(-100.0, 0.0)),
        "makeup_db": st.floats(-20.0, 30.0),
    }
)


def split(data: bytes, cuts: list[int], step: int = 2) -> list[bytes]:
    points = sorted({min(len(data), c * step) for c in cuts})
    parts, prev = [], 0
    for p in points + [len(data)]:
        parts.append(data[prev:p])
        prev = p
    return parts


# ---- native == python ----


@needs_native
@settings(max_examples=200, deadline=None)
@given(data=even_bytes, db=gain_db)
def test_gain_native_equals_python(data, db):
    q = dsp.gain_q16(db)
    assert NATIVE.gain(data, q) == PY.gain(data, q)


@needs_native
@settings(max_examples=150, deadline=None)
@given(data=even_bytes, kw=gate_kwargs, cuts=st.lists(st.integers(0, 1000), max_size=6))
def test_gate_native_equals_python_for_any_split(data, kw, cuts):
    native = dsp.NoiseGate(**kw, backend="native")
    python = dsp.NoiseGate(**kw, backend="python")
    out_n = b"".join(native.process(part) for part in split(data, cuts))
    out_p = python.process(data)
    assert out_n == out_p
    assert native.state == python.state


@needs_native
@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=1000))
def test_codecs_native_equal_python(data):
    even = data[: len(data) & ~1]
    for name in ("mulaw_decode", "alaw_decode"):
        assert getattr(NATIVE, name)(data) == getattr(PY, name)(data)
    for name in ("mulaw_encode", "alaw_encode"):
        assert getattr(NATIVE, name)(even) == getattr(PY, name)(even)


@needs_native
def test_gate_native_equals_python_on_speechlike_signal():
    # 1 s of a 200 Hz tone, loud then quiet, then silence: exercises open, hold, release
    sig = [int(20000 * math.sin(2 * math.pi * 200 * i / 8000)) for i in range(4000)]
    sig += [int(150 * math.sin(2 * math.pi * 200 * i / 8000)) for i in range(2000)]
    sig += [0] * 2000
    data = pcm(*sig)
    for kw in ({}, {"floor_db": -30.0, "makeup_db": 6.0}, {"attack_ms": 0.0, "release_ms": 0.0}):
        assert dsp.NoiseGate(**kw, backend="native").process(data) == dsp.NoiseGate(
            **kw, backend="python"
        ).process(data)


# ---- gain ----


@backends
def test_gain_zero_db_is_identity(impl):
    assert impl.gain(ALL_PCM16, dsp.gain_q16(0.0)) == ALL_PCM16


@backends
def test_gain_rounds_half_away_from_zero(impl):
    half = 20 * math.log10(0.5)
    assert dsp.gain_q16(half) == 32768
    assert samples(impl.gain(pcm(1, -1, 3, -3, 2, -2, 0), 32768)) == [1, -1, 2, -2, 1, -1, 0]


@backends
def test_gain_saturates_to_int16(impl):
    out = samples(impl.gain(pcm(32767, -32768, 20000, -20000, 100), dsp.gain_q16(12.0)))
    assert out[:4] == [32767, -32768, 32767, -32768]
    assert out[4] == round(100 * 10 ** (12 / 20))  # 398.1 -> 398


def test_gain_facade_and_errors():
    assert dsp.gain(pcm(1000, -1000), 20 * math.log10(2)) == pcm(2000, -2000)
    with pytest.raises(ValueError, match="321 bytes is odd"):
        dsp.gain(bytes(321), 0.0)
    with pytest.raises(ValueError, match="gain db=61.0 dB is outside"):
        dsp.gain(bytes(2), 61.0)
    with pytest.raises(ValueError, match="outside"):
        dsp.gain(bytes(2), float("nan"))


@backends
def test_out_buffer_and_in_place(impl):
    src = pcm(100, -200, 300)
    out = bytearray(6)
    assert impl.gain(src, 2 * 65536, out) is out
    assert bytes(out) == pcm(200, -400, 600)
    buf = bytearray(src)
    impl.gain(buf, 2 * 65536, buf)  # aliasing input and output is allowed
    assert bytes(buf) == pcm(200, -400, 600)
    with pytest.raises(ValueError, match="out buffer is 4 bytes, expected exactly 6"):
        impl.gain(src, 65536, bytearray(4))
    with pytest.raises(TypeError, match="read-only"):
        impl.gain(src, 65536, bytes(6))


@backends
def test_accepts_bytes_like(impl):
    src = pcm(1, 2, 3, 4)
    want = impl.gain(src, 3 * 65536)
    assert impl.gain(bytearray(src), 3 * 65536) == want
    assert impl.gain(memoryview(src), 3 * 65536) == want
    assert impl.gain(memoryview(b"xx" + src)[2:], 3 * 65536) == want  # unaligned view


# ---- noise gate ----


def tone(amplitude: float, n: int, rate: int = 8000, freq: float = 200.0) -> list[int]:
    return [int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]


@backends
def test_gate_fades_tail_over_hold_and_release(impl):
    # loud speech, then a quiet tail (-60 dBFS, under the -48 dBFS threshold)
    loud, quiet = tone(16000, 1600), tone(33, 4000)
    gate = dsp.NoiseGate(8000, threshold_db=-48, attack_ms=2, hold_ms=80, release_ms=150,
                         backend=impl)
    out = samples(gate.process(pcm(*loud, *quiet)))
    # the attack ramp (2 ms = 16 samples) starts from silence, then passes unchanged
    assert out[0] == 0 and out[16:1600] == loud[16:]
    tail = out[1600:]
    # during hold (80 ms = 640 samples, after the envelope decays under the
    # threshold) the tail passes unchanged ...
    assert tail[:640] == quiet[:640]
    # ... then fades (not chopped): attenuated but not zero for a while ...
    fading = [abs(o) / abs(q) for o, q in zip(tail[640:1900], quiet[640:1900]) if abs(q) >= 20]
    assert fading and all(r <= 1.0 for r in fading)
    assert any(0.1 < r < 0.9 for r in fading)
    # ... and is silent once the envelope decay (~48 ms from 16000 to the
    # threshold), hold (80 ms) and release (150 ms) are over: < 300 ms
    assert tail[2400:] == [0] * 1600
    assert not gate.is_open


@backends
def test_gate_floor_and_makeup_equal_separate_gain(impl):
    data = pcm(*tone(12000, 800), *tone(10, 4000))
    gated = dsp.NoiseGate(8000, floor_db=-20.0, backend=impl).process(data)
    # the floor attenuates the quiet part by 20 dB instead of muting it
    quiet_out = samples(gated)[-800:]
    quiet_in = tone(10, 4000)[-800:]
    assert quiet_out == [dsp_round(x * dsp.GateParams.from_db_ms(
        8000, -48, 2, 80, 150, -20.0, 0.0).floor, 30) for x in quiet_in]
    combined = dsp.NoiseGate(8000, floor_db=-20.0, makeup_db=9.5, backend=impl).process(data)
    assert combined == impl.gain(gated, dsp.gain_q16(9.5))


def dsp_round(p: int, shift: int) -> int:
    half = 1 << (shift - 1)
    return (p + half) >> shift if p >= 0 else -((half - p) >> shift)


@backends
def test_gate_reset_and_state(impl):
    gate = dsp.NoiseGate(8000, backend=impl)
    data = pcm(*tone(20000, 400))
    first = gate.process(data)
    assert gate.is_open and gate.state[1] == dsp.UNITY_Q30
    gate.reset()
    assert gate.state == (0, 0, 0) and not gate.is_open
    assert gate.process(data) == first


def test_gate_parameter_errors():
    with pytest.raises(ValueError, match="threshold_db=3.0 dBFS is outside"):
        dsp.NoiseGate(8000, threshold_db=3.0)
    with pytest.raises(ValueError, match="release_ms=-1.0 ms"):
        dsp.NoiseGate(8000, release_ms=-1)
    with pytest.raises(ValueError, match="sample_rate=8000.0"):
        dsp.NoiseGate(8000.0)
    with pytest.raises(ValueError, match="floor_db"):
        dsp.NoiseGate(8000, floor_db=6.0)
    with pytest.raises(ValueError, match="3 bytes is odd"):
        dsp.NoiseGate(8000).process(b"abc")


# ---- G.711 ----


@backends
def test_g711_known_values(impl):
    assert samples(impl.mulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80, 0xEF]))) == [
        0, 0, -32124, 32124, 132
    ]
    assert samples(impl.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))) == [8, -8, 32256, -32256]
    assert impl.mulaw_encode(pcm(0, -1, 32767, -32768)) == bytes([0xFF, 0x7E, 0x80, 0x00])
    assert impl.alaw_encode(pcm(0, -1, 32767, -32768)) == bytes([0xD5, 0x55, 0xAA, 0x2A])


def impl_decode_ulaw(u: int) -> int:
    # G.711 μ-law expansion written out from the standard's segment formula
    u = ~u & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 7, u & 0x0F
    magnitude = ((2 * mantissa + 33) << exponent) - 33
    return -4 * magnitude if sign else 4 * magnitude


@backends
def test_mulaw_decode_matches_g711_formula(impl):
    assert samples(impl.mulaw_decode(ALL_BYTES)) == [impl_decode_ulaw(u) for u in range(256)]


@backends
def test_g711_round_trip(impl):
    for enc, dec in (("mulaw_encode", "mulaw_decode"), ("alaw_encode", "alaw_decode")):
        # every code word survives decode -> encode (except μ-law's negative zero 0x7F)
        back = getattr(impl, enc)(getattr(impl, dec)(ALL_BYTES))
        diffs = [i for i in range(256) if back[i] != i]
        assert diffs == ([0x7F] if enc == "mulaw_encode" else [])
        # encode -> decode error is bounded by the quantisation step (< 1/16 of the value + 2^7)
        rt = samples(getattr(impl, dec)(getattr(impl, enc)(ALL_PCM16)))
        assert all(abs(r - x) <= abs(x) / 16 + 128 for r, x in zip(rt, range(-32768, 32768)))


@pytest.mark.skipif(audioop is None, reason="audioop not in this Python (removed in 3.13)")
@backends
def test_g711_matches_audioop_exhaustively(impl):
    assert impl.mulaw_encode(ALL_PCM16) == audioop.lin2ulaw(ALL_PCM16, 2)
    assert impl.alaw_encode(ALL_PCM16) == audioop.lin2alaw(ALL_PCM16, 2)
    assert impl.mulaw_decode(ALL_BYTES) == audioop.ulaw2lin(ALL_BYTES, 2)
    assert impl.alaw_decode(ALL_BYTES) == audioop.alaw2lin(ALL_BYTES, 2)


def test_codec_facade_out_and_errors():
    out = bytearray(4)
    assert dsp.mulaw_decode(b"\x00\x80", out=out) is out and bytes(out) == pcm(-32124, 32124)
    with pytest.raises(ValueError, match="5 bytes is odd"):
        dsp.alaw_encode(bytes(5))
    assert dsp.alaw_decode(b"\xd5", backend="python") == pcm(8)


# ---- backend selection ----


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


BLOCK_NATIVE = "import sys; sys.modules['voxpipe._native_dsp'] = None\n"


def test_env_var_forces_python():
    r = run_python("import voxpipe.dsp as d; print(d.BACKEND)", VOXPIPE_DSP_BACKEND="python")
    assert r.returncode == 0 and r.stdout.strip() == "python"


def test_env_var_rejects_unknown_backend():
    r = run_python("import voxpipe.dsp", VOXPIPE_DSP_BACKEND="fortran")
    assert r.returncode != 0 and "VOXPIPE_DSP_BACKEND='fortran' is not a DSP backend" in r.stderr


def test_without_compiled_core_auto_falls_back_and_native_fails_clearly():
    r = run_python(BLOCK_NATIVE + "import voxpipe.dsp as d; print(d.BACKEND, d.available_backends())",
                   VOXPIPE_DSP_BACKEND="auto")
    assert r.returncode == 0 and r.stdout.strip() == "python ('python',)"
    r = run_python(BLOCK_NATIVE + "import voxpipe.dsp", VOXPIPE_DSP_BACKEND="native")
    assert r.returncode != 0
    assert "NativeBackendUnavailable" in r.stderr and "VOXPIPE_DSP_BACKEND=python" in r.stderr
    assert issubclass(NativeBackendUnavailable, ImportError)


@needs_native
def test_auto_prefers_native():
    r = run_python("import voxpipe.dsp as d; print(d.BACKEND)", VOXPIPE_DSP_BACKEND="auto")
    assert r.stdout.strip() == "native"
    assert dsp.backend("auto") is NATIVE and dsp.available_backends() == ("native", "python")


def test_backend_lookup():
    assert dsp.backend("python") is PY
    assert dsp.backend(PY) is PY
    assert dsp.backend().NAME == dsp.BACKEND
    with pytest.raises(ValueError, match="unknown DSP backend 'gpu'"):
        dsp.backend("gpu")
    assert dsp.NoiseGate(backend="python").backend_name == "python"
