"""Whole pipelines against the CXone emulator over real loopback sockets, with faults on."""

from __future__ import annotations

import json
import logging

import pytest

from voxpipe.audit import read_audit
from voxpipe_cxone.emulator.faults import FaultAction, FaultKind, RequestKind

from cxone_env import (FaultConfig, emulator, gunzip_sha256, ids_of, pipeline_yaml, recordings_dir, run_pipeline,
                       sha256_file)


def assert_archived(summary, recordings, out, ids):
    by_id = {r.id: r for r in summary.results}
    for rid in ids:
        src = next(recordings.glob(f"{rid}.*"))
        assert by_id[rid].ok, by_id[rid].message
        stored = out / f"{rid}{src.suffix}.gz"
        assert gunzip_sha256(stored) == sha256_file(src), rid
        manifest = json.loads((out / f"{stored.name}.json").read_text())
        assert manifest["original_sha256"] == sha256_file(src)
        assert manifest["original_size"] == src.stat().st_size


def test_clean_archive_is_byte_identical_with_audit_and_manifests(tmp_path):
    recs = recordings_dir(tmp_path, big=1)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        summary = run_pipeline(pipeline_yaml(base, ids_of(recs), out, state))
        served = emu.stats.snapshot()
    assert summary.ok and len(summary.results) == 7
    assert_archived(summary, recs, out, ids_of(recs))
    total = sum(p.stat().st_size for p in recs.iterdir() if p.suffix != ".md")
    assert served["bytes_served_total"] == total  # every byte fetched exactly once
    audit = read_audit(state / "audit.jsonl")
    segments = [e for e in audit if e["event"] == "segment" and e["stream"] == "9000"]
    size = (recs / "9000.wav").stat().st_size
    assert len(segments) == -(-size // 65536) and all(e["status"] == 206 for e in segments)
    assert not list(out.glob(".*.part"))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_hostile_server_never_corrupts(tmp_path, seed, caplog):
    """429s, 5xx, drops mid-body, ignored ranges and JSON error bodies: archives stay identical."""
    caplog.set_level(logging.INFO)
    recs = recordings_dir(tmp_path, big=2, seconds=20)
    out, state = tmp_path / "out", tmp_path / "state"
    faults = FaultConfig(rate_limit=0.03, server_error=0.08, drop=0.12, ignore_range=0.08, json_error=0.05,
                         retry_after=0.02)
    with emulator(recs, faults=faults, seed=seed) as (emu, base):
        summary = run_pipeline(pipeline_yaml(base, ids_of(recs), out, state, attempts=20))
        stats = emu.stats.snapshot()
    assert_archived(summary, recs, out, ids_of(recs))
    injected = sum(stats[k] for k in ("rate_limited", "server_errors", "drops", "ignored_ranges", "json_errors"))
    assert injected >= 3, stats  # faults were really injected
    assert "demo-secret" not in caplog.text and "Bearer" not in caplog.text


def test_rate_limited_segment_is_retried_not_skipped(tmp_path):
    """The seed's loop `continue`d past a 429, losing the segment; here it waits and retries it."""
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.NONE),
                            FaultAction(FaultKind.RATE_LIMIT, retry_after=0.2),
                            FaultAction(FaultKind.RATE_LIMIT, retry_after=0.1, retry_after_http_date=True),
                            kinds=[RequestKind.DOWNLOAD])
        summary = run_pipeline(pipeline_yaml(base, ["100002"], out, state, concurrency=1))
    assert_archived(summary, recs, out, ["100002"])
    assert summary.results[0].seconds >= 0.2


def test_tampered_recording_fails_sha256_and_is_not_stored(tmp_path):
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs, tamper=("100003",)) as (emu, base):
        summary = run_pipeline(pipeline_yaml(base, ["100001", "100003"], out, state))
    by_id = {r.id: r for r in summary.results}
    assert by_id["100001"].ok
    assert by_id["100003"].reason == "sha256-mismatch" and "recording 100003" in by_id["100003"].message
    assert not (out / "100003.mp3.gz").exists() and not list(out.glob(".*.part"))


def test_metadata_gates_refuse_without_downloading(tmp_path):
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs, storage_states={"100001": "archived"}) as (emu, base):
        summary = run_pipeline(pipeline_yaml(base, ["100001", "100002", "100006"], out, state, max_duration=9.4))
        served = emu.stats.snapshot()["bytes_served"]
    by_id = {r.id: r for r in summary.results}
    assert by_id["100001"].reason == "not-available" and "archived" in by_id["100001"].message
    assert by_id["100002"].reason == "too-long" and "exceeds max_duration 9.4 s" in by_id["100002"].message
    assert by_id["100006"].ok
    assert served.get("100001", 0) == 0 and served.get("100002", 0) == 0


def test_persistent_json_errors_fail_with_a_clear_reason(tmp_path):
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs, faults=FaultConfig(json_error=1.0)) as (emu, base):
        summary = run_pipeline(pipeline_yaml(base, ["100004"], out, state, attempts=3))
    [r] = summary.results
    assert r.reason == "download-failed" and "JSON error payload" in r.message
    assert not list(out.iterdir()) or not list(out.glob("*.gz"))


def test_expiring_tokens_are_refreshed_once_for_all_streams(tmp_path):
    recs = recordings_dir(tmp_path, big=2, seconds=30)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs, token_ttl=0.4) as (emu, base):
        emu.faults.schedule(*[FaultAction(FaultKind.RATE_LIMIT, retry_after=0.3)] * 2, kinds=[RequestKind.DOWNLOAD])
        summary = run_pipeline(pipeline_yaml(base, ids_of(recs), out, state, concurrency=8))
        issued = emu.stats.snapshot()["tokens_issued"]
    assert summary.ok
    assert_archived(summary, recs, out, ids_of(recs))
    assert 1 <= issued <= 10  # refreshed as it expired, not once per stream or per request


def test_rerun_is_idempotent_and_fetches_nothing(tmp_path):
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    text = None
    with emulator(recs) as (emu, base):
        text = pipeline_yaml(base, ids_of(recs), out, state)
        first = run_pipeline(text)
        before = emu.stats.snapshot()["bytes_served_total"]
        second = run_pipeline(text)
        after = emu.stats.snapshot()["bytes_served_total"]
    assert first.ok and second.ok
    assert all(r.skipped for r in second.results) and after == before
