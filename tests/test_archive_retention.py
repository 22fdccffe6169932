"""Retention on a tree of manifests: exact decisions, holds of all three kinds, dry run,
deletion with audit lines, nothing outside the archive touched, the CLI and serve's periodic mode."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import trio
from click.testing import CliRunner

from voxpipe.audit import read_audit
from voxpipe.cli import cli
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import BearerAuth
from voxpipe_archive.cli import serve_archive
from voxpipe_archive.index import ArchiveIndex
from voxpipe_archive.retention import (AUDIT_FILE, DELETE, PENDING_DIR, KEEP, SKIP, RetentionPolicy, execute, plan,
                                       run_retention, survey)

from archive_tree import SECRET, TOKEN, audio, manifest_for, store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
POLICY = RetentionPolicy(timedelta(days=90))
OLD = "2024-10-01T09:30:00Z"  # 151 days before NOW
RECENT = "2025-02-20T09:30:00Z"

EXPECTED = {
    "2024/10/old.wav": (DELETE, "expired"),
    "2024/10/old-received.wav.gz": (DELETE, "expired"),
    "orphan.wav": (DELETE, "expired"),
    "new.wav": (KEEP, "too-young"),
    "boundary.wav": (KEEP, "too-young"),
    "held-marker.wav": (KEEP, "hold"),
    "legal/case-17/held-dir.wav": (KEEP, "hold"),
    "held-meta.wav": (KEEP, "hold"),
    "nodate.wav": (SKIP, "no-date"),
    "bad.wav": (SKIP, "bad-manifest"),
    "link.wav": (SKIP, "outside-archive"),
    "linkmanifest.wav": (SKIP, "outside-archive"),
}
DELETED = {"2024/10/old.wav", "2024/10/old.wav.json", "2024/10/old-received.wav.gz",
           "2024/10/old-received.wav.gz.json", "orphan.wav.json"}


def snapshot(*dirs: Path) -> dict[str, str]:
    """Every path under ``dirs`` (not following symlinks) with a digest of its content or link target."""
    out = {}
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    out[str(p)] = "link:" + os.readlink(p)
                elif p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    out[str(p)] = "dir"
    return out


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "archive", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    old = store(root, "2024/10/old.wav", "old", audio("old", 2000), recording_date=OLD)
    os.utime(old, (time.time(), time.time()))  # a fresh mtime does not make it young
    store(root, "2024/10/old-received.wav.gz", "old-received", audio("or", 2000), gzip_it=True,
          recording_date=None, received_at=OLD)
    new = store(root, "new.wav", "new", audio("new", 100), recording_date=RECENT)
    os.utime(new, (0, 0))  # an ancient mtime does not make it old
    store(root, "boundary.wav", "boundary", b"b", recording_date=(NOW - timedelta(days=90)).isoformat())
    held = store(root, "held-marker.wav", "held-marker", b"h", recording_date=OLD)
    Path(str(held) + ".hold").write_text("case 12\n")
    store(root, "legal/case-17/held-dir.wav", "held-dir", b"d", recording_date=OLD)
    (root / "legal" / ".legal-hold").write_text("litigation 17\n")
    store(root, "held-meta.wav", "held-meta", b"m", recording_date=OLD, metadata={"legal_hold": True})
    store(root, "nodate.wav", "nodate", b"n", recording_date=None, received_at=None)
    (root / "bad.wav").write_bytes(b"x")
    (root / "bad.wav.json").write_text("{not json")
    orphan = store(root, "orphan.wav", "orphan", b"o", recording_date=OLD)
    orphan.unlink()  # a crash between deleting the file and its manifest
    # A stored file that is a symlink to a file outside; an otherwise old, valid manifest.
    (outside / "victim.wav").write_bytes(SECRET)
    (root / "link.wav").symlink_to(outside / "victim.wav")
    (root / "link.wav.json").write_text(json.dumps(manifest_for("link", "link.wav", SECRET, SECRET, recording_date=OLD)))
    # A manifest that is a symlink to an outside manifest (its stored file is a regular file here).
    (root / "linkmanifest.wav").write_bytes(SECRET)
    (outside / "m.json").write_text(json.dumps(manifest_for("lm", "linkmanifest.wav", SECRET, SECRET, recording_date=OLD)))
    (root / "linkmanifest.wav.json").symlink_to(outside / "m.json")
    # A symlinked directory pointing outside, holding an old recording: never visited.
    store(outside, "dir/far.wav", "far", SECRET, recording_date=OLD)
    (root / "linkdir").symlink_to(outside / "dir")
    # Pipeline state and temporary files: never considered.
    store(root, ".voxpipe/state.wav", "state", b"s", recording_date=OLD)
    (root / ".old.wav.0a1b2c.part").write_bytes(b"partial")
    (root / "notes.json").write_text('{"not": "a manifest"}')
    return root, outside


def test_plan_decides_each_recording_exactly(tree):
    root, _ = tree
    decisions = plan(survey(root), NOW, POLICY)
    assert {d.stored_rel: (d.action, d.reason) for d in decisions} == EXPECTED
    by = {d.stored_rel: d for d in decisions}
    assert by["2024/10/old.wav"].date_from == "recording_date" and by["2024/10/old.wav"].age_days == 151.104
    assert by["2024/10/old-received.wav.gz"].date_from == "received_at"
    assert "received_at (no recording_date)" in by["2024/10/old-received.wav.gz"].detail
    assert "manifest only" in by["orphan.wav"].detail
    assert by["held-marker.wav"].detail == "legal hold (marker held-marker.wav.hold)"
    assert by["legal/case-17/held-dir.wav"].detail == "legal hold (directory legal/.legal-hold)"
    assert by["held-meta.wav"].detail == "legal hold (manifest legal_hold)"
    assert "pointing outside" in by["link.wav"].detail
    assert "pointing outside" in by["linkmanifest.wav"].detail
    assert str(root) not in json.dumps([d.to_dict() for d in decisions])  # reports use relative paths


def test_a_hold_at_the_archive_root_keeps_everything(tree):
    root, _ = tree
    (root / ".legal-hold").write_text("")
    decisions = plan(survey(root), NOW, POLICY)
    assert not [d for d in decisions if d.action == DELETE]
    assert {d.stored_rel for d in decisions if d.reason == "hold"} >= {"2024/10/old.wav", "orphan.wav"}


def test_dry_run_touches_nothing(tree):
    root, outside = tree
    before = snapshot(root.parent)
    decisions, outcomes = run_retention(root, POLICY, NOW, dry_run=True)
    assert outcomes == [] and len([d for d in decisions if d.action == DELETE]) == 3
    assert snapshot(root.parent) == before
    assert not (root / AUDIT_FILE).exists()


def test_retention_deletes_exactly_the_expired_and_audits_each(tree):
    root, outside = tree
    before = snapshot(root.parent)
    decisions, outcomes = run_retention(root, POLICY, NOW)
    assert sorted(o.decision.stored_rel for o in outcomes if o.deleted) == sorted(
        k for k, v in EXPECTED.items() if v[0] == DELETE)
    assert all(o.deleted for o in outcomes)
    after = snapshot(root.parent)
    gone = {str(Path(p).relative_to(root)) for p in set(before) - set(after)}
    assert gone == DELETED
    added = {str(Path(p).relative_to(root)) for p in set(after) - set(before)}
    assert added == {AUDIT_FILE, PENDING_DIR}  # the intent markers' directory, left empty
    assert os.listdir(root / PENDING_DIR) == []
    assert {k: v for k, v in after.items() if k.startswith(str(outside))} == \
           {k: v for k, v in before.items() if k.startswith(str(outside))}
    assert (outside / "victim.wav").read_bytes() == SECRET
    lines = read_audit(root / AUDIT_FILE)
    deletes = [line for line in lines if line["event"] == "retention-delete"]
    assert sorted(line["recording_id"] for line in deletes) == ["old", "old-received", "orphan"]
    old = next(line for line in deletes if line["recording_id"] == "old")
    assert old["stored"] == "2024/10/old.wav" and old["manifest"] == "2024/10/old.wav.json"
    assert old["stored_deleted"] and old["manifest_deleted"] and old["date_from"] == "recording_date"
    assert old["stored_sha256"] == hashlib.sha256(audio("old", 2000)).hexdigest()
    assert old["policy"] == "older than 90d"
    orphan = next(line for line in deletes if line["recording_id"] == "orphan")
    assert orphan["stored_deleted"] is False and orphan["manifest_deleted"] is True
    assert lines[-1]["event"] == "retention-run" and lines[-1]["deleted"] == 3
    # A second run finds nothing more to delete.
    _, outcomes = run_retention(root, POLICY, NOW)
    assert outcomes == []


def test_a_hold_placed_after_planning_still_protects(tree):
    root, _ = tree
    decisions = plan(survey(root), NOW, POLICY)
    (root / "2024" / ".legal-hold").write_text("late hold")
    outcomes = execute(root, decisions, POLICY)
    by = {o.decision.stored_rel: o for o in outcomes}
    assert not by["2024/10/old.wav"].deleted and "legal hold placed since planning" in by["2024/10/old.wav"].error
    assert (root / "2024/10/old.wav").exists() and (root / "2024/10/old-received.wav.gz").exists()
    assert by["orphan.wav"].deleted


def test_a_symlink_swapped_in_after_planning_is_not_followed(tree):
    root, outside = tree
    decisions = plan(survey(root), NOW, POLICY)
    old = root / "2024/10/old.wav"
    old.unlink()
    old.symlink_to(outside / "victim.wav")
    outcomes = {o.decision.stored_rel: o for o in execute(root, decisions, POLICY)}
    assert not outcomes["2024/10/old.wav"].deleted and "symlink" in outcomes["2024/10/old.wav"].error
    assert (outside / "victim.wav").read_bytes() == SECRET and old.is_symlink()


def test_cli_dry_run_json_and_real_run(tree):
    root, _ = tree
    runner = CliRunner()
    result = runner.invoke(cli, ["retention", str(root), "--older-than", "90d", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # The CLI uses the real clock, so only outcomes that do not depend on today are compared.
    outcomes = {r["stored_rel"]: r["outcome"] for r in rows}
    assert outcomes["2024/10/old.wav"] == "would-delete" and outcomes["held-meta.wav"] == "keep"
    assert outcomes["link.wav"] == "skip" and (root / "2024/10/old.wav").exists()
    result = runner.invoke(cli, ["retention", str(root), "--older-than", "90d"])
    assert result.exit_code == 0 and not (root / "2024/10/old.wav").exists()
    assert "deleted      2024/10/old.wav: expired" in result.stdout
    result = runner.invoke(cli, ["retention", str(root), "--older-than", "90x"])
    assert result.exit_code == 2 and "invalid duration '90x'" in result.output


def test_serve_runs_retention_periodically(tree):
    root, _ = tree
    app = ArchiveApp(ArchiveIndex(root), BearerAuth([TOKEN]))

    async def main():
        async with trio.open_nursery() as nursery:
            app.index.refresh()
            assert app.index.by_recording_id("old")
            url = await nursery.start(functools.partial(serve_archive, app, "127.0.0.1", 0, policy=POLICY,
                                                        interval=timedelta(hours=1), handle_signals=False))
            with trio.fail_after(10):
                while (root / "2024/10/old.wav").exists():
                    await trio.sleep(0.02)
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                with trio.fail_after(10):
                    while (await client.get(url + "/recordings/old")).status_code != 404:
                        await trio.sleep(0.05)
                assert (await client.get(url + "/recordings/held-meta")).status_code == 200
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert [line["recording_id"] for line in read_audit(root / AUDIT_FILE)
            if line["event"] == "retention-delete"].count("old") == 1
