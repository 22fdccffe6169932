"""The corrupt corpus, built here from the example recordings: each variant is
rejected with its specific reason code, at the right byte, early when the head
already shows it."""

from __future__ import annotations

import pickle
import random
import struct

import mutagen
import pytest
from audioformat_samples import (
    EXAMPLE_LIST,
    EXAMPLES_BY_ID,
    OggPage,
    el,
    id3v2,
    mpeg1_frame,
    ogg_pages,
    riff_chunks,
    uint_el,
    wav_header,
    webm_from_opus,
    xing_frame,
)
from voxpipe.audioformat import MAX_HEAD_BYTES, AudioFormatChecker, AudioFormatError, inspect_bytes, inspect_file

IDS = [e.id for e in EXAMPLE_LIST]
MP3_ID3_END, MP3_FRAME, MP3_TRAILER = 245, 144, 128  # 100003.mp3 layout (see test_examples)


def reject(data: bytes, **kw) -> AudioFormatError:
    with pytest.raises(AudioFormatError) as e:
        inspect_bytes(data, **kw)
    return e.value


def reject_early(data: bytes, **kw) -> tuple[AudioFormatError, int]:
    """Feed in 64-byte chunks; return the error and how many bytes had been fed
    when ``feed`` (not ``finish``) raised it."""
    c = AudioFormatChecker(**kw)
    for i in range(0, len(data), 64):
        try:
            c.feed(data[i : i + 64])
        except AudioFormatError as e:
            return e, i + 64
    pytest.fail(f"feed() accepted all {len(data)} bytes")


def meta(rid: str) -> dict:
    ex = EXAMPLES_BY_ID[rid]
    return dict(declared_format=ex.declared, expected_duration=mutagen.File(ex.path).info.length, recording_id=rid)


# -- zero bytes, declared size ---------------------------------------------------------
@pytest.mark.parametrize("declared", [None, "wav", "mp3", "opus", "webm"])
def test_zero_bytes(declared):
    e = reject(b"", declared_format=declared, recording_id="100009")
    assert e.reason == "empty" and e.offset == 0
    assert str(e).startswith("recording 100009: ") and "0 bytes" in str(e)


@pytest.mark.parametrize("rid", IDS)
def test_declared_2_gb_with_1_kb_of_content(rid):
    e = reject(EXAMPLES_BY_ID[rid].data[:1024], expected_size=2 * 1024**3)
    assert e.reason == "size-mismatch"
    assert "2147483648" in e.detail


def test_wav_header_contradicting_declared_size_fails_at_the_head():
    e, fed = reject_early(EXAMPLES_BY_ID["100002"].data, expected_size=2 * 1024**3)
    assert e.reason == "size-mismatch" and fed <= 64 and e.offset == 4


def test_more_bytes_than_declared_fails_while_feeding():
    data = EXAMPLES_BY_ID["100004"].data
    e, fed = reject_early(data + b"x" * 100, expected_size=len(data))
    assert e.reason == "size-mismatch" and e.offset == len(data)


