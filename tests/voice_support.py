"""Helpers for the voice tests: run a websocket-voice pipeline from YAML, compute expected audio."""

from __future__ import annotations

import textwrap
import wave
from pathlib import Path

import trio

from voxpipe import dsp
from voxpipe.config import parse_config
from voxpipe.engine import Runner, RunObserver
from voxpipe.plugins import get_registry

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "examples" / "recordings"
GAIN_DB = 6.0
GATE = dict(threshold_db=-40.0, attack_ms=2.0, hold_ms=60.0, release_ms=100.0)


def processed(pcm: bytes, sample_rate: int = 8000, channels: int = 1) -> bytes:
    """What the test pipelines' transforms (gain then noise-gate, one gate per channel) make of ``pcm``."""
    gate = dsp.NoiseGate(sample_rate, GATE["threshold_db"], GATE["attack_ms"], GATE["hold_ms"], GATE["release_ms"],
                         channels=channels)
    return gate.process(dsp.gain(pcm, GAIN_DB))


def pipeline_yaml(source: str, out: Path, *, concurrency: int = 4, extra_sinks: str = "",
                  backend: str = "auto") -> str:
    """A pipeline: ``source`` (YAML block body) → gain → noise-gate → wav sink in ``out``
    (the transforms on DSP ``backend``)."""
    return textwrap.dedent("""
        pipelines:
          voice:
            concurrency: {concurrency}
            source:
              type: websocket-voice
        {source}
            transforms:
              - type: gain
                db: {gain}
                backend: {backend}
              - type: noise-gate
                backend: {backend}
                threshold_db: {threshold_db}
                attack_ms: {attack_ms}
                hold_ms: {hold_ms}
                release_ms: {release_ms}
            sinks:
              - type: wav
                dir: {out}
        {extra_sinks}
        """).format(concurrency=concurrency, source=textwrap.indent(textwrap.dedent(source).strip(), " " * 6),
                    gain=GAIN_DB, out=out, extra_sinks=extra_sinks, backend=backend, **GATE)


def runner_for(text: str, services: dict | None = None, observer: RunObserver | None = None) -> Runner:
    config = parse_config(text, get_registry(), filename="voice.yaml", environ={})
    return Runner(config.pipeline(None), services=services, observer=observer)


def read_wav(path: Path, channels: int = 1) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == channels and w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate()


async def run_with_server(runner: Runner, client) -> object:
    """Run a server-mode pipeline; once it listens, run ``client(url)``; return the summary."""
    listening = trio.Event()
    urls: list[str] = []

    def announce(url: str) -> None:
        urls.append(url)
        listening.set()

    runner.services["voice_listening"] = announce
    result = {}
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            result["summary"] = await runner.run()
        nursery.start_soon(run)
        with trio.fail_after(20):
            await listening.wait()
        result["client"] = await client(urls[0])
    return result
