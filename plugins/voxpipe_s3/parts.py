"""Multipart-upload logic without I/O: cutting a stream into parts, checksums, resume state.

S3 multipart uploads (docs.aws.amazon.com AmazonS3 API, "Uploading and copying objects
using multipart upload"): parts are 5 MiB to 5 GiB except the last, at most 10,000 per
upload; with ``ChecksumAlgorithm=SHA256`` each part carries ``x-amz-checksum-sha256``
(base64 of its SHA-256) and the completed object a *composite* checksum: the SHA-256 of
the concatenated binary part digests, base64, suffixed ``-<number of parts>``.

Parts are cut deterministically: the stream's bytes are fed to the compressor in
:data:`RAW_BLOCK`-aligned blocks (whatever the chunk sizes the source delivered), and a
part is cut after the first block that brings it to ``part_size`` bytes; a gzip member
ends at every cut. So the parts are a pure function of the recording's bytes, the part
size and the compressor, and a resumed upload can recompute any part from the re-read
source and recognise it among the parts already stored, without uploading it again.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from voxpipe.compression import Compressor
from voxpipe.errors import SinkError

MiB = 1 << 20
#: Smallest part S3 accepts (all parts but the last).
MIN_PART_SIZE = 5 * MiB
#: Largest part S3 accepts.
MAX_PART_SIZE = 5 * 1024 * MiB
#: Most parts one upload may have.
MAX_PARTS = 10_000
#: Raw bytes per compressor call; cut points fall on multiples of this (see the module docstring).
RAW_BLOCK = 64 * 1024
#: Version of the resume state this module writes (:func:`checkpoint_state`).
STATE_VERSION = 1


def b64_sha256(data: bytes | bytearray | memoryview) -> str:
    """``x-amz-checksum-sha256`` of ``data``: base64 of its SHA-256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def composite_sha256(part_checksums: list[str]) -> str:
    """The checksum S3 gives a multipart object: base64(SHA-256(part digests)) + ``-N``."""
    joined = b"".join(base64.b64decode(c) for c in part_checksums)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(part_checksums)}"


def checksum_matches(returned: str, expected: str) -> bool:
    """Whether a ``ChecksumSHA256`` read back equals the one computed.

    Some servers (moto) return a composite checksum without its ``-N`` suffix; the digest
    must still match, and the part count too when the server gives one.
    """
    digest, _, count = expected.partition("-")
    got_digest, _, got_count = returned.partition("-")
    return got_digest == digest and (not got_count or got_count == count)


def plan_part_size(part_size: int, expected_size: Any) -> int:
    """The part size for one upload: ``part_size``, raised when the recording's announced
    size (bytes, if the source gave one) would otherwise need more than :data:`MAX_PARTS`
    parts (a 1 % margin covers gzip growth on incompressible audio)."""
    if isinstance(expected_size, int) and not isinstance(expected_size, bool) and expected_size > 0:
        needed = -(-expected_size * 101 // 100 // (MAX_PARTS - 1))
        needed = -(-needed // RAW_BLOCK) * RAW_BLOCK
        return min(MAX_PART_SIZE, max(part_size, needed))
    return part_size


class PartCutter:
    """Turns a stream's bytes into parts: compress in aligned blocks, cut at ``part_size``.

    Holds at most one part (``part_size`` plus one compressed block) and less than one
    raw block at a time.

    :param compressor: a fresh :class:`voxpipe.compression.Compressor` (identity or gzip).
    :param part_size: bytes per part (each part but the last has at least this many).
    """

    def __init__(self, compressor: Compressor, part_size: int):
        self.compressor = compressor
        self.part_size = part_size
        self.buffer = bytearray()
        self.carry = bytearray()
        self.raw_bytes = 0  # bytes fed so far

    def _block(self, block: bytes | memoryview) -> bytearray | None:
        self.buffer += self.compressor.compress(block)
        if len(self.buffer) < self.part_size:
            return None
        self.buffer += self.compressor.end_member()
        part, self.buffer = self.buffer, bytearray()  # handed over, not copied
        return part

    def feed(self, data: bytes) -> Iterator[bytearray]:
        """Take the next bytes of the stream; yield every part they complete."""
        view = memoryview(data)
        self.raw_bytes += len(view)
        if self.carry:
            take = RAW_BLOCK - len(self.carry)
            self.carry += view[:take]
            view = view[take:]
            if len(self.carry) < RAW_BLOCK:
                return
            part = self._block(bytes(self.carry))
            self.carry.clear()
            if part is not None:
                yield part
        while len(view) >= RAW_BLOCK:
            part = self._block(view[:RAW_BLOCK])
            view = view[RAW_BLOCK:]
            if part is not None:
                yield part
        if len(view):
            self.carry += view

    def finish(self) -> bytearray:
        """The last part (possibly empty, possibly the only one): what is still held, flushed."""
        if self.carry:
            self.buffer += self.compressor.compress(bytes(self.carry))
            self.carry.clear()
        self.buffer += self.compressor.flush()
        part, self.buffer = self.buffer, bytearray()
        return part


@dataclass(frozen=True)
class Part:
    """One stored part: ``number`` (1-based), ``size`` in bytes, ``sha256`` (base64), S3 ``etag``."""

    number: int
    size: int
    sha256: str
    etag: str

    def completed(self) -> dict[str, Any]:
        """The part as CompleteMultipartUpload lists it."""
        return {"PartNumber": self.number, "ETag": self.etag, "ChecksumSHA256": self.sha256}


def checkpoint_state(*, bucket: str, key: str | None, sidecar: str | None, upload_id: str | None, part_size: int,
                     compression: str | None, parts: list[Part], raw_offset: int) -> dict[str, Any]:
    """The sink's opaque resume state (JSON): where the upload is and which parts it holds.

    ``parts`` are ``[number, size, sha256, etag]``; ``raw_offset`` is how many stream bytes
    they cover (recorded for people reading the ledger; a resume recomputes it)."""
    return {"v": STATE_VERSION, "bucket": bucket, "key": key, "sidecar": sidecar, "upload_id": upload_id, "part_size": part_size,
            "compression": compression, "parts": [[p.number, p.size, p.sha256, p.etag] for p in parts],
            "raw_offset": raw_offset}


@dataclass(frozen=True)
class ResumeState:
    """A parsed :func:`checkpoint_state`."""

    bucket: str
    key: str | None
    sidecar: str | None
    upload_id: str | None
    part_size: int
    compression: str | None
    parts: tuple[Part, ...]


def parse_state(state: Mapping[str, Any], *, recording_id: str) -> ResumeState:
    """Read a resume state back.

    :raises SinkError: reason ``bad-checkpoint`` when it is not one this module wrote.
    """
    try:
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"version {state.get('v')!r}")
        parts = tuple(Part(int(n), int(size), str(sha), str(etag)) for n, size, sha, etag in state["parts"])
        if [p.number for p in parts] != list(range(1, len(parts) + 1)):
            raise ValueError("part numbers are not 1..N")
        upload_id = state.get("upload_id")
        if (parts or upload_id) and not (upload_id and state.get("key")):
            raise ValueError("parts without an upload id and key")
        return ResumeState(bucket=str(state["bucket"]), key=state.get("key"), sidecar=state.get("sidecar"),
                           upload_id=upload_id,
                           part_size=int(state["part_size"]), compression=state.get("compression"), parts=parts)
    except (KeyError, TypeError, ValueError) as exc:
        raise SinkError(f"recording {recording_id}: S3 resume state unusable ({exc})", reason="bad-checkpoint") from None
