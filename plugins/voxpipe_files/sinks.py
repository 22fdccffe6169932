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
from typing import Any, BinaryIO, Iterator, Mapping

import trio
from pydantic import field_validator

from voxpipe.atomic import fsync_dir, is_temporary, temp_path_for, write_atomic
from voxpipe.components import Sink, SinkWriter
from voxpipe.errors import SinkError
from voxpipe.model import Chunk, Stream, StreamResult
from voxpipe.settings import Settings, setting

from . import naming

MANIFEST_SUFFIX = ".json"
#: Bytes per read when replaying or re-hashing a checkpointed temporary file.
REPLAY_BLOCK = 1 << 20


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

    def end_member(self) -> bytes:
        """Close the current unit so the file is complete up to here (for checkpoints)."""
        return b""

    def replay(self, f: BinaryIO, limit: int) -> Iterator[bytes]:
        """Yield the original bytes stored in the first ``limit`` bytes of ``f``."""
        remaining = limit
        while remaining > 0:
            block = f.read(min(REPLAY_BLOCK, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block


class _Gzip(_Compressor):
    """RFC 1952 gzip member through zlib (header with mtime 0, so output is reproducible)."""

    suffix = ".gz"

    def __init__(self, level: int):
        self.level = level
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._empty = True

    def compress(self, data: bytes) -> bytes:
        self._empty = False
        return self._z.compress(data)

    def flush(self) -> bytes:
        return self._z.flush()

    def end_member(self) -> bytes:
        # A finished gzip member; the next bytes start a new one. Concatenated members are
        # one valid gzip file (RFC 1952 §2.2) that gunzip and Python's gzip read whole.
        if self._empty:
            return b""
        tail = self._z.flush()
        self._z = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        self._empty = True
        return tail

    def replay(self, f: BinaryIO, limit: int) -> Iterator[bytes]:
        remaining = limit
        d = zlib.decompressobj(31)
        while remaining > 0:
            block = f.read(min(REPLAY_BLOCK, remaining))
            if not block:
                return
            remaining -= len(block)
            while block:
                out = d.decompress(block)
                if out:
                    yield out
                if d.eof:
                    block = d.unused_data
                    d = zlib.decompressobj(31)
                else:
                    block = b""


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
        temp = temp_path_for(directory / naming.temp_stem(stream.id))
        return _FileWriter(self, stream, directory, self._compressor(), temp, open(temp, "xb"))

    async def resume(self, stream: Stream, checkpoint: dict[str, Any]) -> SinkWriter:
        return await trio.to_thread.run_sync(self._resume_sync, stream, checkpoint)

    def _checked_temp(self, checkpoint: dict[str, Any]) -> Path:
        directory = Path(self.settings.dir)
        temp = Path(str(checkpoint.get("temp", "")))
        if temp.parent.resolve() != directory.resolve() or not is_temporary(temp):
            raise SinkError(f"checkpoint file {temp} is not a temporary file of {directory}", reason="bad-checkpoint")
        return temp

    def _resume_sync(self, stream: Stream, checkpoint: dict[str, Any]) -> SinkWriter:
        temp = self._checked_temp(checkpoint)
        stored, raw = int(checkpoint["stored_offset"]), int(checkpoint["raw_offset"])
        try:
            f = open(temp, "r+b")
        except OSError as exc:
            raise SinkError(f"recording {stream.id}: checkpoint file {temp} unusable: {exc.strerror}",
                            reason="bad-checkpoint") from None
        if os.fstat(f.fileno()).st_size < stored:
            f.close()
            raise SinkError(f"recording {stream.id}: checkpoint file {temp} is shorter than {stored} bytes",
                            reason="bad-checkpoint")
        f.truncate(stored)  # bytes after the checkpoint were never recorded as durable
        writer = _FileWriter(self, stream, Path(self.settings.dir), self._compressor(), temp, f)
        f.seek(0)
        remaining = stored
        while remaining:
            block = f.read(min(REPLAY_BLOCK, remaining))
            writer.stored_hash.update(block)
            remaining -= len(block)
        f.seek(stored)
        writer.stored_bytes, writer.raw_bytes = stored, raw
        return writer

    def replay(self, checkpoint: dict[str, Any]) -> Iterator[bytes]:
        temp = self._checked_temp(checkpoint)
        with open(temp, "rb") as f:
            yield from self._compressor().replay(f, int(checkpoint["stored_offset"]))

    def discard(self, checkpoint: dict[str, Any]) -> None:
        self._checked_temp(checkpoint).unlink(missing_ok=True)

    def cleanup_orphans(self, keep: set[str]) -> list[str]:
        directory = Path(self.settings.dir)
        if not directory.is_dir():
            return []
        keep_real = {str(Path(k).resolve()) for k in keep}
        removed = []
        for entry in directory.iterdir():
            if is_temporary(entry) and entry.is_file() and str(entry.resolve()) not in keep_real:
                entry.unlink(missing_ok=True)
                removed.append(str(entry))
        return removed


class GzipSink(FileSink):
    """Store each stream gzip-compressed (`.gz` added to the name), atomically, with a manifest."""

    type = "gzip"
    Settings = GzipSinkSettings

    def _compressor(self) -> _Compressor:
        return _Gzip(self.settings.level)


class _FileWriter(SinkWriter):
    #: The stored file's format when it differs from the source's (``wav`` for the wav sink):
    #: used for ``{format}`` in the name template and in the manifest.
    stored_format: str | None = None

    def __init__(self, sink: FileSink, stream: Stream, directory: Path, compressor: _Compressor, temp: Path,
                 file: BinaryIO):
        self.sink = sink
        self.stream = stream
        self.directory = directory
        self.compressor = compressor
        self.temp = temp
        self.file = file
        self.stored_hash = hashlib.sha256()
        self.stored_bytes = 0
        self.raw_bytes = 0
        self.done = False

    def _emit(self, out: bytes) -> None:
        if out:
            self.file.write(out)
            self.stored_hash.update(out)
            self.stored_bytes += len(out)

    def _write_sync(self, data: bytes) -> None:
        self._emit(self.compressor.compress(data))
        self.raw_bytes += len(data)

    async def write(self, chunk: Chunk) -> None:
        await trio.to_thread.run_sync(self._write_sync, chunk.data)

    def _checkpoint_sync(self) -> dict[str, Any]:
        self._emit(self.compressor.end_member())
        self.file.flush()
        os.fsync(self.file.fileno())
        return {"temp": str(self.temp), "files": [str(self.temp)], "stored_offset": self.stored_bytes,
                "raw_offset": self.raw_bytes}

    async def checkpoint(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self._checkpoint_sync)

    async def close_for_resume(self) -> None:
        """Close without deleting: the next run resumes from the last checkpoint."""
        self.done = True
        await trio.to_thread.run_sync(self.file.close)

    def _prepare_sync(self) -> None:
        self._emit(self.compressor.flush())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    async def prepare(self) -> None:
        await trio.to_thread.run_sync(self._prepare_sync)

    async def commit(self, result: StreamResult) -> Mapping[str, Any]:
        settings = self.sink.settings
        metadata = self.stream.metadata
        if self.stored_format is not None:
            metadata = {**metadata, "format": self.stored_format}
        final = naming.expand(settings.name, directory=self.directory, recording_id=self.stream.id,
                              metadata=metadata, source=self.stream.source, pipeline=self.stream.pipeline,
                              started_at=self.stream.started_at, suffix=self.compressor.suffix)
        stored_sha = self.stored_hash.hexdigest()
        manifest = {
            "source": self.stream.source, "pipeline": self.stream.pipeline, "recording_id": self.stream.id,
            "format": metadata.get("format"), "original_size": result.bytes,
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
