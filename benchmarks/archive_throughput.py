"""Archive throughput: voxpipe against the machine's limit and the shell pipeline a user would write.

Generates about 1 GB of speech-like 8 kHz PCM16 WAV recordings (64 files of 16 MB by
default; cached under the temp directory), serves them with the CXone emulator in a
separate process (``python -m voxpipe emulate cxone``, so the server does not share the
client's GIL), and times on the same files, in the same run:

* ``voxpipe default``: pipeline cxone -> sha256 verifier -> gzip sink with its defaults
  (igzip level 1, ``compress: auto``, default ``checkpoint_bytes`` and ``chunk_size``
  unless given);
* ``voxpipe no compression``: the same into the ``file`` sink;
* ``voxpipe gzip-6 zlib``: gzip sink level 6, zlib (the default before python-isal was a
  dependency: what a plain install did), and ``voxpipe gzip-1 zlib``;
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

Besides wall-clock MB/s, every row reports its client CPU-seconds per GB (voxpipe: this
process's CPU time, all threads; curl and the shell: ``getrusage`` of the children; the
emulator's CPU is not counted). The **primitives** are timed alone on the same bytes in
the same run: the socket read (curl's CPU, from the bare-curl row), SHA-256 (hashlib),
the row's compressor at the same level over 1 MiB pieces, and write + fsync of the
bytes stored (one file per recording). Each voxpipe row prints its CPU per GB divided by
the sum of the primitives it needs (the goal for the default row: at most 1.25;
docs/operations.md).

Every voxpipe archive is checked after its run: each ``.gz`` is decompressed (Python's
:mod:`gzip`) and its SHA-256 compared with the source file's; the shell pipeline's
outputs likewise. A fast run that stores a wrong byte fails the benchmark.

Prints MB/s (10^6 bytes per second; best and median of ``--repeat`` runs, compared by
best), CPU-s per GB (the least of the rounds), and the ratios the operations goals name
(docs/operations.md): voxpipe default CPU / primitives <= 1.25, voxpipe default /
voxpipe gzip-6 zlib (what a plain install did before) >= 5, voxpipe(gzip 6) /
shell(gzip 6) >= 2. Exits 1 when a goal is missed.

Run: ``python benchmarks/archive_throughput.py [--files 64 --file-mb 16 --repeat 3]``.
Needs curl, gzip, sha256sum and bash on PATH, numpy, and python-isal for the isal rows.
Sends traffic only to 127.0.0.1. The bearer token reaches curl through a header file,
never on a command line.
"""

from __future__ import annotations

