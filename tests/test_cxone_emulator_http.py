"""The CXone emulator over real sockets on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import struct
import wave
import io
from pathlib import Path
from collections.abc import Callable, Iterator

import httpx
import pytest
import trio

from cxone_emulator_support import FakeClock, bearer, client_credentials, write_wav
from voxpipe_cxone.emulator import (
    CxoneEmulator,
    EmulatorSettings,
    FaultAction,
    FaultConfig,
    FaultKind,
    run_in_thread,
    serve_emulator,
)
from voxpipe_cxone.emulator.auth import decode_id_token

BYTE_RATE = 8000 * 2  # mono 16-bit 8 kHz


@pytest.fixture
def recdir(tmp_path: Path) -> Path:
    d = tmp_path / "recordings"
    d.mkdir()
    write_wav(d / "call-a.wav", 2, seed=1)
    write_wav(d / "call-b.wav", 3, seed=2)
    (d / "notes.txt").write_text("not audio; ignored")
    return d


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def serve(recdir: Path, clock: FakeClock) -> Iterator[Callable[..., tuple[CxoneEmulator, httpx.Client]]]:
    """Factory: start an emulator with settings overrides; yields (emulator, client on its base URL)."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: object) -> tuple[CxoneEmulator, httpx.Client]:
            emulator = CxoneEmulator(EmulatorSettings(recordings=recdir, **overrides), clock=clock)
            stack.callback(emulator.close)
            base_url = stack.enter_context(run_in_thread(emulator))
            client = stack.enter_context(httpx.Client(base_url=base_url, timeout=10))
            return emulator, client

        yield start


def file_bytes(recdir: Path, rec_id: str = "call-a") -> bytes:
    return (recdir / f"{rec_id}.wav").read_bytes()


# -- tokens -------------------------------------------------------------------


