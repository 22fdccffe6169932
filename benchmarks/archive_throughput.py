"""Archive throughput: voxpipe against the shell pipeline a user would write instead.

Generates about 1 GB of speech-like 8 kHz PCM16 WAV recordings (64 files of 16 MB by
default; cached under the temp directory), serves them with the CXone emulator in a
separate process (``python -m voxpipe emulate cxone``, so the server does not share the
client's GIL), and times on the same files, in the same run:

* ``voxpipe gzip-6 zlib``: pipeline cxone -> sha256 verifier -> gzip sink, level 6, zlib;
* ``voxpipe gzip-6 isal``: the same with ``engine: isal`` (igzip level 3);
* ``voxpipe gzip-1 isal``: the same at level 1 (igzip level 1);
* ``shell gzip-6``: per file, sequentially, what a user would write::

      curl -s -f -H @auth URL | tee >(sha256sum > f.sha256) | gzip -6 > f.gz

* ``shell gzip-6 xargs -P 2``: the same, two files at a time (one per core);
* ``bare curl``: one ``curl -s -o /dev/null`` process fetching every file in turn (one
  connection, no hashing, no compression, no disk: the ceiling);
* ``downloader only``: voxpipe's ``RangedDownload`` with the pipeline's segment and read
  sizes and concurrency, bytes dropped: what the HTTP client layer alone reaches, to
  separate its cost from the engine's, the hashing's and the compression's.

Every voxpipe archive is checked after its run: each ``.gz`` is decompressed (Python's
:mod:`gzip`) and its SHA-256 compared with the source file's; the shell pipeline's
outputs likewise. A fast run that stores a wrong byte fails the benchmark.

Prints MB/s (10^6 bytes per second; best and median of ``--repeat`` runs, compared by
best) and the ratios the operations goals name (docs/operations.md):
voxpipe(gzip 6) / shell(gzip 6) >= 2 and voxpipe(gzip 1, isal) / bare curl >= 0.4.

Run: ``python benchmarks/archive_throughput.py [--files 64 --file-mb 16 --repeat 3]``.
Needs curl, gzip, sha256sum and bash on PATH, numpy, and python-isal for the isal rows.
Sends traffic only to 127.0.0.1. The bearer token reaches curl through a header file,
never on a command line.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
import wave
from pathlib import Path

import numpy as np
import trio

from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.plugins import get_registry
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from voxpipe.compression import isal_zlib_module

RATE = 8000  # samples per second
#: Bump when the generator changes, so a stale cache is not reused.
DATA_VERSION = 2
#: Seconds to wait for the emulator process to print its base URL.
EMULATOR_START_TIMEOUT = 30.0

PIPELINE = """
pipelines:
  bench:
    concurrency: {concurrency}
    state_dir: {state}
    checkpoint_bytes: {checkpoint}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {client_id}
      client_secret: ${{CXONE_SECRET}}
      recordings_file: {ids}
      chunk_size: {chunk}
      max_connections: {concurrency}
    verifiers:
      - type: sha256
    sinks:
      - type: gzip
        dir: {out}
        level: {level}
        engine: {engine}
