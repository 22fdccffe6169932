"""Checks of state files before a run uses them, and storage errors in operator terms.

A run keeps its state in SQLite files: the ledger and the webhook outbox. If one is
corrupt (a truncated copy, a disk error) or is not voxpipe's at all (another program's
file, or the outbox given as the ledger), SQLite fails deep inside the run with a message
nobody can act on. :func:`check_sqlite` looks first, read-only: the file must be a regular
file, start with the SQLite header, pass ``PRAGMA quick_check``, and hold the tables its
kind has. It raises :class:`~voxpipe.errors.StateFileError` (exit 5) naming the file, what
is wrong and what to do. :func:`storage_error` turns an ``OSError`` met while preparing a
run (disk full, quota, file-size limit, I/O error, permissions) into a
:class:`~voxpipe.errors.StorageError` (exit 4) in the same style.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from .errors import StateFileError, StorageError
from .yamlsafe import file_kind

SQLITE_MAGIC = b"SQLite format 3\x00"
#: errno values meaning "no room": disk full, quota exceeded, file-size limit (RLIMIT_FSIZE).
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError meaning the disk (or quota, or size limit) is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def storage_error(exc: OSError, path: str | os.PathLike[str], doing: str) -> StorageError:
    """A :class:`StorageError` for ``exc`` met while ``doing`` (``"creating the state directory"``) at ``path``."""
    what = exc.strerror or str(exc)
    if no_space(exc):
        todo = "free space (or raise the quota/file-size limit) on that filesystem and run again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "give the user running voxpipe write access there (or choose another state_dir) and run again"
    else:
        todo = "check the disk and filesystem (dmesg, fsck) and run again"
    return StorageError(f"{path}: {doing} failed: {what}; {todo}")


def check_sqlite(path: str | os.PathLike[str], *, what: str, tables: Iterable[str], consequence: str) -> None:
    """Refuse a ``what`` file (``"ledger"``) that SQLite cannot use or that is not one.

    A missing or empty file passes (it will be created). ``tables``: names a file of this
    kind always has. ``consequence``: what moving the file aside costs, for the message.

    :raises StateFileError: not a regular file, not SQLite, corrupt, or another kind of database.
    :raises StorageError: the file cannot be read (I/O error, permissions).
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise storage_error(exc, path, f"reading the {what}") from None
    aside = f"move it aside (mv {path} {path}.broken) and run again; {consequence}"
    if not stat.S_ISREG(st.st_mode):
        raise StateFileError(f"{path}: the {what} is {file_kind(st.st_mode)}, not a file; {aside}")
    if st.st_size == 0:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            head = os.read(fd, len(SQLITE_MAGIC))
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(exc, path, f"reading the {what}") from None
    if head != SQLITE_MAGIC:
        raise StateFileError(f"{path}: the {what} is not an SQLite database (corrupt, or another program's "
                             f"file); {aside}")
    try:
        db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=30)
        try:
            check = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
            names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StateFileError(f"{path}: the {what} is corrupt ({exc}); {aside}") from None
    if check != ["ok"]:
        raise StateFileError(f"{path}: the {what} is corrupt (SQLite quick_check: {'; '.join(check)[:300]}); "
                             f"{aside}")
    missing = set(tables) - names
    if names and missing:
        raise StateFileError(f"{path}: an SQLite database but not a voxpipe {what} (it has tables "
                             f"{', '.join(sorted(names))[:200]}; a {what} has {', '.join(sorted(tables))}); "
                             f"check the path in the pipeline file, or {aside}")
