"""Crash-safe file storage shared by the file-storing sinks (``file``, ``gzip``, ``wav``, third parties').

Each stream is written to ``.<id>.<random>.part`` in the target directory, fsynced in
``prepare`` and renamed to its final name in ``commit`` (only after every verifier
passed). Beside it, ``<final name>.json`` is the manifest (:mod:`voxpipe.manifest`).
The stored file's SHA-256 is computed in the pass that writes it (in the worker-thread
hop that also compresses the chunk), or, when the engine vouches for it
(:attr:`voxpipe.model.Stream.shared_sha256`) and the bytes are stored as received, taken
from the sha256 verifier's digest at commit instead of hashing the same bytes twice.
``commit`` renames the file and its manifest and fsyncs their directory once.
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
from .atomic import fsync_dir, hold_temporary, is_temporary, temp_path_for, write_atomic, write_durable_temp
from .compression import REPLAY_BLOCK, Compressor
from .components import Sink, SinkWriter
from .errors import SinkError
from .manifest import MANIFEST_SUFFIX, build_manifest, dumps
from .model import Chunk, Stream, StreamResult
from .orphans import remove_orphans, template_depth
from .settings import Settings, setting
from .statefiles import no_space

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
        # One worker-thread hop: creating a file is a metadata write that can block on a
        # busy disk, so it never runs on the event loop.
        return await trio.to_thread.run_sync(self._begin_sync, stream)

    def _begin_sync(self, stream: Stream) -> SinkWriter:
        directory = Path(self.settings.dir)
        temp = temp_path_for(directory / naming.temp_stem(stream.id))
        try:
            try:
                f = open(temp, "xb")
            except FileNotFoundError:  # first stream (or the directory was removed): create it once, not per stream
                directory.mkdir(parents=True, exist_ok=True)
                f = open(temp, "xb")
        except OSError as exc:
            raise io_failure(exc, stream, "creating", temp) from None
        return FileWriter(self, stream, directory, self.compressor(), temp, f)

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
        writer.compressor.restore(checkpoint.get("compressor") or {})
        writer.chosen = True
        if writer.stored_hash is not None:
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
        """Delete orphaned temporary files in ``dir``, every directory the name template can
        create below it, and the quarantine directory; never one a live run holds or a
        resumable checkpoint names (see :mod:`voxpipe.orphans`)."""
        directory = Path(self.settings.dir)
        qdir = Path(self.settings.quarantine_dir) if self.settings.quarantine_dir is not None \
            else directory / DEFAULT_QUARANTINE
        keep = [str(cp["temp"]) for cp in checkpoints if cp.get("temp")]
        return remove_orphans([(directory, template_depth(self.settings.name)), (qdir, 0)], keep=keep)


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
        hold_temporary(file.fileno())  # marks the file live for other runs' orphan clean-up
        # Hash once: bytes stored as received (identity compressor, no container of this
        # writer's own) whose SHA-256 the engine hands over at commit need no second hash.
        shared = stream.shared_sha256 and compressor.description is None and self.stored_format is None
        #: SHA-256 of the bytes written so far, or ``None`` when taken from the verifier at commit.
        self.stored_hash: Any = None if shared else hashlib.sha256()
        self.stored_bytes = 0
        self.raw_bytes = 0
        #: Whether the compressor has seen the stream's first bytes (``compress: auto``).
        self.chosen = False
        self.done = False

    def _emit(self, out: bytes) -> None:
        if out:
            self.file.write(out)
            if self.stored_hash is not None:
                self.stored_hash.update(out)
            self.stored_bytes += len(out)

    def _write_sync(self, data: bytes) -> None:
        try:
            self._write_raw(data)
        except OSError as exc:  # in the worker thread: the engine may call this directly (threaded_write)
            raise io_failure(exc, self.stream, "writing", self.temp) from None

    def _write_raw(self, data: bytes) -> None:
        if not self.chosen:
            self.chosen = True
            self.compressor.choose(data[:self.compressor.sniff_bytes], self.stream.metadata.get("format"))
        self._emit(self.compressor.compress(data))
        self.raw_bytes += len(data)

    async def write(self, chunk: Chunk) -> None:
        await trio.to_thread.run_sync(self._write_sync, chunk.data)

    @property
    def threaded_write(self) -> Any:  # type: ignore[override]
        # Only while ``write`` is this class's own: a subclass writing its own way (the wav
        # sink's buffered container) keeps its ``write``.
        return self._write_sync if type(self).write is FileWriter.write else None

    def _checkpoint_sync(self) -> dict[str, Any]:
        self._emit(self.compressor.end_member())
        self.file.flush()
        sync_data(self.file.fileno())
        entry = {"temp": str(self.temp), "stored_offset": self.stored_bytes, "raw_offset": self.raw_bytes}
        if state := self.compressor.state():
            entry["compressor"] = state  # a resumed stream keeps deflating (or storing) as it began
        return entry

    async def checkpoint(self) -> dict[str, Any]:
        try:
            return await trio.to_thread.run_sync(self._checkpoint_sync)
        except OSError as exc:
            raise io_failure(exc, self.stream, "writing", self.temp) from None

    async def suspend(self, result: StreamResult) -> None:
        """Close without deleting: the next run resumes from the last checkpoint."""
        self.done = True
        await trio.to_thread.run_sync(self.file.close)

    def _prepare_sync(self) -> None:
        self._emit(self.compressor.flush())
        self.file.flush()
        sync_data(self.file.fileno())
        self.file.close()

    async def prepare(self) -> None:
        try:
            await trio.to_thread.run_sync(self._prepare_sync)
        except OSError as exc:
            raise io_failure(exc, self.stream, "writing", self.temp) from None

    async def commit(self, result: StreamResult) -> Mapping[str, Any]:
        settings = self.sink.settings
        metadata = self.stream.metadata
        if self.stored_format is not None:
            metadata = {**metadata, "format": self.stored_format}
        # Naming resolves paths (filesystem calls): in the worker thread with the renames.
        try:
            final, stored_sha = await trio.to_thread.run_sync(self._publish_sync, metadata, result)
        except OSError as exc:
            raise io_failure(exc, self.stream, "publishing", self.directory) from None
        self.done = True
        out = {"path": str(final), "sha256": stored_sha, "bytes": self.stored_bytes}
        if settings.manifest:
            out["manifest"] = str(final) + MANIFEST_SUFFIX
        return out

    def _stored_sha256(self, result: StreamResult) -> str:
        """The stored file's SHA-256: hashed while writing, else the verified digest of the bytes as
        received (the same bytes: see ``__init__``), else (the engine could not vouch) read back."""
        if self.stored_hash is not None:
            return self.stored_hash.hexdigest()
        shared = result.digests.get("sha256")
        if isinstance(shared, str) and len(shared) == 64 and self.stored_bytes == result.bytes:
            return shared
        return file_sha256(self.temp)

    def _publish_sync(self, metadata: Mapping[str, Any], result: StreamResult) -> tuple[Path, str]:
        """Name the file, rename it and its manifest into place with one directory fsync for
        both; returns the final path and the stored SHA-256."""
        final = naming.expand(self.sink.settings.name, directory=self.directory, recording_id=self.stream.id,
                              metadata=metadata, source=self.stream.source, pipeline=self.stream.pipeline,
                              started_at=self.stream.started_at, suffix=self.compressor.suffix,
                              facts=self.stream.facts)
        fmt = metadata.get("format")
        stored_sha = self._stored_sha256(result)
        extra = {"compression_note": self.compressor.note} if self.compressor.note else None
        manifest = build_manifest(stream=self.stream, result=result, stored_name=final.name,
                                  stored_size=self.stored_bytes, stored_sha256=stored_sha,
                                  compression=self.compressor.description, fmt=fmt, extra=extra)
        final.parent.mkdir(parents=True, exist_ok=True)
        manifest_path = Path(str(final) + MANIFEST_SUFFIX)
        # The manifest is durable under a temporary name before either rename, so one
        # directory fsync after both makes the pair durable (the data file is renamed
        # first: a visible manifest never names a missing file).
        manifest_temp = write_durable_temp(manifest_path, dumps(manifest)) if self.sink.settings.manifest else None
        try:
            if final.exists() and not self.sink.settings.overwrite:
                if existing_sha256(final) == stored_sha:
                    self.temp.unlink(missing_ok=True)  # identical content is already stored: idempotent
                else:
                    raise SinkError(f"recording {self.stream.id}: {final} already exists with different content "
                                    "(set overwrite: true to replace it)", reason="exists")
            else:
                os.replace(self.temp, final)
            if manifest_temp is not None:
                os.replace(manifest_temp, manifest_path)
                manifest_temp = None
            fsync_dir(final.parent)
        finally:
            if manifest_temp is not None:
                manifest_temp.unlink(missing_ok=True)
        return final, stored_sha

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
            sync_data(self.file.fileno())
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
            "stored_sha256": self.stored_hash.hexdigest() if self.stored_hash is not None else file_sha256(dest),
            "original_bytes": self.raw_bytes,
            "compression": "gzip" if self.compressor.suffix == ".gz" else None, "metadata": result.metadata,
            "facts": self.stream.facts.to_json(),
        }
        write_atomic(str(dest) + MANIFEST_SUFFIX, dumps(report))
        return dest


def io_failure(exc: OSError, stream: Stream, doing: str, path: Path) -> SinkError:
    """The stream's failure for an OSError met while ``doing`` (``"writing"``) ``path``
    (the OSError's own file name when it has one).

    Reason ``disk-full`` for no space (ENOSPC, a quota, a file-size limit), else
    ``io-error``; the message names the recording and the path. The engine then aborts
    the writer, which deletes the temporary file: nothing partial stays, and the next run
    (after space is freed) fetches the recording again.
    """
    reason = "disk-full" if no_space(exc) else "io-error"
    hint = "; free space there and run again" if reason == "disk-full" else ""
    where = exc.filename or path
    return SinkError(f"recording {stream.id}: {doing} {where} failed: {exc.strerror or exc}{hint}", reason=reason)


def sync_data(fd: int) -> None:
    """Make a file's bytes and size durable: ``fdatasync`` where the OS has it (POSIX), else
    ``fsync``. fdatasync skips the timestamps, which nothing here relies on, so an ext4 or
    XFS checkpoint costs less journal work; the directory entry is made durable separately
    (:func:`voxpipe.atomic.fsync_dir` after the rename)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def existing_sha256(path: Path) -> str:
    """SHA-256 (hex) of a stored file: from its manifest when readable, else by reading it."""
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    try:
        return json.loads(manifest.read_text())["stored_sha256"]
    except (OSError, ValueError, KeyError):
        pass
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in :data:`REPLAY_BLOCK` blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(REPLAY_BLOCK):
            h.update(block)
    return h.hexdigest()