def test_client_credentials_token_and_metadata(serve, recdir):
    emulator, client = serve()
    reply = client_credentials(client)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["scope"] == "recording:download recording:read"
    meta = client.get("/api/v2/recording/call-a", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert meta.status_code == 200
    data = file_bytes(recdir)
    m = meta.json()
    assert {k: m[k] for k in ("id", "format", "size", "duration", "status", "storageState")} == {
        "id": "call-a",
        "format": "wav",
        "size": len(data),
        "duration": 2.0,
        "status": "completed",
        "storageState": "available",
    }
    assert m["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["etag"] == meta.headers["etag"] == f'"{m["sha256"][:32]}"'
    assert "hmac" not in m  # no key configured


def test_token_expiry_and_401s(serve, clock):
    emulator, client = serve(token_ttl=30)
    headers = bearer(client)
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    clock.advance(29.9)
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    clock.advance(0.2)
    expired = client.get("/api/v2/recording/call-a", headers=headers)
    assert expired.status_code == 401
    assert expired.headers["content-type"] == "application/json"
    assert expired.json()["error"] == "invalid_token" and "expired" in expired.json()["message"]
    assert expired.headers["www-authenticate"].startswith("Bearer ")
    assert client.get("/api/v2/recording/call-a").status_code == 401
    assert client.get("/api/v2/recording/call-a", headers={"Authorization": "Bearer nope"}).json()["message"] == "unknown access token"
    assert client.get("/api/v2/recording/download/call-a", headers={"Authorization": "Basic eDp5"}).status_code == 401
    assert emulator.stats.snapshot()["unauthorized"] == 4


def test_token_endpoint_errors(serve):
    _, client = serve()
    bad = client_credentials(client, secret="wrong")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    scope = client_credentials(client, scope="recording:delete")
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"
    grant = client.post("/oauth/token", data={"grant_type": "authorization_code", "client_id": "demo-client", "client_secret": "demo-secret"})
    assert grant.json()["error"] == "unsupported_grant_type"
    as_json = client.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in as_json.json()["error_description"]
    basic = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("demo-client", "demo-secret"))
    assert basic.status_code == 200
    assert client.get("/oauth/token").status_code == 405


def test_scope_is_enforced(serve):
    _, client = serve()
    token = client_credentials(client, scope="recording:read").json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    refused = client.get("/api/v2/recording/download/call-a", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_access_key_password_grant_with_area_claim(serve):
    _, client = serve(area="eu1")
    form = {
        "grant_type": "password",
        "username": "demo-access-key",
        "password": "demo-access-secret",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
    }
    reply = client.post("/auth/token", data=form)
    assert reply.status_code == 200
    body = reply.json()
    assert {"access_token", "refresh_token", "id_token", "expires_in", "token_type"} <= set(body)
    claims = decode_id_token(body["id_token"])
    assert claims["area"] == "eu1" and claims["aud"] == "demo-client"
    assert json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[0] + "=="))["alg"] == "none"
    ok = client.get("/api/v2/recording/call-b", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200
    refreshed = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": "demo-client", "client_secret": "demo-secret"},
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != body["access_token"]
    wrong = client.post("/auth/token", data={**form, "password": "not-it"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


# -- downloads ----------------------------------------------------------------


def test_full_download_equals_file(serve, recdir):
    _, client = serve()
    headers = bearer(client)
    reply = client.get("/api/v2/recording/download/call-a", headers=headers)
    data = file_bytes(recdir)
    assert reply.status_code == 200
    assert reply.content == data
    assert reply.headers["content-type"] == "audio/wav"
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["accept-ranges"] == "bytes"
    assert reply.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()[:32]}"'
    assert client.get("/api/v2/recording/download/call-a?format=wav", headers=headers).content == data
    other = client.get("/api/v2/recording/download/call-a?format=mp3", headers=headers)
    assert other.status_code == 406 and "stored as wav" in other.json()["message"]
    missing = client.get("/api/v2/recording/download/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["recordingId"] == "nope"


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [("bytes=100-199", 100, 199), ("bytes=100-", 100, None), ("bytes=-50", -50, None), ("bytes=0-0", 0, 0), ("bytes=32000-99999999", 32000, None)],
)
def test_ranged_download(serve, recdir, spec, first, last):
    _, client = serve()
    data = file_bytes(recdir)
    size = len(data)
    reply = client.get("/api/v2/recording/download/call-a", headers={**bearer(client), "Range": spec})
    lo = first if first >= 0 else size + first
    hi = size - 1 if last is None else last
    assert reply.status_code == 206
    assert reply.headers["content-range"] == f"bytes {lo}-{hi}/{size}"
    assert reply.headers["content-length"] == str(hi - lo + 1)
    assert reply.content == data[lo : hi + 1]


def test_head_probe_has_get_headers_and_no_body(serve, recdir):
    emulator, client = serve()
    headers = bearer(client)
    probe = client.head("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=0-0"})
    assert probe.status_code == 206 and probe.content == b""
    assert probe.headers["content-range"] == f"bytes 0-0/{len(file_bytes(recdir))}"
    assert probe.headers["accept-ranges"] == "bytes" and probe.headers["content-length"] == "1"
    assert emulator.stats.bytes_served() == 0


def test_unsatisfiable_range_is_416(serve, recdir):
    _, client = serve()
    size = len(file_bytes(recdir))
    headers = bearer(client)
    for spec in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        reply = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": spec})
        assert reply.status_code == 416, spec
        assert reply.headers["content-range"] == f"bytes */{size}"
        assert reply.json()["size"] == size
    # A range unit the server does not know is ignored (RFC 9110 §14.2).
    assert client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "items=0-1"}).status_code == 200


def test_if_range(serve, recdir):
    _, client = serve()
    data = file_bytes(recdir)
    headers = bearer(client)
    etag = client.get("/api/v2/recording/call-a", headers=headers).json()["etag"]
    match = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=10-", "If-Range": etag})
    assert match.status_code == 206 and match.content == data[10:]
    stale = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=10-", "If-Range": '"0000"'})
    assert stale.status_code == 200 and stale.content == data
    weak = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=10-", "If-Range": f"W/{etag}"})
    assert weak.status_code == 200


# -- faults ---------------------------------------------------------------------


