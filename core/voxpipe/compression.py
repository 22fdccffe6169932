"""Compressors for storing sinks: identity and gzip (zlib or ISA-L igzip), with checkpoint members.

Used by every sink that stores bytes (``file``, ``gzip``, ``wav``, object storage), so
a compressed archive is the same plain RFC 1952 gzip whichever sink wrote it. The gzip
compressor writes through zlib or, when python-isal is installed, ISA-L's igzip, several
times faster; both produce plain gzip that ``gzip -d`` and Python's :mod:`gzip` read.
igzip has four levels (0-3), so gzip levels map as :data:`ISAL_LEVELS`; the manifest's
``compression`` records what was used, as ``gzip:<engine>:<level>`` (e.g. ``gzip:isal:3``,
``gzip:zlib:6``). A checkpoint ends the current gzip member (:meth:`Compressor.end_member`),
so a partial file is valid gzip up to its last checkpoint (RFC 1952 §2.2: concatenated
members are one file).
"""

from __future__ import annotations

import zlib
from typing import Any, BinaryIO, Iterator, Literal

from pydantic import model_validator

from .settings import Settings, setting

#: Bytes per read when replaying or re-hashing stored bytes.
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


class GzipOptions(Settings):
    """The gzip settings every compressing sink declares (``level``, ``engine``)."""

    level: int = setting(6, description="gzip compression level, 1 (fastest) to 9 (smallest). With igzip: "
                         "level 1 is igzip 1, 2-3 igzip 2, 4-9 igzip 3.", ge=1, le=9)
    engine: Literal["auto", "zlib", "isal"] = setting(
        "auto", description="Compressor: `zlib`, `isal` (ISA-L igzip through python-isal, several times faster; "
        "`pip install 'voxpipe[fast]'`) or `auto` (isal when installed, else zlib). The output is plain gzip "
        "either way.", example="isal")

    @model_validator(mode="after")
    def _check_engine(self) -> "GzipOptions":
        if self.engine == "isal" and isal_zlib_module() is None:
            raise ValueError("engine: isal needs python-isal, which is not installed "
                             "(pip install 'voxpipe[fast]', or use engine: auto or zlib)")
        return self

    def compressor_engine(self) -> str:
        """``zlib`` or ``isal``: what ``engine`` resolves to here."""
        if self.engine == "auto":
            return "isal" if isal_zlib_module() is not None else "zlib"
        return self.engine


class Compressor:
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


class GzipCompressor(Compressor):
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


