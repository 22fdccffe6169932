"""The s3 sink against a real S3 protocol server (moto, ThreadedMotoServer) on loopback, boto3 over sockets.

Where moto departs from S3's documentation (shared reference, object-storage.md) the
test says what it cannot check: moto ignores Object Lock and legal hold given on
CreateMultipartUpload (the sink then applies them with PutObjectRetention /
PutObjectLegalHold and reads them back, which is what these tests see on multipart
objects), and it stores checksums sent with parts without verifying them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import trio

from voxpipe import hookimpl
from voxpipe.components import Source
from voxpipe.cli import run_error
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.facts import RecordingFacts
from voxpipe.manifest import parse_manifest
from voxpipe.model import Chunk, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe.settings import Settings, setting

from cxone_env import emulator, ids_of, recordings_dir
from s3_env import all_keys, cxone_pipeline, noise_wav, object_bytes, open_uploads, s3, sink_yaml  # noqa: F401 (fixture)
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

MiB = 1 << 20


def run(text: str):
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    return trio.run(Runner(cfg.pipeline(None)).run)


@pytest.fixture
def recordings(tmp_path):
    # the examples (single PUT) plus two recordings of several parts (5 MiB parts)
    d = recordings_dir(tmp_path)
    noise_wav(d / "9000.wav", 6_080_000, seed=1)  # 2 parts
    noise_wav(d / "9001.wav", 11_200_000, seed=2)  # 3 parts
    return d


def test_pipeline_stores_every_recording_byte_identical_with_sidecar(tmp_path, s3, recordings):
    bucket = s3.bucket("archive")
    ids = ids_of(recordings)
    with emulator(recordings) as (_, base):
        summary = run(cxone_pipeline(base, ids, tmp_path / "state",
                                     sink_yaml(s3.endpoint, bucket, prefix="calls/", key="{recording_id}.{format}")))
    assert summary.ok, [r.message for r in summary.failed]
    client = s3.client()
    for result in summary.results:
        (stored,) = result.stored
        source = next(recordings.glob(f"{result.id}.*")).read_bytes()
        body = object_bytes(client, bucket, stored["key"])
        assert body == source and stored["sha256"] == hashlib.sha256(source).hexdigest()
        assert stored["key"] == f"calls/{result.id}.{next(recordings.glob(result.id + '.*')).suffix[1:]}"
        sidecar_key = stored["key"] + ".json"
        manifest = parse_manifest(Path(sidecar_key), object_bytes(client, bucket, sidecar_key))
        assert (manifest.recording_id, manifest.stored_size, manifest.stored_sha256) == \
            (result.id, len(source), hashlib.sha256(source).hexdigest())
        assert manifest.original_sha256 == hashlib.sha256(source).hexdigest()
        head = client.head_object(Bucket=bucket, Key=stored["key"], ChecksumMode="ENABLED")
        assert head["Metadata"]["voxpipe-recording-id"] == result.id
        assert stored["parts"] == max(1, -(-len(source) // (5 * MiB)) if len(source) >= 5 * MiB else 1)
    assert {r.id: r.stored[0]["parts"] for r in summary.results}["9001"] == 3
    assert open_uploads(client, bucket) == []
    assert not [k for k in all_keys(client, bucket) if "/.voxpipe/" in k]  # journal entries removed
    assert s3.calls["upload_part"] == 2 + 3 and s3.calls["complete_multipart_upload"] == 2


def test_gzip_objects_gunzip_to_the_source(tmp_path, s3, recordings):
    bucket = s3.bucket("gz-archive")
    ids = ["9001", "100001", "100003"]
    with emulator(recordings) as (_, base):
        summary = run(cxone_pipeline(base, ids, tmp_path / "state",
                                     sink_yaml(s3.endpoint, bucket, compress="auto", level=1)))
    assert summary.ok, [r.message for r in summary.failed]
    client = s3.client()
    by_id = {r.id: r.stored[0] for r in summary.results}
    assert by_id["9001"]["key"].endswith(".wav.gz") and by_id["100003"]["key"].endswith(".mp3")  # auto: mp3 as is
    for rid in ("9001", "100001"):
        body = object_bytes(client, bucket, by_id[rid]["key"])
        assert gzip.decompress(body) == (recordings / f"{rid}.wav").read_bytes()
        assert hashlib.sha256(body).hexdigest() == by_id[rid]["sha256"]
        doc = json.loads(object_bytes(client, bucket, by_id[rid]["key"] + ".json"))
        assert doc["compression"] == "gzip:isal:1" or doc["compression"] == "gzip:zlib:1"


def test_existing_key_is_never_overwritten(tmp_path, s3, recordings):
    bucket = s3.bucket("no-overwrite")
    ids = ["9000", "100001"]
    sink = sink_yaml(s3.endpoint, bucket, key="{recording_id}.{format}")
    with emulator(recordings) as (_, base):
        first = run(cxone_pipeline(base, ids, tmp_path / "state1", sink))
        assert first.ok
        client = s3.client()
        before = {k: client.head_object(Bucket=bucket, Key=k)["ETag"] for k in all_keys(client, bucket)}
        # a fresh ledger (another machine): identical content counts as already stored
        again = run(cxone_pipeline(base, ids, tmp_path / "state2", sink))
        assert again.ok, [r.message for r in again.failed]
        assert all(r.stored[0]["already_stored"] for r in again.results)
        # the source now has different bytes under the same ids: refused, nothing touched
        for rid in ids:
            noise_wav(recordings / f"{rid}.wav", 6_080_000 if rid == "9000" else 48_000, seed=99)
    with emulator(recordings) as (_, base):
        changed = run(cxone_pipeline(base, ids, tmp_path / "state3", sink))
    assert not changed.ok and {r.reason for r in changed.results} == {"exists"}
    assert all("already exists with different content" in r.message and "s3://no-overwrite/" in r.message
               for r in changed.results)
    after = {k: client.head_object(Bucket=bucket, Key=k)["ETag"] for k in all_keys(client, bucket)}
    assert after == before
    assert open_uploads(client, bucket) == []  # the refused upload was aborted


# ------------------------------------------------------------------ facts (dates, Genesys ids)


class FactsSettings(Settings):
    sizes: dict[str, int] = setting(description="Bytes per recording id.")
    started_at: str = setting("2024-01-15T10:30:00+00:00", description="Call start of every recording.")
    wrong_sha256: list[str] = setting([], description="Ids whose metadata announces a wrong SHA-256.")


class FactsSource(Source):
    """Test source with the platform facts a Genesys source reports."""

    type = "facts-memory"
    Settings = FactsSettings
    resumable = True

    async def discover(self):
        started = datetime.fromisoformat(self.settings.started_at)
        for rid in self.settings.sizes:
            metadata = {"format": "wav"}
            if rid in self.settings.wrong_sha256:
                metadata["sha256"] = "0" * 64
            yield StreamSpec(rid, metadata, RecordingFacts(started_at=started, org_id="org-7",
                                                                     conversation_id=f"conv-{rid}"))

    async def read(self, stream):
        data = content(stream.id, self.settings.sizes[stream.id])
        for offset in range(stream.resume_offset, len(data), 1 << 20):
            yield Chunk(offset, data[offset:offset + (1 << 20)])


def content(rid: str, size: int) -> bytes:
    block = hashlib.sha256(rid.encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


class FactsPlugin:
    @hookimpl
    def register_sources(self, register):
        register(FactsSource)


def facts_pipeline(state, sink: str, sizes: dict[str, int], started_at: str = "2024-01-15T10:30:00+00:00",
                   wrong_sha256: tuple[str, ...] = ()) -> str:
    return f"""