def test_rate_limit_window_answers_429_with_retry_after(serve, clock):
    emulator, client = serve(rate_limit="2/1m")
    headers = bearer(client)  # the token endpoint is outside the window
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    clock.advance(10)
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    limited = client.get("/api/v2/recording/download/call-a", headers=headers)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "50"
    clock.advance(50)
    assert client.get("/api/v2/recording/download/call-a", headers=headers).status_code == 200
    assert emulator.stats.snapshot()["rate_limited"] == 1


def test_scripted_429_with_http_date(serve, clock):
    emulator, client = serve()
    headers = bearer(client)
    emulator.faults.schedule(FaultAction(FaultKind.RATE_LIMIT, retry_after=7, retry_after_http_date=True))
    reply = client.get("/api/v2/recording/download/call-a", headers=headers)
    assert reply.status_code == 429
    assert email.utils.parsedate_to_datetime(reply.headers["retry-after"]).timestamp() == clock.now + 7
    assert client.get("/api/v2/recording/download/call-a", headers=headers).status_code == 200


def test_5xx_switch(serve):
    _, client = serve(faults=FaultConfig(server_error=1.0), seed=3)
    headers = bearer(client)
    reply = client.get("/api/v2/recording/call-a", headers=headers)
    assert 500 <= reply.status_code <= 599
    assert reply.json()["error"] == "server_error"


def test_drop_truncates_body(serve, recdir):
    emulator, client = serve()
    headers = bearer(client)
    emulator.faults.schedule(FaultAction(FaultKind.DROP, drop_after=1000))
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", "/api/v2/recording/download/call-a", headers=headers) as reply:
            assert reply.status_code == 200
            for piece in reply.iter_raw():
                received += piece
    assert bytes(received) == file_bytes(recdir)[:1000]
    snap = emulator.stats.snapshot()
    assert snap["drops"] == 1 and snap["bytes_served"]["call-a"] == 1000


def test_random_drop_switch_raises_in_httpx(serve):
    _, client = serve(faults=FaultConfig(drop=1.0), seed=11)
    headers = bearer(client)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/api/v2/recording/download/call-a", headers=headers)


def test_ignore_range_switch_returns_whole_body(serve, recdir):
    emulator, client = serve(faults=FaultConfig(ignore_range=1.0))
    reply = client.get("/api/v2/recording/download/call-a", headers={**bearer(client), "Range": "bytes=100-199"})
    assert reply.status_code == 200 and "content-range" not in reply.headers
    assert reply.content == file_bytes(recdir)
    assert emulator.stats.snapshot()["ignored_ranges"] == 1


def test_ignored_range_then_dropped(serve, recdir):
    emulator, client = serve()
    emulator.faults.schedule(FaultAction(FaultKind.DROP, drop_after=777, ignore_range=True))
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", "/api/v2/recording/download/call-a", headers={**bearer(client), "Range": "bytes=5000-"}) as reply:
            assert reply.status_code == 200 and reply.headers["content-length"] == str(len(file_bytes(recdir)))
            for piece in reply.iter_raw():
                got += piece
    assert bytes(got) == file_bytes(recdir)[:777]


def test_json_error_switch(serve):
    _, client = serve(faults=FaultConfig(json_error=1.0))
    headers = bearer(client)
    whole = client.get("/api/v2/recording/download/call-a", headers=headers)
    assert whole.status_code == 200 and whole.headers["content-type"] == "application/json"
    assert whole.json()["error"] == "BlobStorageTimeout"
    ranged = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=100-"})
    assert ranged.status_code == 206 and ranged.headers["content-type"] == "application/json"
    assert ranged.headers["content-range"].startswith("bytes 100-")
    assert ranged.json()["recordingId"] == "call-a"


def test_same_seed_same_fault_schedule(recdir, clock):
    config = FaultConfig(rate_limit=0.2, server_error=0.2, drop=0.2, ignore_range=0.2, json_error=0.2)

    def run() -> list[str]:
        emulator = CxoneEmulator(EmulatorSettings(recordings=recdir, faults=config, seed=1234), clock=clock)
        outcomes = []
        with run_in_thread(emulator) as base_url, httpx.Client(base_url=base_url) as client:
            headers = bearer(client)
            for _ in range(25):
                try:
                    r = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=5-"})
                    outcomes.append(f"{r.status_code} {r.headers.get('content-type')}")
                except httpx.RemoteProtocolError:
                    outcomes.append("dropped")
        emulator.close()
        return outcomes

    first, second = run(), run()
    assert first == second
    assert len(set(first)) >= 4  # the schedule really mixes faults


