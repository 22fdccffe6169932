"""Builds archive trees for the archive tests: stored files plus manifests, as the
``file``/``gzip`` sinks write them (see core/voxpipe/filestore.py)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

#: Content of a file outside every archive; it must never appear in a response.
SECRET = b"TOP-SECRET-OUTSIDE-THE-ARCHIVE-7f3a9c"
#: Bearer token the tests configure.
TOKEN = "tok-" + "a1b2c3d4" * 4


def audio(recording_id: str, size: int) -> bytes:
    """Deterministic bytes standing in for a recording."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{recording_id}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def manifest_for(recording_id: str, stored_name: str, original: bytes, stored: bytes, *, fmt: str = "wav",
                 compression: str | None = None, source: str = "genesys", recording_date: str | None = None,
                 received_at: str | None = "2024-05-02T00:00:00Z", metadata: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
    return {
        "source": source, "pipeline": "p", "recording_id": recording_id, "format": fmt,
        "original_size": len(original), "original_sha256": hashlib.sha256(original).hexdigest(),
        "stored_file": stored_name, "stored_size": len(stored), "stored_sha256": hashlib.sha256(stored).hexdigest(),
        "compression": compression, "recording_date": recording_date, "received_at": received_at,
        "stored_at": received_at, "metadata": metadata or {}, **extra,
    }


def store(root: Path, relative: str, recording_id: str, original: bytes, *, gzip_it: bool = False,
          **manifest_fields: Any) -> Path:
    """Write ``root/relative`` (gzip-compressed if asked) and its manifest; returns the stored path."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = gzip.compress(original, mtime=0) if gzip_it else original
    path.write_bytes(stored)
    manifest = manifest_for(recording_id, path.name, original, stored,
                            compression="gzip" if gzip_it else None, **manifest_fields)
    Path(str(path) + ".json").write_text(json.dumps(manifest, indent=2))
    return path
