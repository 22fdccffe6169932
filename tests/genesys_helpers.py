"""Shared helpers for the Genesys tests: generated WAV files, the emulator, pipeline runs."""

from __future__ import annotations

import contextlib
import math
import os
import struct
import textwrap
import wave
from pathlib import Path
from typing import Iterator

import trio

from voxpipe.config import parse_config
from voxpipe.engine import Runner, RunSummary
from voxpipe.plugins import get_registry
from voxpipe.serving import serve_in_thread
from voxpipe_genesys.emulator import EmulatorConfig, GenesysEmulator, load_catalogue

#: Interval covering every conversation of a generated catalogue (13 h apart from 2026-11-01T08:00Z).
ALL = "2026-10-01T00:00:00Z/2026-12-31T00:00:00Z"


def make_wav(path: Path, seconds: float, freq: float, rate: int = 8000) -> bytes:
    """A 16-bit mono PCM WAV of a tone (deterministic bytes)."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * n / rate)))
                      for n in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path.read_bytes()


def make_recordings(directory: Path) -> dict[str, bytes]:
    """Six recordings in five conversations (``call-e`` has two legs); one spans several 64 KiB segments."""
    directory.mkdir(parents=True, exist_ok=True)
    specs = {"call-a.wav": (0.5, 440), "call-b.wav": (13.0, 300), "call-c.wav": (0.3, 600),
             "call-d.wav": (1.0, 700), "call-e__agent.wav": (0.4, 500), "call-e__customer.wav": (0.6, 350)}
    return {name: make_wav(directory / name, s, f) for name, (s, f) in specs.items()}


@contextlib.contextmanager
def emulator(directory: Path, **config) -> Iterator[tuple[str, GenesysEmulator]]:
    app = GenesysEmulator(load_catalogue(directory), EmulatorConfig(**config))
    with serve_in_thread(app) as url:
        yield url, app


def pipeline_yaml(url: str, archive: Path, *, source: str = "", verifiers: str = "[{type: sha256}]",
                  concurrency: int = 3) -> str:
    extra = textwrap.indent(textwrap.dedent(source).strip(), " " * 6) if source.strip() else ""
    return textwrap.dedent(f"""
        pipelines:
          g:
            concurrency: {concurrency}
            state_dir: {archive}/.state
            source:
              type: genesys
              api_base: {url}
              login_base: {url}
              client_id: voxpipe-emulator
              client_secret: emulator-secret
              poll_interval: 0.02
              max_poll_interval: 0.05
              chunk_size: 65536
        {{extra}}
            verifiers: {verifiers}
            sinks: [{{type: gzip, dir: {archive}}}]
    """).replace("{extra}", extra)


def run_yaml(text: str, environ: dict[str, str] | None = None) -> tuple[RunSummary, Runner]:
    config = parse_config(text, get_registry(), filename="genesys.yaml", environ=environ or dict(os.environ))
    runner = Runner(config.pipeline(None))
    return trio.run(runner.run), runner
