"""The s3 sink's logic without I/O: part cutting, checksums, resume state, keys, retention, settings."""

from __future__ import annotations

import base64
import gzip
import hashlib
import random
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from voxpipe.compression import Compressor, GzipCompressor
from voxpipe.errors import SinkError
from voxpipe.facts import RecordingFacts
from voxpipe_s3.keys import is_internal_key, journal_key, object_names, retain_until
from voxpipe_s3.parts import (MAX_PARTS, MIN_PART_SIZE, RAW_BLOCK, Part, PartCutter, b64_sha256, checkpoint_state,
                              checksum_matches, composite_sha256, parse_state, plan_part_size)
from voxpipe_s3.settings import S3SinkSettings

PART = 256 * 1024  # below S3's minimum: the cutter itself does not care


def noisy(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) if i % 3 else 0 for i in range(n))


def cut(data: bytes, compressor, chunks: list[int]) -> list[bytes]:
    cutter = PartCutter(compressor, PART)
    parts, offset, i = [], 0, 0
    while offset < len(data):
        size = chunks[i % len(chunks)]
        parts += list(cutter.feed(data[offset:offset + size]))
        offset += size
        i += 1
    parts.append(cutter.finish())
    return parts


@pytest.mark.parametrize("make", [Compressor, lambda: GzipCompressor(1, "zlib")], ids=["identity", "gzip"])
def test_parts_do_not_depend_on_how_the_source_chunked_the_stream(make):
    data = noisy(1_500_000)
    a = cut(data, make(), [65536])
    b = cut(data, make(), [1, 777, 100_003, 5])
    c = cut(data, make(), [len(data)])
    assert a == b == c
    assert all(len(p) >= PART for p in a[:-1]) and len(a) > 2
    joined = b"".join(a)
    assert (gzip.decompress(joined) if joined[:2] == b"\x1f\x8b" else joined) == data


def test_identity_parts_are_exact_multiples_of_the_raw_block():
    data = noisy(3 * PART + 1234)
    parts = cut(data, Compressor(), [10_000])
    assert [len(p) for p in parts] == [PART, PART, PART, 1234]


def test_empty_stream_is_one_empty_part():
    cutter = PartCutter(Compressor(), PART)
    assert cutter.finish() == b""
    assert gzip.decompress(PartCutter(GzipCompressor(6), PART).finish()) == b""


def test_composite_checksum_is_sha256_of_part_digests():
    parts = [b"a" * 10, b"b" * 7]
    digests = b"".join(hashlib.sha256(p).digest() for p in parts)
    expected = base64.b64encode(hashlib.sha256(digests).digest()).decode() + "-2"
    assert composite_sha256([b64_sha256(p) for p in parts]) == expected
    assert checksum_matches(expected, expected)
    assert checksum_matches(expected.split("-")[0], expected)  # moto drops the -N suffix
    assert not checksum_matches(expected.split("-")[0] + "-3", expected)
    assert not checksum_matches(b64_sha256(b"x"), expected)


def test_part_size_grows_only_when_the_announced_size_needs_it():
    assert plan_part_size(MIN_PART_SIZE, None) == MIN_PART_SIZE
    assert plan_part_size(MIN_PART_SIZE, 2 << 30) == MIN_PART_SIZE
    big = 100 << 30  # 100 GiB at 5 MiB would be 20,480 parts
    size = plan_part_size(MIN_PART_SIZE, big)
    assert size % RAW_BLOCK == 0 and big * 1.01 / size < MAX_PARTS


def test_resume_state_round_trip_and_rejects_garbage():
    parts = [Part(1, 10, "c1", '"e1"'), Part(2, 5, "c2", '"e2"')]
    state = checkpoint_state(bucket="b", key="k", sidecar="k.json", upload_id="u", part_size=PART,
                             compression="gzip:zlib:1", parts=parts, raw_offset=99)
    parsed = parse_state(state, recording_id="r1")
    assert parsed.parts == tuple(parts) and parsed.upload_id == "u" and parsed.sidecar == "k.json"
    for bad in ({**state, "v": 9}, {**state, "parts": [[2, 1, "c", "e"]]}, {**state, "upload_id": None},
                {"v": 1}):
        with pytest.raises(SinkError) as err:
            parse_state(bad, recording_id="r1")
        assert err.value.reason == "bad-checkpoint" and "r1" in str(err.value)


