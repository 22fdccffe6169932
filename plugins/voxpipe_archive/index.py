"""The archive's catalogue: every manifest, by recording id and by interaction id.

:class:`ArchiveIndex` walks the archive tree (without following symlinked directories,
skipping hidden entries such as ``.voxpipe`` and ``.*.part`` temporary files, to at
most :data:`MAX_DEPTH` levels and :data:`MAX_MANIFESTS` manifests) and keeps the parsed
manifests of stored files that exist and resolve inside the archive (a stored file
that is a symlink pointing outside is left out, with a warning). A refresh is cheap: a directory whose mtime and
inode are unchanged since the last walk is not listed again, because the sinks publish
files and manifests by rename, which changes the directory's mtime. A full re-read
happens every :data:`FULL_RESCAN_SECONDS` anyway. Refreshes are thread-safe and run in
worker threads by the server.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from voxpipe.manifest import Manifest, ManifestError, load_manifest, recording_time
from .paths import MANIFEST_SUFFIX, OutsideArchive, is_hidden, real_root, resolve_inside

log = logging.getLogger("voxpipe.archive")

#: Deepest directory level scanned below the root (name templates use a few levels).
MAX_DEPTH = 12
#: Most manifests catalogued; beyond it the walk stops with a warning.
MAX_MANIFESTS = 2_000_000
#: Seconds between re-reads of every directory regardless of mtimes.
FULL_RESCAN_SECONDS = 300.0
#: Default seconds a catalogue is trusted before directory mtimes are checked again.
DEFAULT_TTL = 2.0


@dataclass(frozen=True)
class Entry:
    """One catalogued recording: its manifest, stored file's path relative to the root
    (POSIX form), and its time (``when``, UTC) with the manifest key it came from."""

    manifest: Manifest
    relative: str
    when: datetime | None
    when_key: str | None


@dataclass(frozen=True)
class _Dir:
    mtime_ns: int
    inode: int
    entries: tuple[Entry, ...]
    subdirs: tuple[str, ...]


def walk_manifests(root: Path, *, max_depth: int = MAX_DEPTH) -> Iterable[tuple[Path, frozenset[str]]]:
    """Yield ``(manifest path, names in its directory)`` for every ``*.json`` file under ``root``.

    Symlinked directories are not entered, hidden entries are skipped, and manifests that
    are themselves symlinks are yielded (callers decide; the index ignores them).
    """
    stack = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                listing = [e for e in it if not is_hidden(e.name)]
        except OSError as exc:
            log.warning("archive: cannot list %s: %s", directory, exc.strerror)
            continue
        names = frozenset(e.name for e in listing)
        for e in sorted(listing, key=lambda e: e.name):
            if e.is_dir(follow_symlinks=False):
                if depth < max_depth:
                    stack.append((Path(e.path), depth + 1))
            elif e.name.endswith(MANIFEST_SUFFIX):
                yield Path(e.path), names


class ArchiveIndex:
    """Catalogue of an archive directory (see the module docstring).

    :param root: the archive directory.
    :param ttl: seconds a refresh result is trusted before directories are checked again.
    :raises NotADirectoryError: ``root`` is not a directory.
    """

    def __init__(self, root: str | os.PathLike[str], *, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic):
        self.root = real_root(root)
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._dirs: dict[str, _Dir] = {}
        self._by_id: dict[str, tuple[Entry, ...]] = {}
        self._by_interaction: dict[str, tuple[Entry, ...]] = {}
        self._all: tuple[Entry, ...] = ()
        self._checked_at: float | None = None
        self._full_at: float | None = None
        self.truncated = False

    def invalidate(self) -> None:
        """Forget the directory cache: the next :meth:`refresh` re-reads every directory."""
        with self._lock:
            self._dirs = {}
            self._checked_at = None

    def refresh(self, *, force: bool = False) -> None:
        """Bring the catalogue up to date if the TTL has passed (or ``force``)."""
        with self._lock:
            now = self._clock()
            if not force and self._checked_at is not None and now - self._checked_at < self.ttl:
                return
            if self._full_at is None or now - self._full_at >= FULL_RESCAN_SECONDS:
                self._dirs = {}
                self._full_at = now
            self._scan()
            self._checked_at = now

    def _scan(self) -> None:
        new_dirs: dict[str, _Dir] = {}
        entries: list[Entry] = []
        stack = [("", 0)]
        self.truncated = False
        while stack:
            rel, depth = stack.pop()
            path = self.root / rel if rel else self.root
            try:
                st = os.lstat(path)
            except OSError:
                continue
            cached = self._dirs.get(rel)
            if cached is None or cached.mtime_ns != st.st_mtime_ns or cached.inode != st.st_ino:
                cached = self._read_dir(rel, path, st)
            new_dirs[rel] = cached
            entries.extend(cached.entries)
            if len(entries) >= MAX_MANIFESTS:
                self.truncated = True
                log.warning("archive: more than %d manifests; the catalogue is truncated", MAX_MANIFESTS)
                break
            if depth < MAX_DEPTH:
                stack.extend((sub, depth + 1) for sub in cached.subdirs)
        self._dirs = new_dirs
        by_id: dict[str, list[Entry]] = {}
        by_interaction: dict[str, list[Entry]] = {}
        for entry in entries:
            by_id.setdefault(entry.manifest.recording_id, []).append(entry)
            for iid in entry.manifest.interaction_ids:
                by_interaction.setdefault(iid, []).append(entry)
        self._by_id = {k: tuple(v) for k, v in by_id.items()}
        self._by_interaction = {k: tuple(v) for k, v in by_interaction.items()}
        self._all = tuple(sorted(entries, key=lambda e: (e.when is None, e.when or datetime.min, e.relative)))

    def _read_dir(self, rel: str, path: Path, st: os.stat_result) -> _Dir:
        try:
            with os.scandir(path) as it:
                listing = [e for e in it if not is_hidden(e.name)]
        except OSError as exc:
            log.warning("archive: cannot list %s: %s", rel or ".", exc.strerror)
            return _Dir(st.st_mtime_ns, st.st_ino, (), ())
        names = {e.name for e in listing}
        subdirs, found = [], []
        for e in listing:
            child = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                subdirs.append(child)
            elif (e.name.endswith(MANIFEST_SUFFIX) and e.is_file(follow_symlinks=False)
                  and e.name[: -len(MANIFEST_SUFFIX)] in names):
                try:
                    manifest = load_manifest(Path(e.path))
                except ManifestError as exc:
                    log.debug("archive: skipping %s", exc)
                    continue
                try:
                    resolve_inside(self.root, manifest.stored)
                except OutsideArchive:
                    log.warning("archive: %s: stored file resolves outside the archive; not catalogued", child)
                    continue
                when, key = recording_time(manifest)
                found.append(Entry(manifest, child[: -len(MANIFEST_SUFFIX)], when, key))
        return _Dir(st.st_mtime_ns, st.st_ino, tuple(found), tuple(sorted(subdirs)))

    def by_recording_id(self, recording_id: str) -> tuple[Entry, ...]:
        """Entries stored under ``recording_id`` (several when sources or pipelines share ids)."""
        return self._by_id.get(recording_id, ())

    def by_interaction_id(self, interaction_id: str) -> tuple[Entry, ...]:
        """Entries whose metadata names ``interaction_id`` (Genesys conversationId, CXone contactId, ...)."""
        return self._by_interaction.get(interaction_id, ())

    def entries(self) -> tuple[Entry, ...]:
        """Every entry, oldest recording first (entries without a date last)."""
        return self._all
