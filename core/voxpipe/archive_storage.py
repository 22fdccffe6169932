"""Where an archive's recordings live, for ``voxpipe serve`` and ``voxpipe retention``.

An archive is a set of stored recordings, each with its manifest (:mod:`voxpipe.manifest`).
The archive commands read it through an :class:`ArchiveStorage`: a catalogue of entries
(list the manifests), ranged reads of a stored recording (bounded blocks, never whole),
and deletion. ``voxpipe_archive`` implements it for a directory; plugins add other
stores through the ``open_archive_storage`` hook (the ``s3`` plugin: ``s3://bucket/prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping, Protocol

from .manifest import Manifest


@dataclass(frozen=True)
class Entry:
    """One catalogued recording: its manifest, the stored recording's name relative to the
    archive's root (POSIX form; an object key after the prefix), and its time (``when``,
    UTC) with the manifest key it came from."""

    manifest: Manifest
    relative: str
    when: datetime | None
    when_key: str | None


@dataclass(frozen=True)
class EntryLookup:
    """Entries indexed for the archive's lookups: ``all`` oldest recording first (undated
    last), ``by_id`` by recording id, ``by_interaction`` by every platform id of their
    manifests (:attr:`voxpipe.manifest.Manifest.interaction_ids`)."""

    all: tuple[Entry, ...] = ()
    by_id: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)
    by_interaction: Mapping[str, tuple[Entry, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> "EntryLookup":
        entries = list(entries)
        by_id: dict[str, list[Entry]] = {}
        by_interaction: dict[str, list[Entry]] = {}
        for entry in entries:
            by_id.setdefault(entry.manifest.recording_id, []).append(entry)
            for iid in entry.manifest.interaction_ids:
                by_interaction.setdefault(iid, []).append(entry)
        ordered = sorted(entries, key=lambda e: (e.when is None, e.when.timestamp() if e.when else 0.0, e.relative))
        return cls(tuple(ordered), {k: tuple(v) for k, v in by_id.items()},
                   {k: tuple(v) for k, v in by_interaction.items()})


class NotStored(Exception):
    """The entry's stored recording cannot be read (gone, outside the archive, not a regular
    file, changed under its manifest); ``reason`` is a short code for the HTTP error."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class DeleteRefused(Exception):
    """The store refused a deletion (e.g. S3 Object Lock: AccessDenied); the message says why."""


class RangeReader(Protocol):
    """Sequential reads of one byte range of a stored recording (blocking; call from a worker thread)."""

    def read(self, n: int) -> bytes:
        """Up to ``n`` more bytes of the range (``b""`` at its end or when the store ended early)."""

    def close(self) -> None:
        """Release the connection or file. Idempotent."""


class StoredObject(Protocol):
    """An opened stored recording: its ``size`` in bytes and ranged readers."""

    size: int

    def open_range(self, start: int, length: int) -> RangeReader:
        """A reader of bytes ``start`` .. ``start + length - 1``."""

    def close(self) -> None:
        """Idempotent."""


class Catalogue(Protocol):
    """The archive's entries, refreshed on demand (thread-safe)."""

    truncated: bool

    def refresh(self, *, force: bool = False) -> None: ...

    def invalidate(self) -> None: ...

    def entries(self) -> tuple[Entry, ...]: ...

    def by_recording_id(self, recording_id: str) -> tuple[Entry, ...]: ...

    def by_interaction_id(self, interaction_id: str) -> tuple[Entry, ...]: ...


class ArchiveStorage(Protocol):
    """An archive the serve and retention commands can work on (blocking methods: call them
    from worker threads).

    :ivar label: where the archive is, for messages (a directory, ``s3://bucket/prefix``).
    :ivar catalogue: its entries.
    """

    label: str
    catalogue: Catalogue

    def open(self, entry: Entry) -> StoredObject:
        """Open the stored recording of ``entry``. :raises NotStored: it cannot be read."""

    def hold(self, entry: Entry) -> str | None:
        """A hold the store itself places on the recording (an S3 legal hold, an Object Lock
        retention not yet over), described, or ``None``."""

    def delete(self, entry: Entry) -> None:
        """Delete the stored recording, then its manifest.

        :raises DeleteRefused: the store refused (the message names the object and why).
        """
