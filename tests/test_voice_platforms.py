"""End to end with real speech in both channels: Twilio both tracks, Genesys AudioHook and
CXone Agent Assist (RX + TX with a hold) → websocket-voice (server mode) → stereo WAVs whose
samples equal the expected processed audio."""

from __future__ import annotations

import json

import pytest
import trio

from voxpipe import dsp
from voxpipe_voice import schedule
from voxpipe_voice.emulator import CallReport, StreamOptions, load_files, push_calls
from voxpipe_voice.schedule import Audio
from voxpipe_voice.platform_clients import push_audiohook_call, push_cxone_call
from voice_support import RECORDINGS, pipeline_yaml, processed, read_wav, run_with_server, runner_for

CUSTOMER, AGENT = load_files([RECORDINGS / "100002.wav", RECORDINGS / "100001.wav"])
API_KEY, SECRET = "test-api-key", "c2VjcmV0LWZvci10aGUtdGVzdHM="


async def serve(tmp_path, source: str, client, backend: str = "auto"):
    runner = runner_for(pipeline_yaml(source, tmp_path / "out", backend=backend))
    with trio.fail_after(60):  # a call that is never stored fails the test instead of hanging it
        result = await run_with_server(runner, client)
    return result["summary"], result["client"]


def manifest(tmp_path, call_id):
    doc = json.loads((tmp_path / "out" / f"{call_id}.wav.json").read_text())
    return {**doc["metadata"], "facts": doc["facts"]}


@pytest.mark.parametrize("backend", ["auto", "python"])
def test_twilio_both_tracks_recorded_in_stereo(tmp_path, backend):
    # the same samples whichever DSP backend reassembles, decodes, interleaves and gates
    options = StreamOptions(codec="twilio", speed=0, stereo=True)
    source = f"mode: server\nport: 0\ncodec: twilio\nmax_calls: 1\nbackend: {backend}"
    summary, reports = trio.run(serve, tmp_path, source,
                                lambda url: push_calls(url, [CUSTOMER, AGENT], 1, options), backend)
    assert summary.ok, [r.message for r in summary.failed]
    assert reports[0].error is None
    pcm, rate = read_wav(tmp_path / "out" / "call-0000.wav", channels=2)
    expected = schedule.expected_twilio_stereo_pcm(CUSTOMER, AGENT, outbound_delay_ms=options.outbound_delay_ms)
    assert pcm == processed(expected, channels=2)
    meta = manifest(tmp_path, "call-0000")
    assert meta["channels"] == 2 and meta["tracks"] == ["inbound", "outbound"]
    assert meta["facts"]["platform"] == "twilio" and meta["facts"]["call_sid"] == "call-0000"
    left, right = meta["quality"]["channels"]
    assert (left["track"], right["track"]) == ("inbound", "outbound")
    assert left["frames_concealed"] == right["frames_concealed"] == 0
    assert right["gap_samples"] == 8 * options.outbound_delay_ms


@pytest.mark.parametrize("fmt, pause_mode", [("PCMU", "silence"), ("L16", "gap")])
def test_audiohook_session_recorded_in_stereo(tmp_path, fmt, pause_mode):
    pause = (2.0, 1.5)
    source = (f"mode: server\nport: 0\ncodec: audiohook\nmax_calls: 1\npause_mode: {pause_mode}\n"
              f"audiohook_api_key: {API_KEY}\naudiohook_client_secret: {SECRET}")
    report = CallReport("conv-1")

    async def client(url):
        return await push_audiohook_call(f"{url}/audiohook", CUSTOMER, AGENT, "conv-1", report, speed=0,
                                         api_key=API_KEY, client_secret=SECRET, fmt=fmt, pause=pause)

    summary, outcome = trio.run(serve, tmp_path, source, client)
    assert summary.ok, [r.message for r in summary.failed]
    assert report.error is None and outcome["closed"] and outcome["disconnect"] is None
    assert outcome["media"].channels == ("external", "internal") and outcome["media"].format == fmt
    pcm, _ = read_wav(tmp_path / "out" / "conv-1.wav", channels=2)
    expected = schedule.expected_audiohook_pcm(CUSTOMER, AGENT, fmt, pause=pause, pause_mode=pause_mode)
    assert pcm == processed(expected, channels=2)
    meta = manifest(tmp_path, "conv-1")
    facts = meta["facts"]
    assert facts["platform"] == "audiohook" and facts["conversation_id"] == "conv-1" and facts["org_id"]
    assert facts["session_id"] and facts["ani"] == "+13175550000" and len(facts["participants"]) == 1
    q = meta["quality"]
    assert q["pauses"] == 1 and q["paused_ms"] == 1500
    assert q["silence_ms"] == (1500 if pause_mode == "silence" else 0)
    assert q["pings"] == outcome["pongs"] >= 1 and q["close_reason"] == "end"