pipelines:
  facts:
    state_dir: {state}
    source:
      type: facts-memory
      sizes: {json.dumps(sizes)}
      started_at: "{started_at}"
      wrong_sha256: {json.dumps(list(wrong_sha256))}
    verifiers:
      - type: sha256
    sinks:
      - type: s3
{textwrap.indent(textwrap.dedent(sink).strip(), " " * 8)}
"""


def test_object_lock_and_legal_hold_from_the_recording_date(tmp_path, s3, register_plugin):
    bucket = s3.bucket("worm", lock=True)
    sizes = {"small": 100_000, "large": 6 * MiB}
    sink = sink_yaml(s3.endpoint, bucket, object_lock={"mode": "COMPLIANCE", "days": 3650}, legal_hold=True)
    with register_plugin(FactsPlugin()):
        summary = run(facts_pipeline(tmp_path / "state", sink, sizes))
    assert summary.ok, [r.message for r in summary.failed]
    client = s3.client()
    until = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc) + timedelta(days=3650)  # not upload time + 3650
    for result in summary.results:
        stored = result.stored[0]
        # "small" went up with one PutObject, where moto applies the lock itself; "large" is
        # a multipart upload: moto ignores the lock headers the sink sends on
        # CreateMultipartUpload (S3 applies them), so what is checked there is the sink's
        # read-back and its PutObjectRetention/PutObjectLegalHold fallback.
        head = client.head_object(Bucket=bucket, Key=stored["key"])
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] == until
        assert head["ObjectLockLegalHoldStatus"] == "ON"
        side = client.head_object(Bucket=bucket, Key=stored["key"] + ".json")
        assert side["ObjectLockMode"] == "COMPLIANCE" and side["ObjectLockLegalHoldStatus"] == "ON"
        doc = json.loads(object_bytes(client, bucket, stored["key"] + ".json"))
        assert doc["object_lock"] == {"mode": "COMPLIANCE", "retain_until": "2034-01-12T10:30:00Z", "legal_hold": "ON"}
        with pytest.raises(Exception) as refused:  # WORM: the locked version cannot be deleted
            client.delete_object(Bucket=bucket, Key=stored["key"], VersionId=stored["version_id"],
                                 BypassGovernanceRetention=True)
        assert "AccessDenied" in str(refused.value)
        assert object_bytes(client, bucket, stored["key"]) == content(result.id, sizes[result.id])


def test_object_lock_on_a_bucket_without_it_fails_before_any_download(tmp_path, s3, recordings):
    bucket = s3.bucket("no-lock")
    with emulator(recordings) as (emu, base):
        summary = None
        with pytest.raises(Exception) as err:
            summary = run(cxone_pipeline(base, ["100001"], tmp_path / "state",
                                         sink_yaml(s3.endpoint, bucket, object_lock={"mode": "GOVERNANCE", "days": 1})))
        assert summary is None
        assert emu.stats.bytes_served() == 0
    message = str(run_error(err.value))
    assert "object_lock is set but bucket 'no-lock' does not have Object Lock enabled" in message


def test_missing_bucket_is_reported_before_any_download(tmp_path, s3, recordings):
    with emulator(recordings) as (emu, base):
        with pytest.raises(Exception) as err:
            run(cxone_pipeline(base, ["100001"], tmp_path / "state", sink_yaml(s3.endpoint, "not-there")))
        assert emu.stats.bytes_served() == 0
    assert "bucket 'not-there' cannot be used" in str(run_error(err.value))


def test_genesys_export_layout(tmp_path, s3, register_plugin):
    bucket = s3.bucket("genesys-export")
    sink = sink_yaml(s3.endpoint, bucket, layout="genesys-export", prefix="exports/")
    with register_plugin(FactsPlugin()):
        summary = run(facts_pipeline(tmp_path / "state", sink, {"r-1": 1000}, "2024-02-03T04:05:06+00:00"))
    assert summary.ok, [r.message for r in summary.failed]
    prefix = "exports/org-7/year=2024/month=2/day=3/hour=4/conversation_id=conv-r-1/"
    assert all_keys(s3.client(), bucket) == [prefix + "r-1", prefix + "r-1_metadata.json"]
    doc = json.loads(object_bytes(s3.client(), bucket, prefix + "r-1_metadata.json"))
    assert doc["facts"]["conversation_id"] == "conv-r-1" and doc["stored_size"] == 1000


def test_example_pipeline_archives_every_example_recording_locked(tmp_path, s3):
    """examples/cxone-to-s3.yaml as shipped, against the CXone emulator and a bucket with Object Lock."""
    from voxpipe.config import load_config

    bucket = s3.bucket("call-archive", lock=True)
    recordings = recordings_dir(tmp_path)
    with emulator(recordings) as (_, base):
        environ = {**os.environ, "CXONE_API_BASE": base, "CXONE_TOKEN_URL": f"{base}/oauth/token",
                   "CXONE_CLIENT_ID": DEMO_CLIENT_ID, "CXONE_CLIENT_SECRET": DEMO_CLIENT_SECRET,
                   "S3_ENDPOINT_URL": s3.endpoint, "VOXPIPE_STATE_DIR": str(tmp_path / "state")}
        example = Path(__file__).resolve().parent.parent / "examples" / "cxone-to-s3.yaml"
        config = load_config(example, get_registry(), environ=environ)
        summary = trio.run(Runner(config.pipeline(None)).run)
    assert summary.ok and len(summary.results) == 6, [r.message for r in summary.failed]
    report = json.loads(summary.report_paths[0].read_text())  # the compliance report names each object
    paths = json.dumps(report)
    assert all(f"s3://call-archive/cxone/" in paths and r.stored[0]["url"] in paths for r in summary.results)
    client = s3.client()
    for result in summary.results:
        stored = result.stored[0]
        source = next(recordings.glob(f"{result.id}.*"))
        body = object_bytes(client, bucket, stored["key"])
        assert (gzip.decompress(body) if stored["key"].endswith(".gz") else body) == source.read_bytes()
        assert stored["key"].startswith("cxone/") and stored["key"].endswith(".wav.gz") == (source.suffix == ".wav")
        head = client.head_object(Bucket=bucket, Key=stored["key"])
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc)
        doc = json.loads(object_bytes(client, bucket, stored["key"] + ".json"))
        assert doc["original_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert [v["verifier"] for v in doc["verdicts"]] == ["sha256", "audio-format"]


def test_a_failed_verification_aborts_the_upload_and_stores_nothing(tmp_path, s3, register_plugin):
    bucket = s3.bucket("verified-only")
    sizes = {"good": 6 * MiB, "bad": 11 * MiB, "bad-small": 1000}
    with register_plugin(FactsPlugin()):
        summary = run(facts_pipeline(tmp_path / "state", sink_yaml(s3.endpoint, bucket), sizes,
                                     wrong_sha256=("bad", "bad-small")))
    by_id = {r.id: r for r in summary.results}
    assert by_id["good"].ok and not by_id["bad"].ok and by_id["bad"].reason == "sha256-mismatch"
    client = s3.client()
    assert [k for k in all_keys(client, bucket) if "bad" in k] == []  # nothing under a final key
    assert s3.calls["upload_part"] >= 3  # the bad recording's parts went up before its verdict...
    assert s3.calls["abort_multipart_upload"] == 1  # ...and its upload was aborted
    assert open_uploads(client, bucket) == [] and not [k for k in all_keys(client, bucket) if ".voxpipe/" in k]


def test_uploads_command_lists_and_aborts_only_the_sinks_own_uploads(tmp_path, s3, register_plugin):
    from click.testing import CliRunner

    from voxpipe.cli import cli
    from voxpipe.components import PipelineContext
    from voxpipe.model import Stream
    from voxpipe_s3.settings import S3SinkSettings
    from voxpipe_s3.sink import S3Sink

    bucket = s3.bucket("stale-uploads")
    client = s3.client()
    foreign = client.create_multipart_upload(Bucket=bucket, Key="calls/other-tool.bin")["UploadId"]
    settings = S3SinkSettings(bucket=bucket, endpoint_url=s3.endpoint, addressing_style="path", region="us-east-1",
                              prefix="calls/", part_size=5 * MiB)
    sink = S3Sink(settings, PipelineContext(pipeline="nightly", state_dir=tmp_path))

    async def abandoned_upload():  # a writer that stored a part, then its process died
        stream = Stream(StreamSpec("r-1", {"format": "wav"}), source="memory", pipeline="nightly", audit=None)
        writer = await sink.begin(stream)
        await writer.write(Chunk(0, content("r-1", 6 * MiB)))
        return writer.upload_id

    ours = trio.run(abandoned_upload)
    config = tmp_path / "p.yaml"
    config.write_text(facts_pipeline(tmp_path / "state", sink_yaml(s3.endpoint, bucket, prefix="calls/"), {"x": 1})
                      .replace("  facts:", "  nightly:"))
    with register_plugin(FactsPlugin()):
        listed = CliRunner().invoke(cli, ["s3", "uploads", "-c", str(config), "--json"], env=dict(os.environ))
        assert listed.exit_code == 0, listed.output
        assert [json.loads(line)["upload_id"] for line in listed.stdout.splitlines()] == [ours]
        aborted = CliRunner().invoke(cli, ["s3", "uploads", "-c", str(config), "--abort-older-than", "0"],
                                     env=dict(os.environ))
    assert aborted.exit_code == 0 and "aborted" in aborted.output and "other-tool" not in aborted.output
    assert [u["UploadId"] for u in open_uploads(client, bucket)] == [foreign]  # another tool's upload untouched
    assert not [k for k in all_keys(client, bucket) if ".voxpipe/" in k]


def test_a_read_back_mismatch_fails_the_recording_and_removes_the_object(tmp_path, s3, register_plugin, monkeypatch):
    """The store answers HeadObject with another size than was sent (as a faulty S3-compatible
    store might; moto itself never does, so its answer is altered on the way back)."""
    from voxpipe_s3.sink import S3Sink

    class LyingClient:
        def __init__(self, client):
            self._client = client

        def __getattr__(self, name):
            return getattr(self._client, name)

        def head_object(self, **kwargs):
            head = self._client.head_object(**kwargs)
            if kwargs.get("ChecksumMode") and not kwargs["Key"].endswith(".json"):
                head["ContentLength"] += 1
            return head

    real = S3Sink.client
    monkeypatch.setattr(S3Sink, "client", property(lambda sink: LyingClient(real.fget(sink))))
    bucket = s3.bucket("read-back")
    with register_plugin(FactsPlugin()):
        summary = run(facts_pipeline(tmp_path / "state", sink_yaml(s3.endpoint, bucket), {"r": 6 * MiB}))
    (result,) = summary.results
    assert not result.ok and result.reason == "verify-failed"
    assert f"size {6 * MiB + 1} bytes, sent {6 * MiB}" in result.message and "the object was deleted" in result.message
    assert all_keys(s3.client(), bucket) == [] and open_uploads(s3.client(), bucket) == []


def test_orphan_cleanup_aborts_only_uploads_no_live_writer_can_own(tmp_path, s3):
    import subprocess
    import sys

    from voxpipe.components import PipelineContext
    from voxpipe.model import Stream
    from voxpipe_s3.settings import S3SinkSettings
    from voxpipe_s3.sink import S3Sink

    bucket = s3.bucket("orphans")
    client = s3.client()
    settings = S3SinkSettings(bucket=bucket, endpoint_url=s3.endpoint, addressing_style="path", region="us-east-1",
                              part_size=5 * MiB)
    sink = S3Sink(settings, PipelineContext(pipeline="nightly", state_dir=tmp_path))

    async def upload(rid: str) -> str:
        stream = Stream(StreamSpec(rid, {"format": "wav"}), source="memory", pipeline="nightly", audit=None)
        writer = await sink.begin(stream)
        await writer.write(Chunk(0, content(rid, 5 * MiB)))
        return writer.upload_id

    crashed, live, held = (trio.run(upload, rid) for rid in ("crashed", "live", "held"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for entry in client.list_objects_v2(Bucket=bucket, Prefix=".voxpipe/uploads/")["Contents"]:
        doc = json.loads(object_bytes(client, bucket, entry["Key"]))
        if doc["upload_id"] == crashed:  # its process died (this host): abandoned at once
            doc["pid"] = int(dead.stdout)
            client.put_object(Bucket=bucket, Key=entry["Key"], Body=json.dumps(doc).encode())
    removed = sink.cleanup_orphans([{"upload_id": held}])
    assert len(removed) == 1 and "crashed" in removed[0] and crashed in removed[0]
    # "live": its writer's process (this one) still runs and no checkpoint holds it yet: kept
    assert {u["UploadId"] for u in open_uploads(client, bucket)} == {live, held}


def test_check_connect_reports_the_bucket_and_its_object_lock_without_writing(tmp_path, s3, recordings):
    """voxpipe check --connect: a locked bucket passes, the same sink on a bucket without
    Object Lock fails with the reason (exit 1), and nothing is written to either."""
    from click.testing import CliRunner

    from voxpipe.cli import cli

    locked, plain = s3.bucket("checked-locked", lock=True), s3.bucket("checked-plain")
    lock = {"mode": "GOVERNANCE", "days": 1}
    with emulator(recordings) as (emu, base):
        results = {}
        for bucket in (locked, plain):
            config = tmp_path / f"{bucket}.yaml"
            config.write_text(textwrap.dedent(cxone_pipeline(base, ["100001"], tmp_path / "state",
                                                             sink_yaml(s3.endpoint, bucket, object_lock=lock))))
            results[bucket] = CliRunner().invoke(cli, ["check", "--connect", str(config)],
                                                 env={"CXONE_SECRET": DEMO_CLIENT_SECRET})
        assert emu.stats.bytes_served() == 0
    ok, bad = results[locked], results[plain]
    assert ok.exit_code == 0, ok.output
    assert f"s3://{locked} reachable, Object Lock enabled" in ok.output
    assert bad.exit_code == 1, bad.output
    assert f"bucket '{plain}' does not have Object Lock enabled" in bad.output
    client = s3.client()
    assert all_keys(client, locked) == [] and all_keys(client, plain) == []
