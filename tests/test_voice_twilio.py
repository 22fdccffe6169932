"""Twilio Media Streams messages and the per-call decoder (sans-IO)."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from voxpipe import dsp
from voxpipe_voice import twilio
from voxpipe_voice.decoder import CallDecoder, CallProtocolError
from voxpipe_voice.schedule import Audio, expected_twilio_pcm, packet_plan, twilio_messages

ids = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=20)


@given(seq=st.integers(0, 2**31), sid=ids, chunk=st.integers(1, 10**6), ts=st.integers(0, 10**9),
       payload=st.binary(max_size=400), track=st.sampled_from(["inbound", "outbound"]))
def test_media_round_trip(seq, sid, chunk, ts, payload, track):
    event = twilio.Media(seq, sid, chunk, ts, payload, track)
    text = twilio.serialize(event)
    assert twilio.parse_event(text) == event
    obj = json.loads(text)  # numbers travel as strings, payload as base64, as Twilio sends them
    assert obj["sequenceNumber"] == str(seq) and obj["media"]["timestamp"] == str(ts)
    assert base64.b64decode(obj["media"]["payload"]) == payload


def test_other_events_round_trip():
    events = [twilio.Connected(), twilio.Start(1, "MZ1", "CA1", "AC1", ("inbound", "outbound"), {"agent": "7"}),
              twilio.Stop(99, "MZ1", "CA1", "AC1"), twilio.Mark(5, "MZ1", "greeting"), twilio.Dtmf(6, "MZ1", "5")]
    for event in events:
        assert twilio.parse_event(twilio.serialize(event)) == event


def test_parses_the_documented_start_message():
    text = ('{"event":"start","sequenceNumber":"1","start":{"streamSid":"MZ18","accountSid":"AC12",'
            '"callSid":"CA12","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":'
            '"audio/x-mulaw","sampleRate":8000,"channels":1}},"streamSid":"MZ18"}')
    start = twilio.parse_event(text)
    assert start == twilio.Start(1, "MZ18", "CA12", "AC12", ("inbound",), {}, "audio/x-mulaw", 8000, 1)


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    ('{"event":"media","sequenceNumber":"3","streamSid":"MZ"}', "'media'"),
    ('{"event":"media","sequenceNumber":"x","streamSid":"MZ","media":{"chunk":"1","timestamp":"0",'
     '"payload":""}}', "'sequenceNumber' is 'x'"),
    ('{"event":"media","sequenceNumber":"3","streamSid":"MZ","media":{"chunk":"1","timestamp":"0",'
     '"payload":"!!"}}', "not base64"),
    ('{"sequenceNumber":"3"}', "no 'event'"),
])
def test_malformed_messages_name_the_problem(text, fragment):
    with pytest.raises(twilio.TwilioProtocolError, match=None) as info:
        twilio.parse_event(text)
    assert fragment in str(info.value)


def test_unknown_events_are_ignored():
    assert twilio.parse_event('{"event":"clear","streamSid":"MZ"}') is None


def _audio(seconds=1.0, seed=0):
    rng = random.Random(seed)
    n = int(8000 * seconds)
    return Audio(b"".join(rng.randint(-20000, 20000).to_bytes(2, "little", signed=True) for _ in range(n)), 8000)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), drop=st.sampled_from([0.0, 0.1, 0.3]), reorder=st.sampled_from([0.0, 0.2, 0.5]))
def test_decoder_conceals_exactly_the_dropped_packets(seed, drop, reorder):
    audio = _audio(0.5, seed)
    plan = packet_plan(25, random.Random(seed), drop, reorder)
    decoder = CallDecoder("twilio", jitter_depth_ms=40)
    out = b"".join(decoder.to_pcm(decoder.feed(m.data, m.at)) for m in twilio_messages(audio, plan))
    out += decoder.finish()
    assert out == expected_twilio_pcm(audio, plan)
    q = decoder.quality.snapshot()
    assert q.frames_concealed == q.frames_dropped == 25 - len(plan)
    assert q.frames_late == 0 and q.packets == len(plan)
    assert decoder.stopped and decoder.start.call_sid == "CA0"


def test_decoder_pcm16_any_split_gives_whole_frames():
    data = bytes(range(256)) * 10 + b"\x01"  # 2561 bytes: 8 whole frames and a partial one with an odd byte
    decoder = CallDecoder("pcm16")
    rng = random.Random(1)
    out, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, 77)
        chunk = decoder.feed(data[pos:pos + n])
        assert len(chunk) % 320 == 0
        out.append(chunk)
        pos += n
    tail = decoder.finish()
    assert b"".join(out) + tail == data[:-1]  # the half sample at the very end is dropped
    assert decoder.quality.packets == len(out)


def test_decoder_rejects_the_wrong_message_kind():
    with pytest.raises(CallProtocolError, match="text message #1 on a pcm16 stream"):
        CallDecoder("pcm16", call_id="c1").feed("{}")
    with pytest.raises(CallProtocolError, match="binary message #1 on a Twilio stream"):
        CallDecoder("twilio", call_id="c1").feed(b"\x00")
    bad = twilio.serialize(twilio.Start(1, "MZ", "CA", encoding="audio/x-l16"))
    with pytest.raises(CallProtocolError, match="unsupported Twilio media format audio/x-l16"):
        CallDecoder("twilio").feed(bad)


def test_start_event_sets_the_sample_rate():
    decoder = CallDecoder("twilio")
    decoder.feed(twilio.serialize(twilio.Start(1, "MZ", "CA", sample_rate=16000)))
    assert decoder.sample_rate == 16000 and decoder.frame_bytes == 640
    ulaw = dsp.mulaw_encode(_audio(0.02).pcm)
    assert len(ulaw) == 160


def test_decoder_records_one_track_of_a_both_tracks_stream():
    inbound, outbound = _audio(0.2, 1), _audio(0.2, 2)
    a = twilio_messages(inbound)
    b = twilio_messages(outbound)
    decoder = CallDecoder("twilio")
    out = b""
    for m_in, m_out in zip(a[2:-1], b[2:-1]):  # media interleaved, each track numbering its own chunks
        other = twilio.parse_event(m_out.data)
        out += decoder.to_pcm(decoder.feed(m_in.data))
        out += decoder.to_pcm(decoder.feed(twilio.serialize(
            twilio.Media(other.sequence_number, other.stream_sid, other.chunk, other.timestamp, other.payload,
                         "outbound"))))
    out += decoder.finish()
    assert out == expected_twilio_pcm(inbound)
    assert decoder.other_track_packets == 10 and decoder.quality.duplicates == 0