# -- truncation ------------------------------------------------------------------------
def _cut_points(n: int) -> list[int]:
    pts = {1, 2, 3, 4, 5, 8, 11, 12, 13, 16, 20, 27, 30, 36, 40, 44, 45, 50, 57, 58, 59, 100, 245, 246, 300}
    pts |= {MP3_ID3_END + 10 * MP3_FRAME, MP3_ID3_END + 70 * MP3_FRAME}  # frame boundaries in 100003
    pts |= {n // 7, n // 3, n // 2, n - 1000, n - 129, n - 128, n - 127, n - 20, n - 2, n - 1}
    return sorted(p for p in pts if 0 < p < n)


@pytest.mark.parametrize("rid", IDS)
def test_truncated_at_many_points(rid):
    ex = EXAMPLES_BY_ID[rid]
    data = ex.data
    for cut in _cut_points(len(data)):
        if ex.container == "mp3" and cut >= MP3_ID3_END and (cut - MP3_ID3_END) % MP3_FRAME == 0:
            # Cut exactly between two frames: structurally whole; only the
            # duration (or size) metadata can tell, when enough is lost.
            lost_frames = (len(data) - MP3_TRAILER - cut) // MP3_FRAME
            if cut == MP3_ID3_END:
                assert reject(data[:cut], **meta(rid)).reason == "mp3-no-frames"
            elif lost_frames * 576 / 8000 > 1.0:
                assert reject(data[:cut], **meta(rid)).reason == "duration-mismatch", cut
            else:
                inspect_bytes(data[:cut], **meta(rid))
        else:
            e = reject(data[:cut], **meta(rid))
            assert e.reason == "truncated", (cut, e)
            assert e.offset == cut, (cut, e)
            assert f"recording {rid}" in str(e)
        # With the metadata size, every cut is a size mismatch.
        assert reject(data[:cut], expected_size=len(data)).reason == "size-mismatch"


def test_mp3_cut_between_frames_near_the_end_is_not_structurally_detectable():
    data = EXAMPLES_BY_ID["100003"].data
    cut = len(data) - MP3_TRAILER - 3 * MP3_FRAME  # loses 0.2 s and the ID3v1 tag
    info = inspect_bytes(data[:cut], **meta("100003"))  # honest limitation, documented
    assert info.duration == pytest.approx(inspect_bytes(data).duration - 3 * 576 / 8000)


def test_ogg_cut_at_a_page_boundary_lacks_end_of_stream():
    data = EXAMPLES_BY_ID["100006"].data
    pages = ogg_pages(data)
    cut = pages[-1].offset
    e = reject(data[:cut])
    assert e.reason == "truncated" and "end-of-stream" in e.detail


# -- header bytes flipped --------------------------------------------------------------
# Allowed reasons per byte range of the header, for each byte XOR 0xFF.
WAV_ULAW_FLIPS = [
    (range(0, 4), {"unknown-container"}),
    (range(4, 8), {"truncated", "wav-data-length-mismatch"}),  # RIFF size
    (range(8, 12), {"unsupported-container"}),  # RIFF form type != WAVE
    (range(12, 16), {"wav-bad-chunk"}),  # 'fmt ' id
    (range(16, 20), {"wav-bad-chunk", "wav-bad-fmt"}),  # fmt size
    (range(20, 22), {"wav-unsupported-codec"}),  # format tag
    (range(22, 38), {"wav-bad-fmt"}),  # channels, rate, byte rate, align, bits, cbSize
    (range(38, 42), {"wav-bad-chunk"}),  # 'fact' id
    (range(42, 46), {"wav-bad-chunk"}),  # fact size
    (range(46, 50), {"wav-fact-mismatch"}),  # fact sample count
    (range(50, 54), {"wav-bad-chunk"}),  # 'data' id
    (range(54, 58), {"wav-data-length-mismatch"}),  # data size
]
WAV_PCM_FLIPS = [
    (range(0, 4), {"unknown-container"}),
    (range(4, 8), {"truncated", "wav-data-length-mismatch", "wav-riff-size-mismatch"}),
    (range(8, 12), {"unsupported-container"}),
    (range(12, 16), {"wav-bad-chunk"}),
    (range(16, 20), {"wav-bad-chunk", "wav-bad-fmt"}),
    (range(20, 22), {"wav-unsupported-codec"}),
    (range(22, 36), {"wav-bad-fmt"}),
    (range(36, 40), {"wav-bad-chunk"}),
    (range(40, 44), {"wav-data-length-mismatch"}),
]
MP3_FLIPS = [
    (range(0, 3), {"unknown-container"}),
    (range(3, 10), {"mp3-bad-id3"}),
    (range(245, 247), {"mp3-bad-frame-header"}),
    (range(247, 249), {"mp3-sync-lost"}),
    (range(245 + 50 * 144, 245 + 50 * 144 + 4), {"mp3-sync-lost"}),  # a frame header mid-file
]
OGG_FLIPS = [
    (range(0, 4), {"unknown-container"}),
    (range(4, 6), {"ogg-bad-page"}),  # version, flags
    (range(6, 26), {"ogg-crc-mismatch"}),  # granule, serial, sequence, CRC
    (range(26, 27), {"ogg-crc-mismatch", "truncated"}),  # segment count: the page may now run past the end
    (range(27, 47), {"ogg-crc-mismatch"}),  # segment table, OpusHead / Vorbis header
    (range(47, 51), {"ogg-sync-lost", "ogg-crc-mismatch"}),  # 100004's second page starts at 47
]


@pytest.mark.parametrize(
    "rid,table",
    [
        ("100001", WAV_ULAW_FLIPS),
        ("100005", WAV_ULAW_FLIPS),
        ("100002", WAV_PCM_FLIPS),
        ("100003", MP3_FLIPS),
        ("100004", OGG_FLIPS),
        ("100006", OGG_FLIPS),
    ],
)
def test_header_bytes_flipped(rid, table):
    data = EXAMPLES_BY_ID[rid].data
    for positions, reasons in table:
        for i in positions:
            bad = bytearray(data)
            bad[i] ^= 0xFF
            e = reject(bytes(bad))
            assert e.reason in reasons, (i, e)


def test_ogg_flip_anywhere_is_a_crc_mismatch_at_that_page():
    data = EXAMPLES_BY_ID["100004"].data
    pages = ogg_pages(data)
    rng = random.Random(3)
    for _ in range(40):
        i = rng.randrange(len(data))
        page = max((p for p in pages if p.offset <= i), key=lambda p: p.offset)
        if i - page.offset < 6:  # capture pattern/version/flags: other reasons
            continue
        bad = bytearray(data)
        bad[i] ^= 1 << rng.randrange(8)
        e = reject(bytes(bad))
        # A flipped segment-table byte changes the page length, so the CRC fails
        # at the same page; nothing else can happen.
        assert e.reason == "ogg-crc-mismatch" and e.offset == page.offset, (i, e)


# -- WAV lies ------------------------------------------------------------------------------
@pytest.mark.parametrize("rid", ["100001", "100002", "100005"])
@pytest.mark.parametrize("delta", [+1000, +2, -1000, -4, -2])
def test_wav_whose_data_length_lies(rid, delta):
    data = bytearray(EXAMPLES_BY_ID[rid].data)
    cid, at, size = [c for c in riff_chunks(bytes(data)) if c[0] == b"data"][0]
    struct.pack_into("<I", data, at + 4, size + delta)
    e, fed = reject_early(bytes(data))
    assert e.reason == "wav-data-length-mismatch", e
    if delta > 0:  # the header alone contradicts the RIFF size: caught at once
        assert fed <= 64 and e.offset == at + 4
    else:  # caught where the data really ends
        assert e.offset == at + 8 + size + delta + ((size + delta) & 1)  # after the pad byte, if odd
        assert f"{size + delta} bytes" in e.detail


def test_wav_placeholder_sizes_rejected_early_with_a_specific_reason():
    for data_size, riff in ((0xFFFFFFFF, 0xFFFFFFFF), (0, 0), (0xFFFFFFFF, None)):
        data = wav_header(data_size=data_size, riff_size=riff) + b"\x00\x01" * 4000
        e, fed = reject_early(data)
        assert e.reason == "wav-header-unfinalized" and fed == 64 and e.offset == 40


def test_wav_trailing_bytes_after_the_riff():
    data = EXAMPLES_BY_ID["100002"].data
    e, _ = reject_early(data + b"\x00\x00junk" * 30)
    assert e.reason == "wav-riff-size-mismatch" and e.offset == len(data)


def test_wav_missing_fmt_and_no_data():
    e = reject(b"RIFF" + struct.pack("<I", 12) + b"WAVEdata" + struct.pack("<I", 0))
    assert e.reason == "wav-missing-fmt"
    hdr = wav_header(data_size=0)
    no_data = hdr[:36]
    no_data = b"RIFF" + struct.pack("<I", len(no_data) - 8) + no_data[8:]
    assert reject(no_data).reason == "wav-no-data-chunk"


def test_wav_partial_block_and_bad_fmt_values():
    data = wav_header(data_size=1001) + b"\x00" * 1001 + b"\x00"
    assert reject(data).reason == "wav-partial-block"
    bad_rate = bytearray(wav_header(data_size=16) + b"\x00" * 16)
    struct.pack_into("<I", bad_rate, 24, 500)  # 500 Hz: not a recording
    assert reject(bytes(bad_rate)).reason == "wav-bad-fmt"


def test_wav_head_not_found_within_bound():
    big = b"LIST" + struct.pack("<I", MAX_HEAD_BYTES + 100) + b"\x00" * (MAX_HEAD_BYTES + 100)
    data = wav_header(data_size=16, extra_chunks=big) + b"\x00" * 16
    e, fed = reject_early(data)
    assert e.reason == "head-not-found" and fed < len(data)


# -- MP3 -----------------------------------------------------------------------------------
def test_mp3_with_garbage_after_the_first_frames():
    data = EXAMPLES_BY_ID["100003"].data
    keep = MP3_ID3_END + 20 * MP3_FRAME
    garbage = random.Random(5).randbytes(5000)
    e, fed = reject_early(data[:keep] + garbage + data[keep:], **meta("100003"))
    assert e.reason == "mp3-sync-lost"
    assert e.offset == keep and fed < keep + 200  # found while downloading, at the exact byte
    assert f"byte {keep}" in e.detail and "0xFFE" in e.detail and "after 20 frames" in e.detail


def test_mp3_header_change_mid_stream():
    frames = b"".join(mpeg1_frame() for _ in range(10)) + mpeg1_frame(mono=False) + mpeg1_frame()
    e = reject(frames)
    assert e.reason == "mp3-sync-lost" and e.offset == 10 * len(mpeg1_frame()) and "stereo" in e.detail


def test_mp3_data_after_id3v1_and_frame_count_short_of_xing():
    data = EXAMPLES_BY_ID["100003"].data
    e = reject(data + b"\xff\xe3\x28\xc4")
    assert e.reason == "mp3-data-after-tag" and e.offset == len(data)
    short = xing_frame(40) + b"".join(mpeg1_frame() for _ in range(30))
    e = reject(short)
    assert e.reason == "truncated" and "40 frames" in e.detail and "after 30" in e.detail
    # An ID3v2 tag with no frames after it.
    assert reject(id3v2(50)).reason == "mp3-no-frames"


def test_mp3_free_format_and_bad_first_header():
    assert reject(b"\xff\xfb\x04\xc4" + b"\x00" * 400).reason == "unknown-container"  # no valid header at 0
    assert reject(id3v2(10) + b"\xff\xfb\x04\xc4" + b"\x00" * 400).reason == "mp3-free-format"
    assert reject(id3v2(10) + b"\x00" * 5 + b"RIFF" * 10).reason == "mp3-bad-frame-header"


# -- Ogg -----------------------------------------------------------------------------------
def test_opus_renamed_mp3_is_rejected_from_the_head(tmp_path):
    p = tmp_path / "100004.mp3"
    p.write_bytes(EXAMPLES_BY_ID["100004"].data)
    with pytest.raises(AudioFormatError) as e:
        inspect_file(p, declared_format="mp3", recording_id="100004")
    assert e.value.reason == "format-mismatch" and e.value.offset == 0
    assert "'mp3'" in str(e.value) and "OGG" in str(e.value) and "100004" in str(e.value)
    c = AudioFormatChecker(declared_format="mp3")
    with pytest.raises(AudioFormatError):
        c.feed(EXAMPLES_BY_ID["100004"].data[:12])  # twelve bytes are enough


@pytest.mark.parametrize(
    "rid,declared,names",
    [
        ("100001", "wav_alaw", ("wav_alaw", "pcm_mulaw")),
        ("100005", "wav_ulaw", ("wav_ulaw", "pcm_alaw")),
        ("100006", "ogg_opus", ("ogg_opus", "vorbis")),
        ("100004", "OGG_VORBIS", ("OGG_VORBIS", "opus")),
        ("100002", "mp3", ("mp3", "WAV")),
        ("100003", "webm", ("webm", "MP3")),
        ("100004", "wav", ("wav", "OGG")),
    ],
)
def test_declared_format_mismatch_names_both(rid, declared, names):
    e, fed = reject_early(EXAMPLES_BY_ID[rid].data, declared_format=declared)
    assert e.reason == "format-mismatch" and fed <= 1024
    for n in names:
        assert n in e.detail


def test_ogg_lost_page_chained_stream_and_foreign_serial():
    data = EXAMPLES_BY_ID["100004"].data
    pages = ogg_pages(data)
    p = pages[3]
    gap = data[: p.offset] + data[pages[4].offset :]
    e = reject(gap)
    assert e.reason == "ogg-page-sequence-gap" and e.offset == p.offset
    e = reject(data + data)
    assert e.reason == "ogg-data-after-eos" and e.offset == len(data)
    foreign = OggPage(0, -1, 0xDEAD, 99, b"\x05", b"hello").encode()
    e = reject(data[: pages[5].offset] + foreign + data[pages[5].offset :])
    assert e.reason == "ogg-unsupported-multiplex" and e.offset == pages[5].offset


def test_ogg_unknown_codec():
    speex = OggPage(2, 0, 1, 0, bytes([80]), b"Speex   " + b"\x00" * 72).encode()
    e = reject(speex + OggPage(4, 100, 1, 1, b"\x01", b"\x00").encode())
    assert e.reason == "ogg-unknown-codec" and "Speex" in e.detail


# -- WebM ----------------------------------------------------------------------------------
def test_webm_truncation_and_corruption():
    opus = EXAMPLES_BY_ID["100004"].data
    webm, duration = webm_from_opus(opus)
    for cut in (3, 20, 60, 200, len(webm) // 2, len(webm) - 1):
        e = reject(webm[:cut], declared_format="webm")
        assert e.reason == "truncated", (cut, e)
    # Live WebM cut at a cluster boundary cannot be told from a shorter recording
    # (unknown sizes, no Duration) -- except by the metadata duration.
    live, _ = webm_from_opus(opus, live=True)
    last_cluster = live.rindex(b"\x1f\x43\xb6\x75")
    prev_cluster = live.rindex(b"\x1f\x43\xb6\x75", 0, last_cluster)
    short = live[:prev_cluster]
    assert inspect_bytes(short).duration < duration - 1
    assert reject(short, expected_duration=duration).reason == "duration-mismatch"
    # With a Duration element, blocks ending early mean truncation.
    bad = reject(webm[: webm.rindex(b"\x1f\x43\xb6\x75", 0, webm.rindex(b"\x1f\x43\xb6\x75"))])
    assert bad.reason == "truncated"
    # Garbage where an element header should be: an invalid ID, or a size that
    # overflows the parent Cluster.
    cluster = webm.index(b"\x1f\x43\xb6\x75")
    block = webm.index(b"\xa3", cluster + 8)
    e = reject(webm[:block] + b"\x00" + webm[block + 1 :])
    assert e.reason == "webm-bad-element" and e.offset == block
    e = reject(webm[: block + 1] + b"\x10" + webm[block + 2 :])  # 4-byte size: far past the Cluster
    assert e.reason == "webm-bad-element" and e.offset == block and "past the end" in e.detail
    # A DocType that is neither webm nor matroska.
    other, _ = webm_from_opus(opus, doctype="xyzzy")
    e, fed = reject_early(other)
    assert e.reason == "webm-bad-doctype" and fed <= 64
    # Trailing bytes after a known-size Segment.
    assert reject(webm + uint_el(0x4286, 1)).reason == "webm-trailing-data"
    # Unknown size on an element that may not have one.
    assert reject(el(0x1A45DFA3, el(0x4282, b"webm")) + el(0x1549A966, b"", unknown=True)).reason == "webm-bad-element"


# -- not audio at all ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,reason,words",
    [
        (b'{"error":"BlobStorageTimeout","message":"timed out"}', "unknown-container", "JSON"),
        (b"<html><body>502 Bad Gateway</body></html>", "unknown-container", "HTML"),
        (b"\x00\x00\x00\x20ftypM4A", "truncated", "inside box 'ftyp'"),  # MP4 is supported: a cut one
        (b"\x00\x00\x00", "truncated", "MP4"),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 40, "unsupported-container", "FLAC"),
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 40, "unsupported-container", "ADTS"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "unsupported-container", "AVI"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "unsupported-container", "RF64"),
        (b"RIF", "truncated", "RIFF"),
        (b"Og", "truncated", "ogg"),
        (b"hello world, this is not audio", "unknown-container", "0x68656C6C"),
    ],
)
def test_not_audio(body, reason, words):
    e, fed = (reject(body), None) if len(body) < 12 else reject_early(body)
    assert e.reason == reason and words.lower() in e.detail.lower(), e
    if fed is not None:
        assert fed <= 64


