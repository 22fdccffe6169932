"""``voxpipe verify ARCHIVE``: re-read every stored recording against its manifest.

For each manifest (:mod:`voxpipe.manifest`) in an :class:`~voxpipe.archivestore.ArchiveStore`:

- the stored file must exist (else **missing**);
- its size and SHA-256 must be the manifest's ``stored_size`` and ``stored_sha256``;
- when the manifest says ``compression: gzip``, every gzip member must decompress
  (CRC-32 and ISIZE checked by zlib, RFC 1952) to ``original_size`` bytes whose SHA-256 is
  ``original_sha256``; when stored uncompressed, the stored SHA-256 must be ``original_sha256``
  (any mismatch: **corrupt**, naming the check and, for gzip, the compressed byte offset).

A manifest that cannot be parsed is **bad-manifest**; a visible entry that is neither a
manifest nor described by one is an **orphan** (hidden state and temporary files are not
listed). Nothing is written. Files are checked in a bounded pool of worker threads
(hashing and zlib release the GIL), in blocks of :data:`READ_BLOCK` bytes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator

from .archivestore import ArchiveStore, StoredEntry
from .manifest import MANIFEST_SUFFIX, MAX_MANIFEST_BYTES, Manifest, ManifestError, parse_manifest

#: Bytes read at a time from a stored file.
READ_BLOCK = 1 << 20
#: Most bytes zlib may return per call (bounds memory for highly compressible input).
MAX_INFLATE_CHUNK = 4 << 20
#: Checks in flight at once, per worker.
QUEUE_PER_WORKER = 2

#: zlib's messages for what RFC 1952 calls them.
_ZLIB_ERRORS = {"incorrect data check": "CRC-32 of a member does not match its data",
                "incorrect length check": "ISIZE of a member does not match its data",
                "incorrect header check": "not a gzip member header"}

STATUSES = ("ok", "missing", "corrupt", "orphan", "bad-manifest")


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome for one stored file (or a stray entry).

    :ivar name: the stored file's (or stray entry's, or bad manifest's) name in the archive.
    :ivar status: one of :data:`STATUSES`.
    :ivar detail: what was wrong, naming the check and the values (empty when ok).
    :ivar recording_id: from the manifest, when there is one.
    """

    name: str
    status: str
    detail: str = ""
    recording_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "recording_id": self.recording_id}


@dataclass
class ArchiveReport:
    """Every problem found and how many files were checked."""

    location: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    problems: list[Finding] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, finding: Finding) -> None:
        self.counts[finding.status] += 1
        if finding.status != "ok":
            self.problems.append(finding)

    def to_dict(self) -> dict[str, Any]:
        return {"archive": self.location, "ok": self.ok, "counts": dict(self.counts), "bytes_read": self.bytes_read,
                "seconds": round(self.seconds, 3), "problems": [p.to_dict() for p in self.problems]}


def check_stored(store: ArchiveStore, manifest: Manifest, name: str,
                 on_bytes: Callable[[int], None] = lambda n: None) -> Finding:
    """Re-read one stored file against its manifest (see the module docstring)."""
    rid = manifest.recording_id
    digest = _GzipAware(manifest.compression == "gzip")
    try:
        with store.open(name) as f:
            while block := f.read(READ_BLOCK):
                digest.update(block)
                on_bytes(len(block))
    except FileNotFoundError:
        return Finding(name, "missing", "manifest found, stored file absent", rid)
    except OSError as exc:
        return Finding(name, "corrupt", f"cannot be read: {exc.strerror or exc}", rid)
    digest.finish()
    if digest.stored_size != manifest.stored_size:
        return Finding(name, "corrupt", f"size {digest.stored_size} bytes; the manifest says {manifest.stored_size}", rid)
    if digest.stored.hexdigest() != manifest.stored_sha256:
        return Finding(name, "corrupt", f"SHA-256 {digest.stored.hexdigest()} is not the manifest's stored_sha256 "
                       f"{manifest.stored_sha256}", rid)
    if digest.gzip:
        if digest.gzip_error:
            return Finding(name, "corrupt", digest.gzip_error, rid)
        if manifest.original_size is not None and digest.original_size != manifest.original_size:
            return Finding(name, "corrupt", f"gzip layer: decompresses to {digest.original_size} bytes; the manifest's "
                           f"original_size is {manifest.original_size}", rid)
        original = digest.original.hexdigest()
    else:
        original = digest.stored.hexdigest()
    if manifest.original_sha256 is not None and original != manifest.original_sha256:
        layer = "decompressed bytes" if digest.gzip else "stored bytes"
        return Finding(name, "corrupt", f"SHA-256 of the {layer} {original} is not the manifest's original_sha256 "
                       f"{manifest.original_sha256}", rid)
    return Finding(name, "ok", "", rid)


