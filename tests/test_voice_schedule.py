"""The voice emulator's pure parts: WAV loading, message slicing, packet plans."""

from __future__ import annotations

import random
import wave

import pytest
from hypothesis import given, strategies as st

from voxpipe import dsp
from voxpipe_voice import twilio
from voxpipe_voice.schedule import (Audio, WavError, load_wav, packet_plan, pcm16_messages, slice_sizes,
                                    twilio_messages)
from voice_support import RECORDINGS


@given(total=st.integers(0, 5000), lo=st.integers(1, 50), span=st.integers(0, 500), seed=st.integers())
def test_slices_cover_the_audio(total, lo, span, seed):
    sizes = slice_sizes(total, random.Random(seed), lo, lo + span)
    assert sum(sizes) == total
    assert all(lo <= s <= lo + span for s in sizes[:-1])


def test_slices_are_seeded_and_split_anywhere():
    a = slice_sizes(10_000, random.Random(7), 1, 99)
    assert a == slice_sizes(10_000, random.Random(7), 1, 99)
    assert any(s % 2 for s in a)  # odd sizes: messages split samples


@given(n=st.integers(2, 300), seed=st.integers(), drop=st.floats(0, 1), reorder=st.floats(0, 1))
def test_packet_plan_keeps_ends_and_moves_packets_one_place(n, seed, drop, reorder):
    plan = packet_plan(n, random.Random(seed), drop, reorder)
    assert plan[0] == 0 and plan[-1] == n - 1
    assert len(set(plan)) == len(plan) and set(plan) <= set(range(n))
    kept = sorted(plan)
    for pos, seq in enumerate(plan):  # at most one place from its sorted position
        assert abs(kept.index(seq) - pos) <= 1


def test_packet_plan_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="drop=1.5"):
        packet_plan(10, random.Random(0), 1.5)


def test_load_wav_decodes_g711_and_pcm():
    ulaw = load_wav(RECORDINGS / "100001.wav")
    assert ulaw.sample_rate == 8000 and abs(ulaw.seconds - 10.558) < 0.001
    raw = (RECORDINGS / "100001.wav").read_bytes()
    data = raw[raw.index(b"data") + 8:]
    assert ulaw.pcm == dsp.mulaw_decode(data[:len(ulaw.pcm) // 2])
    with wave.open(str(RECORDINGS / "100002.wav")) as w:
        assert load_wav(RECORDINGS / "100002.wav").pcm == w.readframes(w.getnframes())
    alaw = load_wav(RECORDINGS / "100005.wav")
    assert abs(alaw.seconds - 9.603) < 0.001


def test_load_wav_rejects_other_files(tmp_path):
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"OggS" + bytes(40))
    with pytest.raises(WavError, match=r"x.wav: not a RIFF/WAVE file \(byte offset 0\)"):
        load_wav(bad)


def test_pcm16_messages_are_paced_by_audio_time():
    audio = Audio(bytes(16000), 8000)  # 1 s
    msgs = pcm16_messages(audio, random.Random(0), 100, 300)
    assert b"".join(m.data for m in msgs) == audio.pcm
    assert msgs[-1].at == pytest.approx(1.0)
    assert all(a.at < b.at for a, b in zip(msgs, msgs[1:]))


def test_twilio_messages_follow_the_protocol():
    audio = Audio(bytes(8000 * 2 // 10 + 20), 8000)  # 100 ms + 10 samples: 5 whole frames and a short one
    msgs = [twilio.parse_event(m.data) for m in twilio_messages(audio, call_sid="CA9", stream_sid="MZ9")]
    assert isinstance(msgs[0], twilio.Connected) and isinstance(msgs[1], twilio.Start)
    media = msgs[2:-1]
    assert [m.chunk for m in media] == [1, 2, 3, 4, 5, 6]
    assert [m.sequence_number for m in media] == [2, 3, 4, 5, 6, 7]
    assert [m.timestamp for m in media] == [0, 20, 40, 60, 80, 100]
    assert [len(m.payload) for m in media] == [160] * 5 + [10]
    assert msgs[-1] == twilio.Stop(8, "MZ9", "CA9", "AC0")
