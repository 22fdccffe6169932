"""The directory implementation of :class:`voxpipe.archive_storage.ArchiveStorage`.

Stored files are opened read-only, without following a final symlink and without
blocking (:func:`open_regular`: a FIFO or device never stalls a worker thread), after
checking they resolve inside the archive and are regular files; reads are ``pread`` calls on the
open descriptor, so a rename or retention run during a response cannot change what is
sent. Other stores (``s3://``) come from plugins through the ``open_archive_storage`` hook.
"""

from __future__ import annotations

import logging
import os
import stat

from voxpipe.archive_storage import DeleteRefused, Entry, NotStored

from .index import ArchiveIndex
from .paths import OutsideArchive, resolve_inside

log = logging.getLogger("voxpipe.archive")


class FdRange:
    """Bytes ``start`` .. ``start + length - 1`` of an open file descriptor, read with ``pread``."""

    def __init__(self, fd: int, start: int, length: int):
        self.fd, self.offset, self.end = fd, start, start + length

    def read(self, n: int) -> bytes:
        if self.offset >= self.end:
            return b""
        data = os.pread(self.fd, min(n, self.end - self.offset), self.offset)
        self.offset += len(data)
        return data

    def close(self) -> None:
        """The descriptor belongs to its :class:`FileObject`."""


class FileObject:
    """An open stored file (read-only descriptor)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def open_range(self, start: int, length: int) -> FdRange:
        return FdRange(self.fd, start, length)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DirectoryStorage:
    """An archive directory: catalogue :class:`voxpipe_archive.index.ArchiveIndex`."""

    def __init__(self, index: ArchiveIndex):
        self.catalogue = index
        self.label = str(index.root)

    def open(self, entry: Entry) -> FileObject:
        rid = entry.manifest.recording_id
        try:
            resolved = resolve_inside(self.catalogue.root, entry.manifest.stored)
        except OutsideArchive:
            log.warning("archive: recording %s: stored file %s resolves outside the archive; refused", rid,
                        entry.relative)
            raise NotStored(f"recording {rid} is not in the archive", "outside") from None
        fd = open_regular(resolved.real)
        if fd is None:
            log.warning("archive: recording %s: stored file %s is gone or not a regular file; refused", rid,
                        entry.relative)
            raise NotStored(f"recording {rid} is not in the archive", "not-a-file")
        return FileObject(fd)

    def hold(self, entry: Entry) -> str | None:
        return None  # directory holds are marker files, handled by voxpipe_archive.retention

    def delete(self, entry: Entry) -> None:
        raise DeleteRefused("directory archives are pruned by voxpipe_archive.retention (intents, markers)")


def open_regular(path: str | os.PathLike[str]) -> int | None:
    """A read-only descriptor of ``path`` if it is a regular file (not a symlink), else ``None``.

    Opened with ``O_NONBLOCK`` so a FIFO with no writer, or a device, never blocks the
    worker thread (which would stall the request and the server's shutdown); the type is
    then checked on the descriptor itself (``fstat``), so a file swapped after a check
    cannot slip through. Sockets fail to open (``ENXIO``).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        return None
    return fd
