"""Retention never deletes without a record: a process killed at each step of a deletion
leaves the recording or an intent line, and the next run completes and records it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from voxpipe.audit import read_audit
from voxpipe_archive.retention import AUDIT_FILE, PENDING_DIR, RetentionPolicy, run_retention

from archive_tree import audio, store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
POLICY = RetentionPolicy(timedelta(days=90))

# The child deletes with retention and dies (os._exit: no cleanup, no flush) at one step.
CHILD = textwrap.dedent("""
    import os, sys
    from datetime import datetime, timedelta, timezone
    from voxpipe.audit import AuditLog
    from voxpipe_archive import retention

    root, point = sys.argv[1], sys.argv[2]
    real_unlink, real_durable = os.unlink, AuditLog.write_durable
    unlinks = []

    def unlink(path, *a, **k):
        name = os.fspath(path)
        if point == "before-stored" and name.endswith(".wav"):
            os._exit(137)
        real_unlink(path, *a, **k)
        if point == "after-stored" and name.endswith(".wav"):
            os._exit(137)

    def durable(self, event, **fields):
        if point == "before-outcome" and event == "retention-delete":
            os._exit(137)
        real_durable(self, event, **fields)

    os.unlink = unlink
    AuditLog.write_durable = durable
    retention.run_retention(root, retention.RetentionPolicy(timedelta(days=90)),
                            datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc))
    sys.exit(0)
""")


@pytest.mark.parametrize("point", ["before-stored", "after-stored", "before-outcome"])
def test_a_crash_at_any_step_leaves_the_recording_or_its_record_and_the_rerun_completes(tmp_path, point):
    root = tmp_path / "archive"
    stored = store(root, "2024/10/old.wav", "old", audio("old", 2000), recording_date="2024-10-01T09:30:00Z")
    young = store(root, "2025/02/young.wav", "young", audio("young", 100), recording_date="2025-02-20T00:00:00Z")
    manifest = stored.with_name("old.wav.json")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), point], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 137, proc.stderr
    lines = read_audit(root / AUDIT_FILE)
    intents = [line for line in lines if line["event"] == "retention-intent"]
    # The intent is on disk before anything was deleted, whatever happened next.
    assert [i["recording_id"] for i in intents] == ["old"]
    assert intents[0]["stored"] == "2024/10/old.wav" and intents[0]["stored_sha256"]
    assert not any(line["event"] == "retention-delete" for line in lines)
    assert stored.exists() == (point == "before-stored")
    assert manifest.exists() == (point != "before-outcome")
    assert len(os.listdir(root / PENDING_DIR)) == 1

    decisions, outcomes = run_retention(root, POLICY, NOW)
    assert [(o.decision.stored_rel, o.deleted) for o in outcomes] == [("2024/10/old.wav", True)]
    assert not stored.exists() and not manifest.exists() and young.exists()
    assert os.listdir(root / PENDING_DIR) == []
    done = [line for line in read_audit(root / AUDIT_FILE) if line["event"] == "retention-delete"]
    assert len(done) == 1 and done[0]["recovered"] is True
    assert done[0]["intent_id"] == intents[0]["intent_id"] and done[0]["manifest_deleted"] is True
    assert done[0]["stored_deleted"] == (point == "before-stored")
    assert run_retention(root, POLICY, NOW)[1] == []  # nothing more, nothing recorded twice


def test_an_interrupted_deletion_under_a_new_legal_hold_is_abandoned_and_recorded(tmp_path):
    root = tmp_path / "archive"
    stored = store(root, "old.wav", "old", audio("old", 500), recording_date="2024-10-01T09:30:00Z")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), "before-stored"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 137, proc.stderr
    (root / "old.wav.hold").write_text("litigation 2025-17\n")
    _, outcomes = run_retention(root, POLICY, NOW)
    assert [o.deleted for o in outcomes] == [False] and "legal hold" in outcomes[0].error
    assert stored.exists()
    abandoned = [line for line in read_audit(root / AUDIT_FILE) if line["event"] == "retention-abandoned"]
    assert len(abandoned) == 1 and abandoned[0]["recording_id"] == "old"
    assert os.listdir(root / PENDING_DIR) == []
