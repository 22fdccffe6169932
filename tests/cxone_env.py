"""Helpers for tests that run pipelines against the CXone emulator over loopback."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import random
import shutil
import struct
import textwrap
import wave
from pathlib import Path

import trio

from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.plugins import get_registry
from voxpipe.serving import serve_in_thread
from voxpipe_cxone.emulator.app import CxoneEmulator
from voxpipe_cxone.emulator.faults import FaultConfig
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, EmulatorSettings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "recordings"


def make_wav(path: Path, seconds: float, seed: int, rate: int = 8000) -> Path:
    """A PCM16 mono WAV of noise-like content (compresses poorly, like real audio)."""
    rng = random.Random(seed)
    n = int(seconds * rate)
    samples = struct.pack(f"<{n}h", *(rng.randint(-8000, 8000) for _ in range(n)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return path


def recordings_dir(tmp_path: Path, *, big: int = 0, seconds: float = 40.0) -> Path:
    """The example recordings plus ``big`` larger generated WAVs (ids 9000..)."""
    d = tmp_path / "recordings"
    d.mkdir()
    for f in EXAMPLES.iterdir():
        if f.suffix != ".md":
            shutil.copy(f, d / f.name)
    for i in range(big):
        make_wav(d / f"{9000 + i}.wav", seconds, seed=i)
    return d


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gunzip_sha256(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


PIPELINE = """
pipelines:
  archive:
    concurrency: {concurrency}
    state_dir: {state}
    checkpoint_bytes: {checkpoint}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {client_id}
      client_secret: ${{CXONE_SECRET}}
      recordings: {ids}
      chunk_size: {chunk}
      max_attempts: {attempts}
      retry_base_delay: 0.01
      max_duration: {max_duration}
    verifiers:
      - type: sha256
    sinks:
      - type: gzip
        dir: {out}
        level: 1
"""


def pipeline_yaml(base: str, ids: list[str], out: Path, state: Path, *, concurrency: int = 4, chunk: int = 65536,
                  attempts: int = 8, max_duration: float = 3600, checkpoint: int = 4 << 20) -> str:
    return PIPELINE.format(base=base, ids=ids, out=out, state=state, concurrency=concurrency, chunk=chunk,
                           attempts=attempts, max_duration=max_duration, client_id=DEMO_CLIENT_ID,
                           checkpoint=checkpoint)


def run_pipeline(text: str):
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    return trio.run(Runner(cfg.pipeline(None)).run)


@contextlib.contextmanager
def emulator(recordings: Path, **settings):
    emu = CxoneEmulator(EmulatorSettings(recordings=recordings, **settings))
    with serve_in_thread(emu) as base:
        yield emu, base


def ids_of(recordings: Path) -> list[str]:
    return sorted(p.stem for p in recordings.iterdir() if p.suffix != ".md")


__all__ = ["FaultConfig", "emulator", "run_pipeline", "pipeline_yaml", "recordings_dir", "ids_of", "sha256_file",
           "gunzip_sha256", "make_wav"]