FACTS = RecordingFacts(started_at=datetime(2024, 3, 7, 9, 5, tzinfo=timezone.utc), org_id="org-1",
                       conversation_id="conv-9")


def names(layout: str, facts=FACTS, template="{year}/{month}/{recording_id}.{format}", suffix=""):
    return object_names(layout=layout, prefix="calls/", template=template, recording_id="rec-1",
                        metadata={"format": "wav"}, source="genesys", pipeline="p", received_at=1.9e9, facts=facts,
                        suffix=suffix)


def test_template_keys_use_the_recording_date_and_sidecar_beside():
    n = names("template", suffix=".gz")
    assert (n.key, n.sidecar) == ("calls/2024/03/rec-1.wav.gz", "calls/2024/03/rec-1.wav.gz.json")


def test_genesys_export_layout():
    n = names("genesys-export")
    assert n.key == "calls/org-1/year=2024/month=3/day=7/hour=9/conversation_id=conv-9/rec-1"
    assert n.sidecar == "calls/org-1/year=2024/month=3/day=7/hour=9/conversation_id=conv-9/rec-1_metadata.json"
    with pytest.raises(SinkError) as err:
        names("genesys-export", facts=RecordingFacts(started_at=FACTS.started_at, org_id="org-1"))
    assert err.value.reason == "missing-name-field" and "conversation_id" in str(err.value)
    with pytest.raises(SinkError) as err:
        names("genesys-export", facts=RecordingFacts(org_id="../x", conversation_id="c"))
    assert err.value.reason == "unsafe-name"


def test_retention_counts_from_the_recording_date_not_the_upload():
    assert retain_until(FACTS, {}, 1.9e9, 10) == datetime(2024, 3, 17, 9, 5, tzinfo=timezone.utc)
    received = retain_until(RecordingFacts(), {}, 0.0, 1)  # no date known: the time it was received
    assert received == datetime(1970, 1, 2, tzinfo=timezone.utc)


def test_journal_keys_are_internal_and_not_manifests():
    key = journal_key("calls/", "upload/with+odd=chars")
    assert key.startswith("calls/.voxpipe/uploads/") and not key.endswith(".json")
    assert is_internal_key("calls/", key) and not is_internal_key("calls/", "calls/2024/x.wav")


def test_settings_validation():
    ok = S3SinkSettings(bucket="call-archive", object_lock={"mode": "COMPLIANCE", "days": 30})
    assert ok.needs_object_lock and ok.object_lock.days == 30
    assert S3SinkSettings(bucket="b-1", compress="auto").gzip_for("wav")
    assert not S3SinkSettings(bucket="b-1", compress="auto").gzip_for("mp3")
    bad = [dict(bucket="Bad_Bucket"), dict(bucket="b-1", part_size=1 << 20),
           dict(bucket="b-1", endpoint_url="https://user:hunter2@minio.local"),
           dict(bucket="b-1", sse_kms_key_id="alias/x"), dict(bucket="b-1", prefix="../up"),
           dict(bucket="b-1", key="{nope}.wav"), dict(bucket="b-1", object_lock={"mode": "STRICT", "days": 1})]
    for kwargs in bad:
        with pytest.raises(ValidationError) as err:
            S3SinkSettings(**kwargs)
        # what the config loader shows (it never includes the input value)
        assert "hunter2" not in str(err.value.errors(include_url=False, include_input=False))


def test_a_journal_entry_is_abandoned_when_its_process_is_gone_or_it_is_old():
    import os
    import socket

    from voxpipe_s3.client import JournalEntry

    def entry(host: str, pid: int, age: float) -> JournalEntry:
        return JournalEntry("j", "b", "k", "u", "p", "r", created_at=1000.0 - age, host=host, pid=pid)

    here = socket.gethostname()
    assert not entry(here, os.getpid(), 10).abandoned(1000.0, grace=3600)  # this very process: alive
    assert not entry("other-host", 1, 10).abandoned(1000.0, grace=3600)  # cannot check: wait
    assert entry("other-host", 1, 4000).abandoned(1000.0, grace=3600)
    assert entry(here, os.getpid(), 4000).abandoned(1000.0, grace=3600)
