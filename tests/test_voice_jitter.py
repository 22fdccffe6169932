"""JitterBuffer reordering/concealment counts and RFC 3550 interarrival jitter."""

from __future__ import annotations

import dataclasses

import pytest

from voxpipe.voice.jitter import CallQuality, JitterBuffer, JitterEstimator

SILENCE = b"\x00" * 4


def frame(n: int) -> bytes:
    return bytes([n % 256]) * 4


def run(jb: JitterBuffer, seqs: list[int]) -> list[bytes]:
    out = []
    for s in seqs:
        out += jb.push(s, frame(s))
    return out + jb.flush()


def test_in_order_stream_is_delayed_by_depth_and_unchanged():
    jb = JitterBuffer(SILENCE, depth_ms=40, frame_ms=20)
    assert jb.depth_frames == 2
    assert jb.push(10, frame(10)) == []
    assert jb.push(11, frame(11)) == []
    assert jb.push(12, frame(12)) == [frame(10)]
    assert jb.buffered == 2 and jb.next_seq == 11
    assert jb.flush() == [frame(11), frame(12)]
    assert jb.quality.snapshot().frames_concealed == 0


def test_reorders_within_depth():
    jb = JitterBuffer(SILENCE, depth_ms=40)
    assert run(jb, [0, 2, 1, 4, 3, 5]) == [frame(i) for i in range(6)]
    snap = jb.quality.snapshot()
    assert (snap.packets, snap.frames_concealed, snap.frames_late, snap.duplicates) == (6, 0, 0, 0)


def test_gap_is_concealed_with_silence_and_counted_as_dropped():
    jb = JitterBuffer(SILENCE, depth_ms=40)
    assert run(jb, [0, 1, 3, 4, 5, 7]) == [
        frame(0), frame(1), SILENCE, frame(3), frame(4), frame(5), SILENCE, frame(7)
    ]
    snap = jb.quality.snapshot()
    assert snap.frames_concealed == 2 and snap.frames_dropped == 2 and snap.frames_late == 0


def test_packet_after_its_slot_is_late_not_lost():
    jb = JitterBuffer(SILENCE, depth_ms=20)  # 1 frame of reordering
    out = []
    for s in [0, 1, 3, 4, 2, 5]:  # 2 arrives after 4 released it as silence
        out += jb.push(s, frame(s))
    assert out == [frame(0), frame(1), SILENCE, frame(3), frame(4)]
    snap = jb.quality.snapshot()
    assert (snap.frames_concealed, snap.frames_late, snap.frames_dropped) == (1, 1, 0)
    assert snap.packets == 6 and snap.bytes == 24


def test_duplicates_are_discarded_and_counted():
    jb = JitterBuffer(SILENCE, depth_ms=40)
    assert run(jb, [0, 1, 1, 2, 3, 0, 4]) == [frame(i) for i in range(5)]
    assert jb.quality.snapshot().duplicates == 2


def test_depth_zero_releases_immediately():
    jb = JitterBuffer(SILENCE, depth_ms=0)
    assert jb.push(5, frame(5)) == [frame(5)]
    assert jb.push(7, frame(7)) == [SILENCE, frame(7)]


def test_large_jump_resynchronises_instead_of_concealing_for_seconds():
    jb = JitterBuffer(SILENCE, depth_ms=40, max_gap_frames=10)
    out = run(jb, [0, 1, 2, 1000, 1001, 1002])
    assert out == [frame(0), frame(1), frame(2), frame(1000), frame(1001), frame(1002)]
    snap = jb.quality.snapshot()
    assert snap.resyncs == 1 and snap.frames_concealed == 0


def test_rtp_16_bit_sequence_numbers_wrap():
    jb = JitterBuffer(SILENCE, depth_ms=40, seq_bits=16)
    seqs = [65533, 65534, 0, 65535, 1, 2]
    out = []
    for s in seqs:
        out += jb.push(s, frame(s))
    out += jb.flush()
    assert out == [frame(s) for s in [65533, 65534, 65535, 0, 1, 2]]
    assert jb.quality.snapshot().frames_concealed == 0
    with pytest.raises(ValueError, match="sequence number 65536"):
        jb.push(65536, frame(0))


def test_bad_configuration():
    with pytest.raises(ValueError, match="depth_ms=30 must be a non-negative multiple of frame_ms=20"):
        JitterBuffer(SILENCE, depth_ms=30)
    with pytest.raises(ValueError, match="at most 50 frames"):
        JitterBuffer(SILENCE, depth_ms=2000)
    with pytest.raises(ValueError, match="sequence number -1"):
        JitterBuffer(SILENCE).push(-1, b"")


def test_rfc3550_jitter_on_constructed_schedule():
    # 8 kHz, 20 ms packets (160 samples); arrivals 0, 20, 45, 60 ms.
    # R (samples): 0, 160, 360, 480.  D: 0, 40, -40.
    # J: 0 -> 0 + (0-0)/16 = 0 -> 0 + (40-0)/16 = 2.5 -> 2.5 + (40-2.5)/16 = 4.84375
    est = JitterEstimator(8000)
    for ts, arrival in [(0, 0.000), (160, 0.020), (320, 0.045), (480, 0.060)]:
        est.update(ts, arrival)
    assert est.jitter == pytest.approx(4.84375, abs=1e-9)
    assert est.jitter_ms == pytest.approx(4.84375 / 8, abs=1e-12)


def test_call_quality_snapshot_via_jitter_buffer():
    q = CallQuality(sample_rate=8000)
    jb = JitterBuffer(b"\xff" * 160, depth_ms=40, quality=q)
    schedule = [(0, 0.000), (1, 0.020), (2, 0.045), (3, 0.060)]
    for seq, arrival in schedule:
        jb.push(seq, b"\x01" * 160, timestamp=seq * 160, arrival=arrival)
    snap = q.snapshot()
    assert snap.packets == 4 and snap.bytes == 640
    assert snap.jitter_ms == pytest.approx(0.60546875)
    # 3 packets x 160 bytes after the first, over 60 ms: G.711's 64 kbit/s
    assert snap.bitrate_bps == pytest.approx(64000.0)
    d = snap.to_dict()
    assert d["frames_dropped"] == 0 and d["packets"] == 4 and set(d) == {
        f.name for f in dataclasses.fields(snap)
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.packets = 5  # type: ignore[misc]


def test_untimed_packets_have_zero_bitrate():
    q = CallQuality()
    q.record_packet(320)
    assert q.snapshot().bitrate_bps == 0.0 and q.snapshot().jitter_ms == 0.0
