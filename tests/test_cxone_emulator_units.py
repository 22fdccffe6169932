"""Sans-IO parts of the CXone emulator: ranges, faults, rate window, streaming plan, auth, store."""

from __future__ import annotations

import hashlib
import random
import struct
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from cxone_emulator_support import T0, write_wav
from voxpipe_cxone.emulator import EmulatorSettings
from voxpipe.download import ranges
from voxpipe_cxone.emulator.auth import MAX_LIVE_TOKENS, Credentials, TokenService, decode_id_token
from voxpipe_cxone.emulator.faults import (
    DRAWS_PER_DECISION,
    NO_FAULT,
    FaultAction,
    FaultConfig,
    FaultKind,
    FaultPlan,
    RequestKind,
    decide,
    drop_point,
)
from voxpipe_cxone.emulator.ratelimit import RateLimit, WindowRateLimiter, retry_after_value
from voxpipe_cxone.emulator.store import RecordingStore, RecordingStoreError, parse_wav_layout
from voxpipe_cxone.emulator.streaming import StreamRequestError, parse_offsets, plan_stream
from voxpipe_cxone.emulator.urlsign import MediaUrlSigner

# -- ranges --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 5000), first=st.integers(0, 6000), last=st.one_of(st.none(), st.integers(0, 6000)))
def test_first_last_ranges_match_slicing(size, first, last):
    data = bytes(i % 251 for i in range(size))
    spec = f"bytes={first}-{'' if last is None else last}"
    decision = ranges.parse_range(spec, size)
    if last is not None and last < first:
        assert decision is ranges.IGNORE
    elif first >= size:
        assert isinstance(decision, ranges.Unsatisfiable)
    else:
        assert isinstance(decision, ranges.ByteRange)
        stop = size if last is None else min(last + 1, size)
        assert data[decision.first : decision.last + 1] == data[first:stop]
        assert decision.length == stop - first


@given(size=st.integers(0, 5000), suffix=st.integers(0, 6000))
def test_suffix_ranges_match_slicing(size, suffix):
    decision = ranges.parse_range(f"bytes=-{suffix}", size)
    if suffix == 0 or size == 0:
        assert isinstance(decision, ranges.Unsatisfiable)
    else:
        assert isinstance(decision, ranges.ByteRange)
        data = bytes(range(256)) * 20
        assert data[:size][decision.first : decision.last + 1] == data[:size][-suffix:]


@pytest.mark.parametrize("header", [None, "bytes=0-1,5-6", "items=0-1", "bytes=a-b", "bytes=-", "bytes 0-1", "bytes=5-2", "bytes=+1-2"])
def test_ranges_the_server_ignores(header):
    assert ranges.parse_range(header, 100) is ranges.IGNORE


def test_if_range_and_content_range_formatting():
    assert ranges.if_range_allows(None, '"abc"')
    assert ranges.if_range_allows('"abc"', '"abc"')
    assert not ranges.if_range_allows('W/"abc"', '"abc"')
    assert not ranges.if_range_allows("Sat, 21 Nov 2026 05:00:00 GMT", '"abc"')
    assert ranges.ByteRange(0, 9).content_range(100) == "bytes 0-9/100"
    assert ranges.unsatisfied_content_range(100) == "bytes */100"


# -- faults ------------------------------------------------------------------------------


def test_decide_is_pure_and_reproducible():
    config = FaultConfig(rate_limit=0.1, server_error=0.1, drop=0.2, ignore_range=0.2, json_error=0.1)
    kinds = [RequestKind.DOWNLOAD, RequestKind.STREAM, RequestKind.METADATA, RequestKind.TOKEN] * 50
    a = [decide(random.Random(7), config, k) for k in kinds]  # fresh RNG each call: same answer per kind
    assert len({(k, x) for k, x in zip(kinds, a)}) == 4
    rng1, rng2 = random.Random(42), random.Random(42)
    seq1 = [decide(rng1, config, k) for k in kinds]
    seq2 = [decide(rng2, config, k) for k in kinds]
    assert seq1 == seq2
    kinds_seen = {x.kind for x in seq1}
    assert {FaultKind.NONE, FaultKind.DROP, FaultKind.RATE_LIMIT} <= kinds_seen


def test_decide_draws_a_fixed_number_of_values():
    rng = random.Random(5)
    decide(rng, FaultConfig(drop=1.0), RequestKind.DOWNLOAD)
    reference = random.Random(5)
    for _ in range(DRAWS_PER_DECISION):
        reference.random()
    assert rng.random() == reference.random()


def test_decide_respects_request_kinds():
    always = FaultConfig(ignore_range=1.0, drop=1.0)
    both = decide(random.Random(1), always, RequestKind.DOWNLOAD)
    assert both.kind is FaultKind.DROP and both.ignores_range  # a whole-body 200, cut short
    assert decide(random.Random(1), FaultConfig(ignore_range=1.0), RequestKind.DOWNLOAD).kind is FaultKind.IGNORE_RANGE
    stream = decide(random.Random(1), always, RequestKind.STREAM)
    assert stream.kind is FaultKind.DROP and not stream.ignores_range  # no ranges on streams
    assert decide(random.Random(1), always, RequestKind.METADATA) == NO_FAULT
    assert decide(random.Random(1), FaultConfig(rate_limit=1.0), RequestKind.TOKEN) == NO_FAULT
    five = decide(random.Random(1), FaultConfig(server_error=1.0, server_error_statuses=(502,)), RequestKind.METADATA)
    assert five == FaultAction(FaultKind.SERVER_ERROR, status=502)


