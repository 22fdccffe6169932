"""The emulator's recordings catalogue: audio files in one directory.

A recording's id (also its ACD call id for the Media Playback API) is the file
stem, its ``format`` the lower-cased extension. For each file the store knows
the size in bytes, the duration in seconds (read with mutagen; for WAV, from
the RIFF header as a fallback), the SHA-256 of the content, an optional
whole-recording HMAC-SHA256, and a strong ETag derived from the content hash.

Runtime changes never touch the directory: :meth:`RecordingStore.mutate` and
:meth:`RecordingStore.replace` write a new version into a private overlay
directory (temp name, fsync, rename) so the ETag changes the way it would when
a recording is re-processed on the real service. ``tamper`` serves one byte
changed (XOR 0x01 at :attr:`Recording.tamper_offset`) while metadata, ETag and
MACs keep describing the original content, as storage corruption would look.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_mod
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass, replace as dc_replace
from pathlib import Path
from typing import Final
from collections.abc import Callable, Iterable, Mapping

import mutagen

__all__ = [
    "AUDIO_CONTENT_TYPES",
    "STORAGE_STATES",
    "DOWNLOADABLE_STATES",
    "RecordingStoreError",
    "UnknownRecording",
    "WavLayout",
    "Recording",
    "RecordingStore",
    "parse_wav_layout",
]

log = logging.getLogger(__name__)

AUDIO_CONTENT_TYPES: Final[Mapping[str, str]] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "webm": "audio/webm",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "flac": "audio/flac",
}
"""Extension → Content-Type of the recordings the store serves."""

STORAGE_STATES: Final = frozenset({"available", "stored", "archived", "purged"})
"""Values of the metadata ``storageState`` field the emulator can report."""

DOWNLOADABLE_STATES: Final = frozenset({"available", "stored"})
"""States in which the download endpoints serve bytes (CXone seed documents)."""

HASH_BLOCK: Final = 1 << 20
"""Bytes read per step when hashing a recording (1 MiB)."""

WAV_HEADER_SCAN_LIMIT: Final = 1 << 20
"""Bytes of a WAV file searched for the ``fmt `` and ``data`` chunks."""

_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RecordingStoreError(ValueError):
    """The recordings directory or a store operation is invalid (message names the file/id)."""


class UnknownRecording(KeyError):
    """No recording has this id."""


@dataclass(frozen=True)
class WavLayout:
    """Where a WAV file's PCM data lives: byte offsets and rates from its RIFF chunks."""

    data_offset: int
    """Byte offset of the first data byte (after the ``data`` chunk header)."""
    data_size: int
    """Bytes of data actually present (clamped to the file size)."""
    data_size_field_offset: int
    """Byte offset of the ``data`` chunk's 32-bit little-endian size field."""
    byte_rate: int
    """Bytes per second (``fmt `` chunk)."""
    block_align: int
    """Bytes per sample frame (``fmt `` chunk)."""


@dataclass(frozen=True)
class Recording:
    """One version of one recording as the emulator serves it."""

    id: str
    path: Path
    format: str
    content_type: str
    size: int
    """Bytes."""
    duration: float | None
    """Seconds; None when neither mutagen nor the WAV header could tell."""
    sha256: str
    """Hex SHA-256 of the original content."""
    hmac_sha256: bytes | None
    """HMAC-SHA256 of the original content under the configured key, if any."""
    etag: str
    """Strong entity-tag, quoted (RFC 9110 §8.8.3)."""
    version: int
    wav: WavLayout | None
    storage_state: str = "available"
    tamper_offset: int | None = None
    """When set, the byte at this offset is served XOR 0x01."""

    def patch(self, offset: int, block: bytes) -> bytes:
        """Apply the tamper fault to ``block`` read from byte ``offset`` (no-op when untampered)."""
        t = self.tamper_offset
        if t is None or not (offset <= t < offset + len(block)):
            return block
        buf = bytearray(block)
        buf[t - offset] ^= 0x01
        return bytes(buf)


