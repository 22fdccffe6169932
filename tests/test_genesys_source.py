"""The genesys source against the emulator, through whole pipelines into the gzip sink."""

from __future__ import annotations

import re

import gzip
import hashlib
import json
import os
import time
from pathlib import Path



from voxpipe.audit import read_audit
from voxpipe_genesys.emulator.catalogue import derived_id

from genesys_helpers import ALL, emulator, make_recordings, pipeline_yaml, run_yaml

REPO = Path(__file__).resolve().parents[1]


def rid(name: str) -> str:
    return derived_id("recording", name)


def stored(archive: Path, recording_id: str) -> tuple[bytes, dict]:
    [path] = list(archive.glob(f"{recording_id}.*.gz"))
    return gzip.decompress(path.read_bytes()), json.loads(Path(str(path) + ".json").read_text())


def test_interval_archive_with_pagination_not_ready_jobs_and_checksums(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", not_ready_polls=3, checksums=True) as (url, app):
        summary, runner = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            page_size: 2
            batch_size: 4
            checksum_field: checksum
        """))
    assert summary.ok, [(r.id, r.message) for r in summary.failed]
    assert len(summary.results) == 6
    assert app.stats.requests["analytics-query"] == 3  # 5 conversations, 2 per page
    assert app.stats.requests["batch-submit"] == 2  # 6 recordings, 4 per job
    assert app.stats.requests["batch-status"] >= 2 * 4  # each job answered 3 incomplete polls first
    for name, data in originals.items():
        body, manifest = stored(archive, rid(name))
        assert body == data, name
        assert manifest["format"] == "wav" and manifest["original_sha256"] == hashlib.sha256(data).hexdigest()
        meta = manifest["metadata"]
        assert meta["recordingId"] == rid(name)
        assert meta["conversationId"] == derived_id("conversation", name.split("__")[0].removesuffix(".wav"))
        assert meta["date"].startswith("2026-11-0") and meta["contentType"] == "audio/wav"
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        assert not any("signature" in json.dumps(v) or "/media/" in json.dumps(v) for v in meta.values())
    big = next(r for r in summary.results if r.id == rid("call-b.wav"))
    assert big.bytes > 3 * 65536
    audit = read_audit(archive / ".state" / "audit.jsonl")
    segments = [e for e in audit if e["event"] == "segment" and e["stream"] == rid("call-b.wav")]
    assert len(segments) >= 4 and all(e["status"] == 206 for e in segments)
    text = (archive / ".state" / "audit.jsonl").read_text()
    assert "signature=" not in text and "emulator-secret" not in text


def test_interval_selects_only_its_conversations_and_explicit_ids_add_theirs(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    # conversations start every 13 h from 2026-11-01T08:00Z: a, b (21:00) in this interval; d explicitly
    with emulator(tmp_path / "rec") as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: 2026-11-01T00:00:00Z/2026-11-02T00:00:00Z
            conversations: [{derived_id("conversation", "call-d")}]
        """))
    assert summary.ok
    assert sorted(r.id for r in summary.results) == sorted(rid(n) for n in ("call-a.wav", "call-b.wav", "call-d.wav"))
    body, manifest = stored(archive, rid("call-d.wav"))
    assert body == originals["call-d.wav"]
    assert manifest["metadata"]["date"] == "2026-11-02T23:00:00.000Z"  # looked up for an explicit id


def test_failed_batch_result_fails_only_that_recording(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", fail_recordings=frozenset({"call-c.wav"}), archived=frozenset({"call-d.wav"})) \
            as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"interval: {ALL}"))
    by_id = {r.id: r for r in summary.results}
    failed = by_id[rid("call-c.wav")]
    assert not failed.ok and failed.reason == "batch-result-error"
    assert "Failed to transcode recording" in failed.message and rid("call-c.wav") in failed.message
    archived = by_id[rid("call-d.wav")]
    assert archived.reason == "archived" and "fileState ARCHIVED" in archived.message
    assert "restore it in Genesys Cloud" in archived.message
    assert not list(archive.glob(f"{rid('call-c.wav')}*")) and not list(archive.glob(f"{rid('call-d.wav')}*"))
    for name in ("call-a.wav", "call-b.wav", "call-e__agent.wav", "call-e__customer.wav"):
        assert by_id[rid(name)].ok
        assert stored(archive, rid(name))[0] == originals[name]


def test_429s_with_retry_after_are_retried_and_slow_the_source(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", p429=0.3, retry_after=0, seed=7) as (url, app):
        summary, runner = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            page_size: 2
        """))
    assert summary.ok, [(r.id, r.message) for r in summary.failed]
    assert app.stats.injected_429 >= 5
    assert runner.source.limiter.budget.rate_limited >= 1  # API 429s reached the limiter
    for name, data in originals.items():
        assert stored(archive, rid(name))[0] == data


def test_retry_after_is_honoured_and_the_rate_limit_respected(tmp_path):
    make_recordings(tmp_path / "rec")
    with emulator(tmp_path / "rec", rate_limit=4, rate_window=1.0) as (url, app):
        start = time.monotonic()
        summary, runner = run_yaml(pipeline_yaml(url, tmp_path / "a", source=f"""
            conversations: [{derived_id("conversation", "call-a")}, {derived_id("conversation", "call-c")}]
            max_requests_per_minute: 600
        """))
        elapsed = time.monotonic() - start
    # 1 lookup + 2 metadata + 1 submit + >= 1 poll = 5+ API calls, the emulator allows 4 per second per token:
    # the fifth is answered 429 with Retry-After and waited for (not skipped)
    assert summary.ok
    assert app.stats.rate_limited >= 1
    assert runner.source.limiter.budget.limit < 600  # the 429 halved the budget
    assert elapsed >= 1.0


def test_checksum_mismatch_fails_via_sha256_verifier(tmp_path):
    make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", checksums=True, bad_checksums=frozenset({"call-a.wav"})) as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            checksum_field: checksum
        """))
    by_id = {r.id: r for r in summary.results}
    bad = by_id[rid("call-a.wav")]
    assert bad.reason == "sha256-mismatch" and rid("call-a.wav") in bad.message
    assert not list(archive.glob(f"{rid('call-a.wav')}*"))
    assert sum(r.ok for r in summary.results) == 5


