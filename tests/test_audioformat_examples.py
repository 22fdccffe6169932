"""Intact recordings: the shipped examples and synthetic valid variants are
accepted with the right container, codec, rate, channels and duration."""

from __future__ import annotations

import struct

import mutagen
import pytest
from audioformat_samples import (
    EXAMPLE_LIST,
    EXAMPLES_BY_ID,
    id3v2,
    mpeg1_frame,
    reference_ogg_crc,
    wav_header,
    webm_from_opus,
    xing_frame,
)
from voxpipe.audioformat import (
    AudioFormatChecker,
    AudioFormatError,
    AudioInfo,
    HeadInfo,
    inspect_bytes,
    inspect_file,
)
from voxpipe.audioformat.ogg import ogg_crc32

IDS = [e.id for e in EXAMPLE_LIST]


def test_examples_are_small_and_complete():
    total = sum(e.path.stat().st_size for e in EXAMPLE_LIST)
    assert total < 2 * 1024 * 1024
    assert {e.path.suffix for e in EXAMPLE_LIST} >= {".wav", ".mp3", ".opus"}


@pytest.mark.parametrize("rid", IDS)
def test_example_accepted_and_agrees_with_mutagen(rid):
    ex = EXAMPLES_BY_ID[rid]
    m = mutagen.File(ex.path)
    info = inspect_file(
        ex.path,
        declared_format=ex.declared,
        expected_duration=m.info.length,
        expected_size=ex.path.stat().st_size,
        recording_id=rid,
    )
    assert isinstance(info, AudioInfo)
    assert (info.container, info.codec, info.sample_rate, info.channels, info.bits_per_sample) == (
        ex.container,
        ex.codec,
        ex.sample_rate,
        ex.channels,
        ex.bits_per_sample,
    )
    assert info.size == len(ex.data)
    assert m.info.channels == info.channels
    if hasattr(m.info, "sample_rate"):  # mutagen's OggOpus reports no rate
        assert m.info.sample_rate == info.sample_rate
    # Each container's duration is derived independently of mutagen; WAV and Ogg
    # must agree to the sample, MP3 within one frame (mutagen estimates CBR MP3
    # from byte counts, counting the 128-byte ID3v1 trailer as audio).
    tol = 0.08 if ex.container == "mp3" else 1e-6
    assert info.duration == pytest.approx(m.info.length, abs=tol)
    assert 4.0 <= info.duration <= 12.0
    d = info.to_dict()
    assert d["codec"] == ex.codec and d["size"] == info.size


def test_example_durations_from_first_principles():
    # WAV: data bytes / byte rate, computed here from the raw header.
    ulaw = EXAMPLES_BY_ID["100001"].data
    data_at = ulaw.index(b"data")
    data_size = struct.unpack_from("<I", ulaw, data_at + 4)[0]
    assert inspect_bytes(ulaw).duration == data_size / 8000
    pcm = EXAMPLES_BY_ID["100002"].data
    assert inspect_bytes(pcm).duration == (len(pcm) - 44) / 16000
    # MP3: 16 kbit/s MPEG-2.5 at 8 kHz is 144-byte frames of 576 samples,
    # between a 245-byte ID3v2 tag and a 128-byte ID3v1 tag.
    mp3 = EXAMPLES_BY_ID["100003"].data
    frames = (len(mp3) - 245 - 128) / 144
    assert frames == int(frames)
    assert inspect_bytes(mp3).duration == pytest.approx(frames * 576 / 8000)
    # Opus: last granule minus pre-skip, at 48 kHz.
    opus = EXAMPLES_BY_ID["100004"].data
    last = opus.rindex(b"OggS")
    granule = struct.unpack_from("<q", opus, last + 6)[0]
    preskip = struct.unpack_from("<H", opus, opus.index(b"OpusHead") + 10)[0]
    assert inspect_bytes(opus).duration == (granule - preskip) / 48000


