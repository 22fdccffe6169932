"""Crash-safe file publication: write under a temporary name, fsync, rename.

Nothing half-written is ever visible under a final name: readers either see the
previous file (or none) or the complete new one. Temporary files are named
``.<final name>.<random>.part`` in the destination directory (same filesystem, so the
rename is atomic) and are recognisable for clean-up after a crash
(:func:`is_temporary`).
"""

from __future__ import annotations

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