@given(length=st.integers(0, 10_000), after=st.one_of(st.none(), st.integers(0, 20_000)), fraction=st.floats(0, 0.999))
def test_drop_point_is_always_short_of_the_body(length, after, fraction):
    point = drop_point(FaultAction(FaultKind.DROP, drop_after=after, drop_fraction=fraction), length)
    assert 0 <= point <= max(0, length - 1)


def test_fault_action_and_config_validation():
    with pytest.raises(ValueError, match="500..599"):
        FaultAction(FaultKind.SERVER_ERROR, status=404)
    with pytest.raises(ValueError, match="drop_fraction"):
        FaultAction(FaultKind.DROP, drop_fraction=1.0)
    with pytest.raises(ValueError, match="json-error"):
        FaultConfig(json_error=1.5)
    assert FaultAction("drop").kind is FaultKind.DROP


def test_fault_plan_script_order_and_kinds():
    plan = FaultPlan(FaultConfig(), seed=1)
    plan.schedule(FaultKind.DROP, "json-error")
    plan.schedule(FaultAction(FaultKind.SERVER_ERROR, status=500), kinds=[RequestKind.METADATA])
    assert plan.next_action(RequestKind.METADATA) == NO_FAULT  # head is for body kinds only
    assert plan.next_action(RequestKind.MEDIA_FILE).kind is FaultKind.DROP
    assert plan.next_action(RequestKind.STREAM).kind is FaultKind.JSON_ERROR
    assert plan.next_action(RequestKind.DOWNLOAD) == NO_FAULT
    assert plan.next_action(RequestKind.METADATA).status == 500
    assert plan.pending() == []


# -- rate limit ---------------------------------------------------------------------------


def test_rate_limit_parse():
    assert RateLimit.parse("150/300") == RateLimit(150, 300.0)
    assert RateLimit.parse("150/5m") == RateLimit(150, 300.0)
    with pytest.raises(ValueError, match="N/WINDOW"):
        RateLimit.parse("150 per 5 minutes")
    with pytest.raises(ValueError):
        RateLimit(0, 10)


def test_window_slides():
    limiter = WindowRateLimiter(RateLimit(3, 10))
    assert [limiter.admit(t) for t in (0, 1, 2)] == [None, None, None]
    assert limiter.admit(5) == pytest.approx(5)
    assert limiter.admit(9.5) == pytest.approx(0.5)
    assert limiter.admit(10) is None  # the request at t=0 left the window
    assert limiter.admit(10.5) == pytest.approx(0.5)


def test_retry_after_formats():
    assert retry_after_value(2.1, T0, http_date=False) == "3"
    assert parsedate_to_datetime(retry_after_value(2.1, T0, http_date=True)).timestamp() == T0 + 3


# -- streaming --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [("[0,15,30]", 400), ("0;15", 400), ("-1", 400), ("0,15,30,45", 413), ("15,15", 400), ("1.5", 400)],
)
def test_offsets_rules(raw, status):
    with pytest.raises(StreamRequestError) as info:
        parse_offsets(raw)
    assert info.value.status == status


def test_offsets_accepted():
    assert parse_offsets("0,15,30") == (0, 15, 30)
    assert parse_offsets(None) == (0,)
    assert parse_offsets(" 5 ") == (5,)


def test_plan_for_non_wav_is_proportional(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "x.mp3").write_bytes(bytes(1000))  # undecodable: no duration
    store = RecordingStore(d)
    rec = store.get("x")
    assert rec.duration is None
    with pytest.raises(StreamRequestError) as info:
        plan_stream(rec, (0,), None, b"")
    assert info.value.status == 422
    from dataclasses import replace

    timed = replace(rec, duration=10.0)
    plan = plan_stream(timed, (0, 5), 2, b"")
    assert plan.header == b""
    assert [(s.start, s.end) for s in plan.spans] == [(0, 200), (500, 700)]
    assert plan_stream(timed, (3,), None, b"").spans[0].end == 1000


# -- auth -------------------------------------------------------------------------------------


def _service(ttl: float = 60) -> TokenService:
    return TokenService(Credentials("cid", "csecret", "akid", "aksecret", "au1"), token_ttl=ttl)