import argparse
import resource
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
{checkpoint}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {client_id}
      client_secret: ${{CXONE_SECRET}}
      recordings_file: {ids}
{chunk}
      max_connections: {concurrency}
    verifiers:
      - type: sha256
    sinks:
      - type: {sink}
        dir: {out}
{sink_options}
"""
#: Every row, in the order they run.
ALL_ROWS = ("default", "file", "zlib6", "zlib1", "isal6", "isal1", "shell", "shell2", "curl", "download")
#: Bytes per compressor call and per write when timing the primitives (the engine's read size).
PRIMITIVE_PIECE = 1 << 20


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


def cached_wavs(directory: Path, marker_name: str, ids: list[str],
                samples: Callable[[int], np.ndarray]) -> dict[str, str]:
    """Create (or reuse, when ``marker_name`` exists) one 8 kHz mono WAV per id, the i-th
    holding ``samples(i)``; returns {recording id: SHA-256 hex of the file}."""
    marker = directory / marker_name
    if marker.exists():
        return json.loads(marker.read_text())
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    digests = {}
    for i, rid in enumerate(ids):
        path = directory / f"{rid}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(samples(i).tobytes())
        digests[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    marker.write_text(json.dumps(digests))
    return digests


def make_recordings(directory: Path, files: int, file_mb: int) -> dict[str, str]:
    """Create (or reuse) the WAVs; returns {recording id: SHA-256 hex of the file}."""
    seconds = file_mb * 1_000_000 / 2 / RATE
    return cached_wavs(directory, f"recordings-v{DATA_VERSION}-{files}x{file_mb}.json",
                       [f"rec-{i:04d}" for i in range(files)], lambda i: speech_like(seconds, seed=i))


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
    """Every recording stored once, decompressing (``.gz``) to exactly the source bytes."""
    for rid, want in digests.items():
        path = out / f"{rid}{suffix}"
        got = gunzip_sha256(path) if suffix.endswith(".gz") else sha256_of(path)
        if got != want:
            raise SystemExit(f"CORRUPT: {path} holds sha256 {got}, source is {want}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Timing:
    """Wall seconds and client CPU seconds of one run."""

    seconds: float
    cpu: float


def run_voxpipe(emu: EmulatorProcess, work: Path, digests: dict[str, str], *, sink: str, options: dict[str, Any],
                concurrency: int, chunk: int | None, checkpoint: int | None) -> Timing:
    """One pipeline run into a fresh directory; returns its timing (checked, then deleted).

    ``options`` are the sink's settings besides ``dir`` (none: its defaults); ``chunk`` and
    ``checkpoint`` ``None`` leave the source's and pipeline's defaults.
    """
    out, state = work / "out", work / "state"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    ids = work / "ids.txt"
    ids.write_text("\n".join(digests) + "\n")
    text = PIPELINE.format(
        concurrency=concurrency, state=state, base=emu.base, client_id=DEMO_CLIENT_ID, ids=ids, out=out, sink=sink,
        checkpoint=f"    checkpoint_bytes: {checkpoint}" if checkpoint else "",
        chunk=f"      chunk_size: {chunk}" if chunk else "",
        sink_options="\n".join(f"        {k}: {v}" for k, v in options.items()))
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    runner = Runner(cfg.pipeline(None))
    cpu0, t0 = time.process_time(), time.perf_counter()
    summary = trio.run(runner.run)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if not summary.ok or len(summary.results) != len(digests):
        raise SystemExit(f"voxpipe run failed: {[(r.id, r.message) for r in summary.failed]}")
    for r in summary.results:
        if r.digests.get("sha256") != digests[r.id]:
            raise SystemExit(f"CORRUPT: {r.id} verified as {r.digests.get('sha256')}, source is {digests[r.id]}")
    check_archive(out, digests, ".wav.gz" if sink == "gzip" else ".wav")
    shutil.rmtree(out)
    return Timing(seconds, cpu)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------- primitives

@dataclass
class Primitives:
    """CPU-seconds per GB of the unavoidable work, each timed alone on the benchmark's bytes."""

    sha256: float = 0.0
    write_fsync: float = 0.0  # per GB written
    compress: dict[str, float] = field(default_factory=dict)  # CPU-s per GB of input, by row key
    ratio: dict[str, float] = field(default_factory=dict)  # stored / original bytes, by row key


#: The compressor each voxpipe row spends (module name, level): what its primitive times.
ROW_COMPRESSORS = {"default": ("isal", 1), "isal1": ("isal", 1), "isal6": ("isal", 3), "zlib6": ("zlib", 6),
                   "zlib1": ("zlib", 1)}