def test_etag_change_fault(serve, recdir):
    emulator, client = serve()
    headers = bearer(client)
    original = file_bytes(recdir)
    old_etag = client.get("/api/v2/recording/call-a", headers=headers).json()["etag"]
    emulator.faults.schedule(FaultAction(FaultKind.ETAG_CHANGE))
    reply = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=100-", "If-Range": old_etag})
    assert reply.status_code == 200  # If-Range no longer matches: whole new representation
    assert reply.headers["etag"] != old_etag
    assert len(reply.content) == len(original)
    assert sum(a != b for a, b in zip(reply.content, original)) == 1
    meta = client.get("/api/v2/recording/call-a", headers=headers).json()
    assert meta["etag"] == reply.headers["etag"]
    assert meta["sha256"] == hashlib.sha256(reply.content).hexdigest()
    assert file_bytes(recdir) == original  # the recordings directory is never written
    mutated = client.post("/_emulator/recordings/call-a/mutate").json()
    assert mutated["etag"] not in (old_etag, meta["etag"])


def test_fault_script_over_http(serve, recdir):
    _, client = serve()
    headers = bearer(client)
    bad = client.post("/_emulator/faults", json={"actions": [{"kind": "drop", "drop_fraction": 2}]})
    assert bad.status_code == 400 and "actions[0]" in bad.json()["message"]
    ok = client.post("/_emulator/faults", json={"actions": [{"kind": "server-error", "status": 502}, "ignore-range"], "kinds": ["download"]})
    assert [a["kind"] for a in ok.json()["pending"]] == ["server-error", "ignore-range"]
    assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200  # metadata not in kinds
    assert client.get("/api/v2/recording/download/call-a", headers=headers).status_code == 502
    reply = client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=0-9"})
    assert reply.status_code == 200 and reply.content == file_bytes(recdir)
    assert client.get("/_emulator/faults").json() == {"pending": []}


