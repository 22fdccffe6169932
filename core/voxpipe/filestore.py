"""Crash-safe file storage shared by the file-storing sinks (``file``, ``gzip``, ``wav``, third parties').

Each stream is written to ``.<id>.<random>.part`` in the target directory, fsynced in
``prepare`` and renamed to its final name in ``commit`` (only after every verifier
passed). Beside it, ``<final name>.json`` is the manifest (:mod:`voxpipe.manifest`).
``abort`` deletes the temporary file, or with ``on_failure: quarantine`` moves it (as
stored: a partial gzip is finished into a valid gzip file) into the quarantine directory
with a JSON report of why (see :meth:`FileWriter._quarantine_sync`). File I/O and
compression run in worker threads.

A sink subclasses :class:`FileStoreSink` (and :class:`FileSinkSettings` for its
settings); a sink that writes its own container (the ``wav`` sink) subclasses
:class:`FileWriter` too. The resume checkpoint a :class:`FileWriter` records is this
module's own (``temp``, ``stored_offset``, ``raw_offset``): the engine stores it opaquely.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Literal, Mapping

import trio
from pydantic import field_validator

from . import naming
from .atomic import fsync_dir, is_temporary, temp_path_for, write_atomic
from .compression import REPLAY_BLOCK, Compressor
from .components import Sink, SinkWriter
from .errors import SinkError
from .manifest import MANIFEST_SUFFIX, build_manifest, dumps
from .model import Chunk, Stream, StreamResult
from .settings import Settings, setting

#: Default quarantine directory inside the sink's ``dir``: a dot-directory, which the
#: archive's retrieval API never serves and no name template can produce.
DEFAULT_QUARANTINE = ".quarantine"
#: Failure reasons that never quarantine: the stream was stopped, not judged. (Streams
#: that failed before any byte arrived and without a verdict, e.g. a metadata gate,
#: are not quarantined either: there is nothing to inspect.)
NOT_QUARANTINED = frozenset({"interrupted"})


class FileSinkSettings(Settings):
    dir: Path = setting(description="Directory the recordings are stored in (created if missing).",
                        example="./archive")
    name: str = setting("{recording_id}.{format}", description="File name template, relative to `dir`; fields: "
                        + ", ".join("`{%s}`" % f for f in naming.TEMPLATE_FIELDS) + ". May contain `/` for sub-directories.",
                        example="{year}/{month}/{recording_id}.{format}")
    manifest: bool = setting(True, description="Write a JSON manifest beside each stored file.")
    overwrite: bool = setting(False, description="Replace an existing file with different content. When false, an "
                              "existing identical file counts as stored and a different one fails the stream.")
    on_failure: Literal["delete", "quarantine"] = setting(
        "delete", description="What happens to a failed stream's bytes: `delete` them, or `quarantine` them (as "
        "received so far, in this sink's storage format) with a JSON file giving the reason and every verdict. "
        "Streams stopped by a shutdown are deleted either way.")
    quarantine_dir: Path | None = setting(None, description="Where quarantined streams go (created if missing); "
                                          f"default `<dir>/{DEFAULT_QUARANTINE}`.", example="./quarantine")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return naming.check_template(value)


class FileStoreSink(Sink):
    """Base of sinks storing each stream as a file, atomically, with a JSON manifest.

    Subclasses set ``type`` and ``Settings`` (a :class:`FileSinkSettings`) and may override
    :meth:`compressor` (identity by default).
    """

    Settings = FileSinkSettings

    def archive_dir(self) -> Path:
        return Path(self.settings.dir)

    def compressor(self) -> Compressor:
        """A fresh compressor for one stream (identity: stored as received)."""
        return Compressor()

    async def check_connect(self) -> list[Any]:
        """The directory (or where it would be created) accepts new files (an empty probe file
        is created and deleted; nothing else is written)."""
        from .connectcheck import check_writable_dir

        return [await trio.to_thread.run_sync(check_writable_dir, Path(self.settings.dir))]

    async def begin(self, stream: Stream) -> SinkWriter:
        directory = Path(self.settings.dir)
        await trio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
        temp = temp_path_for(directory / naming.temp_stem(stream.id))
        return FileWriter(self, stream, directory, self.compressor(), temp, open(temp, "xb"))

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
        writer = FileWriter(self, stream, Path(self.settings.dir), self.compressor(), temp, f)
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
            yield from self.compressor().replay(f, int(checkpoint["stored_offset"]))

    def discard(self, checkpoint: dict[str, Any]) -> None:
        self._checked_temp(checkpoint).unlink(missing_ok=True)

    def cleanup_orphans(self, checkpoints: list[dict[str, Any]]) -> list[str]:
        directory = Path(self.settings.dir)
        if not directory.is_dir():
            return []
        keep_real = {str(Path(str(cp.get("temp", ""))).resolve()) for cp in checkpoints if cp.get("temp")}
        removed = []
        for entry in directory.iterdir():
            if is_temporary(entry) and entry.is_file() and str(entry.resolve()) not in keep_real:
                entry.unlink(missing_ok=True)
                removed.append(str(entry))
        return removed


class FileWriter(SinkWriter):
    """The per-stream writer of a :class:`FileStoreSink`: temporary file, checkpoints, commit, abort."""

    #: The stored file's format when it differs from the source's (``wav`` for the wav sink):
    #: used for ``{format}`` in the name template and in the manifest.
    stored_format: str | None = None

    def __init__(self, sink: FileStoreSink, stream: Stream, directory: Path, compressor: Compressor, temp: Path,
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
        return {"temp": str(self.temp), "stored_offset": self.stored_bytes, "raw_offset": self.raw_bytes}

    async def checkpoint(self) -> dict[str, Any]:
        return await trio.to_thread.run_sync(self._checkpoint_sync)

    async def suspend(self, result: StreamResult) -> None:
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
                              started_at=self.stream.started_at, suffix=self.compressor.suffix,
                              facts=self.stream.facts)
        stored_sha = self.stored_hash.hexdigest()
        manifest = build_manifest(stream=self.stream, result=result, stored_name=final.name,
                                  stored_size=self.stored_bytes, stored_sha256=stored_sha,
                                  compression=getattr(self.compressor, "description", None),
                                  fmt=metadata.get("format"))
        await trio.to_thread.run_sync(self._publish_sync, final, manifest)
        self.done = True
        out = {"path": str(final), "sha256": stored_sha, "bytes": self.stored_bytes}
        if settings.manifest:
            out["manifest"] = str(final) + MANIFEST_SUFFIX
        return out

    def _publish_sync(self, final: Path, manifest: dict[str, Any]) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not self.sink.settings.overwrite:
            if existing_sha256(final) == manifest["stored_sha256"]:
                self.temp.unlink(missing_ok=True)  # identical content is already stored: idempotent
            else:
                raise SinkError(f"recording {self.stream.id}: {final} already exists with different content "
                                "(set overwrite: true to replace it)", reason="exists")
        else:
            os.replace(self.temp, final)
            fsync_dir(final.parent)
        if self.sink.settings.manifest:
            write_atomic(str(final) + MANIFEST_SUFFIX, dumps(manifest))

    async def abort(self, result: StreamResult) -> None:
        if self.done:
            return
        self.done = True
        try:
            quarantined = await trio.to_thread.run_sync(self._abort_sync, result)
        except OSError as exc:
            # Quarantine failed (disk full, cross-device quarantine_dir): never leave the
            # temporary file behind under a name cleanup_orphans would not recognise.
            await trio.to_thread.run_sync(self._abort_sync, None)
            raise SinkError(f"recording {self.stream.id}: cannot quarantine: {exc}", reason="quarantine-failed") from None
        if quarantined is not None:
            self.stream.audit("quarantine", sink=self.sink.type, path=str(quarantined), reason=result.reason)

    def _abort_sync(self, result: StreamResult | None = None) -> Path | None:
        """Quarantine (returning where) or delete the temporary file."""
        settings = self.sink.settings
        if (result is not None and settings.on_failure == "quarantine" and result.reason
                and not result.retrying  # the engine starts this stream again: nothing to keep yet
                and result.reason not in NOT_QUARANTINED and self.temp.exists()
                and (self.raw_bytes or result.verdicts)):  # no bytes and no verdict: nothing to inspect
            return self._quarantine_sync(result)
        if not self.file.closed:
            self.file.close()
        self.temp.unlink(missing_ok=True)
        return None

    def _quarantine_sync(self, result: StreamResult) -> Path:
        """Move the temporary file to the quarantine directory, with ``<name>.json`` beside it.

        Names: ``<id>.<UTC time>.<random>.<format><suffix>``, so repeated failures of one
        recording never overwrite each other. The JSON (written atomically, after the data
        file) holds: recording_id, source, pipeline, reason, message, verdicts,
        quarantined_at, file, stored_size, stored_sha256 (of the quarantined file),
        original_bytes (bytes received before the failure), compression, metadata.
        """
        if not self.file.closed:
            self._emit(self.compressor.flush())  # finish the gzip member: the file stays valid gzip
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        settings = self.sink.settings
        qdir = Path(settings.quarantine_dir) if settings.quarantine_dir is not None \
            else self.directory / DEFAULT_QUARANTINE
        qdir.mkdir(parents=True, exist_ok=True)
        fmt = str(self.stream.metadata.get("format") or "bin").lower()
        fmt = fmt if naming.is_safe_format(fmt) else "bin"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = qdir / f"{naming.temp_stem(self.stream.id)}.{stamp}.{secrets.token_hex(3)}.{fmt}{self.compressor.suffix}"
        os.replace(self.temp, dest)  # same filesystem by default; a move across filesystems raises
        fsync_dir(qdir)
        report = {
            "recording_id": self.stream.id, "source": self.stream.source, "pipeline": self.stream.pipeline,
            "reason": result.reason, "message": result.message,
            "verdicts": [v.to_dict() for v in result.verdicts],
            "quarantined_at": naming.utc_timestamp(time.time()), "file": dest.name, "stored_size": self.stored_bytes,
            "stored_sha256": self.stored_hash.hexdigest(), "original_bytes": self.raw_bytes,
            "compression": "gzip" if self.compressor.suffix == ".gz" else None, "metadata": result.metadata,
            "facts": self.stream.facts.to_json(),
        }
        write_atomic(str(dest) + MANIFEST_SUFFIX, dumps(report))
        return dest


def existing_sha256(path: Path) -> str:
    """SHA-256 (hex) of a stored file: from its manifest when readable, else by reading it."""
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
