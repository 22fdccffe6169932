"""The ``file`` and ``gzip`` sinks: crash-safe storage with a manifest beside each file.

Each stream is written to ``.<id>.<random>.part`` in the target directory, fsynced in
``prepare`` and renamed to its final name in ``commit`` (only after every verifier
passed). Beside it, ``<final name>.json`` is the manifest: source, recording id,
format, original size and SHA-256 (of the bytes as received), stored file's SHA-256 and
size, and times. ``abort`` deletes the temporary file. File I/O and compression run in
worker threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import Any, Mapping

import trio
from pydantic import field_validator

from voxpipe.atomic import fsync_dir, temp_path_for, write_atomic
from voxpipe.components import Sink, SinkWriter
from voxpipe.errors import SinkError
from voxpipe.model import Chunk, Stream, StreamResult
from voxpipe.settings import Settings, setting

from . import naming

MANIFEST_SUFFIX = ".json"


class FileSinkSettings(Settings):
    dir: Path = setting(description="Directory the recordings are stored in (created if missing).",
                        example="./archive")
    name: str = setting("{recording_id}.{format}", description="File name template, relative to `dir`; fields: "
                        + ", ".join("`{%s}`" % f for f in naming.TEMPLATE_FIELDS) + ". May contain `/` for sub-directories.",
                        example="{year}/{month}/{recording_id}.{format}")
    manifest: bool = setting(True, description="Write a JSON manifest beside each stored file.")
    overwrite: bool = setting(False, description="Replace an existing file with different content. When false, an "
                              "existing identical file counts as stored and a different one fails the stream.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return naming.check_template(value)


class GzipSinkSettings(FileSinkSettings):
    level: int = setting(6, description="gzip compression level, 1 (fastest) to 9 (smallest).", ge=1, le=9)


class _Compressor:
    """Identity 'compressor' for the plain file sink."""

    suffix = ""

    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Gzip(_Compressor):
    """RFC 1952 gzip member through zlib (header with mtime 0, so output is reproducible)."""

    suffix = ".gz"

    def __init__(self, level: int):
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush()


class FileSink(Sink):
    """Store each stream as a file, atomically, with a JSON manifest."""

    type = "file"
    Settings = FileSinkSettings

    def archive_dir(self) -> Path:
        return Path(self.settings.dir)

    def _compressor(self) -> _Compressor:
        return _Compressor()

    async def begin(self, stream: Stream) -> SinkWriter:
        directory = Path(self.settings.dir)
        await trio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
        return _FileWriter(self, stream, directory, self._compressor())


class GzipSink(FileSink):
    """Store each stream gzip-compressed (`.gz` added to the name), atomically, with a manifest."""

    type = "gzip"
    Settings = GzipSinkSettings

    def _compressor(self) -> _Compressor:
        return _Gzip(self.settings.level)


class _FileWriter(SinkWriter):
    def __init__(self, sink: FileSink, stream: Stream, directory: Path, compressor: _Compressor):
        self.sink = sink
        self.stream = stream
        self.directory = directory
        self.compressor = compressor
        self.temp = temp_path_for(directory / naming.temp_stem(stream.id))
        self.file = open(self.temp, "xb")
        self.stored_hash = hashlib.sha256()
        self.stored_bytes = 0
        self.done = False

    def _write_sync(self, data: bytes) -> None:
        out = self.compressor.compress(data)
        if out:
            self.file.write(out)
            self.stored_hash.update(out)
            self.stored_bytes += len(out)

    async def write(self, chunk: Chunk) -> None:
        await trio.to_thread.run_sync(self._write_sync, chunk.data)

    def _prepare_sync(self) -> None:
        tail = self.compressor.flush()
        if tail:
            self.file.write(tail)
            self.stored_hash.update(tail)
            self.stored_bytes += len(tail)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    async def prepare(self) -> None:
        await trio.to_thread.run_sync(self._prepare_sync)

    async def commit(self, result: StreamResult) -> Mapping[str, Any]:
        settings = self.sink.settings
        final = naming.expand(settings.name, directory=self.directory, recording_id=self.stream.id,
                              metadata=self.stream.metadata, source=self.stream.source, pipeline=self.stream.pipeline,
                              started_at=self.stream.started_at, suffix=self.compressor.suffix)
        stored_sha = self.stored_hash.hexdigest()
        manifest = {
            "source": self.stream.source, "pipeline": self.stream.pipeline, "recording_id": self.stream.id,
            "format": self.stream.metadata.get("format"), "original_size": result.bytes,
            "original_sha256": result.digests.get("sha256"), "stored_file": final.name,
            "stored_size": self.stored_bytes, "stored_sha256": stored_sha,
            "compression": "gzip" if self.compressor.suffix == ".gz" else None,
            "recording_date": self.stream.metadata.get("date"),
            "received_at": _iso(self.stream.started_at), "stored_at": _iso(time.time()),
            "metadata": result.metadata,
        }
        await trio.to_thread.run_sync(self._publish_sync, final, manifest)
        self.done = True
        out = {"path": str(final), "sha256": stored_sha, "bytes": self.stored_bytes}
        if settings.manifest:
            out["manifest"] = str(final) + MANIFEST_SUFFIX
        return out

    def _publish_sync(self, final: Path, manifest: dict[str, Any]) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not self.sink.settings.overwrite:
            if _existing_sha256(final) == manifest["stored_sha256"]:
                self.temp.unlink(missing_ok=True)  # identical content is already stored: idempotent
            else:
                raise SinkError(f"recording {self.stream.id}: {final} already exists with different content "
                                "(set overwrite: true to replace it)", reason="exists")
        else:
            os.replace(self.temp, final)
            fsync_dir(final.parent)
        if self.sink.settings.manifest:
            write_atomic(str(final) + MANIFEST_SUFFIX, json.dumps(manifest, indent=2, sort_keys=True).encode())

    async def abort(self, result: StreamResult) -> None:
        if self.done:
            return
        self.done = True
        await trio.to_thread.run_sync(self._abort_sync)

    def _abort_sync(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.temp.unlink(missing_ok=True)


def _existing_sha256(path: Path) -> str:
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    try:
        return json.loads(manifest.read_text())["stored_sha256"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
