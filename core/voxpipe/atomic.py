"""Crash-safe file publication: write under a temporary name, fsync, rename.

Nothing half-written is ever visible under a final name: readers either see the
previous file (or none) or the complete new one. Temporary files are named
``.<final name>.<random>.part`` in the destination directory (same filesystem, so the
rename is atomic) and are recognisable for clean-up after a crash
(:func:`is_temporary`).

A temporary file being written is held with an exclusive ``flock`` (:func:`hold_temporary`)
for as long as its writer has it open; the kernel drops the lock when the process dies.
Clean-up (:mod:`voxpipe.orphans`) therefore tells a live run's temporary file
(:func:`is_held`) from an orphan left by a crash, even across overlapping runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".part"


def temp_path_for(final: Path) -> Path:
    """A fresh temporary path beside ``final``."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file made by :func:`temp_path_for`."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def hold_temporary(fd: int) -> None:
    """Mark an open temporary file as owned by this process (exclusive ``flock``, released on
    close or process death). Filesystems without ``flock`` support are tolerated: the file is
    then unprotected, as before."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RuntimeError(f"temporary file descriptor {fd} is already held by another writer") from None


def is_held(path: Path) -> bool:
    """Whether a live process holds ``path`` (see :func:`hold_temporary`).

    Opened without following symlinks and without blocking (a FIFO named like a
    temporary file cannot stall the caller); anything that cannot be opened counts as not
    held. The probe lock is released before returning.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # also releases the probe lock
    return False


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(temp: Path, final: Path, *, overwrite: bool = True) -> None:
    """Atomically move an already-fsynced ``temp`` to ``final`` and fsync the directory.

    :raises FileExistsError: ``overwrite`` is false and ``final`` exists.
    """
    if overwrite:
        os.replace(temp, final)
    else:
        os.link(temp, final)  # fails atomically if final exists
        os.unlink(temp)
    fsync_dir(final.parent)


def write_durable_temp(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a fresh temporary path beside ``final`` and fsync it; returns the path.

    The caller renames it (``os.replace``) and fsyncs the directory, possibly once for
    several renames in the same directory (:meth:`voxpipe.filestore.FileWriter.commit`).
    """
    temp = temp_path_for(Path(final))
    try:
        with open(temp, "xb") as f:
            hold_temporary(f.fileno())  # live for other runs' clean-up while written (empty+fresh before)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_atomic(final: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``final`` atomically (temp, fsync, rename, fsync dir)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = write_durable_temp(final, data)
    try:
        publish(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
