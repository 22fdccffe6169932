"""The directory implementation of :class:`voxpipe.archive_storage.ArchiveStorage`.

Stored files are opened read-only, without following a final symlink, after checking
they resolve inside the archive and are regular files; reads are ``pread`` calls on the
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
        try:
            fd = os.open(resolved.real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise NotStored(f"recording {rid} is not in the archive", "gone") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotStored(f"recording {rid} is not in the archive", "not-a-file")
        return FileObject(fd)

    def hold(self, entry: Entry) -> str | None:
        return None  # directory holds are marker files, handled by voxpipe_archive.retention

    def delete(self, entry: Entry) -> None:
        raise DeleteRefused("directory archives are pruned by voxpipe_archive.retention (intents, markers)")