def test_expired_result_url_is_renewed(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", expire_once=frozenset({"call-b.wav"})) as (url, app):
        summary, runner = run_yaml(pipeline_yaml(url, archive, source=f"interval: {ALL}"))
    assert summary.ok, [(r.id, r.message) for r in summary.failed]
    assert runner.source.stats["renewals"] == 1
    assert stored(archive, rid("call-b.wav"))[0] == originals["call-b.wav"]


def test_unknown_conversation_and_bad_credentials(tmp_path):
    make_recordings(tmp_path / "rec")
    with emulator(tmp_path / "rec") as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, tmp_path / "a", source="conversations: [no-such-conversation]"))
        [result] = summary.results
        assert result.id == "no-such-conversation" and result.reason == "http-404"
        assert "conversation no-such-conversation" in result.message
        text = pipeline_yaml(url, tmp_path / "b", source=f"interval: {ALL}").replace("emulator-secret", "wrong-secret")
        summary, _ = run_yaml(text)  # no token: discovery itself fails; the run reports it
        assert not summary.ok and summary.results == []
        assert re.search(r"genesys discovery failed: .*token request failed .*HTTP 401.*: client authentication failed "
                         r"\(code invalid_client\)",
                         summary.discovery_error)
        assert "wrong-secret" not in summary.discovery_error


def test_example_pipeline_archives_every_recording_byte_identically(tmp_path):
    source_dir = REPO / "examples" / "recordings"
    if not source_dir.is_dir() or not any(source_dir.iterdir()):
        source_dir = tmp_path / "rec"
        make_recordings(source_dir)
    files = {p.name: p.read_bytes() for p in source_dir.iterdir()
             if p.suffix.lower() in (".wav", ".mp3", ".ogg", ".opus", ".webm")}
    archive = tmp_path / "archive"
    with emulator(source_dir, checksums=True) as (url, _):
        env = {**os.environ, "GENESYS_API_BASE": url, "GENESYS_LOGIN_BASE": url,
               "GENESYS_CLIENT_ID": "voxpipe-emulator", "GENESYS_CLIENT_SECRET": "emulator-secret",
               "GENESYS_INTERVAL": ALL, "VOXPIPE_ARCHIVE_DIR": str(archive),
               "GENESYS_POLL_INTERVAL": "0.05"}
        env.pop("GENESYS_REGION", None)
        summary, _ = run_yaml((REPO / "examples" / "genesys-archive.yaml").read_text(), env)
    assert summary.ok and len(summary.results) == len(files)
    for name, data in files.items():
        [path] = list(archive.glob(f"{rid(name)}.*.gz"))
        assert gzip.decompress(path.read_bytes()) == data, name
    # the run's compliance report lists every recording, stored, with its SHA-256
    report_json, report_csv = summary.report_paths
    report = json.loads(report_json.read_text())
    assert report["totals"]["stored"] == len(files) and report["totals"]["failed"] == 0
    by_id = {entry["id"]: entry for entry in report["sources"]["genesys"]["recordings"]}
    for name, data in files.items():
        entry = by_id[rid(name)]
        assert entry["status"] == "ok" and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(report_csv.read_text().strip().splitlines()) >= len(files) + 1


def test_format_id_fetches_each_recording_after_202s(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", not_ready_polls=2) as (url, app):
        summary, runner = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            format_id: WAV
        """))
        assert summary.ok, [(r.id, r.message) for r in summary.failed]
        assert app.stats.requests["recording"] == 3 * 6 and "batch-submit" not in app.stats.requests
        for name, data in originals.items():
            assert stored(archive, rid(name))[0] == data
        # a format the server cannot produce fails each recording with the API's reason
        summary, _ = run_yaml(pipeline_yaml(url, tmp_path / "mp3", source=f"""
            conversations: [{derived_id("conversation", "call-a")}]
            format_id: MP3
        """))
    [result] = summary.results
    assert result.reason == "http-400" and "formatId MP3 is not available" in result.message
