"""The ``file`` and ``gzip`` sinks: crash-safe storage with a manifest beside each file.

Each stream is written to ``.<id>.<random>.part`` in the target directory, fsynced in
``prepare`` and renamed to its final name in ``commit`` (only after every verifier
passed). Beside it, ``<final name>.json`` is the manifest: source, recording id,
format, original size and SHA-256 (of the bytes as received), stored file's SHA-256 and
size, and times. ``abort`` deletes the temporary file, or with ``on_failure: quarantine``
moves it (as stored: a partial gzip is finished into a valid gzip file) into the
quarantine directory with a JSON report of why (see :func:`_FileWriter._quarantine_sync`).
File I/O and compression run in worker threads.

The ``gzip`` sink compresses with zlib or, when python-isal is installed (the ``fast``
extra), with ISA-L's igzip, several times faster; both write plain RFC 1952 gzip that
``gzip -d`` and Python's :mod:`gzip` read. igzip has four levels (0-3), so gzip levels
map as :data:`ISAL_LEVELS`; the manifest's ``compression`` records what was used, as
``gzip:<engine>:<level>`` (e.g. ``gzip:isal:3``, ``gzip:zlib:6``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Literal, Mapping

import trio
from pydantic import field_validator, model_validator

from voxpipe.atomic import fsync_dir, is_temporary, temp_path_for, write_atomic
from voxpipe.components import Sink, SinkWriter
from voxpipe.errors import SinkError
from voxpipe.model import Chunk, Stream, StreamResult
from voxpipe.settings import Settings, setting

from . import naming

MANIFEST_SUFFIX = ".json"
#: Default quarantine directory inside the sink's ``dir``: a dot-directory, which the
#: archive's retrieval API never serves and no name template can produce.
DEFAULT_QUARANTINE = ".quarantine"
#: Failure reasons that never quarantine: the stream was stopped, not judged. (Streams
#: that failed before any byte arrived and without a verdict, e.g. a metadata gate,
#: are not quarantined either: there is nothing to inspect.)
NOT_QUARANTINED = frozenset({"interrupted"})
#: Bytes per read when replaying or re-hashing a checkpointed temporary file.
REPLAY_BLOCK = 1 << 20
#: gzip level (1-9) -> igzip level (0-3). igzip 1 is its fastest LZ77 search, 2 its
#: default, 3 its most thorough; on 8 kHz speech all three compress within 1 % of zlib 6
#: (benchmarks/archive_throughput.py), so fast gzip levels stay fast and higher ones get
#: igzip's best.
ISAL_LEVELS = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 3, 7: 3, 8: 3, 9: 3}
#: gzip container for zlib's and isal_zlib's ``wbits`` (RFC 1952 header and trailer).
GZIP_WBITS = 31


def isal_zlib_module() -> Any | None:
    """``isal.isal_zlib`` when python-isal is installed (``pip install 'voxpipe[fast]'``), else ``None``."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


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


class GzipSinkSettings(FileSinkSettings):
    level: int = setting(6, description="gzip compression level, 1 (fastest) to 9 (smallest). With igzip: "
                         "level 1 is igzip 1, 2-3 igzip 2, 4-9 igzip 3.", ge=1, le=9)
    engine: Literal["auto", "zlib", "isal"] = setting(
        "auto", description="Compressor: `zlib`, `isal` (ISA-L igzip through python-isal, several times faster; "
        "`pip install 'voxpipe[fast]'`) or `auto` (isal when installed, else zlib). The output is plain gzip "
        "either way.", example="isal")

    @model_validator(mode="after")
    def _check_engine(self) -> "GzipSinkSettings":
        if self.engine == "isal" and isal_zlib_module() is None:
            raise ValueError("engine: isal needs python-isal, which is not installed "
                             "(pip install 'voxpipe[fast]', or use engine: auto or zlib)")
        return self

    def compressor_engine(self) -> str:
        """``zlib`` or ``isal``: what ``engine`` resolves to here."""
        if self.engine == "auto":
            return "isal" if isal_zlib_module() is not None else "zlib"
        return self.engine


class _Compressor:
    """Identity 'compressor' for the plain file sink."""

    suffix = ""
    #: The manifest's ``compression`` value (``None``: stored as received).
    description: str | None = None

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
    """RFC 1952 gzip members through zlib or igzip (header mtime 0, so output is reproducible).

    :param level: gzip level 1-9.
    :param engine: ``zlib`` or ``isal`` (igzip at ``ISAL_LEVELS[level]``).
    :raises ValueError: ``engine`` is ``isal`` and python-isal is not installed.
    """

    suffix = ".gz"

    def __init__(self, level: int, engine: str = "zlib"):
        if engine == "isal":
            module = isal_zlib_module()
            if module is None:
                raise ValueError("gzip engine isal needs python-isal (pip install 'voxpipe[fast]')")
            self._module, self.level = module, ISAL_LEVELS[level]
        elif engine == "zlib":
            self._module, self.level = zlib, level
        else:
            raise ValueError(f"unknown gzip engine {engine!r} (zlib or isal)")
        self.engine = engine
        #: What the manifest's ``compression`` records: ``gzip:<engine>:<level actually used>``.
        self.description = f"gzip:{engine}:{self.level}"
        self._z = self._new()
        self._empty = True
        self._members = 0  # finished members written so far

    def _new(self) -> Any:
        return self._module.compressobj(self.level, self._module.DEFLATED, GZIP_WBITS)

    def compress(self, data: bytes) -> bytes:
        self._empty = False
        return self._z.compress(data)

    def flush(self) -> bytes:
        if self._empty and self._members:
            return b""  # a checkpoint closed the last member at the very end: no empty one after it
        return self._z.flush()  # (an empty stream still gets one member: a valid empty gzip file)

    def end_member(self) -> bytes:
        # A finished gzip member; the next bytes start a new one. Concatenated members are
        # one valid gzip file (RFC 1952 §2.2) that gunzip and Python's gzip read whole.
        if self._empty:
            return b""
        tail = self._z.flush()
        self._z = self._new()
        self._empty = True
        self._members += 1
        return tail

    def replay(self, f: BinaryIO, limit: int) -> Iterator[bytes]:
        # zlib reads whatever either engine wrote: the members are plain gzip.
        remaining = limit
        d = zlib.decompressobj(GZIP_WBITS)
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
                    d = zlib.decompressobj(GZIP_WBITS)
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
        return _Gzip(self.settings.level, self.settings.compressor_engine())


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
                              started_at=self.stream.started_at, suffix=self.compressor.suffix)
        stored_sha = self.stored_hash.hexdigest()
        manifest = {
            "source": self.stream.source, "pipeline": self.stream.pipeline, "recording_id": self.stream.id,
            "format": metadata.get("format"), "original_size": result.bytes,
            "original_sha256": result.digests.get("sha256"), "stored_file": final.name,
            "stored_size": self.stored_bytes, "stored_sha256": stored_sha,
            "compression": getattr(self.compressor, "description", None),
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
            "quarantined_at": _iso(time.time()), "file": dest.name, "stored_size": self.stored_bytes,
            "stored_sha256": self.stored_hash.hexdigest(), "original_bytes": self.raw_bytes,
            "compression": "gzip" if self.compressor.suffix == ".gz" else None, "metadata": result.metadata,
        }
        write_atomic(str(dest) + MANIFEST_SUFFIX, json.dumps(report, indent=2, sort_keys=True, default=str).encode())
        return dest


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
