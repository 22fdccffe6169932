"""Blocking readers that produce a response body in bounded blocks, checking its SHA-256.

They run in worker threads (one :meth:`read_block` call per block) so neither disk I/O
nor decompression blocks the event loop, and memory stays at one block of
:data:`BLOCK_SIZE` bytes plus one compressed read of :data:`READ_SIZE` bytes — a
highly compressible ("gzip bomb") file is inflated block by block, never whole.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from typing import Any

from .storage import FdRange

#: Bytes per response body block.
BLOCK_SIZE = 256 * 1024
#: Bytes of compressed input read at a time when decompressing.
READ_SIZE = 64 * 1024


class BodyError(Exception):
    """The stored data does not match its manifest; the message names the recording and byte offset."""


def _reader(source: Any, start: int, length: int | None) -> Any:
    """A :class:`voxpipe.archive_storage.RangeReader` for ``source``: an open file
    descriptor (read with ``pread``) or a :class:`voxpipe.archive_storage.StoredObject`."""
    if isinstance(source, int):
        return FdRange(source, start, os.fstat(source).st_size - start if length is None else length)
    return source.open_range(start, source.size - start if length is None else length)


class FileBody:
    """Bytes ``start`` .. ``start + length - 1`` of a stored recording (an open file
    descriptor or a :class:`voxpipe.archive_storage.StoredObject`), in blocks.

    :param expected_sha256: when given (whole-file responses), :meth:`finish` raises
        :class:`BodyError` unless the bytes read hash to it.
    """

    def __init__(self, source: Any, start: int, length: int, *, label: str, expected_sha256: str | None = None):
        self.reader = _reader(source, start, length)
        self.offset, self.end, self.label = start, start + length, label
        self.expected = expected_sha256
        self.hash = hashlib.sha256() if expected_sha256 else None

    def read_block(self) -> bytes:
        """The next block (``b""`` at the end). :raises BodyError: the file ended early."""
        if self.offset >= self.end:
            return b""
        data = self.reader.read(min(BLOCK_SIZE, self.end - self.offset))
        if not data:
            raise BodyError(f"{self.label}: stored file ended at byte {self.offset}, expected {self.end}")
        self.offset += len(data)
        if self.hash is not None:
            self.hash.update(data)
        return data

    def close(self) -> None:
        self.reader.close()

    def finish(self) -> None:
        """:raises BodyError: the SHA-256 of what was read differs from the expected one."""
        if self.hash is not None and self.hash.hexdigest() != self.expected:
            raise BodyError(f"{self.label}: stored file's SHA-256 {self.hash.hexdigest()} does not match the "
                            f"manifest's {self.expected}")


class GunzipBody:
    """The original bytes of a gzip (RFC 1952) file, possibly of several members, in blocks
    (``source``: an open file descriptor or a :class:`voxpipe.archive_storage.StoredObject`).

    :param expected_size: original size in bytes from the manifest (``None`` if unknown);
        output beyond it is an error raised at once, not after inflating it all.
    :param expected_sha256: original SHA-256 from the manifest (``None`` if unknown).
    """

    def __init__(self, source: Any, *, label: str, expected_size: int | None, expected_sha256: str | None,
                 stored_size: int | None = None):
        self.reader = _reader(source, 0, stored_size)
        self.label = label
        self.expected_size, self.expected_sha256 = expected_size, expected_sha256
        self.read_offset = 0
        self.produced = 0
        self.hash = hashlib.sha256()
        self._z = zlib.decompressobj(31)
        self._pending = b""
        self._in_member = False
        self._done = False

    def read_block(self) -> bytes:
        """The next block of original bytes, up to :data:`BLOCK_SIZE` (``b""`` at the end).

        :raises BodyError: corrupt or truncated gzip data, or more bytes than the manifest's size.
        """
        pieces, size = [], 0
        while size < BLOCK_SIZE:
            piece = self._inflate(BLOCK_SIZE - size)
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
        return b"".join(pieces)

    def _inflate(self, limit: int) -> bytes:
        """At most ``limit`` more original bytes (``b""`` at the end)."""
        while not self._done:
            if self._pending:
                self._in_member = True
                try:
                    out = self._z.decompress(self._pending, limit)
                except zlib.error as exc:
                    raise BodyError(f"{self.label}: corrupt gzip data near compressed byte "
                                    f"{self.read_offset}: {exc}") from None
                self._pending = self._z.unconsumed_tail
                if self._z.eof:  # member complete; another may follow (RFC 1952 section 2.2)
                    self._in_member = False
                    # after the end of a member CPython reports the rest of the input as
                    # unused_data (and may repeat it in unconsumed_tail): use it once
                    self._pending = self._z.unused_data
                    self._z = zlib.decompressobj(31)
                if out:
                    return self._emit(out)
                continue
            data = self.reader.read(READ_SIZE)
            if not data and self._in_member:
                # All input consumed: zlib may still hold output of the last match.
                out = self._z.decompress(b"", limit)
                if self._z.eof:
                    self._in_member = False
                    self._pending = self._z.unused_data
                    self._z = zlib.decompressobj(31)
                if out:
                    return self._emit(out)
            if not data:
                if self._pending:
                    continue
                if self._in_member or self.read_offset == 0:
                    raise BodyError(f"{self.label}: gzip data is truncated at compressed byte {self.read_offset}")
                self._done = True
                break
            self.read_offset += len(data)
            self._pending = data
        return b""

    def _emit(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.expected_size is not None and self.produced > self.expected_size:
            raise BodyError(f"{self.label}: decompressed data exceeds the manifest's original_size "
                            f"{self.expected_size} bytes")
        self.hash.update(out)
        return out

    def close(self) -> None:
        self.reader.close()

    def finish(self) -> None:
        """:raises BodyError: size or SHA-256 of the decompressed bytes differ from the manifest."""
        if self.expected_size is not None and self.produced != self.expected_size:
            raise BodyError(f"{self.label}: decompressed to {self.produced} bytes, manifest says {self.expected_size}")
        if self.expected_sha256 is not None and self.hash.hexdigest() != self.expected_sha256:
            raise BodyError(f"{self.label}: decompressed SHA-256 {self.hash.hexdigest()} does not match the "
                            f"manifest's original_sha256 {self.expected_sha256}")