@pytest.mark.parametrize("rid", IDS)
def test_head_arrives_early_and_once(rid):
    ex = EXAMPLES_BY_ID[rid]
    data = ex.data
    checker = AudioFormatChecker(declared_format=ex.declared)
    heads = []
    head_at = None
    for i in range(len(data)):
        h = checker.feed(data[i : i + 1])
        if h is not None:
            heads.append(h)
            head_at = i + 1
    info = checker.finish()
    assert len(heads) == 1 and isinstance(heads[0], HeadInfo)
    head = heads[0]
    assert (head.container, head.codec, head.sample_rate, head.channels) == (
        info.container,
        info.codec,
        info.sample_rate,
        info.channels,
    )
    # The head is known after a few hundred bytes, not at the end; an MP4 whose media
    # ('mdat') precedes its index ('moov'), as recorded live, is known once the moov is read.
    if ex.container == "mp4" and data.find(b"mdat") < data.find(b"moov"):
        assert head_at == len(data)
    else:
        assert head_at is not None and head_at <= 1024
    assert checker.head == head and checker.finish() is info


def test_head_fields():
    c = AudioFormatChecker()
    head = c.feed(EXAMPLES_BY_ID["100001"].data[:200])
    assert head is not None
    assert head.header_offset == 58 and head.bits_per_sample == 8
    assert head.header_duration == pytest.approx(10.557625)
    c = AudioFormatChecker()
    head = c.feed(EXAMPLES_BY_ID["100004"].data[:100])
    assert head.codec == "opus" and head.sample_rate == 48000 and head.input_sample_rate == 8000
    c = AudioFormatChecker()
    head = c.feed(EXAMPLES_BY_ID["100003"].data[:1000])
    assert head.header_offset == 245 and head.codec == "mp3"


@pytest.mark.parametrize(
    "rid,declared",
    [
        ("100001", "wav"),
        ("100001", "WAV_ULAW"),  # Genesys formatId spelling
        ("100001", "audio/wav"),
        ("100002", "wav_pcm"),
        ("100003", "MP3"),
        ("100003", "audio/mpeg"),
        ("100004", "opus"),
        ("100004", "ogg"),
        ("100004", "OGG_OPUS"),
        ("100004", "audio/ogg; codecs=opus"),
        ("100005", "wav_alaw"),
        ("100006", "OGG_VORBIS"),
        ("100006", None),
        ("100006", ""),
    ],
)
def test_declared_format_aliases(rid, declared):
    info = inspect_bytes(EXAMPLES_BY_ID[rid].data, declared_format=declared)
    assert info.container == EXAMPLES_BY_ID[rid].container


def test_duration_tolerance_is_max_of_seconds_and_fraction():
    data = EXAMPLES_BY_ID["100002"].data  # 9.661375 s
    inspect_bytes(data, expected_duration=9)  # metadata in whole seconds, truncated
    inspect_bytes(data, expected_duration=10.6)  # 0.94 s off: inside the 1 s default
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(data, expected_duration=10.7)
    assert e.value.reason == "duration-mismatch" and "10.700" in str(e.value)
    inspect_bytes(data, expected_duration=10.7, duration_tolerance=0.0, duration_tolerance_fraction=0.11)
    with pytest.raises(AudioFormatError):
        inspect_bytes(data, expected_duration=9.7, duration_tolerance=0.01, duration_tolerance_fraction=0)


def test_inspect_file_matches_inspect_bytes(tmp_path):
    for ex in EXAMPLE_LIST:
        p = tmp_path / f"renamed-{ex.id}.bin"  # the name says nothing
        p.write_bytes(ex.data)
        assert inspect_file(p) == inspect_bytes(ex.data)


# -- synthetic valid variants -------------------------------------------------------
def test_wav_with_list_chunk_after_data_and_odd_data_size():
    pcm8 = bytes(range(256)) * 4 + b"\x80"  # 1025 bytes of 8-bit PCM: odd size, pad byte follows
    list_chunk = b"LIST" + struct.pack("<I", 12) + b"INFOICMT\x00\x00\x00\x00"
    body = pcm8 + b"\x00" + list_chunk
    hdr = wav_header(data_size=len(pcm8), bits=8, riff_size=4 + 24 + 8 + len(body))
    info = inspect_bytes(hdr + body)
    assert info.codec == "pcm_u8" and info.duration == 1025 / 8000
    # The pad byte may be missing at the very end, and left out of the RIFF size.
    hdr = wav_header(data_size=len(pcm8), bits=8, riff_size=4 + 24 + 8 + len(pcm8))
    assert inspect_bytes(hdr + pcm8).duration == 1025 / 8000
    padded = hdr + pcm8 + b"\x00"
    assert inspect_bytes(padded, expected_size=len(padded)).duration == 1025 / 8000


