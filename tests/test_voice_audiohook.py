"""Genesys AudioHook protocol (sans-IO): the server state machine, media negotiation and the
HTTP message signature, tested synchronously."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from voxpipe_voice import audiohook, httpsig
from voxpipe_voice.audiohook import (ClientSession, Closing, Ignored, Media, Opened, Paused, Resumed, Send, ServerSession,
                                     State, Violation)
from voxpipe_voice.platforms import AudioHookDecoder

STEREO_PCMU = Media("PCMU", ("external", "internal"))
MONO_PCMU = Media("PCMU", ("external",))
STEREO_L16 = Media("L16", ("external", "internal"))


def sent(events) -> list[dict]:
    return [json.loads(e.text) for e in events if isinstance(e, Send)]


def opened_session(**kw) -> tuple[ServerSession, ClientSession]:
    server, client = ServerSession(**kw), ClientSession("e160e428-53e2-487c-977d-96989bf5c99d")
    events = server.receive_text(client.open("org-1", "conv-1", {"id": "p1", "ani": "+1", "dnis": "+2"},
                                             [STEREO_PCMU, MONO_PCMU]))
    assert any(isinstance(e, Opened) for e in events)
    client.received(events[0].text)
    return server, client


def test_open_gets_opened_with_the_chosen_medium_and_the_session_id():
    server, client = ServerSession(), ClientSession("sess-1")
    events = server.receive_text(client.open("org", "conv", {"id": "p"}, [MONO_PCMU, STEREO_L16, STEREO_PCMU]))
    reply = sent(events)[0]
    assert reply["type"] == "opened" and reply["id"] == "sess-1" and reply["seq"] == 1 and reply["clientseq"] == 1
    assert reply["parameters"]["media"] == [STEREO_PCMU.to_json()]  # stereo preferred, then PCMU over L16
    assert server.state is State.ACTIVE and events[1].media == STEREO_PCMU


@pytest.mark.parametrize("offered, stereo, formats, expected", [
    ([MONO_PCMU, STEREO_PCMU], False, ("PCMU", "L16"), MONO_PCMU),
    ([STEREO_L16], True, ("PCMU", "L16"), STEREO_L16),
    ([STEREO_PCMU], True, ("L16",), None),
    ([Media("PCMU", ("external", "internal"), 16000)], True, ("PCMU",), None),
    ([Media("opus", ("external",))], True, ("PCMU", "L16"), None),
    ([Media("PCMU", ("external", "external"))], True, ("PCMU",), None),
])
def test_media_choice(offered, stereo, formats, expected):
    assert audiohook.choose_media(offered, stereo=stereo, formats=formats) == expected


def test_unacceptable_media_is_refused_with_disconnect_error():
    server, client = ServerSession(formats=("L16",)), ClientSession("s")
    reply = sent(server.receive_text(client.open("o", "c", {}, [STEREO_PCMU])))[0]
    assert reply["type"] == "disconnect" and reply["parameters"]["reason"] == "error"
    assert "offered media" in reply["parameters"]["info"] and server.state is State.ERROR
    events = server.receive_text(client.message("close", {"reason": "error"}))
    assert sent(events)[0]["type"] == "closed" and server.state is State.CLOSED


def test_unauthenticated_open_gets_disconnect_unauthorized_then_closed():
    server, client = ServerSession(authorized="missing or unknown X-API-KEY"), ClientSession("s")
    events = server.receive_text(client.open("o", "c", {}, [STEREO_PCMU]))
    reply = sent(events)[0]
    assert reply["type"] == "disconnect" and reply["parameters"] == {"reason": "unauthorized",
                                                                     "info": "missing or unknown X-API-KEY"}
    assert not any(isinstance(e, Opened) for e in events) and server.state is State.UNAUTHORIZED
    assert isinstance(server.receive_audio(160)[0], Violation)  # no audio accepted, no second disconnect
    assert not sent(server.receive_audio(160))
    assert sent(server.receive_text(client.message("close", {"reason": "disconnect"})))[0]["type"] == "closed"


def test_organization_mismatch_is_unauthorized():
    server, client = ServerSession(organization_id="org-A"), ClientSession("s")
    reply = sent(server.receive_text(client.open("org-B", "c", {}, [STEREO_PCMU])))[0]
    assert reply["parameters"]["reason"] == "unauthorized"


def test_ping_pong_clientseq_is_the_pings_seq():
    server, client = opened_session()
    reply = sent(server.receive_text(client.message("ping", {"rtt": "PT0.05S"})))[0]
    assert reply["type"] == "pong" and reply["clientseq"] == client.seq == 2 and reply["seq"] == 2


def test_pause_resume_and_discarded_report_durations():
    server, client = opened_session()
    client.position = 1.0
    assert server.receive_text(client.message("paused")) == [Paused(1.0)]
    assert server.state is State.PAUSED
    assert isinstance(server.receive_audio(320)[0], Violation)  # audio while paused breaks the protocol


def test_resume_after_pause():
    server, client = opened_session()
    server.receive_text(client.message("paused"))
    events = server.receive_text(client.message("resumed", {"start": "PT1.2S", "discarded": "PT3.25S"}))
    assert events == [Resumed(1.2, 3.25)] and server.state is State.ACTIVE
    assert server.receive_audio(320) == []
    assert server.receive_text(client.message("discarded", {"start": "PT5S", "discarded": "PT0.5S"})) == [
        audiohook.Discarded(5.0, 0.5)]


@pytest.mark.parametrize("kind, params", [("resumed", {"start": "PT0S", "discarded": "PT0S"}), ("open", None)])
def test_out_of_order_control_messages_are_ignored(kind, params):
    server, client = opened_session()
    text = client.open("o", "c", {}, [MONO_PCMU]) if kind == "open" else client.message(kind, params)
    assert server.receive_text(text) == [Ignored(kind, State.ACTIVE)]
    assert server.state is State.ACTIVE


def test_control_messages_before_open_are_ignored_but_ping_is_answered():
    server, client = ServerSession(), ClientSession("s")
    assert server.receive_text(client.message("paused")) == [Ignored("paused", State.AWAIT_OPEN)]
    assert sent(server.receive_text(client.message("ping")))[0]["type"] == "pong"
    assert isinstance(server.receive_audio(160)[0], Violation)  # audio before open


@pytest.mark.parametrize("mutate, fragment", [
    (lambda m: {**m, "type": "dance"}, "'dance' is not a supported client message"),
    (lambda m: {**m, "seq": 7}, "seq 7 of a 'ping' message does not follow 1"),
    (lambda m: {**m, "id": "other"}, "session id 'other'"),
    (lambda m: {**m, "version": "1"}, "version '1'"),
    (lambda m: {**m, "position": "1.5"}, "not a duration"),
    (lambda m: {**m, "serverseq": 99}, "serverseq 99"),
])
def test_protocol_violations_get_disconnect_error(mutate, fragment):
    server, client = opened_session()
    text = json.dumps(mutate(json.loads(client.message("ping"))))
    events = server.receive_text(text)
    violation = next(e for e in events if isinstance(e, Violation))
    assert fragment in violation.info
    reply = sent(events)[0]
    assert reply["type"] == "disconnect" and reply["parameters"]["reason"] == "error"
    assert server.state is State.ERROR


def test_not_json_and_partial_sample_frames_are_violations():
    server, client = opened_session()
    assert "not JSON" in server.receive_text("{nope")[0].info
    server, client = opened_session()
    assert "not whole 2-byte sample frames" in server.receive_audio(161)[0].info


def test_close_gets_closed_and_reports_the_reason():
    server, client = opened_session()
    events = server.receive_text(client.message("close", {"reason": "end"}))
    assert sent(events)[0]["type"] == "closed" and Closing("end") in events and server.state is State.CLOSED
    assert server.receive_text(client.message("ping")) == [Ignored("ping", State.CLOSED)]


def test_durations_round_trip():
    assert audiohook.format_duration(0) == "PT0S" and audiohook.format_duration(1.5) == "PT1.5S"
    assert audiohook.parse_duration("PT12.345S", "x") == 12.345
    with pytest.raises(audiohook.AudioHookError, match="not a duration"):
        audiohook.parse_duration("P1D", "position")


def test_decoder_pause_as_silence_or_gap_and_violation_fails_the_call():
    for mode, expected in (("silence", b"\xff\xff" * 4000), ("gap", b"")):
        server, client = ServerSession(), ClientSession("s")
        decoder = AudioHookDecoder(server, pause_mode=mode)
        decoder.feed(client.open("o", "c", {"id": "p", "ani": "+1555"}, [STEREO_PCMU]))
        assert decoder.channels == 2 and decoder.wire_width == 1 and decoder.outbox
        assert decoder.feed(b"\x00\x01" * 160) == b"\x00\x01" * 160
        decoder.feed(client.message("paused"))
        assert decoder.feed(client.message("resumed", {"start": "PT0.02S", "discarded": "PT0.5S"})) == expected
        assert decoder.quality_report()["paused_ms"] == 500
        assert decoder.recording_facts().ani == "+1555"
        decoder.feed(client.message("bogus"))
        assert decoder.error and "bogus" in decoder.error


# ---- HTTP message signatures -------------------------------------------------------------------

KEY = httpsig.decode_secret("c2VjcmV0")
HEADERS = {"host": "voice.example.com", "audiohook-organization-id": "o", "audiohook-session-id": "s",
           "audiohook-correlation-id": "c", "x-api-key": "key-1"}


def signed(**kw) -> dict[str, str]:
    args = dict(request_target="/ah?x=1", authority="voice.example.com", api_key="key-1", key=KEY, created=1000)
    args.update(kw)
    return {**HEADERS, **httpsig.sign(HEADERS, **args)}


def test_signature_verifies():
    httpsig.verify(signed(), request_target="/ah?x=1", api_key="key-1", key=KEY, now=1005)


@pytest.mark.parametrize("headers, kwargs, fragment", [
    (HEADERS, {}, "not signed"),
    ({**HEADERS, "signature": "sig1=:AA==:"}, {}, "only one of"),
    (signed(), {"key": b"other"}, "does not match"),
    (signed(), {"request_target": "/elsewhere"}, "does not match"),
    ({**signed(), "audiohook-session-id": "changed"}, {}, "does not match"),
    (signed(), {"now": 1000 + 20}, "older than"),
    (signed(created=2000), {}, "in the future"),
    (signed(nonce="short"), {}, "nonce"),
    (signed(api_key="someone-else"), {}, "keyid"),
    ({**signed(), "signature-input": "sig1=(\"x-api-key\");keyid=\"key-1\""}, {}, "does not cover"),
    ({**signed(), "signature-input": "sig1=???"}, {}, "structured-field"),
])
def test_bad_signatures_are_named(headers, kwargs, fragment):
    args = dict(request_target="/ah?x=1", api_key="key-1", key=KEY, now=1005)
    args.update(kwargs)
    with pytest.raises(httpsig.SignatureError) as info:
        httpsig.verify(headers, **args)
    assert fragment in str(info.value) and "c2VjcmV0" not in str(info.value)


# ---- any order of client messages -----------------------------------------------------------------

STEPS = st.lists(st.sampled_from(["open", "ping", "paused", "resumed", "update", "discarded", "error", "close",
                                  "audio", "audio-odd", "bogus", "bad-seq", "not-json"]), max_size=25)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, authorized=st.booleans())
def test_any_message_order_is_answered_by_the_table(steps, authorized):
    """Whatever a client sends, in whatever order: no exception, every reply is a well-formed
    server message with increasing seq, a disconnect is sent at most once, audio is only
    accepted while active, and after close nothing but nothing happens."""
    server = ServerSession(authorized=None if authorized else "no key")
    client = ClientSession("s-1")
    seq = 0
    disconnects = 0
    for step in steps:
        state_before = server.state
        if step == "audio" or step == "audio-odd":
            events = server.receive_audio(160 if step == "audio" else 161)
            if step == "audio" and state_before is State.ACTIVE:
                assert events == []
        elif step == "open":
            events = server.receive_text(client.open("o", "c", {}, [MONO_PCMU]))
        elif step == "not-json":
            events = server.receive_text("{")
        elif step == "bad-seq":
            client.seq += 5
            events = server.receive_text(client.message("ping"))
        else:
            params = {"start": "PT0S", "discarded": "PT1S"} if step in ("resumed", "discarded") else {}
            events = server.receive_text(client.message(step, params))
        for reply in sent(events):
            seq += 1
            assert reply["seq"] == seq and reply["version"] == "2"
            assert reply["type"] in ("opened", "pong", "closed", "disconnect")
            disconnects += reply["type"] == "disconnect"
            if reply["type"] == "opened":
                assert authorized and state_before is State.AWAIT_OPEN
        if state_before is State.CLOSED:
            assert not sent(events)
        if not authorized:
            assert server.state is not State.ACTIVE
    assert disconnects <= 1
