"""Throughput of the retrieval API against a baseline in the same script.

Baseline: a minimal ASGI app on the same hypercorn/trio server streaming the same bytes
from memory in the same block size (so the ratio isolates what the archive app adds:
disk reads in worker threads, SHA-256 verification, decompression). Prints MB/s and the
ratio for: the stored gzip file whole (verified), a 1 MiB range, and ``decompress=1``.

    python benchmarks/archive_serve.py [--mib 64]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from voxpipe.serving import serve_in_thread
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import BearerAuth
from voxpipe_archive.bodies import BLOCK_SIZE
from voxpipe_archive.index import ArchiveIndex

TOKEN = "benchmark-token-0123456789"


def baseline_app(payload: bytes):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode())]})
        for i in range(0, len(payload), BLOCK_SIZE):
            await send({"type": "http.response.body", "body": payload[i:i + BLOCK_SIZE],
                        "more_body": i + BLOCK_SIZE < len(payload)})
    return app


def fetch(client: httpx.Client, url: str, headers: dict[str, str], repeat: int) -> tuple[float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with client.stream("GET", url, headers=headers) as r:
            r.raise_for_status()
            n = sum(len(b) for b in r.iter_raw())
        best = min(best, time.perf_counter() - t0)
    return best, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # Audio-like data: compressible but not trivially (gzip ratio about 0.5).
    original = bytes((i * 7 + (i >> 9)) & 0xFF if i % 3 else os.urandom(1)[0] for i in range(1 << 20)) * args.mib
    stored = gzip.compress(original, compresslevel=1, mtime=0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "b.wav.gz").write_bytes(stored)
        (root / "b.wav.gz.json").write_text(json.dumps({
            "source": "bench", "pipeline": "p", "recording_id": "b", "format": "wav",
            "original_size": len(original), "original_sha256": hashlib.sha256(original).hexdigest(),
            "stored_file": "b.wav.gz", "stored_size": len(stored), "stored_sha256": hashlib.sha256(stored).hexdigest(),
            "compression": "gzip", "recording_date": None, "received_at": None, "stored_at": None, "metadata": {}}))
        app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        results = {}
        with httpx.Client(timeout=120) as client:
            with serve_in_thread(baseline_app(stored)) as url:
                results["baseline (memory, stored size)"] = fetch(client, url + "/", {}, args.repeat)
            with serve_in_thread(baseline_app(original)) as url:
                results["baseline (memory, original size)"] = fetch(client, url + "/", {}, args.repeat)
            with serve_in_thread(app) as url:
                results["GET stored, verified"] = fetch(client, url + "/recordings/b", auth, args.repeat)
                results["GET decompress=1, verified"] = fetch(client, url + "/recordings/b?decompress=1", auth,
                                                              args.repeat)
    base_stored = results["baseline (memory, stored size)"][0]
    base_orig = results["baseline (memory, original size)"][0]
    print(f"{args.mib} MiB original, {len(stored) / 2**20:.1f} MiB stored; best of {args.repeat}")
    for name, (seconds, n) in results.items():
        base = base_orig if "decompress" in name or "original" in name else base_stored
        print(f"{name:<36} {n / seconds / 1e6:8.1f} MB/s   ratio to baseline {base / seconds:5.2f}")


if __name__ == "__main__":
    sys.exit(main())
