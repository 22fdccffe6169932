"""Finding and removing temporary files a crashed run left behind, and only those.

Temporary files (``.<name>.<random>.part``, :mod:`voxpipe.atomic`) appear wherever a
storing sink writes: its top directory (the data being received), every directory its
name template can create (each manifest is published through a temporary file beside the
stored file), and its quarantine directory. A run that dies leaves them there.

:func:`find_orphans` walks a sink's directory down to the depth its name template can
reach (``{year}/{month}/{day}/{recording_id}.{format}`` creates three levels), without
following symlinks or entering hidden directories other than those named, and returns the
temporary files that are neither held by a live process (the writer's ``flock``, see
:func:`voxpipe.atomic.is_held`) nor kept for a resumable checkpoint. A temporary file
that is empty and younger than :data:`FRESH_SECONDS` is skipped too: its writer may be
between creating it and locking it.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path, PurePosixPath
from typing import Iterable

from .atomic import is_held, is_temporary

log = logging.getLogger("voxpipe.orphans")

#: Deepest directory level walked below a sink's directory, whatever the template says.
MAX_DEPTH = 16
#: Most directory entries examined in one clean-up; beyond it the walk stops with a warning.
MAX_ENTRIES = 10_000_000
#: An empty temporary file younger than this (seconds) may be one a writer has just created.
FRESH_SECONDS = 10.0


def template_depth(template: str) -> int:
    """Directory levels a name template can create: ``{year}/{month}/{id}.wav`` → 2."""
    return min(MAX_DEPTH, max(0, len(PurePosixPath(template).parts) - 1))


def find_orphans(root: Path, *, depth: int, keep: Iterable[str | os.PathLike[str]] = (),
                 now: float | None = None) -> list[Path]:
    """Orphaned temporary files under ``root`` down to ``depth`` levels (see the module docstring).

    :param keep: temporary files to leave alone (resumable checkpoints), any spelling of the path.
    """
    now = time.time() if now is None else now
    kept = {os.path.realpath(p) for p in keep}
    found: list[Path] = []
    stack = [(Path(root), 0)]
    examined = 0
    while stack:
        directory, level = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if level == 0 and isinstance(exc, FileNotFoundError):
                return []
            log.warning("cannot list %s for orphaned temporary files: %s", directory, exc.strerror)
            continue
        examined += len(entries)
        if examined > MAX_ENTRIES:
            log.warning("orphan clean-up stopped after %d entries under %s", MAX_ENTRIES, root)
            break
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if level < depth and not entry.name.startswith("."):
                    stack.append((Path(entry.path), level + 1))
                continue
            path = Path(entry.path)
            if not stat.S_ISREG(st.st_mode) or not is_temporary(path):
                continue
            if os.path.realpath(path) in kept:
                continue
            if st.st_size == 0 and now - st.st_mtime < FRESH_SECONDS:
                continue
            if is_held(path):
                continue
            found.append(path)
    return found


def remove_orphans(roots: Iterable[tuple[Path, int]], *, keep: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Delete the orphans of each ``(directory, depth)``; returns the deleted paths.

    The ownership check is repeated right before each deletion.
    """
    keep = list(keep)
    removed: list[str] = []
    for root, depth in roots:
        for path in find_orphans(root, depth=depth, keep=keep):
            if is_held(path):
                continue  # a live run reopened it (resume) since the walk
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove orphaned temporary file %s: %s", path, exc.strerror)
                continue
            removed.append(str(path))
    return removed
