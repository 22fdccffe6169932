"""Stereo through the voice path (sans-IO): interleaving and the per-channel gate (native ==
Python), the channel joiner, Twilio both tracks, CXone perspectives, jitter-buffer edge cases."""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given, settings, strategies as st

from voxpipe import dsp
from voxpipe.voice.framing import FrameAssembler, frame_bytes
from voxpipe.voice.jitter import JitterBuffer
from voxpipe.voice.stereo import LEFT, RIGHT, ChannelJoiner
from voxpipe_voice import twilio
from voxpipe_voice.decoder import CallDecoder, CallProtocolError
from voxpipe_voice.platforms import CxoneDecoder, parse_cxone_hello
from voxpipe_voice.schedule import (Audio, expected_twilio_pcm, expected_twilio_stereo_pcm, packet_plan,
                                   twilio_messages, twilio_stereo_messages)

BACKENDS = dsp.available_backends()
needs_native = pytest.mark.skipif("native" not in BACKENDS, reason="native DSP core not built")


def channel(pcm: bytes, index: int, channels: int = 2) -> bytes:
    a = array("h")
    a.frombytes(pcm)
    return a[index::channels].tobytes()


def _audio(seconds: float, seed: int) -> Audio:
    rng = random.Random(seed)
    return Audio(b"".join(rng.randint(-20000, 20000).to_bytes(2, "little", signed=True)
                          for _ in range(int(8000 * seconds))), 8000)


@needs_native
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4000).map(lambda b: b[: len(b) - len(b) % 4]), threshold=st.floats(-60, -10),
       splits=st.lists(st.integers(0, 1000), max_size=4))
def test_stereo_gate_native_equals_python_and_keys_each_channel(data, threshold, splits):
    gates = {b: dsp.NoiseGate(8000, threshold, 1, 20, 30, channels=2, backend=b) for b in ("native", "python")}
    cuts = sorted({min(len(data), s * 4) for s in splits} | {0, len(data)})
    outs = {b: b"".join(g.process(data[x:y]) for x, y in zip(cuts, cuts[1:])) for b, g in gates.items()}
    assert outs["native"] == outs["python"]
    # each channel is gated as if it were alone: the other side's level never opens it
    for i in (0, 1):
        mono = dsp.NoiseGate(8000, threshold, 1, 20, 30, backend="python")
        assert channel(outs["native"], i) == mono.process(channel(data, i))
    assert gates["native"].states == gates["python"].states


@needs_native
@given(left=st.binary(max_size=600), width=st.sampled_from([1, 2]))
def test_interleave_native_equals_python(left, width):
    left = left[: len(left) - len(left) % width]
    right = bytes(reversed(left))
    out = dsp.interleave(left, right, width=width, backend="native")
    assert out == dsp.interleave(left, right, width=width, backend="python")
    assert out[0::2 * width][: len(left) // width] == left[0::width][: len(left) // width]


def test_interleave_and_gate_reject_bad_shapes():
    with pytest.raises(ValueError, match="differ in length"):
        dsp.interleave(b"\x00\x00", b"")
    with pytest.raises(ValueError, match="whole number of 2-channel sample frames"):
        dsp.NoiseGate(8000, channels=2).process(b"\x00" * 6)
    assert frame_bytes(8000, 20, 2, 2) == 640 and FrameAssembler(8000, 20, channels=2).frame_bytes == 640


@given(pushes=st.lists(st.tuples(st.sampled_from([LEFT, RIGHT]), st.integers(0, 50)), max_size=30))
def test_joiner_interleaves_in_order_whatever_the_pace(pushes):
    joiner = ChannelJoiner(1, b"\xff", max_skew=10_000)
    sent = {LEFT: bytearray(), RIGHT: bytearray()}
    out = b""
    for ch, n in pushes:
        data = bytes((len(sent[ch]) + i) % 251 for i in range(n))
        sent[ch] += data
        joiner.push(ch, data)
        out += joiner.take()
    out += joiner.finish()
    n = max(len(sent[LEFT]), len(sent[RIGHT]))
    assert out[0::2] == bytes(sent[LEFT]) + b"\xff" * (n - len(sent[LEFT]))
    assert out[1::2] == bytes(sent[RIGHT]) + b"\xff" * (n - len(sent[RIGHT]))


def test_joiner_positions_gaps_overlaps_and_skew():
    joiner = ChannelJoiner(2, b"\x00\x00", max_skew=4)
    joiner.push(LEFT, b"\x01\x00" * 3, position=2)  # starts late: 2 samples of silence first
    joiner.push(RIGHT, b"\x02\x00" * 5)
    assert joiner.take() == dsp.interleave(b"\x00\x00" * 2 + b"\x01\x00" * 3, b"\x02\x00" * 5)
    joiner.push(RIGHT, b"\x03\x00" * 10)  # right runs 10 ahead: left filled up to the skew limit
    out = joiner.take()
    assert len(out) == 4 * 6 and joiner.counters(LEFT).fill_samples == 6
    joiner.push(LEFT, b"\x04\x00" * 3, position=9)  # 2 samples already filled: overlap dropped
    assert joiner.counters(LEFT).overlap_samples == 2 and joiner.counters(LEFT).gap_samples == 2
    joiner.finish()
    with pytest.raises(ValueError, match="whole number"):
        joiner.push(LEFT, b"\x00")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 100), drop=st.sampled_from([0.0, 0.2]), reorder=st.sampled_from([0.0, 0.3]),
       delay=st.sampled_from([0, 40, 100]))
