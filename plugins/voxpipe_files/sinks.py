"""The ``file`` and ``gzip`` sinks: crash-safe storage with a manifest beside each file.

Both are thin registrations of core's public pieces: :mod:`voxpipe.filestore` (temporary
file, fsync, rename, quarantine, resume), :mod:`voxpipe.naming` (name templates),
:mod:`voxpipe.manifest` (the manifest) and :mod:`voxpipe.compression` (zlib or igzip).
"""

from __future__ import annotations

from voxpipe.compression import Compressor, GzipCompressor, GzipOptions
from voxpipe.filestore import FileSinkSettings, FileStoreSink


class GzipSinkSettings(FileSinkSettings, GzipOptions):
    """Settings of the ``gzip`` sink: the file sink's, plus ``level`` and ``engine``."""


class FileSink(FileStoreSink):
    """Store each stream as a file, atomically, with a JSON manifest."""

    type = "file"
    Settings = FileSinkSettings


class GzipSink(FileStoreSink):
    """Store each stream gzip-compressed (`.gz` added to the name), atomically, with a manifest."""

    type = "gzip"
    Settings = GzipSinkSettings

    def compressor(self) -> Compressor:
        return GzipCompressor(self.settings.level, self.settings.compressor_engine())
