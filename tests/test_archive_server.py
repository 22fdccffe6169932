"""The retrieval API over real loopback sockets: traversal and auth refusals, Range/ETag,
verified decompression, listing, and an archive produced by an actual pipeline run."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
import textwrap
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.serving import serve_in_thread
from voxpipe_archive.app import MAX_PAGE, ArchiveApp
from voxpipe_archive.auth import BearerAuth
from voxpipe_archive.index import ArchiveIndex

from archive_tree import SECRET, TOKEN, audio, manifest_for, store
from plugin_fixtures import ThirdPartyPlugin, pattern

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("srv")
    root, outside = base / "archive", base / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    files = {
        "r1": store(root, "2024/05/r1.wav.gz", "r1", audio("r1", 700_000), gzip_it=True,
                    recording_date="2024-05-01T10:00:00Z", metadata={"conversationId": "conv-1"}),
        "r2": store(root, "r2.mp3", "r2", audio("r2", 5000), fmt="mp3", source="cxone",
                    recording_date="2024-06-15T08:00:00Z", metadata={"contactId": "5551234"}),
        "r3": store(root, "r3.wav", "r3", audio("r3", 1000), recording_date="2024-06-30T23:59:59Z",
                    metadata={"conversationId": "conv-3"}),
        "r4": store(root, "r4.ogg", "r4", audio("r4", 1000), fmt="ogg", recording_date=None,
                    received_at="2024-07-01T00:00:01Z"),
        "multi-a": store(root, "m/multi-a.webm", "multi-a", audio("ma", 100), fmt="webm",
                         recording_date="2024-06-01", metadata={"conversationId": "conv-m"}),
        "multi-b": store(root, "m/multi-b.webm", "multi-b", audio("mb", 100), fmt="webm",
                         recording_date="2024-06-02", metadata={"conversationId": "conv-m"}),
    }
    # A recording whose stored file is a symlink to a file outside the archive, with a
    # manifest that is otherwise perfect (the digest matches the outside file).
    (root / "leak.wav").symlink_to(outside / "secret.txt")
    (root / "leak.wav.json").write_text(json.dumps(manifest_for("leak", "leak.wav", SECRET, SECRET,
                                                                metadata={"conversationId": "conv-leak"})))
    # A symlinked directory pointing outside, holding a complete recording.
    (outside / "dir").mkdir()
    store(outside / "dir", "viadir.wav", "viadir", SECRET, metadata={"conversationId": "conv-dir"})
    (root / "linkdir").symlink_to(outside / "dir")
    # Pipeline state and a temporary file, each with a manifest-shaped neighbour.
    store(root, ".voxpipe/state1.wav", "state1", SECRET)
    store(root, ".r9.wav.0a1b2c.part", "r9", SECRET)
    return {"root": root, "outside": outside, "files": files}


@pytest.fixture(scope="module")
def server(tree):
    app = ArchiveApp(ArchiveIndex(tree["root"]), BearerAuth([TOKEN]))
    with serve_in_thread(app) as url:
        yield url


def raw_request(url: str, target: bytes, *, headers: bytes = b"", method: bytes = b"GET") -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client-side normalisation); return status and body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     + headers + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


BEARER = f"Authorization: Bearer {TOKEN}\r\n".encode()

ATTACKS = [
    (b"/recordings/..%2f..%2fetc%2fpasswd", {400}),
    (b"/recordings/..%2f..%2foutside%2fsecret.txt", {400}),
    (b"/recordings/%2e%2e", {400}),
    (b"/recordings/%2E%2E%2F%2E%2E%2Foutside%2Fsecret.txt", {400}),
    (b"/recordings/%252e%252e%252f%252e%252e%252foutside%252fsecret.txt", {400}),
    (b"/recordings/%25252e%25252e", {400}),
    (b"/recordings/%00", {400}),
    (b"/recordings/r1%00", {400}),
    (b"/recordings/r1%0a", {400}),
    (b"/recordings//etc/passwd", {404}),
    (b"/recordings/%2fetc%2fpasswd", {400}),
    (b"/recordings/../../outside/secret.txt", {404}),
    (b"/recordings/..", {400}),
    (b"/recordings/.", {400}),
    (b"/recordings/..%5c..%5coutside%5csecret.txt", {400}),
    (b"/recordings/..\\..\\outside\\secret.txt", {400}),
    (b"/recordings/%c0%ae%c0%ae", {400}),
    (b"/recordings/%ff", {400}),
    (b"/recordings/" + b"a" * 201, {400}),
    (b"/recordings/leak", {404}),
    (b"/recordings/leak.wav", {404}),
    (b"/recordings/viadir", {404}),
    (b"/recordings/linkdir", {404}),
    (b"/recordings/state1", {404}),
    (b"/recordings/.voxpipe", {400}),
    (b"/recordings/r9", {404}),
    (b"/recordings/.r9.wav.0a1b2c.part", {400}),
    (b"/recordings/r1.wav.gz.json", {404}),
    (b"/recordings/r1.wav.gz", {404}),
    (b"/archive/retrieve?interactionId=..%2f..%2foutside%2fsecret.txt", {400}),
    (b"/archive/retrieve?interactionId=%252e%252e%252f", {400}),
    (b"/archive/retrieve?interactionId=%00", {400}),
    (b"/archive/retrieve?interactionId=conv-leak", {404}),
    (b"/archive/retrieve?interactionId=conv-dir", {404}),
    (b"/archive/retrieve?interactionId=", {400}),
    (b"/archive/retrieve", {400}),
    (b"/archive/retrieve?interactionId=conv-1&interactionId=conv-3", {400}),
    (b"/outside/secret.txt", {404}),
    (b"/linkdir/viadir.wav", {404}),
    (b"/.voxpipe/state1.wav", {404}),
    (b"/2024/05/r1.wav.gz", {404}),
]


@pytest.mark.parametrize("target,statuses", ATTACKS, ids=[a[0].decode("latin-1")[:60] for a in ATTACKS])
def test_traversal_attempts_are_refused(server, target, statuses):
    status, body = raw_request(server, target, headers=BEARER)
    assert status in statuses, body
    assert SECRET not in body
    if status in (400, 404) and body:
        assert "error" in json.loads(body)


def test_refusals_do_not_depend_on_the_method(server):
    for method in (b"HEAD", b"GET"):
        status, body = raw_request(server, b"/recordings/leak", headers=BEARER, method=method)
        assert status == 404 and SECRET not in body
    status, _ = raw_request(server, b"/recordings/r3", headers=BEARER, method=b"DELETE")
    assert status == 405


def test_a_valid_request_next_to_the_attacks_is_served(server, tree):
    status, body = raw_request(server, b"/recordings/r3", headers=BEARER)
    assert status == 200 and body == tree["files"]["r3"].read_bytes()


AUTH_CASES = [
    ("missing", None, False, 401, ""),
    ("basic", "Basic dXNlcjpwYXNz", False, 401, 'error="invalid_request"'),
    ("empty bearer", "Bearer", False, 401, 'error="invalid_request"'),
    ("wrong token", "Bearer " + "z" * 36, False, 401, 'error="invalid_token"'),
    ("token prefix", "Bearer " + TOKEN[:-1], False, 401, 'error="invalid_token"'),
    ("token plus", "Bearer " + TOKEN + "x", False, 401, 'error="invalid_token"'),
    ("right token", "Bearer " + TOKEN, False, 200, None),
    ("scheme case", "bearer " + TOKEN, False, 200, None),
    ("anonymous allowed", None, True, 200, None),
    ("anonymous allowed, wrong token", "Bearer " + "z" * 36, True, 401, 'error="invalid_token"'),
    ("anonymous allowed, right token", "Bearer " + TOKEN, True, 200, None),
]


@pytest.mark.parametrize("header,anonymous,status,challenge", [c[1:] for c in AUTH_CASES],
                         ids=[c[0] for c in AUTH_CASES])
def test_authentication(tree, header, anonymous, status, challenge, caplog):
    caplog.set_level(logging.DEBUG)
    app = ArchiveApp(ArchiveIndex(tree["root"]), BearerAuth([TOKEN], allow_anonymous=anonymous))
    headers = {"Authorization": header} if header is not None else {}
    with serve_in_thread(app) as url:
        for path in ("/recordings/r3", "/recordings", "/archive/retrieve?interactionId=conv-3", "/nowhere"):
            r = httpx.get(url + path, headers=headers)
            if status == 401:
                assert r.status_code == 401, path
                assert r.headers["www-authenticate"].startswith("Bearer realm=")
                assert challenge in r.headers["www-authenticate"]
            else:
                assert r.status_code == (404 if path == "/nowhere" else 200), path
        assert httpx.get(url + "/healthz").status_code == 200  # load balancers probe without a token
    assert TOKEN not in caplog.text and TOKEN[4:] not in caplog.text
    assert TOKEN not in repr(app.auth)


def test_stored_file_with_etag_and_digest(server, tree):
    stored = tree["files"]["r1"].read_bytes()
    sha = hashlib.sha256(stored).hexdigest()
    r = httpx.get(server + "/recordings/r1", headers=AUTH)
    assert r.status_code == 200 and r.content == stored
    assert r.headers["content-type"] == "application/gzip"
    assert r.headers["etag"] == f'"{sha}"' and r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(stored))
    assert r.headers["content-disposition"] == 'attachment; filename="r1.wav.gz"'
    import base64
    assert r.headers["repr-digest"] == "sha-256=:" + base64.b64encode(bytes.fromhex(sha)).decode() + ":"
    for rid, ctype in (("r2", "audio/mpeg"), ("r3", "audio/wav"), ("r4", "audio/ogg"), ("multi-a", "audio/webm")):
        r = httpx.get(server + f"/recordings/{rid}", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"] == ctype
        assert r.content == tree["files"][rid].read_bytes()


def test_ranges_and_conditional_requests(server, tree):
    stored = tree["files"]["r1"].read_bytes()
    size = len(stored)
    etag = f'"{hashlib.sha256(stored).hexdigest()}"'
    url = server + "/recordings/r1"
    cases = [
        ({"Range": "bytes=0-9"}, 206, stored[0:10], f"bytes 0-9/{size}"),
        ({"Range": "bytes=300000-"}, 206, stored[300000:], f"bytes 300000-{size - 1}/{size}"),
        ({"Range": "bytes=-100"}, 206, stored[-100:], f"bytes {size - 100}-{size - 1}/{size}"),
        ({"Range": f"bytes=10-{size + 500}"}, 206, stored[10:], f"bytes 10-{size - 1}/{size}"),
        ({"Range": "bytes=0-0,5-6"}, 200, stored, None),  # multiple ranges: whole representation
        ({"Range": "items=0-9"}, 200, stored, None),
        ({"Range": "bytes=9-0"}, 200, stored, None),
        ({"Range": "bytes=0-9", "If-Range": etag}, 206, stored[0:10], f"bytes 0-9/{size}"),
        ({"Range": "bytes=0-9", "If-Range": '"' + "0" * 64 + '"'}, 200, stored, None),
        ({"Range": "bytes=0-9", "If-Range": "W/" + etag}, 200, stored, None),
        ({"Range": "bytes=0-9", "If-Range": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200, stored, None),
    ]
    for headers, status, body, content_range in cases:
        r = httpx.get(url, headers={**AUTH, **headers})
        assert r.status_code == status, headers
        assert r.content == body, headers
        assert r.headers.get("content-range") == content_range, headers
        assert r.headers["content-length"] == str(len(body))
    r = httpx.get(url, headers={**AUTH, "Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    for inm in (etag, f'"x", {etag}', "*", "W/" + etag):
        r = httpx.get(url, headers={**AUTH, "If-None-Match": inm})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert httpx.get(url, headers={**AUTH, "If-None-Match": '"other"'}).status_code == 200
    r = httpx.head(url, headers=AUTH)
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(size)


def test_decompress_streams_the_original_bytes(server, tree):
    original = audio("r1", 700_000)
    r = httpx.get(server + "/recordings/r1?decompress=1", headers=AUTH)
    assert r.status_code == 200 and r.content == original
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["etag"] == f'"{hashlib.sha256(original).hexdigest()}"'
    assert r.headers["accept-ranges"] == "none" and r.headers["content-length"] == str(len(original))
    r = httpx.get(server + "/recordings/r1?decompress=1", headers={**AUTH, "Range": "bytes=0-9"})
    assert r.status_code == 200 and r.content == original  # no ranges on decompressed output
    r = httpx.get(server + "/archive/retrieve?interactionId=conv-1&decompress=1", headers=AUTH)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == hashlib.sha256(original).hexdigest()
    # An uncompressed recording is its own original.
    r = httpx.get(server + "/recordings/r3?decompress=1", headers=AUTH)
    assert r.content == audio("r3", 1000)
    assert httpx.get(server + "/recordings/r3?decompress=maybe", headers=AUTH).status_code == 400


def test_retrieve_by_interaction_id(server, tree):
    r = httpx.get(server + "/archive/retrieve?interactionId=conv-3", headers=AUTH)
    assert r.status_code == 200 and r.content == audio("r3", 1000)
    r = httpx.get(server + "/archive/retrieve?interactionId=5551234", headers=AUTH)  # CXone contactId
    assert r.status_code == 200 and r.content == audio("r2", 5000)
    r = httpx.get(server + "/archive/retrieve?interactionId=conv-m", headers=AUTH)
    assert r.status_code == 300
    assert sorted(c["recording_id"] for c in r.json()["candidates"]) == ["multi-a", "multi-b"]
    r = httpx.get(server + "/archive/retrieve?interactionId=conv-m&recordingId=multi-b", headers=AUTH)
    assert r.status_code == 200 and r.content == audio("mb", 100)
    assert httpx.get(server + "/archive/retrieve?interactionId=nope", headers=AUTH).status_code == 404


def test_listing_filters_by_date_and_source(server):
    def ids(query: str) -> list[str]:
        r = httpx.get(server + "/recordings" + query, headers=AUTH)
        assert r.status_code == 200, r.text
        return [item["recording_id"] for item in r.json()["items"]]

    assert ids("") == ["r1", "multi-a", "multi-b", "r2", "r3", "r4"]  # by recording date
    assert ids("?source=cxone") == ["r2"]
    assert ids("?from=2024-06-01&to=2024-06-30") == ["multi-a", "multi-b", "r2", "r3"]  # a bare `to` date is inclusive
    assert ids("?from=2024-06-01T12:00:00Z&to=2024-06-30T23:59:59Z") == ["multi-b", "r2"]
    assert ids("?from=2024-07-01") == ["r4"]  # dated by received_at: it has no recording_date
    assert ids("?source=genesys&from=2024-06-02&to=2024-06-30") == ["multi-b", "r3"]
    page = httpx.get(server + "/recordings?limit=2&offset=1", headers=AUTH).json()
    assert page["total"] == 6 and [i["recording_id"] for i in page["items"]] == ["multi-a", "multi-b"]
    assert page["next"] is not None
    nxt = httpx.get(server + page["next"], headers=AUTH).json()
    assert [i["recording_id"] for i in nxt["items"]] == ["r2", "r3"]
    item = httpx.get(server + "/recordings?source=cxone", headers=AUTH).json()["items"][0]
    assert item["interaction_ids"] == ["5551234"] and item["date_from"] == "recording_date"
    assert item["path"] == "r2.mp3" and item["stored_size"] == 5000
    for bad in ("?from=yesterday", f"?limit={MAX_PAGE + 1}", "?limit=0", "?offset=-1", "?limit=1&limit=2"):
        assert httpx.get(server + "/recordings" + bad, headers=AUTH).status_code == 400, bad


def test_corrupted_stored_file_aborts_the_response(tmp_path, caplog):
    root = tmp_path / "a"
    path = store(root, "c.wav.gz", "c", audio("c", 600_000), gzip_it=True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    manifest = json.loads((root / "c.wav.gz.json").read_text())
    app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]))
    with serve_in_thread(app) as url:
        for query in ("", "?decompress=1"):
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(url + "/recordings/c" + query, headers=AUTH)
        r = httpx.get(url + "/recordings/c", headers={**AUTH, "Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == bytes(data[:100])  # ranges are not verified as a whole
        # A manifest whose original digest is wrong: decompression succeeds but is refused at the end.
        path.write_bytes(gzip.compress(audio("c", 600_000), mtime=0))
        manifest.update(stored_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), stored_size=path.stat().st_size,
                        original_sha256="0" * 64)
        (root / "c.wav.gz.json").write_text(json.dumps(manifest))
        app.index.invalidate()
        assert httpx.get(url + "/recordings/c", headers=AUTH).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(url + "/recordings/c?decompress=1", headers=AUTH)
    assert "does not match the manifest's original_sha256" in caplog.text


def test_index_sees_new_recordings_after_its_ttl(tmp_path):
    root = tmp_path / "a"
    root.mkdir()
    clock = [0.0]
    index = ArchiveIndex(root, ttl=2.0, clock=lambda: clock[0])
    index.refresh()
    assert index.entries() == ()
    store(root, "x/y/n1.wav", "n1", b"abc")
    index.refresh()
    assert index.by_recording_id("n1") == ()  # trusted until the TTL passes
    clock[0] = 2.5
    index.refresh()
    assert index.by_recording_id("n1")[0].relative == "x/y/n1.wav"
    (root / "x/y/n1.wav").unlink()
    clock[0] = 5.0
    index.refresh()
    assert index.by_recording_id("n1") == ()  # a manifest without its file is not served


def test_archive_written_by_a_pipeline_is_served(tmp_path, register_plugin):
    archive = tmp_path / "archive"
    text = textwrap.dedent(f"""
        pipelines:
          p:
            state_dir: {archive}/.voxpipe
            source: {{type: memory, ids: [call-1, call-2], size: 120000, chunk: 30000}}
            verifiers: [{{type: sha256}}]
            sinks: [{{type: gzip, dir: {archive}, name: "{{year}}/{{month}}/{{recording_id}}.{{format}}"}}]
    """)
    with register_plugin(ThirdPartyPlugin(), name="thirdparty") as registry:
        summary = trio.run(Runner(parse_config(text, registry, filename="t.yaml", environ=os.environ)
                                  .pipeline(None)).run)
    assert summary.ok
    app = ArchiveApp(ArchiveIndex(archive), BearerAuth([TOKEN]))
    with serve_in_thread(app) as url:
        for rid in ("call-1", "call-2"):
            r = httpx.get(url + f"/recordings/{rid}?decompress=1", headers=AUTH)
            assert r.status_code == 200 and r.content == pattern(rid, 120000)
            assert r.headers["etag"] == f'"{hashlib.sha256(pattern(rid, 120000)).hexdigest()}"'
            stored = httpx.get(url + f"/recordings/{rid}", headers=AUTH)
            assert gzip.decompress(stored.content) == pattern(rid, 120000)
        listing = httpx.get(url + "/recordings?source=memory", headers=AUTH).json()
        assert listing["total"] == 2 and all(i["date_from"] == "received_at" for i in listing["items"])
        assert all(i["path"].count("/") == 2 for i in listing["items"])


def test_repeated_authorization_header_is_refused(server):
    twice = BEARER + f"Authorization: Bearer {'z' * 30}\r\n".encode()
    status, body = raw_request(server, b"/recordings/r3", headers=twice)
    assert status == 401 and audio("r3", 1000) not in body


def test_same_id_from_two_sources_needs_a_source(tmp_path):
    root = tmp_path / "a"
    store(root, "genesys/dup.wav", "dup", b"from genesys", source="genesys")
    store(root, "cxone/dup.wav", "dup", b"from cxone", source="cxone")
    app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]))
    with serve_in_thread(app) as url:
        r = httpx.get(url + "/recordings/dup", headers=AUTH)
        assert r.status_code == 300 and {c["source"] for c in r.json()["candidates"]} == {"genesys", "cxone"}
        assert httpx.get(url + "/recordings/dup?source=cxone", headers=AUTH).content == b"from cxone"
        assert httpx.get(url + r.json()["candidates"][0]["url"], headers=AUTH).status_code == 200
        assert httpx.get(url + "/recordings/dup?source=nice", headers=AUTH).status_code == 404