def test_tamper_changes_exactly_one_byte(serve, recdir):
    emulator, client = serve(tamper=("call-b",))
    headers = bearer(client)
    original = file_bytes(recdir, "call-b")
    served = client.get("/api/v2/recording/download/call-b", headers=headers).content
    assert len(served) == len(original)
    diffs = [i for i, (a, b) in enumerate(zip(served, original)) if a != b]
    assert diffs == [len(original) // 2]
    meta = client.get("/api/v2/recording/call-b", headers=headers).json()
    assert meta["sha256"] == hashlib.sha256(original).hexdigest() != hashlib.sha256(served).hexdigest()
    assert client.get("/api/v2/recording/download/call-a", headers=headers).content == file_bytes(recdir)


def test_storage_states(serve):
    _, client = serve(storage_states={"call-a": "archived", "call-b": "purged"})
    headers = bearer(client)
    assert client.get("/api/v2/recording/call-a", headers=headers).json()["storageState"] == "archived"
    assert client.get("/api/v2/recording/download/call-a", headers=headers).status_code == 409
    assert client.get("/api/v2/recording/download/call-b", headers=headers).status_code == 410


# -- HMAC -------------------------------------------------------------------------


def test_per_segment_and_whole_hmac(serve, recdir):
    key = "k3y-for-tests"
    _, client = serve(hmac_key=key, tamper=("call-b",))
    headers = bearer(client)
    data = file_bytes(recdir)
    meta = client.get("/api/v2/recording/call-a", headers=headers).json()
    assert meta["hmac"] == hmac.new(key.encode(), data, hashlib.sha256).hexdigest()
    for spec, first in (("bytes=1000-4999", 1000), ("bytes=-77", len(data) - 77), (None, 0)):
        reply = client.get("/api/v2/recording/download/call-a", headers={**headers, **({"Range": spec} if spec else {})})
        expected = hmac.new(key.encode(), first.to_bytes(8, "big") + reply.content, hashlib.sha256).hexdigest()
        assert reply.headers["x-segment-hmac"] == expected
        assert reply.headers["x-recording-hmac"] == meta["hmac"]
    # Tampered recording: MACs describe the original, so the served bytes fail both checks.
    original = file_bytes(recdir, "call-b")
    served = client.get("/api/v2/recording/download/call-b", headers=headers)
    assert served.headers["x-recording-hmac"] == hmac.new(key.encode(), original, hashlib.sha256).hexdigest()
    assert hmac.new(key.encode(), served.content, hashlib.sha256).hexdigest() != served.headers["x-recording-hmac"]
    assert hmac.new(key.encode(), bytes(8) + served.content, hashlib.sha256).hexdigest() != served.headers["x-segment-hmac"]


def test_hmac_base64_encoding(serve, recdir):
    _, client = serve(hmac_key="k", hmac_encoding="base64", sha256_in_metadata=False)
    headers = bearer(client)
    meta = client.get("/api/v2/recording/call-a", headers=headers).json()
    assert "sha256" not in meta
    assert base64.b64decode(meta["hmac"]) == hmac.new(b"k", file_bytes(recdir), hashlib.sha256).digest()


# -- Media Playback -----------------------------------------------------------------


def test_media_playback_temporary_url(serve, recdir, clock):
    emulator, client = serve(media_url_ttl=60)
    headers = bearer(client)
    found = client.get("/media-playback/v1/contacts", params={"acd-call-id": "call-b", "media-type": "voice-only", "isDownload": "true"}, headers=headers)
    assert found.status_code == 200
    doc = found.json()
    assert doc["contactId"] == "call-b"
    url = doc["interactions"][0]["data"]["fileToPlayUrl"]
    assert url.startswith(str(client.base_url)) and "sig=" in url and "expires=" in url
    data = file_bytes(recdir, "call-b")
    with httpx.Client(timeout=10) as bare:  # the signed URL needs no bearer token
        part = bare.get(url, headers={"Range": "bytes=200-299"})
        assert part.status_code == 206 and part.content == data[200:300]
        assert part.headers["etag"] == doc["interactions"][0]["data"]["etag"]
        assert bare.get(url).content == data
        tampered_sig = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
        assert bare.get(tampered_sig).status_code == 403
        other_recording = url.replace("/files/call-b", "/files/call-a")
        assert bare.get(other_recording).status_code == 403
        clock.advance(61)
        expired = bare.get(url)
        assert expired.status_code == 403 and "expired" in expired.json()["message"]
    segment = client.get("/media-playback/v1/segments/call-b", headers=headers).json()
    assert segment["interactions"][0]["data"]["fileToPlayUrl"].startswith(f"{client.base_url}/media-playback/v1/files/call-b?")
    assert client.get("/media-playback/v1/contacts", params={"acd-call-id": "call-b"}).status_code == 401
    assert client.get("/media-playback/v1/contacts", headers=headers).status_code == 400
    assert client.get("/media-playback/v1/contacts", params={"acd-call-id": "zzz"}, headers=headers).status_code == 404
    assert client.get("/media-playback/v1/contacts", params={"acd-call-id": "call-b", "media-type": "chat"}, headers=headers).status_code == 400


# -- streaming ------------------------------------------------------------------------


def test_stream_offsets_rules(serve):
    _, client = serve()
    headers = bearer(client)
    url = "/api/v2/recordings/call-b/stream"
    bracket = client.get(url, params={"offsets": "[0,1,2]"}, headers=headers)
    assert bracket.status_code == 400 and bracket.headers["content-type"] == "application/json"
    assert "bracketed" in bracket.json()["message"]
    assert client.get(url, params={"offsets": "0,1,2,3"}, headers=headers).status_code == 413
    assert client.get(url, params={"offsets": "0,x"}, headers=headers).status_code == 400
    assert client.get(url, params={"offsets": "2,1"}, headers=headers).status_code == 400
    assert client.get(url, params={"offsets": "3"}, headers=headers).status_code == 416
    assert client.get(url, params={"maxDuration": "0"}, headers=headers).status_code == 400
    codec = client.get(url, params={"codec": "opus"}, headers=headers)
    assert codec.status_code == 406 and "codec=wav" in codec.json()["message"]


def test_stream_whole_recording_is_chunked_and_incremental(serve, recdir):
    _, client = serve(stream_chunk_size=4096)
    headers = bearer(client)
    pieces = []
    with client.stream("GET", "/api/v2/recordings/call-b/stream", params={"offsets": "0", "codec": "wav"}, headers=headers) as reply:
        assert reply.status_code == 200
        assert reply.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in reply.headers
        for piece in reply.iter_raw():
            pieces.append(piece)
    assert len(pieces) > 1
    assert b"".join(pieces) == file_bytes(recdir, "call-b")


def test_stream_segments_make_a_valid_wav(serve, recdir):
    _, client = serve()
    body = client.get(
        "/api/v2/recordings/call-b/stream", params={"offsets": "0,2", "maxDuration": "1", "codec": "opus" if False else "original"}, headers=bearer(client)
    ).content
    original = file_bytes(recdir, "call-b")
    with wave.open(io.BytesIO(original)) as w:
        pcm = w.readframes(w.getnframes())
    with wave.open(io.BytesIO(body)) as w:
        assert w.getnframes() == 2 * 8000
        got = w.readframes(w.getnframes())
    assert got == pcm[0:BYTE_RATE] + pcm[2 * BYTE_RATE : 3 * BYTE_RATE]
    assert struct.unpack("<I", body[4:8])[0] == len(body) - 8


def test_stream_json_error_and_drop(serve):
    emulator, client = serve()
    headers = bearer(client)
    emulator.faults.schedule(FaultAction(FaultKind.JSON_ERROR), FaultAction(FaultKind.DROP, drop_after=5000))
    err = client.get("/api/v2/recordings/call-a/stream", params={"offsets": "0"}, headers=headers)
    assert err.status_code == 200 and err.headers["content-type"] == "application/json"
    assert err.json()["error"] == "BlobStorageTimeout"
    got = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", "/api/v2/recordings/call-a/stream", params={"offsets": "0"}, headers=headers) as reply:
            for piece in reply.iter_raw():
                got += piece
    assert len(got) == 5000
    assert emulator.stats.snapshot()["bytes_served"]["call-a"] == 5000


# -- stats, logs, lifecycle ------------------------------------------------------------


def test_stats_count_the_bytes_received(serve):
    emulator, client = serve()
    headers = bearer(client)
    received = {"call-a": 0, "call-b": 0}
    received["call-a"] += len(client.get("/api/v2/recording/download/call-a", headers=headers).content)
    received["call-a"] += len(client.get("/api/v2/recording/download/call-a", headers={**headers, "Range": "bytes=-123"}).content)
    received["call-b"] += len(client.get("/api/v2/recordings/call-b/stream", params={"offsets": "1,2"}, headers=headers).content)
    emulator.faults.schedule(FaultAction(FaultKind.DROP, drop_fraction=0.25))
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("GET", "/api/v2/recording/download/call-b", headers=headers) as reply:
            for piece in reply.iter_raw():
                received["call-b"] += len(piece)
    client.get("/api/v2/recording/call-a", headers=headers)  # JSON bodies are not recording bytes
    stats = client.get("/_emulator/stats").json()
    assert stats["bytes_served"] == received
    assert stats["bytes_served_total"] == sum(received.values())
    assert stats["requests"]["download"] == 3 and stats["requests"]["stream"] == 1 and stats["requests"]["metadata"] == 1
    assert stats["tokens_issued"] == 1 and stats["drops"] == 1
    assert client.post("/_emulator/reset").status_code == 200
    assert client.get("/_emulator/stats").json()["bytes_served_total"] == 0


def test_secrets_never_logged(serve, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    emulator, client = serve(client_secret="cs-VERY-secret", access_key_secret="ak-VERY-secret", hmac_key="hk-VERY-secret")
    token_reply = client_credentials(client, secret="cs-VERY-secret").json()
    password_reply = client.post(
        "/auth/token",
        data={"grant_type": "password", "username": "demo-access-key", "password": "ak-VERY-secret", "client_id": "demo-client", "client_secret": "cs-VERY-secret"},
    ).json()
    headers = {"Authorization": f"Bearer {token_reply['access_token']}"}
    url = client.get("/media-playback/v1/contacts", params={"acd-call-id": "call-a"}, headers=headers).json()["interactions"][0]["data"]["fileToPlayUrl"]
    sig = httpx.URL(url).params["sig"]
    client.get(url)
    client.get("/api/v2/recording/download/call-a", headers=headers)
    client.get("/api/v2/recording/call-a", params={"access_token": token_reply["access_token"]})  # a client mistake, still redacted
    secrets = ["cs-VERY-secret", "ak-VERY-secret", "hk-VERY-secret", token_reply["access_token"], password_reply["access_token"], password_reply["refresh_token"], sig]
    out = capsys.readouterr()
    # The emulator's own records (httpx's client-side log is the test's, not the server's).
    server_records = [r for r in caplog.records if r.name.startswith(("voxpipe_cxone", "hypercorn"))]
    logged = "\n".join(r.getMessage() for r in server_records) + out.out + out.err
    assert "/media-playback/v1/files/call-a" in logged  # the access log did record the requests
    assert "sig=REDACTED" in logged and "access_token=REDACTED" in logged
    for secret in secrets:
        assert secret not in logged
    for secret in secrets[:3]:
        assert secret not in repr(emulator.settings) and secret not in repr(emulator.tokens.credentials)


def test_unknown_paths_and_methods(serve):
    _, client = serve()
    assert client.get("/api/v3/whatever").status_code == 404
    reply = client.delete("/api/v2/recording/call-a")
    assert reply.status_code == 405 and reply.headers["allow"] == "GET"


def test_serve_emulator_reports_bound_port(recdir):
    emulator = CxoneEmulator(EmulatorSettings(recordings=recdir))

    async def main() -> tuple[str, int]:
        async with trio.open_nursery() as nursery:
            base_url = await nursery.start(serve_emulator, emulator)
            async with httpx.AsyncClient(base_url=base_url) as client:
                reply = await client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"})
            nursery.cancel_scope.cancel()
            return base_url, reply.status_code

    base_url, status = trio.run(main)
    assert base_url.startswith("http://127.0.0.1:") and int(base_url.rsplit(":", 1)[1]) > 0
    assert status == 200
    emulator.close()


def test_client_disconnect_stops_the_body(recdir, clock):
    big = recdir / "big.wav"
    write_wav(big, 60, rate=48000, channels=4, seed=9)  # 23 MB: more than socket buffers hold
    emulator = CxoneEmulator(EmulatorSettings(recordings=recdir), clock=clock)
    with run_in_thread(emulator) as base_url, httpx.Client(base_url=base_url) as client:
        headers = bearer(client)
        with client.stream("GET", "/api/v2/recording/download/big", headers=headers) as reply:
            next(reply.iter_raw(1024))
        # The server is still healthy afterwards.
        assert client.get("/api/v2/recording/call-a", headers=headers).status_code == 200
    assert emulator.stats.bytes_served("big") < big.stat().st_size
    emulator.close()


def test_concurrent_ranged_downloads_reassemble(recdir, clock):
    """Eight clients at once, each fetching one slice; the slices reassemble into the file."""
    emulator = CxoneEmulator(EmulatorSettings(recordings=recdir), clock=clock)
    data = file_bytes(recdir, "call-b")
    parts: dict[int, bytes] = {}

    async def fetch(client: httpx.AsyncClient, headers: dict[str, str], index: int, first: int, last: int) -> None:
        reply = await client.get("/api/v2/recording/download/call-b", headers={**headers, "Range": f"bytes={first}-{last}"})
        assert reply.status_code == 206
        parts[index] = reply.content

    async def main(base_url: str) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            token = (await client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"})).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            step = -(-len(data) // 8)
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(fetch, client, headers, i, i * step, min(len(data), (i + 1) * step) - 1)

    with run_in_thread(emulator) as base_url:
        trio.run(main, base_url)
    assert b"".join(parts[i] for i in range(8)) == data
    assert emulator.stats.bytes_served("call-b") == len(data)
    emulator.close()
