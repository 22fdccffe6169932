"""Reading an archive where it is stored: the listing interface ``voxpipe verify`` works over.

An :class:`ArchiveStore` lists the visible entries of an archive (stored recordings and
their manifests; never hidden state such as ``.voxpipe/`` or ``.quarantine/``, nor
temporary ``.*.part`` files) and opens one for reading. :class:`DirectoryStore` is the
archive directory the file sinks write. Object storage plugs in by registering a factory
for its URL scheme with the ``register_archive_stores`` hook::

    @voxpipe.hookimpl
    def register_archive_stores(register):
        register("s3", lambda url: S3Store(url))   # voxpipe verify s3://bucket/prefix

so every command built on this interface (``voxpipe verify`` today) works there unchanged.
"""

from __future__ import annotations

import contextlib
import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import VoxpipeError

#: Deepest directory level listed below an archive's root (name templates use a few levels).
MAX_DEPTH = 16
#: Most entries one listing yields; beyond it the listing fails rather than run unbounded.
MAX_ENTRIES = 10_000_000


class ArchiveStoreError(VoxpipeError):
    """An archive cannot be listed or read at all; the message names the location."""


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One visible entry of an archive.

    :ivar name: its key relative to the archive root, ``/``-separated (``2026/11/100001.wav.gz``).
    :ivar size: its size in bytes.
    """

    name: str
    size: int


class ArchiveStore(ABC):
    """An archive's storage, read-only. Implementations must be usable from worker threads."""

    #: Where the archive is, for people (a directory, ``s3://bucket/prefix``).
    location: str

    @abstractmethod
    def entries(self) -> Iterator[StoredEntry]:
        """Every visible entry, in a stable order (hidden and temporary entries left out).

        :raises ArchiveStoreError: the archive cannot be listed, or holds more than
            :data:`MAX_ENTRIES` entries.
        """

    @abstractmethod
    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """Open entry ``name`` for reading (a context manager yielding a binary file).

        :raises FileNotFoundError: no such entry.
        :raises OSError: it cannot be read.
        """

    def read(self, name: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of entry ``name`` (so a caller can tell "too large")."""
        with self.open(name) as f:
            return f.read(limit + 1)


def is_hidden(name: str) -> bool:
    """Whether any segment of ``name`` starts with a dot (state, quarantine, temporaries)."""
    return any(part.startswith(".") for part in name.split("/"))


class DirectoryStore(ArchiveStore):
    """An archive directory on a file system. Symlinks are neither followed nor listed."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.location = str(self.root)
        if not self.root.is_dir():
            raise ArchiveStoreError(f"{self.root}: not a directory")

    def entries(self) -> Iterator[StoredEntry]:
        count = 0
        stack: list[tuple[Path, str, int]] = [(self.root, "", 0)]
        while stack:
            directory, prefix, depth = stack.pop()
            try:
                with os.scandir(directory) as it:
                    listed = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                raise ArchiveStoreError(f"{directory}: cannot be listed ({exc.strerror})") from None
            files = []
            for entry in listed:
                if entry.name.startswith("."):
                    continue
                st = entry.stat(follow_symlinks=False)
                name = f"{prefix}{entry.name}"
                if stat.S_ISDIR(st.st_mode):
                    if depth + 1 > MAX_DEPTH:
                        raise ArchiveStoreError(f"{entry.path}: deeper than {MAX_DEPTH} levels below {self.root}")
                    stack.append((Path(entry.path), name + "/", depth + 1))
                elif stat.S_ISREG(st.st_mode):
                    files.append(StoredEntry(name, st.st_size))
            for item in reversed(files):
                count += 1
                if count > MAX_ENTRIES:
                    raise ArchiveStoreError(f"{self.root}: more than {MAX_ENTRIES} entries")
                yield item

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if name.startswith("/") or ".." in name.split("/"):
            raise FileNotFoundError(name)
        fd = os.open(self.root / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            yield f


def open_store(location: str) -> ArchiveStore:
    """The store at ``location``: ``SCHEME://...`` through a plugin's registered factory,
    anything else a directory.

    :raises ArchiveStoreError: no such directory, or no plugin handles the URL scheme.
    """
    scheme, sep, _ = location.partition("://")
    if not sep:
        return DirectoryStore(location)
    factories = _store_factories()
    if scheme not in factories:
        known = ", ".join(f"{s}://" for s in sorted(factories)) or "none installed"
        raise ArchiveStoreError(f"{location}: no installed plugin reads {scheme}:// archives (known: {known})")
    return factories[scheme](location)


def _store_factories() -> dict[str, Callable[[str], ArchiveStore]]:
    from .plugins import get_plugin_manager

    factories: dict[str, Callable[[str], ArchiveStore]] = {}
    pm = get_plugin_manager()
    for impl in pm.hook.register_archive_stores.get_hookimpls():
        def register(scheme: str, factory: Callable[[str], ArchiveStore]) -> None:
            factories[scheme] = factory

        impl.function(register=register)
    return factories
