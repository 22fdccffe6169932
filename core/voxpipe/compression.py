"""Compressors for storing sinks: identity and gzip (zlib or ISA-L igzip), with checkpoint members.

Used by every sink that stores bytes (``file``, ``gzip``, ``wav``, object storage), so
a compressed archive is the same plain RFC 1952 gzip whichever sink wrote it. The gzip
compressor writes through ISA-L's igzip (python-isal, a regular dependency) or, where
python-isal cannot be installed, zlib (with a one-line warning); both produce plain gzip
that ``gzip -d`` and Python's :mod:`gzip` read. igzip has four levels (0-3), so gzip
levels map as :data:`ISAL_LEVELS`; the manifest's ``compression`` records what was used,
as ``gzip:<engine>:<level>`` (e.g. ``gzip:isal:1``, ``gzip:zlib:6``), or ``gzip:stored``
when ``compress: auto`` found an already-compressed codec (:mod:`voxpipe.compressibility`)
and wrote stored deflate blocks (RFC 1951 §3.2.4; zlib level 0), still plain gzip. A
checkpoint ends the current gzip member (:meth:`Compressor.end_member`), so a partial file
is valid gzip up to its last checkpoint (RFC 1952 §2.2: concatenated members are one file).
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, BinaryIO, Iterator, Literal, Mapping

from pydantic import model_validator

from .compressibility import SNIFF_BYTES, Decision, decide
from .settings import Settings, setting

log = logging.getLogger("voxpipe.compression")

#: Bytes per read when replaying or re-hashing stored bytes.
REPLAY_BLOCK = 1 << 20
#: gzip level (1-9) -> igzip level (0-3). igzip 1 is its fastest LZ77 search, 2 its
#: default, 3 its most thorough; on 8 kHz speech all three compress within 1 % of zlib 6
#: (benchmarks/archive_throughput.py), so fast gzip levels stay fast and higher ones get
#: igzip's best.
ISAL_LEVELS = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 3, 7: 3, 8: 3, 9: 3}
#: gzip container for zlib's and isal_zlib's ``wbits`` (RFC 1952 header and trailer).
GZIP_WBITS = 31
#: The gzip sink's default level: igzip level 1 stores 8 kHz speech at the same size as
#: igzip 2-3 and within 2-3 % of zlib 6, at 1.3-2x igzip 3's speed (docs/operations.md,
#: "Compression level"), so it is the level for archives.
DEFAULT_LEVEL = 1
#: Compression modes of a compressing sink (``compress`` setting).
COMPRESS_MODES = ("auto", "always", "never")

_warned_no_isal = False


def isal_zlib_module() -> Any | None:
    """``isal.isal_zlib`` (python-isal, a regular dependency), or ``None`` where it is not installed."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _warn_no_isal() -> None:
    global _warned_no_isal
    if not _warned_no_isal:
        _warned_no_isal = True
        log.warning("python-isal is not installed here: gzip falls back to zlib, about 8x slower "
                    "(pip install isal)")


class GzipOptions(Settings):
    """The gzip settings every compressing sink declares (``level``, ``engine``)."""

    level: int = setting(DEFAULT_LEVEL, description="gzip compression level, 1 (fastest) to 9 (smallest). With "
                         "igzip: level 1 is igzip 1, 2-3 igzip 2, 4-9 igzip 3. On 8 kHz speech igzip 1 stores the "
                         "same size as igzip 3 at 1.3-2x the speed.", ge=1, le=9)
    engine: Literal["auto", "zlib", "isal"] = setting(
        "auto", description="Compressor: `isal` (ISA-L igzip through python-isal, about 8x faster than zlib), "
        "`zlib`, or `auto` (isal, else zlib with a warning where python-isal cannot be installed). The output is "
        "plain gzip either way.", example="isal")
    compress: Literal["auto", "always", "never"] = setting(
        "auto", description="`auto`: deflate PCM and G.711 μ-law/A-law WAV (and anything unrecognised), store "
        "already-compressed codecs (MP3, AAC/M4A, Opus, Vorbis, WebM, FLAC, AMR), decided from the first bytes, "
        "else the declared format, in stored deflate blocks: still plain gzip, without spending deflate on 1-2 % "
        "gains; `always`: deflate everything; `never`: stored blocks only. The manifest's `compression` says "
        "what was done (`gzip:stored` or `gzip:<engine>:<level>`) and `compression_note` why.")

    @model_validator(mode="after")
    def _check_engine(self) -> "GzipOptions":
        if self.engine == "isal" and isal_zlib_module() is None:
            raise ValueError("engine: isal needs python-isal, which is not installed "
                             "(pip install isal, or use engine: auto or zlib)")
        return self

    def compressor_engine(self) -> str:
        """``zlib`` or ``isal``: what ``engine`` resolves to here (``auto`` without python-isal warns once)."""
        if self.engine == "auto":
            if isal_zlib_module() is not None:
                return "isal"
            _warn_no_isal()
            return "zlib"
        return self.engine


