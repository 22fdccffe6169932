"""``voxpipe serve`` and ``voxpipe retention`` on an S3 archive (moto on loopback, boto3 over sockets).

Recordings are stored by the s3 sink (test_s3_sink's facts source: a call date, a
Genesys conversation id), then served through the same ArchiveApp as a directory
archive (ranged GETs streamed from S3) and pruned by retention, where S3 legal holds and
Object Lock retention keep recordings and Object Lock refuses what it protects.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import datetime, timedelta, timezone

import httpx
from click.testing import CliRunner

from voxpipe.cli import cli
from voxpipe.serving import serve_in_thread
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import BearerAuth
from voxpipe_archive.retention import RetentionPolicy
from voxpipe_archive.retention_store import run_storage_retention
from voxpipe_s3.archive import S3ArchiveStorage

from s3_env import object_bytes, open_uploads, s3, sink_yaml  # noqa: F401 (fixture)
from test_s3_sink import FactsPlugin, content, facts_pipeline, run

TOKEN = "t0ken-for-the-s3-archive-tests"
MiB = 1 << 20


def location(s3, bucket: str, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}?endpoint_url={s3.endpoint}&addressing_style=path&region=us-east-1"


def test_serve_streams_recordings_from_the_bucket(tmp_path, s3, register_plugin):
    bucket = s3.bucket("served")
    sizes = {"big": 6 * MiB + 12345, "small": 70_000}
    with register_plugin(FactsPlugin()):
        assert run(facts_pipeline(tmp_path / "s1", sink_yaml(s3.endpoint, bucket, prefix="calls/"), sizes)).ok
        assert run(facts_pipeline(tmp_path / "s2", sink_yaml(s3.endpoint, bucket, prefix="calls/", compress="gzip",
                                                             key="gz/{recording_id}.{format}"), {"zipped": 300_000})).ok
    storage = S3ArchiveStorage.from_location(location(s3, bucket, "calls/"))
    app = ArchiveApp(None, BearerAuth([TOKEN]), storage=storage)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        listing = http.get("/recordings").json()
        assert sorted(r["recording_id"] for r in listing["items"]) == ["big", "small", "zipped"]
        big = http.get("/recordings/big")
        assert big.status_code == 200 and big.content == content("big", sizes["big"])
        etag = big.headers["etag"]
        part = http.get("/recordings/big", headers={"range": "bytes=5242000-5243999"})
        assert part.status_code == 206 and part.content == content("big", sizes["big"])[5242000:5244000]
        assert part.headers["content-range"] == f"bytes 5242000-5243999/{sizes['big']}"
        assert http.get("/recordings/big", headers={"if-none-match": etag}).status_code == 304
        by_conversation = http.get("/archive/retrieve", params={"interactionId": "conv-small"})
        assert by_conversation.content == content("small", sizes["small"])
        zipped = http.get("/recordings/zipped")
        assert zipped.headers["content-type"] == "application/gzip"
        assert gzip.decompress(zipped.content) == content("zipped", 300_000)
        original = http.get("/recordings/zipped", params={"decompress": "1"})
        assert original.content == content("zipped", 300_000)
        assert httpx.get(f"{url}/recordings/big").status_code == 401  # auth as for a directory archive
        assert http.get("/recordings/nope").status_code == 404


def test_retention_deletes_only_what_holds_and_object_lock_allow(tmp_path, s3, register_plugin, monkeypatch):
    bucket = s3.bucket("worm-retention", lock=True)
    old, recent = "2015-03-01T08:00:00+00:00", datetime.now(timezone.utc).isoformat()
    with register_plugin(FactsPlugin()):
        # old, lock already over at upload (90 days from 2015): deletable
        assert run(facts_pipeline(tmp_path / "a", sink_yaml(s3.endpoint, bucket, object_lock={
            "mode": "COMPLIANCE", "days": 90}), {"expired": 50_000}, old)).ok
        # old date but on legal hold: kept
        assert run(facts_pipeline(tmp_path / "b", sink_yaml(s3.endpoint, bucket, legal_hold=True),
                                  {"held": 50_000}, old)).ok
        # old date, locked until 2035 (7300 days from 2015): kept; Object Lock would refuse anyway
        assert run(facts_pipeline(tmp_path / "c", sink_yaml(s3.endpoint, bucket, object_lock={
            "mode": "COMPLIANCE", "days": 7300}), {"locked": 50_000}, old)).ok
        # recent: too young
        assert run(facts_pipeline(tmp_path / "d", sink_yaml(s3.endpoint, bucket), {"fresh": 50_000}, recent)).ok
    client = s3.client()
    audit = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(cli, ["retention", location(s3, bucket), "--older-than", "365d", "--json",
                                      "--audit-log", str(audit)], env=dict(os.environ))
    assert result.exit_code == 0, result.output
    rows = {json.loads(line)["recording_id"]: json.loads(line) for line in result.stdout.splitlines()}
    assert rows["expired"]["outcome"] == "deleted"
    assert (rows["held"]["action"], rows["held"]["reason"]) == ("keep", "hold") and "S3 legal hold" in rows["held"]["detail"]
    assert rows["locked"]["reason"] == "hold" and "Object Lock COMPLIANCE until 2035" in rows["locked"]["detail"]
    assert rows["fresh"]["reason"] == "too-young"
    versions = client.list_object_versions(Bucket=bucket)
    remaining = {v["Key"] for v in versions.get("Versions", [])}
    assert not [k for k in remaining if "expired" in k]  # object and sidecar versions gone for good
    assert {k for k in remaining if "held" in k or "locked" in k or "fresh" in k} == remaining
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    intent = next(x for x in lines if x["event"] == "retention-intent")
    done = next(x for x in lines if x["event"] == "retention-delete")
    assert intent["recording_id"] == done["recording_id"] == "expired" and intent["intent_id"] == done["intent_id"]
    assert open_uploads(client, bucket) == []

    # a lock the survey cannot see (e.g. no s3:GetObjectRetention permission): Object Lock refuses
    storage = S3ArchiveStorage.from_location(location(s3, bucket))
    monkeypatch.setattr(storage, "hold", lambda entry: None)
    decisions, outcomes = run_storage_retention(storage, RetentionPolicy(timedelta(days=365)),
                                                datetime.now(timezone.utc), audit=None)
    by_id = {o.decision.recording_id: o for o in outcomes}
    assert not by_id["locked"].deleted and "refused by the store" in by_id["locked"].error
    assert "AccessDenied" in by_id["locked"].error
    assert object_bytes(client, bucket, [k for k in remaining if k.endswith("locked.wav")][0]) == content("locked", 50_000)
