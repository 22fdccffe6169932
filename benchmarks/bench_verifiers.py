"""Throughput of the verifiers' per-stream work, as ratios to the ``sha256`` verifier on
the same bytes in the same chunks (it runs on every recording anyway, so the ratio says
what each extra verifier costs per byte).

Run: ``python benchmarks/bench_verifiers.py [--mb 64] [--chunk 131072] [--segment 8388608]``.
Segment mode is fed one response record per ``--segment`` bytes, as the cxone source
does: with a whole-recording MAC in metadata it computes both (two HMAC passes), without
one only the segment MACs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import struct
import time
from pathlib import Path

from voxpipe.components import PipelineContext
from voxpipe.download.responses import ResponseLog
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe_verify.audio_format import AudioFormatSettings, AudioFormatVerifier
from voxpipe_verify.hmac import HmacSettings, HmacVerifier
from voxpipe_verify.sha256 import Sha256Settings, Sha256Verifier

KEY = b"benchmark-key"
CONTEXT = PipelineContext("bench", Path("."))


def wav(mb: int) -> bytes:
    data = os.urandom(mb * 1024 * 1024)
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


def run_once(verifier, data: bytes, chunk: int, metadata: dict, segment: int | None) -> float:
    stream = Stream(StreamSpec("b", metadata), source="bench", pipeline="bench", audit=None)
    run = verifier.begin(stream)
    log = ResponseLog.of(stream)
    chunks = [Chunk(o, data[o:o + chunk]) for o in range(0, len(data), chunk)]
    macs = {}
    if segment and log is not None:
        for o in range(0, len(data), segment):
            body = data[o:o + segment]
            macs[o] = hmac.new(KEY, o.to_bytes(8, "big") + body, hashlib.sha256).hexdigest()
    t0 = time.perf_counter()
    for c in chunks:
        if log is not None and segment and c.offset % segment == 0:
            log.record(c.offset, min(segment, len(data) - c.offset), 206, {"x-segment-hmac": macs[c.offset]})
        run.update(c)
    verdict = run.finish()
    elapsed = time.perf_counter() - t0
    assert verdict.ok, verdict
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=128 * 1024)
    ap.add_argument("--segment", type=int, default=8 << 20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = wav(args.mb)
    whole = hmac.new(KEY, data, hashlib.sha256).hexdigest()
    meta = {"format": "wav_ulaw", "size": len(data), "hmac": whole, "duration": (len(data) - 44) / 8000}
    segment = HmacVerifier(HmacSettings(key=KEY.decode(), mode="segment"), CONTEXT)
    no_whole = {k: v for k, v in meta.items() if k != "hmac"}
    candidates = {
        "sha256 (baseline)": (Sha256Verifier(Sha256Settings(), CONTEXT), None, meta),
        "hmac-sha256 whole": (HmacVerifier(HmacSettings(key=KEY.decode()), CONTEXT), None, meta),
        "hmac segment+whole": (segment, args.segment, meta),
        "hmac segment only": (segment, args.segment, no_whole),
        "audio-format": (AudioFormatVerifier(AudioFormatSettings(), CONTEXT), None, meta),
    }
    best = {name: min(run_once(v, data, args.chunk, m, seg) for _ in range(args.repeats))
            for name, (v, seg, m) in candidates.items()}
    base = best["sha256 (baseline)"]
    print(f"{args.mb} MiB in {args.chunk}-byte chunks (best of {args.repeats}):")
    for name, t in best.items():
        print(f"  {name:22s} {args.mb / t:8.0f} MiB/s   {t / base:5.2f} x sha256")


if __name__ == "__main__":
    main()
