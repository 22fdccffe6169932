"""End to end: voice emulator → websocket-voice pipeline (from YAML) → WAV equal to the expected audio."""

from __future__ import annotations

import gzip
import json
import logging

import pytest
import textwrap
from pathlib import Path

import trio
from trio_websocket import serve_websocket

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
        source = "\n".join(["mode: client", f"codec: {options.codec}", "urls:",
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


async def server_mode(tmp_path, options: StreamOptions, calls: int, *, token: str | None = None,
                      source_extra: str = "", concurrency: int = 4):
    source = "\n".join(["mode: server", "port: 0", f"codec: {options.codec}", f"max_calls: {calls}",
                        *([f"token: {token}"] if token else []), source_extra])
    runner = runner_for(pipeline_yaml(source, tmp_path / "out", concurrency=concurrency))
    result = await run_with_server(runner, lambda url: push_calls(url, FILES, calls, options, token=token))
    return runner, result["summary"], result["client"]


@pytest.mark.parametrize("codec", ["pcm16", "twilio"])
def test_server_mode_records_concurrent_calls(tmp_path, codec):
    options = StreamOptions(codec=codec, speed=0, seed=5, min_bytes=1, max_bytes=900)
    runner, summary, reports = trio.run(server_mode, tmp_path, options, 3)
    assert summary.ok, [r.message for r in summary.failed]
    assert sorted(r.id for r in summary.results) == [f"call-{i:04d}" for i in range(3)]
    for i, report in enumerate(reports):
        assert report.close_code == 1000 and report.error is None
        audio = FILES[i % len(FILES)]
        pcm, rate = read_wav(tmp_path / "out" / f"{report.call_id}.wav")
        assert rate == audio.sample_rate
        assert pcm == expected_for(audio, options, report.call_id)


def test_twilio_drops_and_reorders_are_concealed_and_counted(tmp_path):
    options = StreamOptions(codec="twilio", speed=0, seed=11, drop=0.05, reorder=0.1)
    runner, summary, reports = trio.run(server_mode, tmp_path, options, 2)
    assert summary.ok, [r.message for r in summary.failed]
    for i, report in enumerate(reports):
        audio = FILES[i % len(FILES)]
        plan = options.plan(audio, report.call_id)
        frames = len(schedule.mulaw_frames(audio))
        dropped = frames - len(plan)
        assert dropped > 0 and plan != sorted(plan)  # the seed really drops and reorders
        pcm, _ = read_wav(tmp_path / "out" / f"{report.call_id}.wav")
        assert pcm == expected_for(audio, options, report.call_id)
        result = next(r for r in summary.results if r.id == report.call_id)
        quality = result.metadata["quality"]
        assert quality["frames_concealed"] == dropped
        assert quality["frames_dropped"] == dropped
        assert quality["frames_late"] == 0
        assert quality["packets"] == len(plan)
        assert result.metadata["call_sid"] == report.call_id


def test_server_requires_the_token_in_authorization(tmp_path):
    options = StreamOptions(codec="pcm16", speed=0)

    async def main():
        source = "\n".join(["mode: server", "port: 0", "max_calls: 1", "token: s3cret-token"])
        runner = runner_for(pipeline_yaml(source, tmp_path / "out"))

        async def clients(url):
            bad = await push_calls(url, FILES, 1, options, token="wrong", prefix="bad")
            good = await push_calls(url, FILES, 1, options, token="s3cret-token", prefix="good")
            return bad, good

        return await run_with_server(runner, clients)

    result = trio.run(main)
    bad, good = result["client"]
    assert "401" in (bad[0].error or "")
    assert good[0].close_code == 1000
    assert [r.id for r in result["summary"].results] == ["good-0000"] and result["summary"].ok


def test_calls_beyond_capacity_are_refused_with_1013(tmp_path):
    options = StreamOptions(codec="pcm16", speed=8.0)  # slow enough that the first call holds its slot

    async def main():
        source = "\n".join(["mode: server", "port: 0", "pending_calls: 0"])
        runner = runner_for(pipeline_yaml(source, tmp_path / "out", concurrency=1))

        async def clients(url):
            async with trio.open_nursery() as nursery:
                first = []
                nursery.start_soon(lambda: _collect(first, push_calls(url, FILES[:1], 1, options, prefix="a")))
                await trio.sleep(0.3)
                held = []  # waits for the engine's one slot (discovery holds one call)
                nursery.start_soon(lambda: _collect(held, push_calls(url, FILES[:1], 1, options, prefix="b")))
                await trio.sleep(0.3)
                second = await push_calls(url, FILES, 1, options, prefix="c")
            runner.request_stop()
            assert held[0][0].close_code == 1000
            return first[0], second

        return await run_with_server(runner, clients)

    result = trio.run(main)
    first, second = result["client"]
    assert first[0].close_code == 1000
    assert second[0].close_code == 1013
    assert [r.id for r in result["summary"].results if r.ok] == ["a-0000", "b-0000"]


async def _collect(into: list, coro) -> None:
    into.append(await coro)


def test_client_sends_token_in_authorization_header(tmp_path):
    options = StreamOptions(codec="pcm16", speed=0)
    server, summary = trio.run(client_mode, tmp_path, options, "token: hdr-secret-1", ("100001",))
    assert summary.ok
    path, headers = server.requests[0]
    assert headers["authorization"] == "Bearer hdr-secret-1"
    assert "hdr-secret-1" not in path


def test_token_in_query_never_reaches_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    options = StreamOptions(codec="pcm16", speed=0, abort_after=5)  # a drop makes the source log the URL
    server, summary = trio.run(client_mode, tmp_path, options, "token: qry-secret-2\ntoken_in_query: true",
                               ("100002",))
    assert summary.ok, [r.message for r in summary.failed]
    assert all("access_token=qry-secret-2" in p for p, _ in server.requests)
    assert "authorization" not in server.requests[0][1]
    assert any("100002" in r.getMessage() and "reconnecting" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert "qry-secret-2" not in record.getMessage()
    assert "qry-secret-2" not in json.dumps([r.to_dict() for r in summary.results])


def test_reconnect_after_1006_continues_the_same_call(tmp_path):
    for codec in ("pcm16", "twilio"):
        options = StreamOptions(codec=codec, speed=0, seed=2, min_bytes=1, max_bytes=500, abort_after=40)
        server, summary = trio.run(client_mode, tmp_path / codec, options, "", ("100001",))
        assert summary.ok, [r.message for r in summary.failed]
        assert server.reports["100001"].aborted and len(server.requests) == 2
        pcm, _ = read_wav(tmp_path / codec / "out" / "100001.wav")
        assert pcm == expected_for(server.audio_for("100001"), options, "100001")
        assert summary.results[0].metadata["quality"]["reconnects"] == 1


def test_drop_outside_the_reconnect_window_fails_the_call(tmp_path):
    options = StreamOptions(codec="pcm16", speed=0, abort_after=5)
    server, summary = trio.run(client_mode, tmp_path, options, "reconnect_window: 0", ("100001",))
    assert not summary.ok
    assert summary.results[0].reason == "call-dropped"
    assert not list((tmp_path / "out").glob("*.wav"))


def test_gzip_sink_stores_calls_too(tmp_path):
    options = StreamOptions(codec="twilio", speed=0, seed=4)
    gz = f"- type: gzip\n  dir: {tmp_path / 'gz'}"

    async def main():
        source = "\n".join(["mode: server", "port: 0", "codec: twilio", "max_calls: 1"])
        runner = runner_for(pipeline_yaml(source, tmp_path / "out", extra_sinks=textwrap.indent(gz, " " * 6)))
        return await run_with_server(runner, lambda url: push_calls(url, FILES, 1, options))

    result = trio.run(main)
    assert result["summary"].ok, [r.message for r in result["summary"].failed]
    stored = gzip.decompress((tmp_path / "gz" / "call-0000.pcm16.gz").read_bytes())
    wav_pcm, _ = read_wav(tmp_path / "out" / "call-0000.wav")
    assert stored == wav_pcm == expected_for(FILES[0], options, "call-0000")


def test_silent_connection_hits_the_read_timeout(tmp_path, caplog):
    async def main():
        async def silent(request):
            ws = await request.accept()
            await trio.sleep(5)
            await ws.aclose()

        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, silent, "127.0.0.1", 0, None)
            source = "\n".join(["mode: client", "urls:", f"  - ws://127.0.0.1:{server.port}/calls/quiet",
                                "read_timeout: 0.3", "ping_interval: 0.1", "reconnect_window: 0"])
            with trio.fail_after(5):
                summary = await runner_for(pipeline_yaml(source, tmp_path / "out")).run()
            nursery.cancel_scope.cancel()
        return summary

    summary = trio.run(main)
    assert summary.results[0].reason == "call-dropped"
    assert any("call quiet: no message for" in r.getMessage() for r in caplog.records)
    assert not list((tmp_path / "out").glob("*.wav"))


def test_settings_are_checked():
    from voxpipe_voice.source import VoiceSourceSettings
    with pytest.raises(ValueError, match="client mode needs `url`, `urls` or `calls`"):
        VoiceSourceSettings(mode="client")
    with pytest.raises(ValueError, match="not ws:// or wss://"):
        VoiceSourceSettings(url="http://x/y?access_token=secret")
    with pytest.raises(ValueError, match="jitter_depth_ms=30 is not a multiple of frame_ms=20"):
        VoiceSourceSettings(mode="server", jitter_depth_ms=30)
    from voxpipe.errors import ConfigError
    with pytest.raises(ConfigError) as info:  # as a pipeline file reports it: no input values, no token
        runner_for(pipeline_yaml("url: http://x/y?access_token=secret", Path("out")))
    assert "voice.yaml:5: pipelines.voice.source: URL http://x/y is not ws:// or wss://" in str(info.value)
    assert "secret" not in str(info.value)


def test_a_call_id_stored_by_an_earlier_run_is_recorded_under_a_new_id(tmp_path):
    options = StreamOptions(codec="twilio", speed=0)

    async def one_run():
        source = "\n".join(["mode: server", "port: 0", "codec: twilio", "max_calls: 1"])
        runner = runner_for(pipeline_yaml(source, tmp_path / "out"))
        return await run_with_server(runner, lambda url: push_calls(url, FILES, 1, options))

    first, second = trio.run(one_run), trio.run(one_run)  # Twilio sends the same callSid twice
    assert [r.id for r in first["summary"].results] == ["call-0000"]
    [again] = second["summary"].results
    assert again.ok and again.id.startswith("call-0000-") and again.metadata["call_sid"] == "call-0000"
    pcm, _ = read_wav(tmp_path / "out" / f"{again.id}.wav")
    assert pcm == expected_for(FILES[0], options, "call-0000")


def test_malformed_twilio_message_fails_the_call_with_1007(tmp_path):
    from trio_websocket import ConnectionClosed, open_websocket_url

    from voxpipe_voice import twilio

    async def client(url):
        async with open_websocket_url(f"{url}/calls/x") as ws:
            await ws.send_message(twilio.serialize(twilio.Connected()))
            await ws.send_message(twilio.serialize(twilio.Start(1, "MZ1", "CAbad")))
            await ws.send_message('{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"chunk":"1",'
                                  '"timestamp":"0","payload":"***"}}')
            try:
                with trio.fail_after(5):
                    while True:
                        await ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code

    async def main():
        source = "\n".join(["mode: server", "port: 0", "codec: twilio", "max_calls: 1"])
        return await run_with_server(runner_for(pipeline_yaml(source, tmp_path / "out")), client)

    result = trio.run(main)
    assert result["client"] == 1007
    [call] = result["summary"].results
    assert call.reason == "bad-message" and "call CAbad: message #3: Twilio 'media' event (sequenceNumber '2')" \
        in call.message and "not base64" in call.message


def test_client_mode_text_on_a_pcm16_stream_fails_the_call(tmp_path):
    async def main():
        async def talker(request):
            ws = await request.accept()
            await ws.send_message(bytes(640))
            await ws.send_message("hello")
            await trio.sleep(2)

        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, talker, "127.0.0.1", 0, None)
            source = "\n".join(["mode: client", "urls:", f"  - ws://127.0.0.1:{server.port}/calls/chatty"])
            with trio.fail_after(5):
                summary = await runner_for(pipeline_yaml(source, tmp_path / "out")).run()
            nursery.cancel_scope.cancel()
        return summary

    [call] = trio.run(main).results
    assert call.reason == "bad-message" and call.message == (
        "call chatty: text message #2 on a pcm16 stream (expected binary PCM16 little-endian)")
    assert not list((tmp_path / "out").glob("*.wav"))


def test_a_library_error_on_one_connection_does_not_stop_the_server(tmp_path, monkeypatch):
    from wsproto.utilities import LocalProtocolError

    from voxpipe_voice.source import VoiceSource

    original = VoiceSource._handle
    calls = []

    async def flaky(self, request):  # trio-websocket issue #184 raises this from its reader task
        calls.append(request.path)
        if len(calls) == 1:
            ws = await request.accept()
            await ws.get_message()
            raise LocalProtocolError("Event Pong(payload=b'') cannot be sent in state ConnectionState.LOCAL_CLOSING.")
        await original(self, request)

    monkeypatch.setattr(VoiceSource, "_handle", flaky)
    options = StreamOptions(codec="pcm16", speed=0)

    async def main():
        source = "\n".join(["mode: server", "port: 0", "max_calls: 1"])

        async def clients(url):
            first = await push_calls(url, FILES, 1, options, prefix="first")
            second = await push_calls(url, FILES, 1, options, prefix="second")
            return first + second

        return await run_with_server(runner_for(pipeline_yaml(source, tmp_path / "out")), clients)

    result = trio.run(main)
    first, second = result["client"]
    assert first.close_code != 1000 and second.close_code == 1000
    assert [r.id for r in result["summary"].results] == ["second-0000"] and result["summary"].ok
