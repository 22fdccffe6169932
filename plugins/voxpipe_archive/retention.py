"""Retention: delete recordings older than a policy allows, except those on legal hold.

Three steps, the first and last doing I/O:

1. :func:`survey` walks the archive (hidden entries such as ``.voxpipe`` skipped,
   symlinked directories not entered) and gathers a :class:`Candidate` per manifest:
   the parsed manifest, whether the stored file and manifest resolve inside the real
   archive root and are regular files, and which legal hold applies.
2. :func:`plan` (sans-IO) turns candidates, the current time and a
   :class:`RetentionPolicy` into :class:`Decision` values with reasons.
3. :func:`execute` deletes what the plan says, stored file first and manifest last (a
   crash in between leaves a manifest whose file is gone, which the next run completes),
   re-checking holds and containment right before each deletion, and writes one audit
   line per deletion to ``ARCHIVE/.voxpipe/retention-audit.jsonl``.

Age is the recording's date from its manifest (``recording_date``, else
``received_at``), never the file's mtime. Legal holds, any one of which keeps a recording:

- a marker file ``<stored file>.hold`` beside the recording;
- a file named ``.legal-hold`` in the recording's directory or any ancestor up to and
  including the archive root (holds everything below it);
- ``"legal_hold": true`` in the manifest's ``metadata`` (or at its top level).
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from voxpipe.atomic import fsync_dir
from voxpipe.audit import AuditLog

from .index import walk_manifests
from voxpipe.manifest import Manifest, ManifestError, load_manifest, recording_time
from .paths import MANIFEST_SUFFIX, STATE_DIR, OutsideArchive, real_root, resolve_inside

#: Suffix of a per-recording legal-hold marker (``<stored file>.hold``).
HOLD_SUFFIX = ".hold"
#: Name of a directory-wide legal-hold marker.
DIRECTORY_HOLD = ".legal-hold"
#: Audit log of deletions, relative to the archive root.
AUDIT_FILE = f"{STATE_DIR}/retention-audit.jsonl"

DELETE, KEEP, SKIP = "delete", "keep", "skip"


@dataclass(frozen=True)
class RetentionPolicy:
    """Delete recordings whose date is more than ``max_age`` before now."""

    max_age: timedelta

    def describe(self) -> str:
        return f"older than {_human(self.max_age)}"


@dataclass(frozen=True)
class Candidate:
    """What :func:`survey` found about one manifest.

    ``manifest_rel``: manifest path relative to the root. ``manifest``: parsed, or
    ``None`` with ``problem`` saying why. ``stored_exists``: the stored file is present.
    ``outside``: why the stored file or manifest may not be touched (resolves outside the
    archive, a symlink, not a regular file), else ``None``. ``hold``: which legal hold
    applies (``marker <name>``, ``directory <dir>/.legal-hold``, ``manifest``), else ``None``.
    """

    manifest_rel: str
    manifest: Manifest | None
    problem: str | None = None
    stored_exists: bool = True
    outside: str | None = None
    hold: str | None = None


@dataclass(frozen=True)
class Decision:
    """The plan for one manifest: ``action`` (delete, keep, skip), a ``reason`` code
    (``expired``, ``hold``, ``too-young``, ``no-date``, ``outside-archive``, ``bad-manifest``)
    and a human ``detail``. ``age_days`` and ``date_from`` tell which date was used."""

    action: str
    reason: str
    detail: str
    manifest_rel: str
    stored_rel: str
    recording_id: str | None
    source: str | None
    recording_time: str | None = None
    date_from: str | None = None
    age_days: float | None = None
    stored_exists: bool = True

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# -- 1. survey ----------------------------------------------------------------------------

def hold_for(root: Path, stored: Path, manifest: Manifest | None) -> str | None:
    """The legal hold covering ``stored`` (inside the real ``root``), or ``None``."""
    if manifest is not None and manifest.legal_hold:
        return "manifest legal_hold"
    if os.path.lexists(str(stored) + HOLD_SUFFIX):
        return f"marker {stored.name}{HOLD_SUFFIX}"
    directory = stored.parent
    while True:
        if os.path.lexists(directory / DIRECTORY_HOLD):
            rel = directory.relative_to(root).as_posix()
            return f"directory {'' if rel == '.' else rel + '/'}{DIRECTORY_HOLD}"
        if directory == root or root not in directory.parents:
            return None
        directory = directory.parent


def _containment(root: Path, path: Path, what: str) -> str | None:
    """Why ``path`` may not be deleted, or ``None``: it must be a regular file (not a
    symlink) whose real directory is inside ``root``."""
    parent = Path(os.path.realpath(path.parent))
    if parent != root and root not in parent.parents:
        return f"{what}'s directory resolves outside the archive"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            resolve_inside(root, path)
        except OutsideArchive:
            return f"{what} is a symlink pointing outside the archive"
        return f"{what} is a symlink (retention never deletes through links)"
    if not stat.S_ISREG(st.st_mode):
        return f"{what} is not a regular file"
    return None


def survey(root: str | os.PathLike[str]) -> list[Candidate]:
    """Gather a :class:`Candidate` for every manifest in the archive at ``root``.

    :raises NotADirectoryError: ``root`` is not a directory.
    """
    real = real_root(root)
    out = []
    for manifest_path, names in walk_manifests(real):
        rel = manifest_path.relative_to(real).as_posix()
        stored = manifest_path.with_name(manifest_path.name[: -len(MANIFEST_SUFFIX)])
        outside = _containment(real, manifest_path, "manifest") or _containment(real, stored, "stored file")
        if outside is not None:
            out.append(Candidate(rel, None, outside=outside, stored_exists=stored.name in names))
            continue
        try:
            manifest = load_manifest(manifest_path)
        except ManifestError as exc:
            if stored.name not in names:
                continue  # some other JSON file, not a manifest of anything here
            out.append(Candidate(rel, None, problem=str(exc).replace(str(real) + os.sep, "")))
            continue
        out.append(Candidate(rel, manifest, stored_exists=stored.name in names,
                             hold=hold_for(real, stored, manifest)))
    return out


# -- 2. plan (sans-IO) --------------------------------------------------------------------

def plan(candidates: Iterable[Candidate], now: datetime, policy: RetentionPolicy) -> list[Decision]:
    """Decide each candidate's fate; order follows ``candidates``.

    Precedence: outside-archive and unreadable manifests are skipped; then a hold keeps;
    then a missing date skips; then the age decides (strictly older than the policy).
    """
    out = []
    cutoff = now - policy.max_age
    for c in candidates:
        stored_rel = c.manifest_rel[: -len(MANIFEST_SUFFIX)]
        m = c.manifest
        common = dict(manifest_rel=c.manifest_rel, stored_rel=stored_rel,
                      recording_id=m.recording_id if m else None, source=m.source if m else None,
                      stored_exists=c.stored_exists)
        if c.outside is not None:
            out.append(Decision(SKIP, "outside-archive", c.outside, **common))
            continue
        if m is None:
            out.append(Decision(SKIP, "bad-manifest", c.problem or "manifest unreadable", **common))
            continue
        when, key = recording_time(m)
        dated = dict(recording_time=when.isoformat() if when else None, date_from=key,
                     age_days=round((now - when).total_seconds() / 86400, 3) if when else None)
        if c.hold is not None:
            out.append(Decision(KEEP, "hold", f"legal hold ({c.hold})", **common, **dated))
        elif when is None:
            out.append(Decision(SKIP, "no-date", "manifest has no valid recording_date or received_at", **common))
        elif when >= cutoff:
            out.append(Decision(KEEP, "too-young", f"{_date_words(key)} {when.isoformat()} is not {policy.describe()}",
                                **common, **dated))
        else:
            gone = "" if c.stored_exists else "; stored file already gone, manifest only"
            out.append(Decision(DELETE, "expired", f"{_date_words(key)} {when.isoformat()} is {policy.describe()}{gone}",
                                **common, **dated))
    return out


def _date_words(key: str | None) -> str:
    return "recording_date" if key == "recording_date" else "received_at (no recording_date)"


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- 3. execute ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """What happened to one ``delete`` decision: ``deleted`` or not, with ``error`` text."""

    decision: Decision
    deleted: bool
    error: str | None = None


def execute(root: str | os.PathLike[str], decisions: Iterable[Decision], policy: RetentionPolicy, *,
            audit: AuditLog | None = None) -> list[Outcome]:
    """Carry out the ``delete`` decisions (others are ignored) in the archive at ``root``.

    Right before each deletion the hold and containment checks are repeated, so a hold
    placed after planning still protects the recording. Writes one ``retention-delete``
    audit line per deleted recording (recording id, source, paths relative to the root,
    date used, age, stored SHA-256, policy) to ``audit`` or to the archive's
    :data:`AUDIT_FILE`.
    """
    real = real_root(root)
    own_audit = audit is None
    audit = audit or AuditLog(real / AUDIT_FILE)
    outcomes = []
    try:
        for d in decisions:
            if d.action != DELETE:
                continue
            outcomes.append(_delete_one(real, d, policy, audit))
        if outcomes:
            audit.write("retention-run", policy=policy.describe(), deleted=sum(o.deleted for o in outcomes),
                        failed=sum(not o.deleted for o in outcomes))
    finally:
        if own_audit:
            audit.close()
    return outcomes


def _delete_one(root: Path, d: Decision, policy: RetentionPolicy, audit: AuditLog) -> Outcome:
    manifest_path = root / d.manifest_rel
    stored = root / d.stored_rel
    problem = _containment(root, manifest_path, "manifest") or _containment(root, stored, "stored file")
    if problem:
        return Outcome(d, False, problem)
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        return Outcome(d, False, f"manifest changed since planning: {exc}")
    hold = hold_for(root, stored, manifest)
    if hold:
        return Outcome(d, False, f"legal hold placed since planning ({hold})")
    try:
        os.unlink(stored)
        stored_deleted = True
    except FileNotFoundError:
        stored_deleted = False
    except OSError as exc:
        return Outcome(d, False, f"cannot delete {d.stored_rel}: {exc.strerror}")
    try:
        os.unlink(manifest_path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            audit.write("retention-delete", recording_id=d.recording_id, source=d.source, stored=d.stored_rel,
                        manifest=d.manifest_rel, stored_deleted=stored_deleted, manifest_deleted=False,
                        error=exc.strerror, policy=policy.describe())
            return Outcome(d, False, f"deleted {d.stored_rel} but not its manifest: {exc.strerror}")
    fsync_dir(manifest_path.parent)
    audit.write("retention-delete", recording_id=d.recording_id, source=d.source, stored=d.stored_rel,
                manifest=d.manifest_rel, stored_deleted=stored_deleted, manifest_deleted=True,
                recording_time=d.recording_time, date_from=d.date_from, age_days=d.age_days,
                stored_sha256=manifest.stored_sha256, policy=policy.describe())
    return Outcome(d, True)


def run_retention(root: str | os.PathLike[str], policy: RetentionPolicy, now: datetime, *,
                  dry_run: bool = False) -> tuple[list[Decision], list[Outcome]]:
    """Survey, plan and (unless ``dry_run``) execute; returns the decisions and outcomes."""
    decisions = plan(survey(root), now, policy)
    if dry_run:
        return decisions, []
    return decisions, execute(root, decisions, policy)