def time_primitives(cache: Path, digests: dict[str, str], work: Path, keys: set[str]) -> Primitives:
    """SHA-256, each wanted compressor and write + fsync over the same files (thread CPU time)."""
    import zlib

    isal = isal_zlib_module()
    modules = {"zlib": zlib, "isal": isal}
    prim = Primitives()
    total = 0
    stored: dict[str, int] = {}
    cpu_compress: dict[str, float] = {}
    cpu_sha = cpu_write = 0.0
    scratch = work / "primitive.out"
    for rid in digests:
        data = (cache / f"{rid}.wav").read_bytes()
        total += len(data)
        t = time.thread_time()
        hashlib.sha256(data).hexdigest()
        cpu_sha += time.thread_time() - t
        t = time.thread_time()
        with open(scratch, "wb") as f:
            for i in range(0, len(data), PRIMITIVE_PIECE):
                f.write(data[i:i + PRIMITIVE_PIECE])
            f.flush()
            os.fsync(f.fileno())
        cpu_write += time.thread_time() - t
        for key in keys:
            name, level = ROW_COMPRESSORS[key]
            if modules[name] is None:
                continue
            mod = modules[name]
            t = time.thread_time()
            z = mod.compressobj(level, mod.DEFLATED, 31)
            n = sum(len(z.compress(data[i:i + PRIMITIVE_PIECE])) for i in range(0, len(data), PRIMITIVE_PIECE))
            n += len(z.flush())
            cpu_compress[key] = cpu_compress.get(key, 0.0) + time.thread_time() - t
            stored[key] = stored.get(key, 0) + n
    scratch.unlink(missing_ok=True)
    gb = total / 1e9
    prim.sha256, prim.write_fsync = cpu_sha / gb, cpu_write / gb
    prim.compress = {k: v / gb for k, v in cpu_compress.items()}
    prim.ratio = {k: v / total for k, v in stored.items()}
    return prim


def run_download_only(emu: EmulatorProcess, digests: dict[str, str], *, sizes: dict[str, int], token: str,
                      concurrency: int, chunk: int) -> Timing:
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

    cpu0, t0 = time.process_time(), time.perf_counter()
    got = trio.run(main)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if got != sum(sizes.values()):
        raise SystemExit(f"downloader received {got} bytes, expected {sum(sizes.values())}")
    return Timing(seconds, cpu)


def run_shell(emu: EmulatorProcess, work: Path, digests: dict[str, str], *, parallel: int, auth: Path) -> Timing:
    """The user's shell pipeline per file (``xargs -P parallel``); returns seconds (checked, then deleted)."""
    out = work / "shell"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    script = ('set -o pipefail; curl -s -f -H @"$AUTH" "$BASE/api/v2/recording/download/$1" '
              '| tee >(sha256sum > "$OUT/$1.sha256") | gzip -6 > "$OUT/$1.wav.gz"')
    env = {**os.environ, "AUTH": str(auth), "BASE": emu.base, "OUT": str(out)}
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "bash", "-c", script, "shell"],
                   input="\n".join(digests) + "\n", text=True, env=env, check=True)
    seconds, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    for rid, want in digests.items():
        got = (out / f"{rid}.sha256").read_text().split()[0] if (out / f"{rid}.sha256").exists() else None
        if got != want:
            raise SystemExit(f"shell pipeline: {rid} sha256 {got}, source is {want}")
    check_archive(out, digests, ".wav.gz")
    shutil.rmtree(out)
    return Timing(seconds, cpu)


def run_bare_curl(emu: EmulatorProcess, digests: dict[str, str], *, auth: Path, total: int) -> Timing:
    """One curl process downloading every file to /dev/null over one connection."""
    args = ["curl", "-s", "-f", "-H", f"@{auth}", "-w", "%{size_download}\n"]
    for rid in digests:
        args += ["-o", "/dev/null", emu.download_url(rid)]
    cpu0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    got = sum(int(n) for n in done.stdout.split())
    if got != total:
        raise SystemExit(f"bare curl received {got} bytes, expected {total}")
    return Timing(seconds, cpu)


