"""A real S3 protocol server on loopback for tests: moto's ThreadedMotoServer, boto3 over real sockets.

The server runs in a thread of the test process, so tests can count the requests it
serves (``S3Server.calls``: UploadPart, CompleteMultipartUpload... made by any process,
e.g. a ``voxpipe run`` subprocess) by wrapping moto's backend methods.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import hashlib
import json
import os
import random
import textwrap
import threading
import urllib.request
import wave
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from moto.s3.models import S3Backend
from moto.server import ThreadedMotoServer

#: Fake credentials: moto checks none, the standard chain reads them from the environment.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID

COUNTED = ("upload_part", "create_multipart_upload", "complete_multipart_upload", "abort_multipart_upload")


class S3Server:
    """A running moto server: ``endpoint`` URL, ``client()`` and per-operation call counts."""

    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._originals: dict[str, Any] = {}

    def __enter__(self) -> "S3Server":
        for name in COUNTED:
            original = getattr(S3Backend, name)
            self._originals[name] = original

            def counted(backend, *args, _name=name, _original=original, **kwargs):
                with self._lock:
                    self.calls[_name] += 1
                return _original(backend, *args, **kwargs)

            setattr(S3Backend, name, functools.wraps(original)(counted))
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto keeps its buckets in process-wide state: each server starts empty
        urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"), timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop()
        for name, original in self._originals.items():
            setattr(S3Backend, name, original)

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
                            config=Config(s3={"addressing_style": "path"}))

    def bucket(self, name: str, *, lock: bool = False) -> str:
        self.client().create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if lock else {}))
        return name


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


def aws_environ(monkeypatch) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


def object_bytes(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def gunzip_sha256(data: bytes) -> str:
    return hashlib.sha256(gzip.decompress(data)).hexdigest()


def all_keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def open_uploads(client: Any, bucket: str) -> list[dict]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@pytest.fixture
def s3(monkeypatch):
    """A fresh moto server for one test, with the AWS chain pointed at fake credentials."""
    aws_environ(monkeypatch)
    with s3_server() as server:
        yield server


def noise_wav(path: Path, nbytes: int, seed: int) -> bytes:
    """A PCM16 mono 8 kHz WAV of ``nbytes`` bytes of random samples (fast to make); returns its bytes."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(random.Random(seed).randbytes(nbytes - nbytes % 2))
    return path.read_bytes()


def sink_yaml(endpoint: str, bucket: str, **extra: Any) -> str:
    """An s3 sink's settings for the loopback server (5 MiB parts), plus ``extra`` ones."""
    lines = [f"bucket: {bucket}", f"endpoint_url: {endpoint}", "addressing_style: path", "region: us-east-1",
             "part_size: 5242880"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines)


def cxone_pipeline(base: str, ids: list[str], state: Path, sink: str, *, concurrency: int = 3,
                   checkpoint: int = 2 << 20, extra_sinks: str = "") -> str:
    """Pipeline YAML: the CXone emulator at ``base`` -> sha256 -> the s3 sink ``sink`` (and ``extra_sinks``)."""
    return f"""
pipelines:
  s3:
    concurrency: {concurrency}
    state_dir: {state}
    checkpoint_bytes: {checkpoint}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {DEMO_CLIENT_ID}
      client_secret: ${{CXONE_SECRET}}
      recordings: {json.dumps(ids)}
      chunk_size: 262144
    verifiers:
      - type: sha256
    sinks:
      - type: s3
{textwrap.indent(textwrap.dedent(sink).strip(), " " * 8)}
{textwrap.indent(textwrap.dedent(extra_sinks).strip(), " " * 6)}
"""