"""


# ---------------------------------------------------------------------------- data

def speech_like(seconds: float, seed: int) -> np.ndarray:
    """PCM16 samples that look like a phone call to a compressor (not zeros, not white noise).

    Noise through two formant-like resonances (about 500 Hz and 1500 Hz), amplitude-
    modulated at a syllable rate (3-5 Hz) with talk spurts (about 80 % of seconds) and
    pauses, over line noise (about -40 dBFS). gzip -6 stores it at about 0.85 of its size,
    between synthetic speech (espeak: 0.68) and recorded calls (about 0.93).
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    excitation = rng.standard_normal(n)
    # A short FIR low-pass plus resonances at ~500 Hz and ~1500 Hz (8 kHz sampling).
    t = np.arange(48)
    fir = np.exp(-t / 10.0) * (np.cos(2 * np.pi * 500 / RATE * t) + 0.6 * np.cos(2 * np.pi * 1500 / RATE * t))
    voiced = np.convolve(excitation, fir, mode="same")
    syllables = 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * np.arange(n) / RATE + rng.uniform(0, 6.3)))
    spurts = np.repeat(rng.random(n // RATE + 1) < 0.8, RATE)[:n]  # talk or pause, per second
    level = 4000.0 * syllables * spurts + 60.0
    samples = voiced / np.abs(voiced).max() * level * 3 + rng.normal(0, 300.0, n)
    return np.clip(samples, -32768, 32767).astype("<i2")


def make_recordings(directory: Path, files: int, file_mb: int) -> dict[str, str]:
    """Create (or reuse) the WAVs; returns {recording id: SHA-256 hex of the file}."""
    marker = directory / f"recordings-v{DATA_VERSION}-{files}x{file_mb}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    seconds = file_mb * 1_000_000 / 2 / RATE
    digests = {}
    for i in range(files):
        rid = f"rec-{i:04d}"
        path = directory / f"{rid}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(speech_like(seconds, seed=i).tobytes())
        digests[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    marker.write_text(json.dumps(digests))
    return digests


# ---------------------------------------------------------------------------- emulator

class EmulatorProcess:
    """``python -m voxpipe emulate cxone`` in a subprocess; ``base`` is its URL."""

    def __init__(self, recordings: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxpipe", "emulate", "cxone", "--recordings", str(recordings),
             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + EMULATOR_START_TIMEOUT
        self.base = ""
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "base URL:" in line:
                self.base = line.split("base URL:", 1)[1].strip()
                break
        if not self.base:
            self.close()
            raise RuntimeError("the CXone emulator did not start")

    def token(self) -> str:
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID,
                                       "client_secret": DEMO_CLIENT_SECRET,
                                       "scope": "recording:download recording:read"}).encode()
        with urllib.request.urlopen(f"{self.base}/oauth/token", data=form, timeout=10) as r:
            return json.load(r)["access_token"]

    def download_url(self, rid: str) -> str:
        return f"{self.base}/api/v2/recording/download/{rid}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------- runs

def gunzip_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


def check_archive(out: Path, digests: dict[str, str], suffix: str) -> None:
    """Every recording stored once, decompressing to exactly the source bytes."""
    for rid, want in digests.items():
        path = out / f"{rid}{suffix}"
        got = gunzip_sha256(path)
        if got != want:
            raise SystemExit(f"CORRUPT: {path} decompresses to sha256 {got}, source is {want}")


def run_voxpipe(emu: EmulatorProcess, work: Path, digests: dict[str, str], *, level: int, engine: str,
                concurrency: int, chunk: int, checkpoint: int) -> float:
    """One pipeline run into a fresh directory; returns seconds (checked, then deleted)."""
    out, state = work / "out", work / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    ids = work / "ids.txt"
    ids.write_text("\n".join(digests) + "\n")
    text = PIPELINE.format(concurrency=concurrency, state=state, checkpoint=checkpoint, base=emu.base,
                           client_id=DEMO_CLIENT_ID, ids=ids, chunk=chunk, out=out, level=level, engine=engine)
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    runner = Runner(cfg.pipeline(None))
    t0 = time.perf_counter()
    summary = trio.run(runner.run)
    seconds = time.perf_counter() - t0
    if not summary.ok or len(summary.results) != len(digests):
        raise SystemExit(f"voxpipe run failed: {[(r.id, r.message) for r in summary.failed]}")
    for r in summary.results:
        if r.digests.get("sha256") != digests[r.id]:
            raise SystemExit(f"CORRUPT: {r.id} verified as {r.digests.get('sha256')}, source is {digests[r.id]}")
    check_archive(out, digests, ".wav.gz")
    shutil.rmtree(out)
    return seconds


def run_download_only(emu: EmulatorProcess, digests: dict[str, str], *, sizes: dict[str, int], token: str,
                      concurrency: int, chunk: int) -> float:
    """voxpipe's downloader alone (RangedDownload, same segments and reads), bytes dropped: the HTTP ceiling."""
    import httpx

    from voxpipe.download.downloader import RangedDownload, read_size_for

    async def main() -> int:
        received = 0
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            admit = trio.Semaphore(concurrency)

            async def auth() -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"}

            async def one(rid: str) -> None:
                nonlocal received
                async with admit:
                    download = RangedDownload(client, emu.download_url(rid), recording_id=rid, size=sizes[rid],
                                              segment_size=chunk, auth=auth, read_size=read_size_for(chunk))
                    async for c in download.chunks():
                        received += len(c.data)

            async with trio.open_nursery() as nursery:
                for rid in digests:
                    nursery.start_soon(one, rid)
        return received

    t0 = time.perf_counter()
    got = trio.run(main)
    seconds = time.perf_counter() - t0
    if got != sum(sizes.values()):
        raise SystemExit(f"downloader received {got} bytes, expected {sum(sizes.values())}")
    return seconds


def run_shell(emu: EmulatorProcess, work: Path, digests: dict[str, str], *, parallel: int, auth: Path) -> float:
    """The user's shell pipeline per file (``xargs -P parallel``); returns seconds (checked, then deleted)."""
    out = work / "shell"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    script = ('set -o pipefail; curl -s -f -H @"$AUTH" "$BASE/api/v2/recording/download/$1" '
              '| tee >(sha256sum > "$OUT/$1.sha256") | gzip -6 > "$OUT/$1.wav.gz"')
    env = {**os.environ, "AUTH": str(auth), "BASE": emu.base, "OUT": str(out)}
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "bash", "-c", script, "shell"],
                   input="\n".join(digests) + "\n", text=True, env=env, check=True)
    seconds = time.perf_counter() - t0
    for rid, want in digests.items():
        got = (out / f"{rid}.sha256").read_text().split()[0] if (out / f"{rid}.sha256").exists() else None
        if got != want:
            raise SystemExit(f"shell pipeline: {rid} sha256 {got}, source is {want}")
    check_archive(out, digests, ".wav.gz")
    shutil.rmtree(out)
    return seconds


