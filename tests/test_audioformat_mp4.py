"""MP4/M4A (ISO BMFF) in the streaming audio-format checker: box orders, box sizes, bounded
memory, and each structural fault with its stable reason. The boxes are written here from
ISO/IEC 14496-12, not from the checker's code."""

from __future__ import annotations

import struct

import mutagen
import pytest

from audioformat_samples import EXAMPLES_BY_ID
from voxpipe.audioformat import MAX_CARRY_BYTES, AudioFormatChecker, AudioFormatError, inspect_bytes
from voxpipe.audioformat.detect import guess_extension

M4A = EXAMPLES_BY_ID["100007"]


def box(kind: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    return box(kind, bytes([version, 0, 0, 0]) + payload)


def top_boxes(data: bytes) -> dict[bytes, bytes]:
    out, i = {}, 0
    while i < len(data):
        size, kind = struct.unpack_from(">I4s", data, i)
        out[kind] = data[i:i + size]
        i += size
    return out


def audio_mp4(*, rate=8000, channels=1, timescale=8000, duration=16000, sizes=(100, 120, 80), handler=b"soun",
              fmt=b"mp4a", order=("ftyp", "moov", "mdat"), mdat_extra=0, mdhd_version=0, large_mdat=False,
              mdat_to_end=False) -> bytes:
    ftyp = box(b"ftyp", b"M4A \x00\x00\x02\x00M4A isommp42")
    if mdhd_version == 1:
        mdhd = full(b"mdhd", struct.pack(">QQIQ", 0, 0, timescale, duration) + b"\x55\xc4\x00\x00", 1)
    else:
        mdhd = full(b"mdhd", struct.pack(">IIII", 0, 0, timescale, duration) + b"\x55\xc4\x00\x00")
    hdlr = full(b"hdlr", b"\x00\x00\x00\x00" + handler + b"\x00" * 12 + b"SoundHandler\x00")
    entry = box(fmt, b"\x00" * 6 + b"\x00\x01" + b"\x00" * 8 + struct.pack(">HHHHI", channels, 16, 0, 0, rate << 16))
    stsd = full(b"stsd", struct.pack(">I", 1) + entry)
    stsz = full(b"stsz", struct.pack(">II", 0, len(sizes)) + struct.pack(f">{len(sizes)}I", *sizes))
    stbl = box(b"stbl", stsd + full(b"stts", struct.pack(">I", 0)) + stsz + full(b"stco", struct.pack(">I", 0)))
    minf = box(b"minf", full(b"smhd", b"\x00" * 4) + box(b"dinf", full(b"dref", struct.pack(">I", 0))) + stbl)
    trak = box(b"trak", full(b"tkhd", b"\x00" * 80) + box(b"mdia", mdhd + hdlr + minf))
    moov = box(b"moov", full(b"mvhd", b"\x00" * 96) + trak)
    media = b""
    if "mdat" in order:
        media = (bytes(range(256)) * ((sum(sizes) + mdat_extra) // 256 + 1))[:sum(sizes) + mdat_extra]
    if mdat_to_end:
        mdat = struct.pack(">I4s", 0, b"mdat") + media
    else:
        mdat = box(b"mdat", media, large=large_mdat)
    parts = {"ftyp": ftyp, "moov": moov, "mdat": mdat, "free": box(b"free", b"\x00" * 8)}
    return b"".join(parts[name] for name in order)


@pytest.mark.parametrize("kwargs", [
    {}, {"order": ("ftyp", "free", "mdat", "moov")}, {"mdhd_version": 1}, {"large_mdat": True},
    {"order": ("ftyp", "moov", "mdat"), "mdat_to_end": True}, {"rate": 48000, "channels": 2, "timescale": 48000,
                                                                "duration": 48000 * 3},
    {"fmt": b"ulaw"},
])
def test_valid_layouts_in_any_chunking(kwargs):
    data = audio_mp4(**kwargs)
    whole = inspect_bytes(data, declared_format="m4a", expected_size=len(data))
    assert whole.container == "mp4" and whole.size == len(data)
    for step in (1, 5, 64, 4096):
        checker = AudioFormatChecker(expected_size=len(data))
        heads = [h for i in range(0, len(data), step) if (h := checker.feed(data[i:i + step])) is not None]
        assert len(heads) == 1 and checker.finish() == whole
    expected_rate = kwargs.get("rate", 8000)
    assert (whole.sample_rate, whole.channels) == (expected_rate, kwargs.get("channels", 1))
    assert whole.duration == pytest.approx(kwargs.get("duration", 16000) / kwargs.get("timescale", 8000))
    assert whole.codec == ("pcm_mulaw" if kwargs.get("fmt") == b"ulaw" else "aac")


def test_example_fast_start_variant_agrees_with_mutagen(tmp_path):
    data = M4A.data
    parts = top_boxes(data)
    assert list(parts) == [b"ftyp", b"free", b"mdat", b"moov"]  # as recorded: media before the index
    fast = parts[b"ftyp"] + parts[b"moov"] + parts[b"free"] + parts[b"mdat"]
    path = tmp_path / "fast.m4a"
    path.write_bytes(fast)
    m = mutagen.File(path)
    checker = AudioFormatChecker(declared_format="audio/mp4", expected_duration=m.info.length)
    head_at = None
    for i in range(0, len(fast), 16):
        if checker.feed(fast[i:i + 16]) is not None:
            head_at = i + 16
    info = checker.finish()
    assert head_at is not None and head_at <= len(parts[b"ftyp"]) + len(parts[b"moov"]) + 16  # early
    assert (info.codec, info.sample_rate, info.channels) == ("aac", m.info.sample_rate, m.info.channels)
    assert info.duration == pytest.approx(m.info.length, abs=1e-6) and m.info.codec == "mp4a.40.2"


@pytest.mark.parametrize("data, reason, words", [
    (audio_mp4(handler=b"vide"), "mp4-no-audio-track", "no audio track"),
    (audio_mp4(timescale=0), "mp4-bad-track", "timescale 0"),
    (audio_mp4(channels=0), "mp4-bad-track", "0 channels"),
    (audio_mp4(order=("ftyp", "moov")), "truncated", "without an 'mdat'"),
    (audio_mp4(order=("ftyp", "mdat")), "truncated", "without a 'moov'"),
    (audio_mp4(order=("ftyp", "mdat", "moov"), mdat_extra=-50), "mp4-mdat-size-mismatch", "'stsz'"),
    (audio_mp4(order=("ftyp", "moov", "mdat"), mdat_extra=-50), "truncated", "'stsz'"),
    (audio_mp4() + box(b"moof", b"\x00" * 8), "mp4-unsupported", "fragmented"),
    (audio_mp4() + audio_mp4(order=("moov",)), "mp4-bad-box", "second 'moov'"),
    (audio_mp4()[:-3], "truncated", "inside box 'mdat'"),
    (audio_mp4() + b"\x00\x00", "truncated", "inside a box header"),
    (audio_mp4() + b"\x00\x00\x00\x04free", "mp4-bad-box", "less than its 8-byte header"),
    (audio_mp4() + b"\x00\x00\x00\x10\x01\x02\x03\x04" + b"\x00" * 8, "mp4-bad-box", "not text"),
    (box(b"ftyp", b"M4A "), "mp4-bad-ftyp", "'ftyp' payload is 4 bytes"),
])
def test_faults_have_stable_reasons(data, reason, words):
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(data, recording_id="m1")
    assert e.value.reason == reason and words in str(e.value), e.value
    assert str(e.value).startswith("recording m1: ")


def test_a_box_overflowing_its_parent_is_caught_while_streaming():
    data = bytearray(audio_mp4())
    i = data.find(b"hdlr") - 4
    struct.pack_into(">I", data, i, 10_000)  # hdlr claims more than its mdia holds
    checker = AudioFormatChecker()
    with pytest.raises(AudioFormatError) as e:
        checker.feed(bytes(data[:i + 8]))
    assert e.value.reason == "mp4-bad-box" and "overflows its parent 'mdia'" in str(e.value) and e.value.offset == i


def test_declared_format_and_codec_are_checked():
    data = audio_mp4(fmt=b"ulaw")
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(data, declared_format="aac")
    assert e.value.reason == "format-mismatch" and "pcm_mulaw" in str(e.value)
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(M4A.data, declared_format="wav")
    assert e.value.reason == "format-mismatch" and "MP4" in str(e.value)
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(M4A.data, expected_duration=30.0)
    assert e.value.reason == "duration-mismatch"


def test_sample_tables_and_media_are_never_held_in_memory():
    sizes = tuple(range(1, 200_001))  # an 800 KB stsz and a 20 GB-shaped index: streamed, not buffered
    data = audio_mp4(sizes=sizes, order=("ftyp", "moov"))
    mdat_payload = sum(sizes)
    checker = AudioFormatChecker()
    carry = 0
    for i in range(0, len(data), 65536):
        checker.feed(data[i:i + 65536])
        carry = max(carry, checker.carry_size)
    # the media itself, as a stream of 1 MiB pieces, without materialising 20 GB
    checker.feed(struct.pack(">I4s", 0, b"mdat"))
    piece = bytes(1 << 20)
    for _ in range(4):
        checker.feed(piece)
        carry = max(carry, checker.carry_size)
    assert carry <= MAX_CARRY_BYTES
    with pytest.raises(AudioFormatError) as e:
        checker.finish()
    assert e.value.reason == "truncated" and str(mdat_payload) in str(e.value)  # the media stopped early


def test_container_guessed_from_first_bytes_and_content_type():
    assert guess_extension(M4A.data[:64]) == "m4a"
    assert guess_extension(EXAMPLES_BY_ID["100001"].data[:64]) == "wav"
    assert guess_extension(EXAMPLES_BY_ID["100003"].data[:64]) == "mp3"
    assert guess_extension(EXAMPLES_BY_ID["100004"].data[:64]) == "opus"
    assert guess_extension(EXAMPLES_BY_ID["100006"].data[:64]) == "ogg"
    assert guess_extension(b"\x00\x01", content_type="audio/mp4; codecs=mp4a.40.2") == "m4a"
    assert guess_extension(b"RIFF\x00\x00\x00\x00WAVE", content_type="audio/mpeg") == "wav"  # the bytes win
    assert guess_extension(b"", content_type="application/octet-stream") is None
