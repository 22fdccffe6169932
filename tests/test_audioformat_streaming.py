"""Streaming properties: chunking never changes the verdict, arbitrary bytes
only ever give a verdict or AudioFormatError, memory stays bounded."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest
from audioformat_samples import EXAMPLE_LIST, EXAMPLES_BY_ID, mpeg1_frame, ogg_pages, wav_header, webm_from_opus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from voxpipe.audioformat import (
    MAX_CARRY_BYTES,
    MAX_HEAD_BYTES,
    AudioFormatChecker,
    AudioFormatError,
    AudioInfo,
)
from voxpipe.audioformat.detect import DETECT_BYTES
from voxpipe.audioformat.ogg import ogg_crc32

HYPOTHESIS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def verdict(chunks, **kw):
    """What the checker concludes, in a comparable form."""
    c = AudioFormatChecker(**kw)
    heads = []
    try:
        for chunk in chunks:
            h = c.feed(chunk)
            if h is not None:
                heads.append(h)
        info = c.finish()
    except AudioFormatError as e:
        return ("error", e.reason, e.offset, e.detail)
    assert len(heads) <= 1
    assert c.carry_size == 0 or c.carry_size <= MAX_CARRY_BYTES + DETECT_BYTES
    return ("ok", info, c.head)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def _corpus() -> list[tuple[str, bytes, dict, str | None]]:
    """(name, bytes, checker arguments, expected reason or None for accepted)."""
    out = []
    for ex in EXAMPLE_LIST:
        d = ex.data
        out.append((ex.id, d, {"declared_format": ex.declared}, None))
        out.append((ex.id + "-cut", d[: len(d) * 2 // 3], {}, "truncated"))
        bad = bytearray(d)
        bad[len(d) // 2] ^= 0x5A
        # Audio payload is not checked (WAV samples, MP3 Huffman data); Ogg pages carry a CRC.
        out.append((ex.id + "-flip", bytes(bad), {}, "ogg-crc-mismatch" if ex.container == "ogg" else None))
    mp3 = EXAMPLES_BY_ID["100003"].data
    out.append(("mp3-garbage", mp3[:3000] + random.Random(1).randbytes(3000) + mp3[3000:], {}, "mp3-sync-lost"))
    out.append(("opus-as-mp3", EXAMPLES_BY_ID["100004"].data, {"declared_format": "mp3"}, "format-mismatch"))
    out.append(("ulaw-as-alaw", EXAMPLES_BY_ID["100001"].data, {"declared_format": "wav_alaw"}, "format-mismatch"))
    out.append(("size", EXAMPLES_BY_ID["100002"].data, {"expected_size": 100_000}, "size-mismatch"))
    out.append(("duration", EXAMPLES_BY_ID["100006"].data, {"expected_duration": 20.0}, "duration-mismatch"))
    webm, dur = webm_from_opus(EXAMPLES_BY_ID["100004"].data)
    out.append(("webm", webm, {"expected_duration": dur}, None))
    out.append(("webm-cut", webm[:9000], {}, "truncated"))
    live, _ = webm_from_opus(EXAMPLES_BY_ID["100004"].data, live=True)
    out.append(("webm-live", live, {}, None))
    return out


CORPUS = _corpus()


@HYPOTHESIS
@given(
    case=st.sampled_from(CORPUS),
    cuts=st.lists(st.integers(min_value=0, max_value=200_000), max_size=40),
)
def test_chunking_never_changes_the_verdict(case, cuts):
    _name, data, kw, _expected = case
    whole = verdict([data], **kw)
    assert verdict(split(data, cuts), **kw) == whole


@pytest.mark.parametrize("name,data,kw,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_byte_by_byte_and_odd_chunks_equal_whole(name, data, kw, expected):
    whole = verdict([data], **kw)
    assert whole[0] == "ok" if expected is None else whole[1] == expected, whole
    for size in (1, 3, 4096, 65537):
        assert verdict([data[i : i + size] for i in range(0, len(data), size)], **kw) == whole, size


PREFIXES = [
    b"",
    b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00",
    b"RIFF\xff\xff\xff\xffWAVE",
    b"OggS\x00\x02",
    b"ID3\x03\x00\x00\x00\x00\x00\x05",
    b"\xff\xfb\x90\xc4",
    b"\xff\xe3\x28\xc4",
    b"\x1a\x45\xdf\xa3\x84\x42\x82\x81w",
]


@HYPOTHESIS
@given(
    prefix=st.sampled_from(PREFIXES),
    body=st.binary(max_size=3000),
    declared=st.sampled_from([None, "wav", "mp3", "opus", "ogg", "webm", "wav_ulaw", "bogus"]),
    expected_duration=st.none() | st.floats(min_value=0, max_value=1e6),
    expected_size=st.none() | st.integers(min_value=0, max_value=5000),
    cuts=st.lists(st.integers(min_value=0, max_value=3100), max_size=8),
)
def test_arbitrary_bytes_give_a_verdict_or_our_error(prefix, body, declared, expected_duration, expected_size, cuts):
    data = prefix + body
    kw = dict(declared_format=declared, expected_duration=expected_duration, expected_size=expected_size)
    whole = verdict([data], **kw)  # anything else than AudioFormatError propagates and fails
    assert whole[0] in ("ok", "error")
    if whole[0] == "ok":
        assert isinstance(whole[1], AudioInfo) and whole[1].size == len(data)
    assert verdict(split(data, cuts), **kw) == whole


@HYPOTHESIS
@given(
    which=st.sampled_from([e.id for e in EXAMPLE_LIST] + ["webm"]),
    edits=st.lists(st.tuples(st.integers(min_value=0, max_value=10**6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(min_value=0, max_value=10**6),
)
def test_mutated_examples_give_a_verdict_or_our_error(which, edits, cut):
    if which == "webm":
        data = bytearray(webm_from_opus(EXAMPLES_BY_ID["100004"].data)[0])
    else:
        data = bytearray(EXAMPLES_BY_ID[which].data)
    for pos, value in edits:
        # Bias towards the header, where the parsing decisions are.
        data[pos % min(len(data), 600) if pos % 2 else pos % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    result = verdict([bytes(data)])
    assert result[0] in ("ok", "error")
    assert verdict(split(bytes(data), [len(data) // 3, len(data) // 3 + 1, len(data) - 5])) == result


# -- bounded memory ----------------------------------------------------------------------
CHUNK = 1024 * 1024


def test_200_mb_wav_in_1_mib_chunks_keeps_state_bounded():
    size = 200 * CHUNK
    header = wav_header(data_size=size)
    c = AudioFormatChecker(declared_format="wav", expected_size=len(header) + size, expected_duration=size / 16000)
    assert c.feed(header) is not None
    chunk = bytes(CHUNK)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(200):
            c.feed(chunk)
            assert c.carry_size <= MAX_CARRY_BYTES
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing proportional to the input is kept or copied.
    assert peak - base < 64 * 1024 and current - base < 16 * 1024
    info = c.finish()
    assert info.size == len(header) + size and info.duration == size / 16000


def test_long_mp3_and_ogg_streams_keep_carry_bounded():
    # ~4 MB of MPEG-1 frames (417/418 bytes each), fed in chunks that never align.
    frames = b"".join(mpeg1_frame(padding=i % 3 == 0) for i in range(10_000))
    c = AudioFormatChecker(declared_format="mp3")
    worst = 0
    for i in range(0, len(frames), 65_537):
        c.feed(frames[i : i + 65_537])
        worst = max(worst, c.carry_size)
    assert c.finish().duration == pytest.approx(10_000 * 1152 / 44100)
    assert worst < 4096  # a frame header or part of the first frame, never more
    # Ogg: the example's audio pages repeated with renumbered sequence numbers.
    opus = EXAMPLES_BY_ID["100004"].data
    pages = ogg_pages(opus)
    out = bytearray(opus[: pages[2].offset])
    seq, granule = 2, 0
    for _ in range(40):
        for p in pages[2:-1]:
            granule += 960 * 25
            hdr = b"OggS" + struct.pack("<BBqIIIB", 0, p.flags, granule, p.serial, seq, 0, len(p.lacing))
            raw = hdr + p.lacing + p.body
            out += raw[:22] + struct.pack("<I", ogg_crc32(raw)) + raw[26:]
            seq += 1
    last = pages[-1]
    hdr = b"OggS" + struct.pack("<BBqIIIB", 0, 4, granule + 960, last.serial, seq, 0, len(last.lacing))
    raw = hdr + last.lacing + last.body
    out += raw[:22] + struct.pack("<I", ogg_crc32(raw)) + raw[26:]
    c = AudioFormatChecker(declared_format="opus")
    worst = 0
    for i in range(0, len(out), 10_007):
        c.feed(out[i : i + 10_007])
        worst = max(worst, c.carry_size)
    info = c.finish()
    assert info.codec == "opus" and worst <= MAX_CARRY_BYTES
    assert worst < 512  # page headers and segment tables only, after the first page


def test_head_budget_is_bounded_for_every_container():
    # A byte stream that keeps "looking like" a container without ever completing
    # its head is rejected after MAX_HEAD_BYTES, not downloaded on trust.
    junk_chunk = b"JUNK" + struct.pack("<I", 4096) + bytes(4096)
    wav = wav_header(data_size=0, riff_size=0xFFFFFFFF)[:36] + junk_chunk * ((MAX_HEAD_BYTES // len(junk_chunk)) + 2)
    c = AudioFormatChecker()
    with pytest.raises(AudioFormatError) as e:
        for i in range(0, len(wav), 100_000):
            c.feed(wav[i : i + 100_000])
    assert e.value.reason == "head-not-found" and e.value.offset == MAX_HEAD_BYTES
    ebml = bytes.fromhex("1a45dfa3") + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size: not allowed
    c = AudioFormatChecker()
    with pytest.raises(AudioFormatError) as e:
        c.feed(ebml)
    assert e.value.reason == "webm-bad-element"
