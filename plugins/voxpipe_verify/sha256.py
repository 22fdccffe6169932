"""The ``sha256`` verifier: a digest of the bytes as received, checked when expected.

The digest (lowercase hex) is recorded in the stream result under ``digests.sha256``
and in the stored file's manifest as ``original_sha256``. When the source's metadata
carries an expected digest (field ``sha256`` by default: the CXone emulator's metadata,
Genesys' ``Checksum``), a mismatch fails the stream with reason ``sha256-mismatch``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from voxpipe.components import Verifier, VerifierRun
from voxpipe.model import Chunk, Stream, Verdict
from voxpipe.settings import Settings, setting


class Sha256Settings(Settings):
    expected_field: str = setting("sha256", description="Metadata field holding the expected digest "
                                  "(hex, or base64 of the 32 bytes).")
    required: bool = setting(False, description="Fail streams whose metadata carries no expected digest.")


class Sha256Verifier(Verifier):
    """SHA-256 of the bytes as received; fails on a mismatch with the source's expected digest."""

    type = "sha256"
    Settings = Sha256Settings
    digests = frozenset({"sha256"})  # every verdict's details carry it: sinks storing as received reuse it

    def begin(self, stream: Stream) -> VerifierRun:
        return _Run(self.settings, stream)


class _Run(VerifierRun):
    def __init__(self, settings: Sha256Settings, stream: Stream):
        self.settings = settings
        self.stream = stream
        self.hash = hashlib.sha256()
        self.bytes = 0

    def update(self, chunk: Chunk) -> None:
        self.hash.update(chunk.data)
        self.bytes += len(chunk.data)

    def finish(self) -> Verdict:
        digest = self.hash.hexdigest()
        details = {"sha256": digest}
        raw = self.stream.metadata.get(self.settings.expected_field)
        if raw is None:
            if self.settings.required:
                return Verdict("sha256", False, "sha256-missing", f"recording {self.stream.id}: no expected SHA-256 "
                               f"in metadata field {self.settings.expected_field!r}", details)
            return Verdict("sha256", True, details=details)
        expected = normalise_digest(str(raw))
        if expected != digest:
            return Verdict("sha256", False, "sha256-mismatch",
                           f"recording {self.stream.id}: SHA-256 of {self.bytes} bytes received is {digest}, "
                           f"the source declared {expected}", details)
        return Verdict("sha256", True, details={**details, "expected": expected})


def normalise_digest(value: str) -> str:
    """A SHA-256 given as hex (any case) or base64 → lowercase hex; unparseable stays as given."""
    value = value.strip()
    if len(value) == 64:
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.hex() if len(raw) == 32 else value