def parse_wav_layout(read_at: Callable[[int, int], bytes], size: int) -> WavLayout | None:
    """Locate the ``fmt `` and ``data`` chunks of a RIFF/WAVE file.

    ``read_at(offset, length)`` returns bytes of the file. Returns None when the
    file is not RIFF/WAVE or the chunks are missing within
    :data:`WAV_HEADER_SCAN_LIMIT` bytes.
    """
    head = read_at(0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    byte_rate = block_align = None
    while pos + 8 <= min(size, WAV_HEADER_SCAN_LIMIT):
        chunk = read_at(pos, 8)
        if len(chunk) < 8:
            return None
        cid, csize = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
        if cid == b"fmt ":
            fmt = read_at(pos + 8, 16)
            if len(fmt) < 16:
                return None
            _tag, _channels, _rate, byte_rate, block_align, _bits = struct.unpack("<HHIIHH", fmt)
        elif cid == b"data":
            if not byte_rate or not block_align:
                return None
            data_offset = pos + 8
            return WavLayout(
                data_offset=data_offset,
                data_size=min(csize, size - data_offset),
                data_size_field_offset=pos + 4,
                byte_rate=byte_rate,
                block_align=block_align,
            )
        pos += 8 + csize + (csize & 1)  # RIFF chunks are padded to even sizes
    return None


def _read_at(path: Path) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    return read


def _describe(rec_id: str, path: Path, fmt: str, hmac_key: bytes | None, version: int) -> Recording:
    size = path.stat().st_size
    digest = hashlib.sha256()
    mac = hmac_mod.new(hmac_key, digestmod=hashlib.sha256) if hmac_key is not None else None
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
            if mac is not None:
                mac.update(block)
    sha = digest.hexdigest()
    wav = parse_wav_layout(_read_at(path), size) if fmt == "wav" else None
    duration: float | None = None
    try:
        info = mutagen.File(path)
        if info is not None and getattr(info, "info", None) is not None:
            duration = float(info.info.length)
    except Exception as exc:  # mutagen raises many types for undecodable files
        log.debug("mutagen could not read %s: %s", path, exc)
    if duration is None and wav is not None:
        duration = wav.data_size / wav.byte_rate
    return Recording(
        id=rec_id,
        path=path,
        format=fmt,
        content_type=AUDIO_CONTENT_TYPES[fmt],
        size=size,
        duration=duration,
        sha256=sha,
        hmac_sha256=mac.digest() if mac is not None else None,
        etag=f'"{sha[:32]}"',
        version=version,
        wav=wav,
    )


class RecordingStore:
    """Thread-safe catalogue of the recordings in one directory.

    Raises :class:`RecordingStoreError` when the directory is missing, two files
    share a stem, or an id has characters outside ``[A-Za-z0-9._-]``.
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        hmac_key: bytes | None = None,
        tamper: Iterable[str] = (),
        storage_states: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._hmac_key = hmac_key
        self._lock = threading.Lock()
        self._overlay: Path | None = None
        if not self.directory.is_dir():
            raise RecordingStoreError(f"recordings directory {str(self.directory)!r} does not exist or is not a directory")
        found: dict[str, Recording] = {}
        for path in sorted(self.directory.iterdir()):
            fmt = path.suffix.lower().lstrip(".")
            if not path.is_file() or fmt not in AUDIO_CONTENT_TYPES:
                continue
            rec_id = path.stem
            if not _ID_RE.match(rec_id):
                raise RecordingStoreError(
                    f"{path}: recording id {rec_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]* (it is used in URLs)"
                )
            if rec_id in found:
                raise RecordingStoreError(
                    f"{path}: recording id {rec_id!r} is also used by {found[rec_id].path}; ids (file stems) must be unique"
                )
            found[rec_id] = _describe(rec_id, path, fmt, hmac_key, version=1)
        self._recordings = found
        for rec_id in tamper:
            self._check_known(rec_id, "tamper")
            self.set_tamper(rec_id, True)
        for rec_id, state in (storage_states or {}).items():
            self._check_known(rec_id, "storage state")
            self.set_storage_state(rec_id, state)

    def _check_known(self, rec_id: str, what: str) -> None:
        if rec_id not in self._recordings:
            known = ", ".join(sorted(self._recordings)[:10]) or "none"
            raise RecordingStoreError(f"{what}: no recording {rec_id!r} in {self.directory} (known ids: {known})")

    # -- queries ---------------------------------------------------------
    def ids(self) -> list[str]:
        """Recording ids, sorted."""
        with self._lock:
            return sorted(self._recordings)

    def get(self, rec_id: str) -> Recording:
        """The current version of a recording; raises :class:`UnknownRecording`."""
        with self._lock:
            try:
                return self._recordings[rec_id]
            except KeyError:
                raise UnknownRecording(rec_id) from None

    def __len__(self) -> int:
        with self._lock:
            return len(self._recordings)

    # -- runtime changes ---------------------------------------------------
    def set_tamper(self, rec_id: str, enabled: bool = True) -> Recording:
        """Serve ``rec_id`` with one byte changed (XOR 0x01 at ``size // 2``) or restore it."""
        with self._lock:
            rec = self._require(rec_id)
            if enabled and rec.size == 0:
                raise RecordingStoreError(f"recording {rec_id!r} is empty; there is no byte to tamper with")
            new = dc_replace(rec, tamper_offset=rec.size // 2 if enabled else None)
            self._recordings[rec_id] = new
            return new

    def set_storage_state(self, rec_id: str, state: str) -> Recording:
        """Report ``state`` as ``storageState``; one of :data:`STORAGE_STATES`."""
        if state not in STORAGE_STATES:
            raise RecordingStoreError(
                f"storage state {state!r} for recording {rec_id!r} is not one of {sorted(STORAGE_STATES)}"
            )
        with self._lock:
            new = dc_replace(self._require(rec_id), storage_state=state)
            self._recordings[rec_id] = new
            return new

    def mutate(self, rec_id: str) -> Recording:
        """Make a new version of ``rec_id`` with one content byte changed; returns it (new ETag).

        The changed byte is in the second half of the file (WAV data for WAV files),
        at a position that depends on the version, so repeated mutations differ.
        """
        with self._lock:
            rec = self._require(rec_id)
        if rec.size == 0:
            raise RecordingStoreError(f"recording {rec_id!r} is empty; it cannot be mutated")
        start = rec.size // 2
        offset = start + (rec.version * 7919) % max(1, rec.size - start)
        with open(rec.path, "rb") as f:
            f.seek(offset)
            old = f.read(1)
        def write(tmp: Path) -> None:
            shutil.copyfile(rec.path, tmp)
            with open(tmp, "r+b") as f:
                f.seek(offset)
                f.write(bytes([old[0] ^ 0xFF]))
        return self._install_version(rec, write)

    def add(self, rec_id: str, content: bytes, fmt: str) -> Recording:
        """Add a new recording (a call that just ended) from ``content``; returns it.

        :raises RecordingStoreError: a bad or taken id, or an unknown format.
        """
        fmt = fmt.lower()
        if fmt not in AUDIO_CONTENT_TYPES or not _ID_RE.match(rec_id):
            raise RecordingStoreError(f"cannot add recording {rec_id!r} as {fmt!r}")
        with self._lock:
            if rec_id in self._recordings:
                raise RecordingStoreError(f"recording {rec_id!r} exists already")
            if self._overlay is None:
                self._overlay = Path(tempfile.mkdtemp(prefix="voxpipe-cxone-emulator-"))
            overlay = self._overlay
        final = overlay / f"{rec_id}.v1.{fmt}"
        tmp = overlay / f".{final.name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, final)
        rec = _describe(rec_id, final, fmt, self._hmac_key, version=1)
        with self._lock:
            self._recordings[rec_id] = rec
        return rec

    def replace(self, rec_id: str, content: bytes) -> Recording:
        """Make ``content`` the new version of ``rec_id``; returns it (new ETag)."""
        with self._lock:
            rec = self._require(rec_id)

        def write(tmp: Path) -> None:
            tmp.write_bytes(content)

        return self._install_version(rec, write)

    def close(self) -> None:
        """Remove the overlay directory of runtime versions (idempotent)."""
        with self._lock:
            overlay, self._overlay = self._overlay, None
        if overlay is not None:
            shutil.rmtree(overlay, ignore_errors=True)

    # -- internals -----------------------------------------------------------
    def _require(self, rec_id: str) -> Recording:
        try:
            return self._recordings[rec_id]
        except KeyError:
            raise UnknownRecording(rec_id) from None

    def _install_version(self, rec: Recording, write: Callable[[Path], None]) -> Recording:
        with self._lock:
            if self._overlay is None:
                self._overlay = Path(tempfile.mkdtemp(prefix="voxpipe-cxone-emulator-"))
            overlay = self._overlay
        version = rec.version + 1
        final = overlay / f"{rec.id}.v{version}.{rec.format}"
        tmp = overlay / f".{final.name}.tmp"
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        described = _describe(rec.id, final, rec.format, self._hmac_key, version)
        with self._lock:
            current = self._recordings[rec.id]
            new = dc_replace(
                described,
                storage_state=current.storage_state,
                tamper_offset=described.size // 2 if current.tamper_offset is not None and described.size else None,
            )
            self._recordings[rec.id] = new
        if rec.path.parent == overlay:
            # Requests still reading the old version hold their own descriptor.
            rec.path.unlink(missing_ok=True)
        return new
