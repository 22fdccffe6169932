"""Live call metrics (Prometheus, while calls run) and the degradation flag."""

from __future__ import annotations

import json

import trio
from prometheus_client import CollectorRegistry

from voxpipe.voice.degradation import DegradationMonitor
from voxpipe_voice.emulator import StreamOptions, push_calls
from voxpipe_voice.schedule import Audio
from voice_support import RECORDINGS, pipeline_yaml, run_with_server, runner_for
from voxpipe_voice.emulator import load_files

SPEECH = load_files([RECORDINGS / "100002.wav"])[0]


def test_monitor_flags_a_call_below_the_threshold_for_long_enough():
    m = DegradationMonitor(12_000, after=3.0)
    m.update(0.0, 0)
    for t in range(1, 4):  # 64 kbps for 3 s
        assert not m.update(float(t), 8000 * t)
    assert m.bitrate == 64_000
    total = 24_000
    for t in range(4, 6):  # 4 kbps for 2 s: not yet
        total += 500
        assert not m.update(float(t), total)
    assert m.update(9.0, total)  # no data for 4 s: one long low interval
    snap = m.snapshot()
    assert snap.degraded and snap.degraded_seconds == 6.0 and snap.longest_low_seconds == 6.0
    m.update(10.0, total + 8000)
    assert m.degraded and m.low_run == 0  # stays flagged


def test_live_metrics_while_a_call_runs_and_degraded_flag_in_the_result(tmp_path):
    registry = CollectorRegistry()
    audio = Audio(SPEECH.pcm[: 2 * 8000 * 3], 8000, "speech")  # 3 s of speech
    source = "mode: server\nport: 0\ncodec: twilio\nmax_calls: 1\ndegraded_bitrate_bps: 100000\ndegraded_after: 1"
    runner = runner_for(pipeline_yaml(source, tmp_path / "out"), services={"metrics_registry": registry})
    seen = {}

    async def client(url):
        async with trio.open_nursery() as nursery:
            async def watch():
                await trio.sleep(2.0)
                seen["active"] = registry.get_sample_value("voxpipe_voice_active_calls",
                                                           {"pipeline": "voice", "codec": "twilio"})
                seen["bitrate"] = registry.get_sample_value("voxpipe_voice_call_bitrate_bps",
                                                            {"pipeline": "voice", "call": "call-0000"})
                seen["packets"] = registry.get_sample_value("voxpipe_voice_packets_received_total",
                                                            {"pipeline": "voice", "codec": "twilio"})
            nursery.start_soon(watch)
            return await push_calls(url, [audio], 1, StreamOptions(codec="twilio", speed=1.0))

    async def main():
        with trio.fail_after(60):
            return await run_with_server(runner, client)

    result = trio.run(main)
    assert result["summary"].ok
    assert seen["active"] == 1 and 50_000 < seen["bitrate"] < 80_000 and seen["packets"] > 50
    assert registry.get_sample_value("voxpipe_voice_active_calls", {"pipeline": "voice", "codec": "twilio"}) == 0
    assert registry.get_sample_value("voxpipe_voice_call_bitrate_bps", {"pipeline": "voice", "call": "call-0000"}) \
        is None
    assert registry.get_sample_value("voxpipe_voice_degraded_calls_total", {"pipeline": "voice",
                                                                             "codec": "twilio"}) == 1
    assert registry.get_sample_value("voxpipe_voice_jitter_ms_count", {"pipeline": "voice", "codec": "twilio"}) >= 2
    quality = json.loads((tmp_path / "out" / "call-0000.wav.json").read_text())["metadata"]["quality"]
    # μ-law at 8 kHz is 64 kbps of payload: below the 100 kbps threshold of this test for the whole call
    assert quality["degraded"] is True and quality["degradation"]["threshold_bps"] == 100000
    assert quality["degradation"]["degraded_seconds"] >= 2
