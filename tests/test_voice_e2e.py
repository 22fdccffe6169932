"""End to end: voice emulator → websocket-voice pipeline (from YAML) → WAV equal to the expected audio."""

from __future__ import annotations

import json

import pytest
import trio

from voxpipe_voice import schedule
from voxpipe_voice.emulator import StreamOptions, VoiceEmulatorServer, load_files, push_calls
from voice_support import RECORDINGS, pipeline_yaml, processed, read_wav, run_with_server, runner_for

FILES = load_files([RECORDINGS / "100001.wav", RECORDINGS / "100002.wav", RECORDINGS / "100005.wav"])


def expected_for(audio, options: StreamOptions, call_id: str) -> bytes:
    if options.codec == "twilio":
        return processed(schedule.expected_twilio_pcm(audio, options.plan(audio, call_id)))
    return processed(audio.pcm)


async def client_mode(tmp_path, options: StreamOptions, source_extra: str = "", calls=("100001", "100002")):
    server = VoiceEmulatorServer(FILES, options)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        source = "\n".join([f"mode: client", f"codec: {options.codec}", "urls:",
                            *(f"  - {server.url}/calls/{c}" for c in calls), source_extra])
        text = pipeline_yaml(source, tmp_path / "out")
        summary = await runner_for(text).run()
        nursery.cancel_scope.cancel()
    return server, summary


@pytest.mark.parametrize("codec", ["pcm16", "twilio"])
def test_client_mode_records_processed_audio(tmp_path, codec):
    options = StreamOptions(codec=codec, speed=0, seed=3, min_bytes=1, max_bytes=700)
    server, summary = trio.run(client_mode, tmp_path, options)
    assert summary.ok, [r.message for r in summary.failed]
    assert len(summary.results) == 2
    for call_id in ("100001", "100002"):
        audio = server.audio_for(call_id)
        pcm, rate = read_wav(tmp_path / "out" / f"{call_id}.wav")
        assert rate == 8000
        assert pcm == expected_for(audio, options, call_id)
        manifest = json.loads((tmp_path / "out" / f"{call_id}.wav.json").read_text())
        assert manifest["format"] == "wav"
        quality = manifest["metadata"]["quality"]
        assert quality["frames_concealed"] == 0 and quality["reconnects"] == 0
        assert quality["packets"] == server.reports[call_id].messages - (2 + 1 if codec == "twilio" else 0)