def test_unknown_declared_format_and_sticky_errors():
    c = AudioFormatChecker(declared_format="aiff", recording_id="42")
    with pytest.raises(AudioFormatError) as e:
        c.feed(EXAMPLES_BY_ID["100001"].data)
    assert e.value.reason == "unknown-declared-format" and "aiff" in str(e.value)
    c = AudioFormatChecker(declared_format="mp3")
    with pytest.raises(AudioFormatError) as first:
        c.feed(EXAMPLES_BY_ID["100004"].data)
    with pytest.raises(AudioFormatError) as again:
        c.feed(b"more")
    with pytest.raises(AudioFormatError) as at_finish:
        c.finish()
    assert first.value == again.value == at_finish.value and c.state == "failed"
    ok = AudioFormatChecker()
    ok.feed(EXAMPLES_BY_ID["100002"].data)
    ok.finish()
    with pytest.raises(RuntimeError):
        ok.feed(b"x")


def test_error_message_shape():
    e = AudioFormatError("mp3-sync-lost", "mp3 frame sync lost at byte 48213", offset=48213)
    assert str(e) == "mp3 frame sync lost at byte 48213 [mp3-sync-lost]"
    assert str(e.with_recording_id("100003")) == "recording 100003: mp3 frame sync lost at byte 48213 [mp3-sync-lost]"
    assert "48213" in repr(e)
    again = pickle.loads(pickle.dumps(e.with_recording_id("100003")))
    assert again == e.with_recording_id("100003") and again.offset == 48213