def test_wav_extensible_and_float():
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 16000, 16000 * 4, 4, 16, 22, 16, 3)
    fmt += struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    data = b"\x00" * 64000
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    info = inspect_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff, declared_format="wav_pcm")
    assert (info.codec, info.channels, info.sample_rate, info.duration) == ("pcm_s16le", 2, 16000, 1.0)
    f32 = wav_header(data_size=32000, tag=3, bits=32) + b"\x00" * 32000
    assert inspect_bytes(f32).codec == "pcm_f32le"


def test_wav_unfinalized_allowed_on_request():
    body = b"\x01\x02" * 8000
    data = wav_header(data_size=0xFFFFFFFF, riff_size=0xFFFFFFFF) + body
    info = inspect_bytes(data, allow_unfinalized_wav=True)
    assert info.duration == 1.0
    data = wav_header(data_size=0, riff_size=0) + body
    assert inspect_bytes(data, allow_unfinalized_wav=True).duration == 1.0


def test_mpeg1_with_xing_id3_ape_and_id3v1():
    frames = [mpeg1_frame(padding=i % 2) for i in range(40)]
    ape_items = b"\x00" * 20
    ape_hdr = b"APETAGEX" + struct.pack("<IIII", 2000, len(ape_items) + 32, 1, 0xA0000000) + b"\x00" * 8
    ape_ftr = b"APETAGEX" + struct.pack("<IIII", 2000, len(ape_items) + 32, 1, 0x80000000) + b"\x00" * 8
    id3v1 = b"TAG" + b"\x00" * 125
    data = id3v2(300) + b"\x00" * 7 + xing_frame(40) + b"".join(frames) + ape_hdr + ape_items + ape_ftr + id3v1
    info = inspect_bytes(data, declared_format="mp3")
    assert (info.codec, info.sample_rate, info.channels) == ("mp3", 44100, 1)
    assert info.duration == pytest.approx(40 * 1152 / 44100)
    c = AudioFormatChecker(expected_duration=40 * 1152 / 44100)
    head = c.feed(data[:2000])
    assert head.header_duration == pytest.approx(40 * 1152 / 44100)


def test_webm_opus_built_from_the_example_packets():
    opus = EXAMPLES_BY_ID["100004"].data
    webm, duration = webm_from_opus(opus)
    info = inspect_bytes(webm, declared_format="webm", expected_duration=duration)
    assert (info.container, info.codec, info.sample_rate, info.channels) == ("webm", "opus", 48000, 1)
    assert info.duration == pytest.approx(duration)
    mkv, _ = webm_from_opus(opus, doctype="matroska")
    assert inspect_bytes(mkv, declared_format="webm").container == "matroska"


def test_webm_live_unknown_sizes_without_duration():
    opus = EXAMPLES_BY_ID["100004"].data
    webm, duration = webm_from_opus(opus, live=True)
    info = inspect_bytes(webm, declared_format="audio/webm")
    # Without a Duration element the duration is the last block's start.
    assert duration - 0.021 <= info.duration <= duration


def test_fast_ogg_crc_equals_reference():
    import random

    rng = random.Random(7)
    for n in (0, 1, 3, 27, 255, 4096):
        blob = bytes(rng.getrandbits(8) for _ in range(n))
        assert ogg_crc32(blob) == reference_ogg_crc(blob)
    page = EXAMPLES_BY_ID["100004"].data
    first_len = 27 + page[26] + sum(page[27 : 27 + page[26]])
    zeroed = page[:22] + b"\0\0\0\0" + page[26:first_len]
    assert ogg_crc32(zeroed) == struct.unpack_from("<I", page, 22)[0]