class _GzipAware:
    """Digests of a stored file: its own bytes, and with ``gzip`` those of every member's output."""

    def __init__(self, gzip: bool):
        self.gzip = gzip
        self.stored = hashlib.sha256()
        self.stored_size = 0
        self.original = hashlib.sha256()
        self.original_size = 0
        self.gzip_error: str | None = None
        self._inflate = zlib.decompressobj(wbits=31) if gzip else None
        self._member_input = 0  # compressed bytes fed to the current member
        self._members = 0

    def update(self, data: bytes) -> None:
        offset = self.stored_size
        self.stored.update(data)
        self.stored_size += len(data)
        if self._inflate is None or self.gzip_error is not None:
            return
        pending = data
        try:
            while pending:
                self._member_input += len(pending)
                out = self._inflate.decompress(pending, MAX_INFLATE_CHUNK)
                self.original.update(out)
                self.original_size += len(out)
                if self._inflate.eof:  # a member ended: the gzip sink writes one per checkpoint
                    self._members += 1
                    pending = self._inflate.unused_data
                    self._inflate = zlib.decompressobj(wbits=31)
                    self._member_input = 0
                else:
                    tail = self._inflate.unconsumed_tail
                    self._member_input -= len(tail)
                    pending = tail
        except zlib.error as exc:
            what = _ZLIB_ERRORS.get(str(exc).rsplit(": ", 1)[-1], str(exc))
            self.gzip_error = f"gzip layer: {what} (within the {len(data)} bytes at compressed offset {offset})"

    def finish(self) -> None:
        if self._inflate is None or self.gzip_error is not None:
            return
        if self._member_input or self._members == 0:
            self.gzip_error = (f"gzip layer: truncated (a member starts but does not end before byte "
                               f"{self.stored_size})" if self._member_input else "gzip layer: no gzip member")


def check_archive(store: ArchiveStore, *, jobs: int = 2,
                  on_listed: Callable[[int, int], None] = lambda files, total_bytes: None,
                  on_bytes: Callable[[int], None] = lambda n: None,
                  on_finding: Callable[[Finding], None] = lambda f: None) -> ArchiveReport:
    """Check every stored file of ``store`` against its manifest; report missing, corrupt,
    orphan files and bad manifests (module docstring).

    :param jobs: files checked at once (worker threads).
    :param on_listed: called once with the number of stored files to check and their bytes.
    :param on_bytes: called with each block's size as it is read (from worker threads).
    :param on_finding: called with each outcome, in the calling thread.
    :raises voxpipe.archivestore.ArchiveStoreError: the archive cannot be listed.
    """
    started = time.monotonic()
    report = ArchiveReport(location=store.location)
    entries: dict[str, StoredEntry] = {e.name: e for e in store.entries()}
    work: list[tuple[Manifest, str]] = []
    described: set[str] = set()
    for name in entries:
        if not name.endswith(MANIFEST_SUFFIX):
            continue
        stored_name = name[: -len(MANIFEST_SUFFIX)]
        try:
            data = store.read(name, MAX_MANIFEST_BYTES)
            if len(data) > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{name}: larger than {MAX_MANIFEST_BYTES} bytes")
            manifest = parse_manifest(PurePosixPath(name), data)  # type: ignore[arg-type]
        except (ManifestError, OSError) as exc:
            if stored_name in entries:  # it describes something: the stored file is unverifiable
                described.add(stored_name)
            _emit(report, Finding(name, "bad-manifest", str(exc).removeprefix(f"{name}: "), None), on_finding)
            continue
        described.add(stored_name)
        work.append((manifest, stored_name))
    for name in entries:
        if not name.endswith(MANIFEST_SUFFIX) and name not in described:
            _emit(report, Finding(name, "orphan", "no manifest describes it (no "
                                  f"{PurePosixPath(name).name}{MANIFEST_SUFFIX} beside it)"), on_finding)
    on_listed(len(work), sum(entries[n].size for _, n in work if n in entries))
    lock = threading.Lock()

    def counted(n: int) -> None:
        with lock:
            report.bytes_read += n
        on_bytes(n)

    for finding in _bounded_map(lambda item: check_stored(store, item[0], item[1], counted), work, jobs):
        _emit(report, finding, on_finding)
    report.seconds = time.monotonic() - started
    return report


def _emit(report: ArchiveReport, finding: Finding, on_finding: Callable[[Finding], None]) -> None:
    report.add(finding)
    on_finding(finding)


def _bounded_map(fn: Callable[[Any], Finding], items: list[Any], jobs: int) -> Iterator[Finding]:
    """``fn`` over ``items`` in ``jobs`` threads, at most ``jobs * QUEUE_PER_WORKER`` in flight."""
    jobs = max(1, jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="voxpipe-verify") as pool:
        pending: set[concurrent.futures.Future[Finding]] = set()
        iterator = iter(items)
        for item in iterator:
            pending.add(pool.submit(fn, item))
            if len(pending) >= jobs * QUEUE_PER_WORKER:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        for future in concurrent.futures.as_completed(pending):
            yield future.result()
