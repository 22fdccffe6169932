"""Benchmark voxpipe.dsp: native vs pure Python vs NumPy, per 20 ms frame and in batches.

Run: ``python benchmarks/dsp.py [--quick]``.  Prints ns per 20 ms frame
(160 samples, 8 kHz PCM16) and the ratios.  Goals (issue "Live call
audio", item 8): native >= 50x pure Python and >= 2x NumPy per frame for
gain + gate + clip. Also timed (issue 16, item 8): frame reassembly of a call's
randomly sized WebSocket messages (the NumPy column is a ``bytearray`` slicing
baseline there: reassembly is copying, not arithmetic), and the stereo path
(interleaving two channels, the per-channel gate).

The NumPy baseline is the seed's per-sample gate (zero samples under the
threshold), gain and clip, vectorised: it does less work than the native
gate (no envelope, hold or ramps, which cannot be vectorised), so the
native/NumPy ratio is conservative.  Timing: time.perf_counter in this
process, best of several repeats.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

import voxpipe.dsp as dsp

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES
BATCH_FRAMES = 500
GAIN_DB = 6.0
THRESHOLD_DB = -48.0


def speech_like(n_samples: int) -> bytes:
    """Deterministic test signal: bursts of a 200 Hz + 1 kHz tone with quiet gaps and noise."""
    rng = np.random.default_rng(1234)
    t = np.arange(n_samples) / RATE
    tone = 9000 * np.sin(2 * np.pi * 200 * t) + 3000 * np.sin(2 * np.pi * 1000 * t)
    bursts = (np.floor(t / 0.3) % 2 == 0).astype(float)  # 300 ms on, 300 ms off
    x = tone * bursts + rng.normal(0, 40, n_samples)
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def numpy_gain_gate_clip(frame: bytes, g: float, thr: float) -> bytes:
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    y = np.where(np.abs(x) < thr, 0.0, x * g)
    return np.clip(y, -32768, 32767).astype("<i2").tobytes()


def numpy_mulaw_decode(data: bytes, table: np.ndarray) -> bytes:
    return table[np.frombuffer(data, dtype=np.uint8)].tobytes()


def best_ns(fn, arg, number: int, repeat: int) -> float:
    """Best-of-``repeat`` mean ns per call of ``fn(arg)`` over ``number`` calls."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(arg)
        best = min(best, (time.perf_counter() - t0) / number)
    return best * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0

    def n(x: int) -> int:
        return max(1, int(x * scale))

    if "native" not in dsp.available_backends():
        print("native DSP core not built; nothing to compare", file=sys.stderr)
        return 1

    batch = speech_like(FRAME_SAMPLES * BATCH_FRAMES)
    frame = batch[FRAME_BYTES * 3:FRAME_BYTES * 4]  # a voiced frame
    g = 10 ** (GAIN_DB / 20)
    thr = 32768 * 10 ** (THRESHOLD_DB / 20)
    kw = dict(sample_rate=RATE, threshold_db=THRESHOLD_DB, makeup_db=GAIN_DB)
    gates = {b: dsp.NoiseGate(**kw, backend=b) for b in ("native", "python")}
    out = bytearray(FRAME_BYTES)
    native_gate = gates["native"].process
    mulaw = dsp.mulaw_encode(batch, backend="native")
    mulaw_frame = mulaw[:FRAME_SAMPLES]
    ulaw_table = np.frombuffer(dsp.mulaw_decode(bytes(range(256))), dtype="<i2").copy()
    nat, py = dsp.backend("native"), dsp.backend("python")
    py.mulaw_decode(b"\x00")  # build tables outside the timing

    rows = []

    def row(name, frames, native_fn, python_fn, numpy_fn, arg, reps):
        number_native, number_py = n(reps), max(1, n(reps) // 200)
        t_nat = best_ns(native_fn, arg, number_native, 7) / frames
        t_py = best_ns(python_fn, arg, number_py, 5) / frames
        t_np = best_ns(numpy_fn, arg, number_native, 7) / frames
        rows.append((name, t_py, t_np, t_nat))

    row("gain+gate+clip, 1 frame", 1, native_gate, gates["python"].process,
        lambda f: numpy_gain_gate_clip(f, g, thr), frame, 40000)
    row("gain+gate+clip, 1 frame, out=", 1, lambda f: native_gate(f, out),
        gates["python"].process, lambda f: numpy_gain_gate_clip(f, g, thr), frame, 40000)
    row(f"gain+gate+clip, {BATCH_FRAMES} frames", BATCH_FRAMES, native_gate,
        gates["python"].process, lambda f: numpy_gain_gate_clip(f, g, thr), batch, 400)
    q = dsp.gain_q16(GAIN_DB)
    row("gain, 1 frame", 1, lambda f: nat.gain(f, q), lambda f: py.gain(f, q),
        lambda f: np.clip(np.frombuffer(f, "<i2") * g, -32768, 32767).astype("<i2").tobytes(),
        frame, 40000)
    row("mu-law decode, 1 frame", 1, nat.mulaw_decode, py.mulaw_decode,
        lambda f: numpy_mulaw_decode(f, ulaw_table), mulaw_frame, 40000)
    row(f"mu-law decode, {BATCH_FRAMES} frames", BATCH_FRAMES, nat.mulaw_decode,
        py.mulaw_decode, lambda f: numpy_mulaw_decode(f, ulaw_table), mulaw, 400)

    # frame reassembly: one second of a call in randomly sized messages (80..1200 bytes, odd sizes too)
    rng = np.random.default_rng(7)
    second = batch[: 2 * RATE]
    cuts = np.cumsum(rng.integers(80, 1201, size=64))
    cuts = [0] + [int(c) for c in cuts if c < len(second)] + [len(second)]
    messages = [second[a:b] for a, b in zip(cuts, cuts[1:])]
    frames_per_second = RATE // FRAME_SAMPLES

    def reassemble(impl):
        def run(msgs):
            r = impl.Reassembler(FRAME_BYTES)
            for m in msgs:
                r.feed(m)
        return run

    def bytearray_baseline(msgs):
        carry = bytearray()
        for m in msgs:
            carry += m
            k = len(carry) - len(carry) % FRAME_BYTES
            if k:
                bytes(carry[:k])
                del carry[:k]

    row(f"reassembly, 1 s in {len(messages)} messages", frames_per_second, reassemble(nat), reassemble(py),
        bytearray_baseline, messages, 4000)
    # stereo: interleave two 100 ms chunks; per-channel gate on 100 ms of stereo
    left, right = batch[: 5 * FRAME_BYTES], batch[5 * FRAME_BYTES: 10 * FRAME_BYTES]

    def np_interleave(pair):
        out = np.empty(2 * FRAME_SAMPLES * 5, dtype="<i2")
        out[0::2] = np.frombuffer(pair[0], "<i2")
        out[1::2] = np.frombuffer(pair[1], "<i2")
        return out.tobytes()

    row("interleave L+R, 5 frames", 5, lambda lr: nat.interleave(lr[0], lr[1], 2),
        lambda lr: py.interleave(lr[0], lr[1], 2), np_interleave, (left, right), 20000)
    stereo = dsp.interleave(left, right)
    sgates = {b: dsp.NoiseGate(**kw, channels=2, backend=b) for b in ("native", "python")}

    def np_stereo_gate(data):
        x = np.frombuffer(data, dtype="<i2").astype(np.float32).reshape(-1, 2)
        y = np.where(np.abs(x) < thr, 0.0, x * g)
        return np.clip(y, -32768, 32767).astype("<i2").tobytes()

    row("stereo gain+gate+clip, 5 frames", 5, sgates["native"].process, sgates["python"].process,
        np_stereo_gate, stereo, 20000)

    print(f"voxpipe.dsp benchmark: 20 ms frames of {FRAME_SAMPLES} samples at {RATE} Hz; "
          f"ns per frame, best of repeats (pid {os.getpid()})")
    header = f"{'operation':34} {'python':>10} {'numpy':>9} {'native':>9} {'nat/py':>8} {'nat/np':>7}"
    print(header)
    print("-" * len(header))
    for name, t_py, t_np, t_nat in rows:
        print(f"{name:34} {t_py:10.0f} {t_np:9.0f} {t_nat:9.0f} "
              f"{t_py / t_nat:7.1f}x {t_np / t_nat:6.1f}x")
    gate_row = rows[0]
    print(f"\ngoal per frame (gain+gate+clip): native/python {gate_row[1] / gate_row[3]:.0f}x "
          f"(>= 50x), native/numpy {gate_row[2] / gate_row[3]:.1f}x (>= 2x)")
    reas = next(r for r in rows if r[0].startswith("reassembly"))
    print(f"frame reassembly: native/python {reas[1] / reas[3]:.1f}x, native/bytearray {reas[2] / reas[3]:.1f}x "
          "(the bytearray column stands in for NumPy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
