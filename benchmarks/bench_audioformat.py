"""Throughput of the streaming audio-format checker, as a ratio to SHA-256 of the
same bytes in the same chunks (the SHA-256 verifier runs on every recording
anyway, so "checker time / SHA-256 time" says what the format check adds).

Run: ``python benchmarks/bench_audioformat.py [--mb 16] [--chunk 65536]``.
Long recordings are made from the shipped examples by repeating their frames or
pages (re-numbered, with fresh Ogg CRCs), so each stream is valid end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import time
from pathlib import Path

from voxpipe.audioformat import AudioFormatChecker
from voxpipe.audioformat.ogg import ogg_crc32

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "recordings"


def long_wav(mb: int) -> bytes:
    data = bytes(mb * 1024 * 1024)
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


def long_mp3(mb: int) -> bytes:
    """The 8 kHz 16 kbit/s example's 144-byte frames repeated: the worst case
    (smallest frames, most headers per byte) a telephony MP3 presents."""
    src = (EXAMPLES / "100003.mp3").read_bytes()
    frames = src[245:-128]
    reps = mb * 1024 * 1024 // len(frames) + 1
    return frames * reps


def _page(flags: int, granule: int, serial: int, seq: int, lacing: bytes, body: bytes) -> bytes:
    raw = b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, serial, seq, 0, len(lacing)) + lacing + body
    return raw[:22] + struct.pack("<I", ogg_crc32(raw)) + raw[26:]


def long_opus(mb: int) -> bytes:
    src = (EXAMPLES / "100004.opus").read_bytes()
    pages, pos = [], 0
    while pos < len(src):
        _v, flags, granule, serial, seq, _c, n = struct.unpack_from("<BBqIIIB", src, pos + 4)
        lacing = src[pos + 27 : pos + 27 + n]
        body = src[pos + 27 + n : pos + 27 + n + sum(lacing)]
        pages.append((flags, granule, serial, seq, lacing, body, pos))
        pos += 27 + n + sum(lacing)
    out = bytearray(src[: pages[2][6]])
    seq, granule = 2, 0
    audio = pages[2:-1]
    while len(out) < mb * 1024 * 1024:
        for flags, _g, serial, _s, lacing, body, _p in audio:
            granule += 960 * len([v for v in lacing if v < 255])
            out += _page(flags & ~4, granule, serial, seq, lacing, body)
            seq += 1
    flags, _g, serial, _s, lacing, body, _p = pages[-1]
    out += _page(4, granule + 960, serial, seq, lacing, body)
    return bytes(out)


def long_m4a(mb: int) -> bytes:
    """The M4A example's boxes with its media ('mdat', before the 'moov') grown to ``mb`` MiB:
    the checker walks the boxes and passes over the media."""
    src = (EXAMPLES.parent / "media" / "100007.m4a").read_bytes()
    boxes, pos = {}, 0
    while pos < len(src):
        size, kind = struct.unpack_from(">I4s", src, pos)
        boxes[kind] = src[pos:pos + size]
        pos += size
    media = boxes[b"mdat"][8:]
    media = (media * (mb * 1024 * 1024 // len(media) + 1))[: mb * 1024 * 1024]
    return boxes[b"ftyp"] + boxes[b"free"] + struct.pack(">I4s", 8 + len(media), b"mdat") + media + boxes[b"moov"]


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=64 * 1024)
    args = ap.parse_args()
    chunk = args.chunk
    print(f"{'stream':<22}{'MB':>7}{'checker MB/s':>14}{'sha256 MB/s':>13}{'checker/sha256':>16}")
    for name, data, declared in (
        ("wav (mu-law)", long_wav(args.mb * 8), "wav"),
        ("mp3 (8 kHz, 144 B fr)", long_mp3(args.mb), "mp3"),
        ("ogg opus", long_opus(args.mb), "opus"),
        ("m4a (aac, mdat first)", long_m4a(args.mb * 8), "m4a"),
    ):
        mv = memoryview(data)
        pieces = [mv[i : i + chunk] for i in range(0, len(mv), chunk)]

        def check(pieces=pieces, declared=declared) -> None:
            c = AudioFormatChecker(declared_format=declared)
            for p in pieces:
                c.feed(p)
            c.finish()

        def sha(pieces=pieces) -> None:
            h = hashlib.sha256()
            for p in pieces:
                h.update(p)
            h.hexdigest()

        t_check, t_sha = timed(check), timed(sha)
        mb = len(data) / 1e6
        print(f"{name:<22}{mb:>7.1f}{mb / t_check:>14.1f}{mb / t_sha:>13.1f}{t_check / t_sha:>16.2f}")


if __name__ == "__main__":
    main()