def test_every_reason_raised_is_documented_in_reasons():
    import re
    from pathlib import Path

    import voxpipe.audioformat as pkg
    from voxpipe.audioformat import REASONS

    raised = set()
    for f in Path(pkg.__file__).parent.glob("*.py"):
        raised |= set(re.findall(r'AudioFormatError\(\s*"([a-z0-9-]+)"', f.read_text()))
    assert raised == set(REASONS)


def test_largest_first_ogg_page_is_carried_whole_and_bounded():
    from voxpipe.audioformat import MAX_CARRY_BYTES

    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 8000, 0, 0)
    body = head.ljust(255 * 255, b"\x00")  # one packet filling a maximal page (lacing 255 x 255 ... )
    lacing = bytes([255] * 255)
    first = OggPage(2, 0, 9, 0, lacing, body).encode()
    last = OggPage(4, 312 + 480, 9, 1, b"\x00", b"").encode()
    c = AudioFormatChecker()
    worst = 0
    for i in range(0, len(first), 997):
        c.feed(first[i : i + 997])
        worst = max(worst, c.carry_size)
    assert 60_000 < worst <= MAX_CARRY_BYTES
    # The page's packet is still open (last lacing value 255), so the next page
    # must continue it: this one does not, which the checker reports at once.
    with pytest.raises(AudioFormatError) as e:
        c.feed(last)
    assert e.value.reason == "ogg-bad-page" and e.value.offset == len(first) + 5
