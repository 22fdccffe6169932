"""Retention on an archive read through :class:`voxpipe.archive_storage.ArchiveStorage` (an object store).

The same policy and plan as a directory archive (:mod:`voxpipe_archive.retention`): age
from the manifest's recording date, a legal hold keeps a recording. Holds here are the
manifest's ``legal_hold`` and what the store itself enforces (:meth:`ArchiveStorage.hold`:
an S3 legal hold, an Object Lock retention not yet over): such recordings are kept and
never sent to the store for deletion. Anything the store still refuses (a lock the
survey could not see) is reported as refused, not retried: the store has the last word.

Each deletion is audited before and after: a ``retention-intent`` line, then
``retention-delete`` or ``retention-refused`` with the same ``intent_id``, in the audit
log given (one JSON object per line, :class:`voxpipe.audit.AuditLog`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from voxpipe.archive_storage import ArchiveStorage, DeleteRefused, Entry
from voxpipe.audit import AuditLog
from voxpipe.manifest import MANIFEST_SUFFIX

from .retention import DELETE, Candidate, Decision, Outcome, RetentionPolicy, plan


def _hold(storage: ArchiveStorage, entry: Entry) -> str | None:
    if entry.manifest.legal_hold:
        return "manifest legal_hold"
    try:
        return storage.hold(entry)
    except Exception as exc:  # noqa: BLE001 - an unknown hold state keeps the recording
        return f"hold state unknown ({type(exc).__name__}: {exc})"


def survey_storage(storage: ArchiveStorage) -> tuple[list[Candidate], dict[str, Entry]]:
    """Candidates for :func:`voxpipe_archive.retention.plan` and the entries by manifest name."""
    storage.catalogue.refresh(force=True)
    candidates, entries = [], {}
    for entry in storage.catalogue.entries():
        rel = entry.relative + MANIFEST_SUFFIX
        entries[rel] = entry
        candidates.append(Candidate(rel, entry.manifest, hold=_hold(storage, entry)))
    return candidates, entries


def run_storage_retention(storage: ArchiveStorage, policy: RetentionPolicy, now: datetime, *, audit: AuditLog | None,
                          dry_run: bool = False) -> tuple[list[Decision], list[Outcome]]:
    """Survey, plan and (unless ``dry_run``) delete; returns the decisions and the deletions' outcomes."""
    candidates, entries = survey_storage(storage)
    decisions = plan(candidates, now, policy)
    if dry_run:
        return decisions, []
    outcomes = []
    for d in decisions:
        if d.action != DELETE:
            continue
        outcomes.append(_delete_one(storage, entries[d.manifest_rel], d, policy, audit))
    if outcomes and audit is not None:
        audit.write("retention-run", archive=storage.label, policy=policy.describe(),
                    deleted=sum(o.deleted for o in outcomes), failed=sum(not o.deleted for o in outcomes))
    return decisions, outcomes


def _delete_one(storage: ArchiveStorage, entry: Entry, d: Decision, policy: RetentionPolicy,
                audit: AuditLog | None) -> Outcome:
    hold = _hold(storage, entry)  # again, right before deleting: a hold placed since planning protects
    if hold:
        return Outcome(d, False, f"legal hold placed since planning ({hold})")
    fields: dict[str, Any] = dict(intent_id=secrets.token_hex(8), archive=storage.label, recording_id=d.recording_id,
                                  source=d.source, stored=d.stored_rel, recording_time=d.recording_time,
                                  date_from=d.date_from, age_days=d.age_days,
                                  stored_sha256=entry.manifest.stored_sha256, policy=policy.describe())
    if audit is not None:
        audit.write("retention-intent", **fields)
    try:
        storage.delete(entry)
    except DeleteRefused as exc:
        if audit is not None:
            audit.write("retention-refused", **fields, error=str(exc))
        return Outcome(d, False, f"refused by the store: {exc}")
    if audit is not None:
        audit.write("retention-delete", **fields, stored_deleted=True, manifest_deleted=True)
    return Outcome(d, True)