def test_audiohook_unauthenticated_open_is_refused(tmp_path):
    source = (f"mode: server\nport: 0\ncodec: audiohook\nmax_calls: 1\n"
              f"audiohook_api_key: {API_KEY}\naudiohook_client_secret: {SECRET}")
    reports = [CallReport("bad-key"), CallReport("bad-secret"), CallReport("good")]

    async def client(url):
        out = []
        out.append(await push_audiohook_call(f"{url}/ah", CUSTOMER, None, "bad-key", reports[0], speed=0,
                                             api_key="wrong", client_secret=SECRET))
        out.append(await push_audiohook_call(f"{url}/ah", CUSTOMER, None, "bad-secret", reports[1], speed=0,
                                             api_key=API_KEY, client_secret="d3Jvbmc="))
        out.append(await push_audiohook_call(f"{url}/ah", CUSTOMER, None, "good", reports[2], speed=0,
                                             api_key=API_KEY, client_secret=SECRET))
        return out

    summary, outcomes = trio.run(serve, tmp_path, source, client)
    assert summary.ok and [r.id for r in summary.results] == ["good"]
    for outcome in outcomes[:2]:
        assert outcome["disconnect"]["reason"] == "unauthorized" and outcome["closed"]
    assert "X-API-KEY" in outcomes[0]["disconnect"]["info"]
    assert "signature" in outcomes[1]["disconnect"]["info"]
    assert SECRET not in json.dumps(outcomes[1]["disconnect"])
    pcm, _ = read_wav(tmp_path / "out" / "good.wav")
    assert pcm == processed(schedule.expected_audiohook_pcm(CUSTOMER, None, "PCMU"))
    assert not (tmp_path / "out" / "bad-key.wav").exists()


def test_cxone_rx_and_tx_with_a_hold_recorded_as_one_stereo_call(tmp_path):
    # Real time (speed 1): the hold's gap is measured on the wall clock, as CXone's holds
    # are, so the audio must arrive at the pace it is played for positions to match.
    customer, agent = Audio(CUSTOMER.pcm[:2 * 8000 * 4], 8000), Audio(AGENT.pcm[:2 * 8000 * 4], 8000)
    hold = (2.0, 0.6)
    source = "mode: server\nport: 0\ncodec: cxone\nmax_calls: 1\nrejoin_window: 1.5"
    report = CallReport("contact-77")

    async def client(url):
        await push_cxone_call(url, customer, agent, "contact-77", report, speed=1, hold=hold)

    summary, _ = trio.run(serve, tmp_path, source, client)
    assert summary.ok, [r.message for r in summary.failed]
    assert report.error is None and report.close_code == 1000
    pcm, _ = read_wav(tmp_path / "out" / "contact-77.wav", channels=2)
    meta = manifest(tmp_path, "contact-77")
    assert meta["channels"] == 2 and meta["facts"]["contact_id"] == "contact-77"
    assert meta["perspectives"] == ["TX", "RX"]
    tx, rx = meta["quality"]["channels"]
    assert (tx["perspective"], rx["perspective"]) == ("TX", "RX")
    assert tx["connections"] == rx["connections"] == 2 and tx["gaps"] == rx["gaps"] == 1
    cut = int(hold[0] * 8000)
    sides = []
    for audio, side in ((customer, tx), (agent, rx)):
        # the gap is the wall time the perspective was away, measured by the receiver
        assert 0.5 * 8000 <= side["gap_samples"] <= 1.5 * 8000, side
        pcm_side = schedule.mulaw_round_trip(audio.pcm)
        sides.append(pcm_side[:2 * cut] + bytes(2 * side["gap_samples"]) + pcm_side[2 * cut:])
    assert pcm == processed(schedule.stereo_pcm(*sides), channels=2)


