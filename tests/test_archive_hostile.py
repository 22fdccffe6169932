"""The retrieval server serves regular files only and bounds requests and idle connections.

A FIFO, socket or other special file in the archive (directly, or named by a manifest)
is refused without a blocking open; requests keep flowing and shutdown stays prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import pytest

from voxpipe.serving import serve_in_thread
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import TOKENS_ENV, BearerAuth
from voxpipe_archive.index import ArchiveIndex
from voxpipe.manifest import ManifestError, load_manifest

from archive_tree import TOKEN, audio, manifest_for, store

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def special_archive(root):
    """An archive with a good recording and recordings whose stored file is a FIFO or a socket."""
    good = store(root, "good.wav", "good", audio("good", 3000))
    fifo = store(root, "2024/fifo.wav", "fifo", audio("fifo", 10), metadata={"conversationId": "conv-fifo"})
    fifo.unlink()
    os.mkfifo(fifo)  # nobody writes: a blocking open for reading never returns
    sock_path = store(root, "sock.wav", "sock", audio("sock", 10))
    sock_path.unlink()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    # a FIFO posing as a manifest, beside a regular file
    (root / "fake.wav").write_bytes(b"x")
    os.mkfifo(root / "fake.wav.json")
    return good, listener


def test_fifo_and_socket_are_refused_while_others_are_served_and_shutdown_is_prompt(tmp_path):
    root = tmp_path / "a"
    good, listener = special_archive(root)
    app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]))
    try:
        started = time.monotonic()
        with serve_in_thread(app) as url:
            with httpx.Client(timeout=5) as client:
                for _ in range(3):  # repeated: a blocked worker thread would pile up
                    r = client.get(url + "/recordings/fifo", headers=AUTH)
                    assert r.status_code == 404 and r.json()["reason"] == "not-a-file"
                    r = client.get(url + "/archive/retrieve?interactionId=conv-fifo", headers=AUTH)
                    assert r.status_code == 404
                    r = client.get(url + "/recordings/sock", headers=AUTH)
                    assert r.status_code == 404 and r.json()["reason"] == "not-a-file"
                    assert client.get(url + "/recordings/good", headers=AUTH).content == good.read_bytes()
                assert client.get(url + "/recordings/fake", headers=AUTH).status_code == 404
                ids = [i["recording_id"] for i in client.get(url + "/recordings", headers=AUTH).json()["items"]]
                assert "fake" not in ids and "good" in ids
            stop = time.monotonic()
        assert time.monotonic() - stop < 5  # shutdown is not held up by a stuck open()
        assert stop - started < 20
    finally:
        listener.close()


def test_load_manifest_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "x.wav.json")
    start = time.monotonic()
    with pytest.raises(ManifestError, match="not a regular file"):
        load_manifest(tmp_path / "x.wav.json")
    assert time.monotonic() - start < 2


def test_requests_beyond_the_limit_get_503_with_retry_after(tmp_path):
    root = tmp_path / "a"
    big = audio("big", 1 << 20) * 48  # 48 MiB: far more than loopback socket buffers hold
    stored = root / "big.wav"
    root.mkdir()
    stored.write_bytes(big)
    (root / "big.wav.json").write_text(json.dumps(manifest_for("big", "big.wav", big, big)))
    store(root, "small.wav", "small", b"small")
    app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]), max_in_flight=1)
    with serve_in_thread(app) as url:
        parts = urlsplit(url)
        slow = socket.create_connection((parts.hostname, parts.port), timeout=5)
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.sendall(f"GET /recordings/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            slow.recv(1024)  # the response started; the client then stops reading
            deadline = time.monotonic() + 10
            while app.in_flight < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert app.in_flight == 1
            r = httpx.get(url + "/recordings/small", headers=AUTH, timeout=5)
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["reason"] == "busy"
            assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # probes are never refused
        finally:
            slow.close()
        deadline = time.monotonic() + 10
        while app.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        r = httpx.get(url + "/recordings/small", headers=AUTH, timeout=5)
        assert r.status_code == 200 and r.content == b"small"


def test_serve_closes_connections_that_never_finish_their_request(tmp_path):
    store(tmp_path / "a", "r.wav", "r", b"hello")
    env = {**os.environ, TOKENS_ENV: TOKEN}
    cmd = [sys.executable, "-m", "voxpipe", "serve", str(tmp_path / "a"), "--port", "0", "--idle-timeout", "1",
           "--max-requests", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"at (http://127\.0\.0\.1:\d+)", proc.stdout.readline()).group(1)
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET /recordings/r HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            start = time.monotonic()
            assert sock.recv(1024) == b""  # the server hangs up
            assert time.monotonic() - start < 8
        r = httpx.get(url + "/recordings/r", headers=AUTH)
        assert r.content == b"hello" and hashlib.sha256(r.content).hexdigest() == r.headers["etag"].strip('"')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
        proc.wait()
