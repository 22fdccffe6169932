"""examples/live-voice.yaml records emulator calls, both codecs, both modes, as the expected WAVs."""

from __future__ import annotations

import json

import pytest
import trio

from voxpipe import dsp
from voxpipe.config import load_config
from voxpipe.engine import Runner
from voxpipe.plugins import get_registry
from voxpipe_voice import schedule
from voxpipe_voice.emulator import StreamOptions, VoiceEmulatorServer, load_files, push_calls
from voice_support import RECORDINGS, ROOT, read_wav, run_with_server

EXAMPLE = ROOT / "examples" / "live-voice.yaml"
FILES = load_files(sorted(RECORDINGS.glob("*.wav")))


def _pipeline(name: str, environ: dict[str, str]):
    return load_config(EXAMPLE, get_registry(), environ=environ).pipeline(name)


def _expected(pipeline, pcm: bytes) -> bytes:
    """Run the example's own transform settings through voxpipe.dsp."""
    for t in pipeline.transforms:
        s = t.settings
        if t.type == "gain":
            pcm = dsp.gain(pcm, s.db)
        elif t.type == "noise-gate":
            pcm = dsp.NoiseGate(8000, s.threshold_db, s.attack_ms, s.hold_ms, s.release_ms, s.floor_db,
                                s.makeup_db).process(pcm)
        else:
            raise AssertionError(f"test does not model transform {t.type}")
    return pcm


def _check_wavs(out, pipeline, options: StreamOptions, expect: dict[str, object]):
    wavs = {p.stem: p for p in out.rglob("*.wav")}
    assert sorted(wavs) == sorted(expect)
    concealed = 0
    for call_id, audio in expect.items():
        pcm, rate = read_wav(wavs[call_id])
        source = audio.pcm if options.codec == "pcm16" else \
            schedule.expected_twilio_pcm(audio, options.plan(audio, call_id))
        assert rate == 8000 and pcm == _expected(pipeline, source)
        quality = json.loads(wavs[call_id].with_name(wavs[call_id].name + ".json").read_text())["metadata"]["quality"]
        frames = len(schedule.mulaw_frames(audio))
        dropped = frames - len(options.plan(audio, call_id) or range(frames)) if options.codec == "twilio" else 0
        assert quality["frames_concealed"] == quality["frames_dropped"] == dropped
        concealed += dropped
    assert (concealed > 0) == (options.codec == "twilio")  # the Twilio runs really lose packets


@pytest.mark.parametrize("codec", ["pcm16", "twilio"])
def test_example_client_mode(tmp_path, codec):
    options = StreamOptions(codec=codec, speed=0, seed=1, drop=0.02 if codec == "twilio" else 0.0)

    async def main():
        server = VoiceEmulatorServer(FILES, options)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            pipeline = _pipeline("live-voice-client", {"VOICE_CODEC": codec, "VOICE_STREAM_BASE": server.url,
                                                       "VOICE_ARCHIVE_DIR": str(tmp_path / "calls")})
            summary = await Runner(pipeline).run()
            nursery.cancel_scope.cancel()
        return pipeline, summary, server

    pipeline, summary, server = trio.run(main)
    assert summary.ok and len(summary.results) == 3, [r.message for r in summary.failed]
    _check_wavs(tmp_path / "calls", pipeline, options, {c: server.audio_for(c) for c in ("100001", "100002", "100005")})


@pytest.mark.parametrize("codec", ["pcm16", "twilio"])
def test_example_server_mode(tmp_path, codec):
    options = StreamOptions(codec=codec, speed=0, seed=2, drop=0.02 if codec == "twilio" else 0.0, reorder=0.05)
    pipeline = _pipeline("live-voice-server", {"VOICE_CODEC": codec, "VOICE_PORT": "0", "VOICE_MAX_CALLS": "3",
                                               "VOICE_ARCHIVE_DIR": str(tmp_path / "calls")})
    runner = Runner(pipeline)
    result = trio.run(run_with_server, runner, lambda url: push_calls(url, FILES, 3, options))
    assert result["summary"].ok, [r.message for r in result["summary"].failed]
    _check_wavs(tmp_path / "calls", pipeline, options, {r.call_id: FILES[i % len(FILES)]
                                                        for i, r in enumerate(result["client"])})
