"""Live calls announced by the webhook sink: a signed call-end event with the call's quality."""

from __future__ import annotations

import base64

import trio

from voxpipe.serving import serve_asgi
from voxpipe_voice import schedule
from voxpipe_voice.emulator import StreamOptions, VoiceEmulatorServer, load_files
from voice_support import RECORDINGS, pipeline_yaml, runner_for
from webhook_receiver import Receiver, verified

SECRET = "whsec_" + base64.b64encode(b"voice-webhook-test-secret-32byte").decode()
FILES = load_files([RECORDINGS / "100001.wav", RECORDINGS / "100005.wav"])


def test_twilio_call_end_event_carries_quality_and_a_valid_signature(tmp_path):
    receiver = Receiver()
    # drop and reorder packets so the quality counters have something to count
    options = StreamOptions(codec="twilio", speed=0, seed=9, drop=0.02, reorder=0.02)

    async def main():
        server = VoiceEmulatorServer(FILES, options)
        async with trio.open_nursery() as nursery:
            hook_url = await nursery.start(serve_asgi, receiver)
            await nursery.start(server.serve)
            sink = (f"      - type: webhook\n        url: {hook_url}/hooks\n        secrets: [\"{SECRET}\"]\n"
                    f"        outbox: {tmp_path / 'outbox.sqlite3'}\n        drain_timeout: 5")
            source = "\n".join(["mode: client", "codec: twilio", "urls:", f"  - {server.url}/calls/100001",
                                f"  - {server.url}/calls/100005"])
            summary = await runner_for(pipeline_yaml(source, tmp_path / "out", extra_sinks=sink)).run()
            nursery.cancel_scope.cancel()
        return server, summary

    server, summary = trio.run(main)
    assert summary.ok, [r.message for r in summary.failed]
    events = {e["recording_id"]: e for e in verified(receiver.snapshot(), SECRET)}  # standardwebhooks verifies
    assert set(events) == {"100001", "100005"}
    for call_id, event in events.items():
        assert event["success"] is True and event["total_bytes"] > 0
        quality = event["quality"]
        audio = server.audio_for(call_id)
        plan = options.plan(audio, call_id)
        dropped = len(schedule.mulaw_frames(audio)) - len(plan)
        assert dropped > 0  # the seed really drops packets
        # every media packet the emulator dropped was concealed with silence, and counted
        assert quality["frames_concealed"] == quality["frames_dropped"] == dropped
        assert quality["packets"] == len(plan) and quality["jitter_ms"] >= 0
        # the degradation verdict travels in the call-end event (streamed fast: far above 12 kbps)
        assert quality["degraded"] is False and quality["degradation"]["threshold_bps"] == 12000
        assert event["location"].endswith(f"{call_id}.wav")