def test_token_service_expiry_boundary():
    service = _service(ttl=60)
    reply = service.token_request({"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}, None, T0)
    header = f"Bearer {reply.body['access_token']}"
    assert service.authenticate(header, T0 + 59.999, "recording:read") is None
    failure = service.authenticate(header, T0 + 60, "recording:read")
    assert failure is not None and failure.status == 401 and failure.description == "access token expired"


def test_password_grant_claims_and_repr():
    service = _service()
    reply = service.token_request(
        {"grant_type": "password", "client_id": "cid", "client_secret": "csecret", "username": "akid", "password": "aksecret"}, None, T0
    )
    claims = decode_id_token(reply.body["id_token"])
    assert claims["area"] == "au1" and claims["exp"] == int(T0 + 60)
    assert "akid" not in claims["sub"]
    assert "csecret" not in repr(service.credentials) and "aksecret" not in repr(service.credentials)


def test_live_tokens_are_bounded(monkeypatch):
    import voxpipe_cxone.emulator.auth as auth

    monkeypatch.setattr(auth, "MAX_LIVE_TOKENS", 5)
    service = _service()
    tokens = [
        service.token_request({"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}, None, T0).body["access_token"]
        for _ in range(8)
    ]
    assert len(service._tokens) == 5
    assert service.authenticate(f"Bearer {tokens[0]}", T0, None).error == "invalid_token"
    assert service.authenticate(f"Bearer {tokens[-1]}", T0, None) is None
    assert MAX_LIVE_TOKENS == 10_000


# -- signed URLs ---------------------------------------------------------------------------------


def test_media_url_signature():
    signer = MediaUrlSigner(ttl=30)
    params = signer.sign("call-1", T0)
    assert signer.check("call-1", params["expires"], params["sig"], T0 + 29) is None
    assert signer.check("call-1", params["expires"], params["sig"], T0 + 30) == "media URL has expired"
    assert signer.check("call-2", params["expires"], params["sig"], T0) == "media URL signature does not match"
    assert signer.check("call-1", str(int(params["expires"]) + 100), params["sig"], T0) == "media URL signature does not match"
    assert "lacks" in signer.check("call-1", None, None, T0)
    assert MediaUrlSigner(ttl=30).sign("call-1", T0)["sig"] != params["sig"]  # keys differ per instance


# -- store -------------------------------------------------------------------------------------------


def test_wav_layout_skips_chunks_before_data(tmp_path):
    pcm = bytes(range(200)) * 8
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    lst = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # odd size, padded
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + lst + b"data" + struct.pack("<I", len(pcm)) + pcm
    blob = b"RIFF" + struct.pack("<I", len(body)) + body
    layout = parse_wav_layout(lambda o, n: blob[o : o + n], len(blob))
    assert layout is not None
    assert blob[layout.data_offset : layout.data_offset + layout.data_size] == pcm
    assert layout.byte_rate == 16000 and layout.block_align == 2
    assert parse_wav_layout(lambda o, n: b"OggS"[o : o + n] if o < 4 else b"", 4) is None


def test_store_catalogue_and_errors(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    data = write_wav(d / "a.wav", 1)
    (d / "b.OPUS").write_bytes(b"OggS" + bytes(100))
    store = RecordingStore(d)
    assert store.ids() == ["a", "b"]
    a = store.get("a")
    assert (a.size, a.duration, a.sha256, a.format, a.content_type) == (len(data), 1.0, hashlib.sha256(data).hexdigest(), "wav", "audio/wav")
    assert store.get("b").format == "opus" and store.get("b").content_type == "audio/ogg"
    (d / "a.mp3").write_bytes(b"x")
    with pytest.raises(RecordingStoreError, match="a.wav"):
        RecordingStore(d)
    (d / "a.mp3").unlink()
    with pytest.raises(RecordingStoreError, match="'zzz'"):
        RecordingStore(d, tamper=["zzz"])
    with pytest.raises(RecordingStoreError, match="deleted"):
        RecordingStore(d, storage_states={"a": "deleted"})
    with pytest.raises(RecordingStoreError, match="does not exist"):
        RecordingStore(tmp_path / "missing")
    (d / "bad name.wav").write_bytes(data)
    with pytest.raises(RecordingStoreError, match="bad name"):
        RecordingStore(d)


def test_store_versions_live_outside_the_directory(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    data = write_wav(d / "a.wav", 1)
    store = RecordingStore(d, hmac_key=b"k")
    first = store.get("a")
    second = store.mutate("a")
    third = store.mutate("a")
    assert len({first.etag, second.etag, third.etag}) == 3
    assert second.path.parent != d and (d / "a.wav").read_bytes() == data
    assert not second.path.exists() and third.path.exists()  # superseded versions are removed
    replaced = store.replace("a", b"new content")
    assert replaced.size == 11 and replaced.sha256 == hashlib.sha256(b"new content").hexdigest()
    assert replaced.hmac_sha256 is not None
    overlay = replaced.path.parent
    store.close()
    store.close()
    assert not overlay.exists()


def test_settings_bind_loopback_only(tmp_path):
    assert EmulatorSettings(recordings=tmp_path, host="::1").host == "::1"
    with pytest.raises(ValidationError, match="loopback"):
        EmulatorSettings(recordings=tmp_path, host="0.0.0.0")
    with pytest.raises(ValidationError, match="loopback"):
        EmulatorSettings(recordings=tmp_path, host="example.com")
    assert "hide-me" not in repr(EmulatorSettings(recordings=tmp_path, client_secret="hide-me"))