class Compressor:
    """Identity 'compressor' for the plain file sink."""

    suffix = ""
    #: The manifest's ``compression`` value (``None``: stored as received).
    description: str | None = None
    #: Why (the manifest's ``compression_note``), once decided; ``None`` for identity.
    note: str | None = None
    #: Bytes :meth:`choose` wants to see (the identity compressor needs none).
    sniff_bytes = 0

    def choose(self, head: bytes, declared_format: str | None) -> None:
        """Decide how to store this stream from its first bytes (at least :attr:`sniff_bytes`
        of them, unless the stream is shorter) and declared format. Called once, before the
        first :meth:`compress`."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint records so a resumed stream continues the same way (JSON)."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue as recorded by :meth:`state` (a resumed stream)."""

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
    :param compress: ``always`` deflates; ``never`` writes stored blocks (zlib level 0);
        ``auto`` decides in :meth:`choose` (:func:`voxpipe.compressibility.decide`).
    :raises ValueError: ``engine`` is ``isal`` and python-isal is not installed.
    """

    suffix = ".gz"
    sniff_bytes = SNIFF_BYTES

    def __init__(self, level: int, engine: str = "zlib", compress: str = "always"):
        if compress not in COMPRESS_MODES:
            raise ValueError(f"unknown compress mode {compress!r} (one of {', '.join(COMPRESS_MODES)})")
        if engine == "isal":
            module = isal_zlib_module()
            if module is None:
                raise ValueError("gzip engine isal needs python-isal (pip install isal)")
            self._module, self.level = module, ISAL_LEVELS[level]
        elif engine == "zlib":
            self._module, self.level = zlib, level
        else:
            raise ValueError(f"unknown gzip engine {engine!r} (zlib or isal)")
        self.engine = engine
        self.mode = compress
        self._decided = self._stored = False
        #: What the manifest's ``compression`` records: ``gzip:<engine>:<level actually used>``.
        self.description = f"gzip:{engine}:{self.level}"
        if compress == "always":
            self._set(Decision(True, "deflated: compress is always"))
        elif compress == "never":
            self._set(Decision(False, "stored: compress is never"))
        self._z = None
        self._empty = True
        self._members = 0  # finished members written so far

    def _set(self, decision: Decision) -> None:
        self._decided = True
        self.note = decision.note
        if decision.deflate:
            self.description = f"gzip:{self.engine}:{self.level}"
            self._stored = False
        else:
            # Stored blocks: zlib level 0 (igzip's level 0 is a fast LZ77, not stored blocks).
            self.description = "gzip:stored"
            self._stored = True

    def choose(self, head: bytes, declared_format: str | None) -> None:
        if not self._decided:
            self._set(decide(head, declared_format))

    def state(self) -> dict[str, Any]:
        return {"deflate": not self._stored, "note": self.note} if self._decided else {}

    def restore(self, state: Mapping[str, Any]) -> None:
        if "deflate" in state:
            self._set(Decision(bool(state["deflate"]), str(state.get("note") or "")))

    def _new(self) -> Any:
        if not self._decided:
            self._set(Decision(True, "deflated: format not recognised"))
        if self._stored:
            return zlib.compressobj(0, zlib.DEFLATED, GZIP_WBITS)
        return self._module.compressobj(self.level, self._module.DEFLATED, GZIP_WBITS)

    def compress(self, data: bytes) -> bytes:
        self._empty = False
        if self._z is None:
            self._z = self._new()
        return self._z.compress(data)

    def flush(self) -> bytes:
        if self._empty and self._members:
            return b""  # a checkpoint closed the last member at the very end: no empty one after it
        if self._z is None:
            self._z = self._new()
        return self._z.flush()  # (an empty stream still gets one member: a valid empty gzip file)

    def end_member(self) -> bytes:
        # A finished gzip member; the next bytes start a new one. Concatenated members are
        # one valid gzip file (RFC 1952 §2.2) that gunzip and Python's gzip read whole.
        if self._empty:
            return b""
        tail = self._z.flush()
        self._z = None
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


