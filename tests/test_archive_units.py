"""Sans-IO parts of the archive plugin: id checks, containment, Range/ETag decisions,
durations, manifests, token loading, bounded gzip bodies; and the app fuzzed in-process."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import zlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import given, settings, strategies as st

from voxpipe_archive import bodies
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import TOKENS_ENV, BearerAuth, TokenConfigError, load_tokens
from voxpipe_archive.bodies import BodyError, GunzipBody
from voxpipe.download.ranges import ByteRange
from voxpipe_archive.conditional import Decision, evaluate
from voxpipe_archive.durations import parse_duration
from voxpipe_archive.index import ArchiveIndex
from voxpipe.manifest import ManifestError, parse_manifest
from voxpipe_archive.paths import ID_PATTERN, OutsideArchive, UnsafeId, check_id, real_root, resolve_inside

from archive_tree import SECRET, TOKEN, audio, manifest_for, store

REFUSED_IDS = [
    ("", "empty"), ("a" * 201, "too-long"), ("a\x00b", "control"), ("a\nb", "control"), ("a\x7f", "control"),
    ("../etc/passwd", "separator"), ("a/b", "separator"), ("..\\x", "separator"), ("/etc/passwd", "separator"),
    ("..", "dot"), (".", "dot"), (".voxpipe", "dot"), (".r.wav.1.part", "dot"),
    ("%2e%2e", "encoded"), ("a%2fb", "encoded"), ("x%00", "encoded"), ("%252e", "encoded"), ("a%u002e", "encoded"),
    ("é", "charset"), ("a b", "charset"), ("a:b", "charset"), ("-x", "charset"), ("a%", "charset"),
]


@pytest.mark.parametrize("value,reason", REFUSED_IDS)
def test_check_id_refuses(value, reason):
    with pytest.raises(UnsafeId) as info:
        check_id(value)
    assert info.value.reason == reason
    assert "recording id" in str(info.value)


@pytest.mark.parametrize("value", ["r1", "3f2a-uuid-like-0001", "a.b_c@d+e=f-g", "A" * 200, "5551234"])
def test_check_id_accepts_storable_ids(value):
    assert check_id(value) == value


def test_id_rule_is_the_sinks_rule():
    from voxpipe import naming
    assert ID_PATTERN.pattern == naming.SAFE_ID.pattern  # anything storable is retrievable, nothing else


@given(st.text(max_size=60))
def test_check_id_never_accepts_anything_path_like(value):
    try:
        check_id(value)
    except UnsafeId:
        return
    assert "/" not in value and "\\" not in value and "%" not in value and not value.startswith(".")
    assert ID_PATTERN.match(value)


def test_resolve_inside(tmp_path):
    root = tmp_path / "a"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"x")
    (tmp_path / "out").write_bytes(b"o")
    (root / "ln").symlink_to(tmp_path / "out")
    (root / "inner").symlink_to(root / "sub" / "f")
    real = real_root(root)
    assert resolve_inside(real, "sub/f").relative == "sub/f"
    assert resolve_inside(real, "inner").relative == "sub/f"  # a link within the archive is fine
    for bad in ("ln", "../out", "/etc/passwd", ".", "sub/..", ".voxpipe/x", "sub/.f.part"):
        with pytest.raises(OutsideArchive):
            resolve_inside(real, bad)
    with pytest.raises(NotADirectoryError):
        real_root(tmp_path / "out")


def test_evaluate_conditional_requests():
    tag = '"' + "a" * 64 + '"'
    ev = lambda headers, **kw: evaluate("GET", headers, etag=tag, size=100, **kw)  # noqa: E731
    assert ev({}) == Decision(200)
    assert ev({"if-none-match": tag}) == Decision(304)
    assert ev({"if-none-match": tag, "range": "bytes=0-1"}) == Decision(304)
    assert ev({"range": "bytes=0-1"}) == Decision(206, ByteRange(0, 1))
    assert ev({"range": "bytes=0-1"}, ranges=False) == Decision(200)
    assert ev({"range": "bytes=0-1", "if-range": tag}) == Decision(206, ByteRange(0, 1))
    assert ev({"range": "bytes=0-1", "if-range": '"b"'}) == Decision(200)
    assert ev({"range": "bytes=200-"}) == Decision(416)
    assert ev({"range": "bytes=200-", "if-range": '"b"'}) == Decision(200)
    assert ByteRange(5, 9).content_range(10) == "bytes 5-9/10" and ByteRange(5, 9).length == 5


@pytest.mark.parametrize("text,expected", [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)),
                                           ("30m", timedelta(minutes=30)), ("45s", timedelta(seconds=45)),
                                           ("2w", timedelta(weeks=2)), (" 7d ", timedelta(days=7))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "90x", "1.5d", "-1d", "0d", "90 days", "", "99999999999d"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_manifest_errors_name_the_file_and_key(tmp_path):
    good = manifest_for("r", "r.wav", b"a", b"a")
    path = tmp_path / "r.wav.json"
    assert parse_manifest(path, json.dumps(good).encode()).recording_id == "r"
    for change, words in [({"stored_file": "../x.wav"}, "stored_file"), ({"recording_id": "../x"}, "recording_id"),
                          ({"stored_size": -1}, "stored_size"), ({"stored_sha256": "XYZ"}, "stored_sha256"),
                          ({"compression": "zstd"}, "compression")]:
        with pytest.raises(ManifestError, match=f"{re.escape(str(path))}: {words}"):
            parse_manifest(path, json.dumps({**good, **change}).encode())
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest(path, b"{")


def test_token_loading(tmp_path):
    f = tmp_path / "tokens"
    f.write_text(f"# operators\n{TOKEN}\n\n")
    assert load_tokens(f, {}) == [TOKEN]
    assert load_tokens(None, {TOKENS_ENV: f"{TOKEN}, {'b' * 20}"}) == [TOKEN, "b" * 20]
    f.write_text("# c\nshort\n")
    with pytest.raises(TokenConfigError, match=f"{re.escape(str(f))}:2: token is shorter") as info:
        load_tokens(f, {})
    assert "short" not in str(info.value).split(":2:")[0]
    f.write_text("has space in the token value\n")
    with pytest.raises(TokenConfigError) as info:
        load_tokens(f, {})
    assert "space in the" not in str(info.value)
    with pytest.raises(TokenConfigError, match="no tokens configured"):
        BearerAuth([])
    assert BearerAuth([], allow_anonymous=True).check(None) is None


def _gunzip_all(path: Path, **kw) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        body = GunzipBody(fd, label="recording t", **kw)
        out = []
        while block := body.read_block():
            assert len(block) <= bodies.BLOCK_SIZE
            out.append(block)
        body.finish()
        return b"".join(out)
    finally:
        os.close(fd)


def test_gunzip_body_multi_member_truncation_and_bombs(tmp_path):
    a, b = audio("a", 300_000), audio("b", 1000)
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(a) + gzip.compress(b))
    whole = a + b
    assert _gunzip_all(path, expected_size=len(whole), expected_sha256=hashlib.sha256(whole).hexdigest()) == whole
    path.write_bytes(gzip.compress(a)[:-20])
    with pytest.raises(BodyError, match="truncated"):
        _gunzip_all(path, expected_size=None, expected_sha256=None)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(BodyError, match="corrupt gzip"):
        _gunzip_all(path, expected_size=None, expected_sha256=None)
    # 64 MiB of zeros compress to ~64 KiB; inflation stops as soon as the manifest's size is exceeded.
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.write_bytes(c.compress(bytes(64 << 20)) + c.flush())
    fd = os.open(path, os.O_RDONLY)
    body = GunzipBody(fd, label="recording bomb", expected_size=1000, expected_sha256=None)
    with pytest.raises(BodyError, match="exceeds the manifest's original_size"):
        while body.read_block():
            pass
    assert body.produced <= bodies.BLOCK_SIZE
    os.close(fd)


def _asgi_get(app, raw_path: bytes, query: bytes = b"") -> tuple[int, bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "", "raw_path": raw_path, "query_string": query,
             "headers": [(b"authorization", f"Bearer {TOKEN}".encode())]}
    trio.run(app, scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "archive"
    store(root, "ok.wav", "ok", b"fine", metadata={"conversationId": "c1"})
    (base / "secret").write_bytes(SECRET)
    (root / "s.wav").symlink_to(base / "secret")
    (root / "s.wav.json").write_text(json.dumps(manifest_for("s", "s.wav", SECRET, SECRET)))
    return ArchiveApp(ArchiveIndex(root, ttl=3600), BearerAuth([TOKEN]))


_segment = st.lists(st.sampled_from(list("./\\%2eEfF05c:a") + ["%2e", "%2f", "%5c", "%00", "%25", "s", "ok", "s.wav"]),
                    max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(_segment, min_size=1, max_size=4), encode=st.booleans())
def test_fuzzed_paths_never_serve_outside_bytes(fuzz_app, segments, encode):
    path = "/" + "/".join(quote(s, safe="") if encode else s for s in segments)
    for raw, query in ((("/recordings" + path).encode(), b""),
                       (b"/archive/retrieve", b"interactionId=" + quote(path[1:], safe="%").encode())):
        status, body = _asgi_get(fuzz_app, raw, query)
        assert SECRET not in body
        if status == 200:
            assert body == b"fine" or json.loads(body)["total"] == 1  # the recording, or the listing
        else:
            assert status in (300, 400, 404), (raw, query, status)


def test_serve_command_starts_stops_on_sigterm_and_refuses_without_tokens(tmp_path):
    store(tmp_path / "a", "r.wav", "r", b"hello")
    env = {**os.environ, TOKENS_ENV: TOKEN}
    cmd = [sys.executable, "-c", "from voxpipe.cli import main; main()", "serve", str(tmp_path / "a"), "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", line).group(1)
        assert httpx.get(url + "/recordings/r", headers={"Authorization": f"Bearer {TOKEN}"}).content == b"hello"
        assert httpx.get(url + "/recordings/r").status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
    assert TOKEN not in proc.stderr.read()
    env.pop(TOKENS_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no tokens configured" in done.stderr


@settings(max_examples=60, deadline=None)
@given(members=st.lists(st.binary(max_size=3000), min_size=1, max_size=5), block=st.integers(1, 700),
       read=st.integers(1, 500), compressible=st.booleans())
def test_gunzip_body_matches_gzip_for_any_members_and_block_sizes(tmp_path_factory, members, block, read,
                                                                   compressible):
    if compressible:
        members = [m * 20 for m in members]
    path = tmp_path_factory.mktemp("gz") / "m.gz"
    path.write_bytes(b"".join(gzip.compress(m, mtime=0) for m in members))
    whole = b"".join(members)
    old = bodies.BLOCK_SIZE, bodies.READ_SIZE
    bodies.BLOCK_SIZE, bodies.READ_SIZE = block, read
    try:
        assert _gunzip_all(path, expected_size=len(whole), expected_sha256=hashlib.sha256(whole).hexdigest()) == whole
    finally:
        bodies.BLOCK_SIZE, bodies.READ_SIZE = old
