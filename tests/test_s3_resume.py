"""kill -9 in the middle of multipart uploads, then the same command again (as from another
machine: only the ledger and the bucket carry over): every recording stored once and
complete, no part stored by the first run uploaded again, no upload left open.

The moto server runs in this process and counts the UploadPart requests it serves
(s3_env.S3Server.calls), whichever process sends them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cxone_env import emulator
from s3_env import (AWS_ENV, all_keys, aws_environ, cxone_pipeline, noise_wav, object_bytes, open_uploads, s3_server,
                    sink_yaml)
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET

def voxpipe(*args: str) -> subprocess.Popen:
    env = {**os.environ, **AWS_ENV, "CXONE_SECRET": DEMO_CLIENT_SECRET}
    return subprocess.Popen([sys.executable, "-m", "voxpipe", "-q", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("compress,with_files", [("none", False), ("gzip", False), ("none", True)],
                         ids=["plain", "gzip", "plain+gzip-file-sink"])
def test_sigkill_mid_upload_then_rerun_reuses_stored_parts(tmp_path, monkeypatch, compress, with_files):
    aws_environ(monkeypatch)
    recs = tmp_path / "recordings"
    recs.mkdir()
    ids = [str(8000 + i) for i in range(4)]
    sources = {rid: noise_wav(recs / f"{rid}.wav", 13_000_000 + i * 700_000, seed=i) for i, rid in enumerate(ids)}
    config = tmp_path / "pipeline.yaml"
    with s3_server() as s3, emulator(recs) as (emu, base):
        bucket = s3.bucket("resume-archive")
        client = s3.client()
        files = tmp_path / "files" if with_files else None
        # with ``files``, a gzip file sink too: it resumes from the ledger's offset while the
        # s3 sink asks for byte 0, so the engine reads from 0 and skips what the file holds
        extra = f"- type: gzip\n  dir: {files}\n  level: 1" if files else ""
        sink = sink_yaml(s3.endpoint, bucket, prefix="calls/", key="{recording_id}.{format}", compress=compress,
                         level=1)
        config.write_text(cxone_pipeline(base, ids, tmp_path / "state", sink, checkpoint=1 << 20, extra_sinks=extra))
        first = voxpipe("run", "--no-progress", str(config))
        deadline = time.monotonic() + 90
        # kill once a few parts are stored and before any object is complete
        while s3.calls["upload_part"] < 4 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(1.0)  # a part request the server had fully received when the client died is still stored
        assert s3.calls["complete_multipart_upload"] == 0, "the first run completed an object before the kill"
        uploads = open_uploads(client, bucket)
        stored_at_kill = {u["UploadId"]: len(client.list_parts(Bucket=bucket, Key=u["Key"],
                                                               UploadId=u["UploadId"]).get("Parts", []))
                          for u in uploads}
        assert sum(stored_at_kill.values()) >= 3
        # the listing shows what the dead run left open (it created them: journal entries)
        listing = voxpipe("s3", "uploads", "-c", str(config), "--json")
        out, err = listing.communicate(timeout=60)
        rows = [json.loads(line) for line in out.splitlines()]
        assert {r["upload_id"] for r in rows} == set(stored_at_kill) and listing.returncode == 0, err

        before = s3.calls["upload_part"]
        second = voxpipe("run", "--no-progress", str(config))
        stdout, stderr = second.communicate(timeout=180)
        assert second.returncode == 0, stderr
        uploaded_again = s3.calls["upload_part"] - before

        # every recording stored once, complete and byte-identical (after gunzip)
        keys = all_keys(client, bucket)
        suffix = ".gz" if compress == "gzip" else ""
        assert keys == sorted([f"calls/{rid}.wav{suffix}" for rid in ids] + [f"calls/{rid}.wav{suffix}.json" for rid in ids])
        total_parts = 0
        for rid, source in sources.items():
            body = object_bytes(client, bucket, f"calls/{rid}.wav{suffix}")
            assert (gzip.decompress(body) if suffix else body) == source
            doc = json.loads(object_bytes(client, bucket, f"calls/{rid}.wav{suffix}.json"))
            # the sha256 verifier saw every byte, the re-read prefix included
            assert doc["original_sha256"] == hashlib.sha256(source).hexdigest()
            assert doc["stored_sha256"] == hashlib.sha256(body).hexdigest()
            total_parts += doc["parts"]
        # stored parts were not uploaded again: the second run sent exactly the missing ones
        assert uploaded_again == total_parts - sum(stored_at_kill.values())
        assert open_uploads(client, bucket) == []
        assert not [k for k in keys if "/.voxpipe/" in k]
        if files is not None:
            for rid, source in sources.items():
                assert gzip.decompress((files / f"{rid}.wav.gz").read_bytes()) == source
            assert not [p for p in files.iterdir() if p.name.endswith(".part")]