async def raw_audiohook(url, steps):
    """Open an AudioHook session by hand and run ``steps(ws, client)``; returns the server's
    messages (parsed) in order."""
    from trio_websocket import open_websocket_url

    from voxpipe_voice import audiohook

    client = audiohook.ClientSession("5f1c2f52-3b4f-4e39-8a0c-55f2f4ad0c11")
    received = []
    async with open_websocket_url(url) as ws:
        await ws.send_message(client.open("org", "conv-raw", {"id": "p"}, [audiohook.Media("PCMU", ("external",))]))
        received.append(client.received(await ws.get_message()))
        await steps(ws, client, received)
        await ws.aclose(1000)
    return received


def test_audiohook_out_of_order_message_is_ignored_and_unknown_one_fails_the_call(tmp_path):
    frame = b"\x7f" * 160

    async def ignored_then_close(ws, client, received):
        await ws.send_message(frame)
        await ws.send_message(client.message("resumed", {"start": "PT0S", "discarded": "PT0S"}))  # not paused
        await ws.send_message(frame)
        await ws.send_message(client.message("close", {"reason": "end"}))
        received.append(client.received(await ws.get_message()))

    async def unknown_type(ws, client, received):
        await ws.send_message(frame)
        await ws.send_message(client.message("dance"))
        received.append(client.received(await ws.get_message()))  # disconnect(error)
        await ws.send_message(client.message("close", {"reason": "disconnect"}))
        received.append(client.received(await ws.get_message()))  # closed

    async def client(url):
        first = await raw_audiohook(f"{url}/ah", ignored_then_close)
        second = await raw_audiohook(f"{url}/ah", unknown_type)
        return first, second

    source = "mode: server\nport: 0\ncodec: audiohook\nmax_calls: 2"
    summary, (first, second) = trio.run(serve, tmp_path, source, client)
    assert [m["type"] for m in first] == ["opened", "closed"]
    assert [m["type"] for m in second] == ["opened", "disconnect", "closed"]
    assert second[1]["parameters"]["reason"] == "error" and "'dance'" in second[1]["parameters"]["info"]
    ok = [r for r in summary.results if r.ok]
    failed = [r for r in summary.results if not r.ok]
    assert len(ok) == 1 and len(failed) == 1 and failed[0].reason == "bad-message"
    assert "dance" in failed[0].message
    assert {ok[0].id, failed[0].id} == {"conv-raw", "conv-raw-1"}  # one conversation, two sessions
    pcm, _ = read_wav(tmp_path / "out" / f"{ok[0].id}.wav")
    assert pcm == processed(dsp.mulaw_decode(frame * 2))
    assert ok[0].metadata["quality"]["ignored"] == 1
    assert len(list((tmp_path / "out").glob("*.wav"))) == 1


def test_cxone_bad_initial_message_is_refused_and_mix_is_a_mono_call(tmp_path):
    from trio_websocket import ConnectionClosed, open_websocket_url

    mix = Audio(CUSTOMER.pcm[:2 * 8000], 8000)
    codes = []

    async def client(url):
        async with open_websocket_url(f"{url}/cxone/c-bad") as ws:
            await ws.send_message(b"\xff" * 160)  # audio before the initial message
            try:
                await ws.get_message()
            except ConnectionClosed as exc:
                codes.append(exc.reason.code)
        report = CallReport("c-mix")
        await push_cxone_call(url, mix, None, "c-mix", report, speed=0)
        return report

    source = "mode: server\nport: 0\ncodec: cxone\nmax_calls: 1\nrejoin_window: 0.3"
    summary, report = trio.run(serve, tmp_path, source, client)
    assert codes == [1008] and report.error is None
    assert summary.ok and [r.id for r in summary.results] == ["c-mix"]
    pcm, _ = read_wav(tmp_path / "out" / "c-mix.wav")
    assert pcm == processed(schedule.mulaw_round_trip(mix.pcm))
    assert manifest(tmp_path, "c-mix")["perspectives"] == ["MIX"]