# ---------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--file-mb", type=int, default=16, help="MB (10^6 bytes) of audio per file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--chunk-mb", type=int, default=None, help="cxone chunk_size (ranged segment), MiB "
                        "(default: the source's default)")
    parser.add_argument("--checkpoint-mb", type=int, default=None, help="engine checkpoint_bytes, MiB "
                        "(default: the pipeline's default)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "voxpipe-bench-recordings")
    parser.add_argument("--only", help="comma-separated subset of: " + ",".join(ALL_ROWS))
    parser.add_argument("--out", type=Path, default=None,
                        help="where archives are written (default: a new directory under the temp directory); "
                             "voxpipe fsyncs every file, the shell pipeline does not, so a slow disk shows here")
    opts = parser.parse_args()
    for tool in ("curl", "gzip", "sha256sum", "bash", "xargs"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH")
    have_isal = isal_zlib_module() is not None
    wanted = set((opts.only or ",".join(ALL_ROWS)).split(","))
    if not have_isal:
        print("python-isal is not installed: skipping the isal rows (pip install isal)")
        wanted -= {"isal6", "isal1"}
    if wanted & set(ROW_COMPRESSORS) | {"file"} & wanted:
        wanted.add("curl")  # the socket-read primitive is curl's CPU

    print(f"preparing {opts.files} x {opts.file_mb} MB recordings in {opts.cache} ...", flush=True)
    digests = make_recordings(opts.cache, opts.files, opts.file_mb)
    sizes = {rid: (opts.cache / f"{rid}.wav").stat().st_size for rid in digests}
    total = sum(sizes.values())
    load_before = _loadavg()
    chunk = opts.chunk_mb << 20 if opts.chunk_mb else None
    checkpoint = opts.checkpoint_mb << 20 if opts.checkpoint_mb else None
    emu = EmulatorProcess(opts.cache)
    try:
        with tempfile.TemporaryDirectory(prefix="voxpipe-bench-", dir=opts.out) as tmp:
            work = Path(tmp)
            auth = work / "auth.header"
            auth.touch(mode=0o600)
            token = emu.token()
            auth.write_text(f"Authorization: Bearer {token}\n")
            common = dict(concurrency=opts.concurrency, chunk=chunk, checkpoint=checkpoint)

            def voxpipe(sink: str, **options: Any):
                return lambda: run_voxpipe(emu, work, digests, sink=sink, options=options, **common)

            rows = {
                "default": ("voxpipe default (igzip 1, auto)", voxpipe("gzip")),
                "file": ("voxpipe no compression (file sink)", voxpipe("file")),
                "zlib6": ("voxpipe gzip-6 zlib (old default)", voxpipe("gzip", level=6, engine="zlib")),
                "zlib1": ("voxpipe gzip-1 zlib", voxpipe("gzip", level=1, engine="zlib")),
                "isal6": ("voxpipe gzip-6 isal (igzip 3)", voxpipe("gzip", level=6, engine="isal")),
                "isal1": ("voxpipe gzip-1 isal (igzip 1)", voxpipe("gzip", level=1, engine="isal")),
                "shell": ("shell curl|tee(sha256sum)|gzip -6", lambda: run_shell(emu, work, digests, parallel=1, auth=auth)),
                "shell2": ("shell, xargs -P 2", lambda: run_shell(emu, work, digests, parallel=2, auth=auth)),
                "curl": ("bare curl -o /dev/null", lambda: run_bare_curl(emu, digests, auth=auth, total=total)),
                "download": ("downloader only, bytes dropped",
                             lambda: run_download_only(emu, digests, sizes=sizes, token=token,
                                                       concurrency=opts.concurrency, chunk=chunk or 8 << 20)),
            }
            times: dict[str, list[Timing]] = {k: [] for k in rows if k in wanted}
            prims: list[Primitives] = []
            for round_ in range(opts.repeat):
                for key in times:  # interleaved, so drift on the machine hits every row alike
                    timing = rows[key][1]()
                    times[key].append(timing)
                    print(f"  round {round_ + 1}: {rows[key][0]:<36} {total / timing.seconds / 1e6:8.1f} MB/s "
                          f"{timing.cpu / (total / 1e9):6.2f} CPU-s/GB", flush=True)
                prims.append(time_primitives(opts.cache, digests, work, wanted & set(ROW_COMPRESSORS)))
    finally:
        emu.close()

    gb = total / 1e9
    best = {k: total / min(t.seconds for t in v) / 1e6 for k, v in times.items()}
    median = {k: total / statistics.median(t.seconds for t in v) / 1e6 for k, v in times.items()}
    cpu = {k: min(t.cpu for t in v) / gb for k, v in times.items()}  # least CPU of the rounds: least disturbed
    print(f"\nload average before/after: {load_before} / {_loadavg()} on {os.cpu_count()} CPUs (other work skews figures)")
    print(f"{len(digests)} recordings, {total / 1e6:.0f} MB; concurrency {opts.concurrency}, chunk_size "
          f"{opts.chunk_mb or 'default'} MiB, checkpoint_bytes {opts.checkpoint_mb or 'default'} MiB; "
          f"{opts.repeat} rounds; every archive verified")
    print(f"{'':<38}{'best MB/s':>10}{'median':>10}{'CPU-s/GB':>10}")
    for key in times:
        print(f"{rows[key][0]:<38}{best[key]:>10.1f}{median[key]:>10.1f}{cpu[key]:>10.2f}")

    # The primitives: least CPU of the rounds, each on the same bytes.
    prim = Primitives(sha256=min(p.sha256 for p in prims), write_fsync=min(p.write_fsync for p in prims),
                      compress={k: min(p.compress[k] for p in prims) for k in prims[0].compress},
                      ratio=prims[0].ratio)
    socket = cpu.get("curl")
    print(f"\nprimitives alone on the same bytes (CPU-s per GB): socket read (curl) "
          f"{socket if socket is not None else float('nan'):.2f}, SHA-256 {prim.sha256:.2f}, "
          f"write+fsync {prim.write_fsync:.2f} per GB written; compressors: "
          + ", ".join(f"{ROW_COMPRESSORS[k][0]} {ROW_COMPRESSORS[k][1]} {v:.2f} (ratio {prim.ratio[k]:.3f})"
                      for k, v in prim.compress.items()))
    failed = False
    if socket is not None:
        print(f"{'voxpipe row':<38}{'CPU-s/GB':>10}{'floor':>10}{'ratio':>8}")
        for key in times:
            if key == "file":
                floor = socket + prim.sha256 + prim.write_fsync
            elif key in prim.compress:
                floor = socket + prim.sha256 + prim.compress[key] + prim.write_fsync * prim.ratio[key]
            else:
                continue
            ratio = cpu[key] / floor
            goal = ""
            if key == "default":
                goal = "  goal <= 1.25: " + ("met" if ratio <= 1.25 else "MISSED")
                failed |= ratio > 1.25
            print(f"{rows[key][0]:<38}{cpu[key]:>10.2f}{floor:>10.2f}{ratio:>7.2f}x{goal}")
    print()
    ratios = [("voxpipe default / voxpipe gzip-6 zlib (old default)", "default", "zlib6", 5.0),
              ("voxpipe gzip-6 isal / shell gzip-6", "isal6", "shell", 2.0),
              ("voxpipe gzip-6 zlib / shell gzip-6", "zlib6", "shell", None),
              ("voxpipe gzip-6 isal / shell xargs -P 2", "isal6", "shell2", None),
              ("voxpipe default / bare curl", "default", "curl", None),
              ("voxpipe downloader only / bare curl", "download", "curl", None),
              ("voxpipe default / downloader only", "default", "download", None)]
    for label, a, b, goal in ratios:
        if a in best and b in best:
            ratio = best[a] / best[b]
            verdict = "" if goal is None else (f"  goal >= {goal}: " + ("met" if ratio >= goal else "MISSED"))
            failed |= goal is not None and ratio < goal
            print(f"{label:<54}{ratio:6.2f}x{verdict}")
    sys.exit(1 if failed else 0)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