def test_twilio_both_tracks_decode_to_aligned_stereo(seed, drop, reorder, delay):
    inbound, outbound = _audio(0.3, seed), _audio(0.24, seed + 1)
    plans = (packet_plan(15, random.Random(seed), drop, reorder), packet_plan(12, random.Random(seed + 7), drop,
                                                                            reorder))
    decoder = CallDecoder("twilio", jitter_depth_ms=40, track="both")
    out = b"".join(decoder.to_pcm(decoder.feed(m.data, m.at))
                   for m in twilio_stereo_messages(inbound, outbound, plans, outbound_delay_ms=delay))
    out += decoder.finish()
    assert decoder.channels == 2 and len(out) % 4 == 0
    assert out == expected_twilio_stereo_pcm(inbound, outbound, plans, outbound_delay_ms=delay)
    left, right = decoder.quality_report()["channels"]
    assert left["frames_concealed"] == 15 - len(plans[0]) and right["frames_concealed"] == 12 - len(plans[1])
    assert right["gap_samples"] == 8 * delay


def test_twilio_track_setting_records_one_track_in_mono():
    inbound, outbound = _audio(0.1, 1), _audio(0.1, 2)
    decoder = CallDecoder("twilio", track="outbound")
    out = b"".join(decoder.to_pcm(decoder.feed(m.data)) for m in twilio_stereo_messages(inbound, outbound))
    out += decoder.finish()
    assert decoder.channels == 1 and out == dsp.mulaw_decode(dsp.mulaw_encode(outbound.pcm))
    assert decoder.other_track_packets == 5


# ---- jitter buffer at the start of a call ------------------------------------------------------


def test_first_two_packets_swapped_are_reordered_not_dropped():
    jb = JitterBuffer(b"-", depth_ms=40, frame_ms=20)
    out = jb.push(2, b"b") + jb.push(1, b"a") + jb.push(3, b"c") + jb.push(4, b"d") + jb.flush()
    assert out == [b"a", b"b", b"c", b"d"] and jb.quality.duplicates == jb.quality.frames_concealed == 0


def test_lost_first_packet_is_concealed_when_numbering_starts_at_one():
    jb = JitterBuffer(b"-", depth_ms=40, frame_ms=20, first_seq=1)
    out = jb.push(2, b"b") + jb.push(3, b"c") + jb.push(4, b"d") + jb.flush()
    assert out == [b"-", b"b", b"c", b"d"] and jb.quality.frames_concealed == 1
    late = JitterBuffer(b"-", depth_ms=40, frame_ms=20, first_seq=1)
    assert late.push(900, b"x") == [] and late.next_seq == 900  # joined late: no seconds of concealment


def test_twilio_call_losing_its_first_packet_keeps_its_length():
    audio = _audio(0.2, 3)
    plan = list(range(1, 10))  # chunk 1 never arrives
    decoder = CallDecoder("twilio")
    out = b"".join(decoder.to_pcm(decoder.feed(m.data)) for m in twilio_messages(audio, plan)) + decoder.finish()
    assert out == expected_twilio_pcm(audio, plan) and decoder.quality.frames_concealed == 1


def test_call_ending_mid_sample_drops_the_half_sample():
    decoder = CallDecoder("pcm16")
    assert decoder.feed(b"\x01\x00" * 170 + b"\x07") == b"\x01\x00" * 160
    assert decoder.finish() == b"\x01\x00" * 10  # the trailing odd byte is dropped (docs/voice.md)


# ---- CXone perspectives -------------------------------------------------------------------------


@pytest.mark.parametrize("message, fragment", [
    (b"\xff" * 10, "binary"),
    ("{", "not JSON"),
    ('{"streamPerspective": "BOTH"}', "not one of RX, TX, MIX"),
])
def test_cxone_hello_errors(message, fragment):
    with pytest.raises(CallProtocolError, match=fragment):
        parse_cxone_hello(message, "c1")


def test_cxone_hello_contact_from_message_or_path():
    assert parse_cxone_hello('{"streamPerspective":"RX","contactId":"123"}', "path")[:2] == ("RX", "123")
    assert parse_cxone_hello('{"streamPerspective":"TX"}', "from-path")[:2] == ("TX", "from-path")


def test_cxone_decoder_joins_perspectives_and_records_a_reconnect_gap():
    d = CxoneDecoder(stereo=True)
    assert d.joiner.min_take == 800  # batches of 100 ms in operation; here every message is checked
    d.joiner.min_take = 0
    d.connect("TX", 0.0)
    d.connect("RX", 0.0)
    wire = d.feed_from("TX", b"\x01" * 160, 0.1) + d.feed_from("RX", b"\x02" * 160, 0.1)
    assert wire == b"\x01\x02" * 160
    d.disconnect("TX")  # away from its last message (0.1 s) to the next connection (0.35 s)
    d.disconnect("RX")
    d.connect("TX", 0.35)
    d.connect("RX", 0.35)
    wire = d.feed_from("TX", b"\x03" * 80, 0.36) + d.feed_from("RX", b"\x04" * 80, 0.36)
    assert wire == b"\xff\xff" * 2000 + b"\x03\x04" * 80  # 0.25 s away = 2000 samples of silence each
    report = d.quality_report()
    assert [c["perspective"] for c in report["channels"]] == ["TX", "RX"]
    assert report["gaps"] == 2 and report["channels"][0]["gap_samples"] == 2000
    with pytest.raises(CallProtocolError, match="text message"):
        d.feed_from("RX", "{}", 0.4)