def run_bare_curl(emu: EmulatorProcess, digests: dict[str, str], *, auth: Path, total: int) -> float:
    """One curl process downloading every file to /dev/null over one connection."""
    args = ["curl", "-s", "-f", "-H", f"@{auth}", "-w", "%{size_download}\n"]
    for rid in digests:
        args += ["-o", "/dev/null", emu.download_url(rid)]
    t0 = time.perf_counter()
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    got = sum(int(n) for n in done.stdout.split())
    if got != total:
        raise SystemExit(f"bare curl received {got} bytes, expected {total}")
    return seconds


# ---------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mb", type=int, default=16, help="MB (10^6 bytes) of audio per file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--chunk-mb", type=int, default=16, help="cxone chunk_size (ranged segment), MiB")
    parser.add_argument("--checkpoint-mb", type=int, default=32, help="engine checkpoint_bytes, MiB")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "voxpipe-bench-recordings")
    parser.add_argument("--only", help="comma-separated subset of: zlib6,isal6,isal1,shell,shell2,curl,download")
    parser.add_argument("--out", type=Path, default=None,
                        help="where archives are written (default: a new directory under the temp directory); "
                             "voxpipe fsyncs every file, the shell pipeline does not, so a slow disk shows here")
    opts = parser.parse_args()
    for tool in ("curl", "gzip", "sha256sum", "bash", "xargs"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH")
    have_isal = isal_zlib_module() is not None
    wanted = set((opts.only or "zlib6,isal6,isal1,shell,shell2,curl,download").split(","))
    if not have_isal:
        print("python-isal is not installed: skipping the isal rows (pip install 'voxpipe[fast]')")
        wanted -= {"isal6", "isal1"}

    print(f"preparing {opts.files} x {opts.file_mb} MB recordings in {opts.cache} ...", flush=True)
    digests = make_recordings(opts.cache, opts.files, opts.file_mb)
    sizes = {rid: (opts.cache / f"{rid}.wav").stat().st_size for rid in digests}
    total = sum(sizes.values())
    load_before = _loadavg()
    emu = EmulatorProcess(opts.cache)
    try:
        with tempfile.TemporaryDirectory(prefix="voxpipe-bench-", dir=opts.out) as tmp:
            work = Path(tmp)
            auth = work / "auth.header"
            auth.touch(mode=0o600)
            token = emu.token()
            auth.write_text(f"Authorization: Bearer {token}\n")
            common = dict(concurrency=opts.concurrency, chunk=opts.chunk_mb << 20, checkpoint=opts.checkpoint_mb << 20)
            rows = {
                "zlib6": ("voxpipe gzip-6 zlib", lambda: run_voxpipe(emu, work, digests, level=6, engine="zlib", **common)),
                "isal6": ("voxpipe gzip-6 isal (igzip 3)",
                          lambda: run_voxpipe(emu, work, digests, level=6, engine="isal", **common)),
                "isal1": ("voxpipe gzip-1 isal (igzip 1)",
                          lambda: run_voxpipe(emu, work, digests, level=1, engine="isal", **common)),
                "shell": ("shell curl|tee(sha256sum)|gzip -6", lambda: run_shell(emu, work, digests, parallel=1, auth=auth)),
                "shell2": ("shell, xargs -P 2", lambda: run_shell(emu, work, digests, parallel=2, auth=auth)),
                "curl": ("bare curl -o /dev/null", lambda: run_bare_curl(emu, digests, auth=auth, total=total)),
                "download": ("downloader only, bytes dropped",
                             lambda: run_download_only(emu, digests, sizes=sizes, token=token,
                                                       concurrency=opts.concurrency, chunk=opts.chunk_mb << 20)),
            }
            times: dict[str, list[float]] = {k: [] for k in rows if k in wanted}
            for round_ in range(opts.repeat):
                for key in times:  # interleaved, so drift on the machine hits every row alike
                    seconds = rows[key][1]()
                    times[key].append(seconds)
                    print(f"  round {round_ + 1}: {rows[key][0]:<36} {total / seconds / 1e6:8.1f} MB/s", flush=True)
    finally:
        emu.close()

    best = {k: total / min(v) / 1e6 for k, v in times.items()}
    median = {k: total / statistics.median(v) / 1e6 for k, v in times.items()}
    print(f"\nload average before/after: {load_before} / {_loadavg()} on {os.cpu_count()} CPUs (other work skews figures)")
    print(f"{len(digests)} recordings, {total / 1e6:.0f} MB; concurrency {opts.concurrency}, chunk_size "
          f"{opts.chunk_mb} MiB, checkpoint_bytes {opts.checkpoint_mb} MiB; {opts.repeat} rounds; every archive verified")
    print(f"{'':<38}{'best MB/s':>10}{'median':>10}")
    for key in times:
        print(f"{rows[key][0]:<38}{best[key]:>10.1f}{median[key]:>10.1f}")
    print()
    ratios = [("voxpipe gzip-6 isal / shell gzip-6", "isal6", "shell", 2.0),
              ("voxpipe gzip-6 zlib / shell gzip-6", "zlib6", "shell", None),
              ("voxpipe gzip-6 isal / shell xargs -P 2", "isal6", "shell2", None),
              ("voxpipe gzip-1 isal / bare curl", "isal1", "curl", 0.4),
              ("voxpipe downloader only / bare curl", "download", "curl", None),
              ("voxpipe gzip-1 isal / downloader only", "isal1", "download", None)]
    failed = False
    for label, a, b, goal in ratios:
        if a in best and b in best:
            ratio = best[a] / best[b]
            verdict = "" if goal is None else (f"  goal >= {goal}: " + ("met" if ratio >= goal else "MISSED"))
            failed |= goal is not None and ratio < goal
            print(f"{label:<42}{ratio:6.2f}x{verdict}")
    sys.exit(1 if failed else 0)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
