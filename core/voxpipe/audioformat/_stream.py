"""Incremental structure reader shared by the container parsers (sans-IO).

A container parser is a state machine that, in each state, wants either the next
``need`` bytes as one block (a header, a chunk of metadata) or to pass over the
next ``skip`` bytes (a payload it does not look inside; it may still see them,
e.g. to update a CRC). :class:`StructReader` turns arbitrary chunking of the
input (1 byte to many MiB per call) into exactly those blocks and runs, keeping
at most one partial block between calls. That carry is the only state that
grows with input and is capped by :data:`MAX_CARRY_BYTES`; payloads are never
buffered, so a 2 GB recording is checked in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import AudioFormatError
from .model import HeadInfo

__all__ = ["MAX_CARRY_BYTES", "StructReader", "UNBOUNDED"]

#: Largest block any parser may ask for in one piece, so the most bytes carried
#: between ``feed`` calls. The largest real request is an Ogg page body kept whole
#: for the first page (at most 255 × 255 = 65025 bytes); everything else is a few
#: KiB at most.
MAX_CARRY_BYTES = 64 * 1024 + 512

#: ``skip`` value meaning "to the end of the stream" (a WAV whose data size is a
#: placeholder, for instance).
UNBOUNDED = -1


class StructReader:
    """Base class: feed bytes in, get ``_on_block`` / ``_on_skipped`` calls out.

    Subclasses set ``self._need`` (bytes wanted as one block, 1 ≤ need ≤
    :data:`MAX_CARRY_BYTES`) or ``self._skip`` (bytes to pass over, or
    :data:`UNBOUNDED`) from their handlers. ``self.offset`` is the absolute offset
    of the next byte not yet handed to a handler.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 1
        self._skip = 0
        self.offset = 0
        #: The head, once the parser has identified it.
        self.head: HeadInfo | None = None
        #: Offset the head-size budget counts from (after an MP3's ID3v2 tag).
        self.head_base = 0
        #: Bytes of stream it took to identify the head (independent of chunking).
        self.head_found_at: int | None = None
        #: Called with the head the moment it is identified, before any later
        #: byte is parsed, so head checks and structural errors come in stream
        #: order whatever the chunking. May raise AudioFormatError.
        self.head_callback: Callable[[HeadInfo], None] | None = None

    # -- for subclasses -------------------------------------------------------
    def _set_head(self, head: HeadInfo) -> None:
        self.head = head
        self.head_found_at = self.offset
        if self.head_callback is not None:
            self.head_callback(head)

    def _want(self, n: int) -> None:
        """Ask for the next ``n`` bytes as one block."""
        if not 1 <= n <= MAX_CARRY_BYTES:
            raise AssertionError(f"parser asked for a {n}-byte block (limit {MAX_CARRY_BYTES})")
        self._need = n
        self._skip = 0

    def _pass_over(self, n: int) -> None:
        """Pass over the next ``n`` bytes (``UNBOUNDED``: all the rest); 0 calls
        :meth:`_skip_done` at once."""
        self._skip = n
        if n == 0:
            self._skip_done()

    def _on_block(self, block: memoryview, start: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _on_skipped(self, data: memoryview) -> None:
        """Sees the bytes passed over (default: ignores them)."""

    def _skip_done(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- driving --------------------------------------------------------------
    @property
    def carry_size(self) -> int:
        """Bytes held between calls (≤ :data:`MAX_CARRY_BYTES`)."""
        return len(self._buf)

    @property
    def in_progress(self) -> tuple[int, int]:
        """(bytes of a partial block held, bytes still to pass over); both 0 at a
        structure boundary. ``UNBOUNDED`` skips report -1."""
        return len(self._buf), self._skip

    def feed(self, data: memoryview) -> None:
        """Consume ``data`` entirely; handlers may raise :class:`AudioFormatError`."""
        pos = 0
        end = len(data)
        while True:
            skip = self._skip
            if skip:
                take = end - pos if skip == UNBOUNDED else min(skip, end - pos)
                if take == 0:
                    return
                self._on_skipped(data[pos : pos + take])
                pos += take
                self.offset += take
                if skip != UNBOUNDED:
                    self._skip = skip - take
                    if self._skip == 0:
                        self._skip_done()
                continue
            need = self._need
            buf = self._buf
            if buf:
                take = min(need - len(buf), end - pos)
                buf += data[pos : pos + take]
                pos += take
                if len(buf) < need:
                    return
                block = memoryview(bytes(buf))
                buf.clear()
            else:
                if end - pos < need:
                    if end > pos:
                        buf += data[pos:end]
                    return
                block = data[pos : pos + need]
                pos += need
            start = self.offset
            self.offset += need
            self._on_block(block, start)


def hexbytes(data: bytes | memoryview, limit: int = 8) -> str:
    """``data``'s first ``limit`` bytes as ``0x1A2B…`` for error messages."""
    head = bytes(data[:limit])
    return "0x" + head.hex().upper() + ("…" if len(data) > limit else "") if head else "nothing"


def truncated(what: str, offset: int) -> AudioFormatError:
    return AudioFormatError("truncated", f"stream ended at byte {offset} inside {what}", offset=offset)
