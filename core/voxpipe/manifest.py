"""The JSON manifest every storing sink writes beside what it stores: building and reading it.

A manifest ``<name>.json`` describes the stored file or object ``<name>``. Keys
(:func:`build_manifest`): ``source``, ``pipeline``, ``recording_id``, ``format``,
``original_size`` and ``original_sha256`` (the bytes as received), ``stored_file``,
``stored_size``, ``stored_sha256`` (the bytes as stored), ``compression``
(``gzip:<engine>:<level>`` or null), ``recording_date`` (the call's start, ISO 8601 UTC,
or null when the source knew no date), ``recording_date_origin``, ``received_at``,
``stored_at``, ``facts`` (:class:`voxpipe.facts.RecordingFacts` as JSON: the platform's
ids, times, agent, direction...), ``verdicts`` and ``metadata`` (what the source reported).

:func:`load_manifest` reads one, bounded in size, and checks the keys the archive relies
on; :func:`recording_time` gives the recording's date used for listing filters and
retention: ``recording_date`` from the source, or ``received_at`` when the source gave
none — never the file's mtime, which a copy or restore would reset.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .facts import RecordingFacts, iso_utc
from .naming import SAFE_ID as ID_PATTERN, recording_time as _recording_time, utc_timestamp

#: Suffix of a stored file's manifest (``<stored name>.json``).
MANIFEST_SUFFIX = ".json"

#: Largest manifest read, in bytes (a real one is about 1 KiB; metadata is bounded by sources).
MAX_MANIFEST_BYTES = 1 << 20
#: Metadata keys that carry a platform's interaction id (Genesys conversationId, CXone contact/ACD call id).
INTERACTION_KEYS = ("conversationId", "interactionId", "contactId", "acdCallId")
_SHA256_HEX = frozenset("0123456789abcdef")


class ManifestError(ValueError):
    """A manifest could not be read or lacks what the archive needs; the message names the file."""


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. ``path`` is the manifest file, ``stored`` the file it describes."""

    path: Path
    stored: Path
    recording_id: str
    source: str
    pipeline: str
    format: str | None
    compression: str | None
    original_size: int | None
    original_sha256: str | None
    stored_size: int
    stored_sha256: str
    recording_date: str | None
    received_at: str | None
    stored_at: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    legal_hold: bool = False
    facts: RecordingFacts = field(default_factory=RecordingFacts)

    @property
    def interaction_ids(self) -> tuple[str, ...]:
        """Every platform id the recording can be found by: its facts' ids (contact id, conversation
        id, segment id...), then the metadata's :data:`INTERACTION_KEYS`, without repeats."""
        out = list(self.facts.platform_ids())
        for key in INTERACTION_KEYS:
            value = self.metadata.get(key)
            if isinstance(value, (str, int)) and str(value) and str(value) not in out:
                out.append(str(value))
        return tuple(out)


def _sha(value: Any, key: str, path: Path) -> str:
    if not (isinstance(value, str) and len(value) == 64 and set(value) <= _SHA256_HEX):
        raise ManifestError(f"{path}: {key} is not a lower-case hex SHA-256")
    return value


def parse_manifest(path: Path, data: bytes) -> Manifest:
    """Parse the bytes of the manifest file ``path``.

    :raises ManifestError: not JSON, not an object, ``stored_file`` not the manifest's own
        name minus ``.json``, a bad recording id, size or digest.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{path}: not a JSON object")
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise ManifestError(f"{path}: manifest names end in {MANIFEST_SUFFIX}")
    stored_name = path.name[: -len(MANIFEST_SUFFIX)]
    if doc.get("stored_file") != stored_name:
        raise ManifestError(f"{path}: stored_file {doc.get('stored_file')!r} is not {stored_name!r}")
    rid = doc.get("recording_id")
    if not isinstance(rid, str) or not ID_PATTERN.match(rid):
        raise ManifestError(f"{path}: recording_id {rid!r} is missing or not a storable id")
    size = doc.get("stored_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{path}: stored_size {size!r} is not a byte count")
    compression = doc.get("compression")
    if isinstance(compression, str) and compression.startswith("gzip:"):
        compression = "gzip"  # "gzip:<engine>:<level>" (the gzip sink): the container is what matters here
    if compression not in (None, "gzip"):
        raise ManifestError(f"{path}: compression {compression!r} is not gzip, gzip:<engine>:<level> or null")
    original_sha = doc.get("original_sha256")
    original_size = doc.get("original_size")
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return Manifest(
        path=path, stored=path.with_name(stored_name), recording_id=rid, source=str(doc.get("source") or ""),
        pipeline=str(doc.get("pipeline") or ""), format=doc.get("format") if isinstance(doc.get("format"), str) else None,
        compression=compression,
        original_size=original_size if isinstance(original_size, int) and not isinstance(original_size, bool) else None,
        original_sha256=_sha(original_sha, "original_sha256", path) if original_sha is not None else None,
        stored_size=size, stored_sha256=_sha(doc.get("stored_sha256"), "stored_sha256", path),
        recording_date=_str_or_none(doc.get("recording_date")), received_at=_str_or_none(doc.get("received_at")),
        stored_at=_str_or_none(doc.get("stored_at")), metadata=metadata,
        legal_hold=doc.get("legal_hold") is True or metadata.get("legal_hold") is True,
        facts=RecordingFacts.from_json(doc.get("facts")))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def load_manifest(path: Path) -> Manifest:
    """Read and parse one manifest (at most :data:`MAX_MANIFEST_BYTES`; symlinks are not followed).

    :raises ManifestError: unreadable, too large, a symlink, or invalid (see :func:`parse_manifest`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes")
    return parse_manifest(path, data)


def parse_time(value: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive values are taken as UTC).

    :raises ValueError: not ISO 8601.
    """
    text = value.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def recording_time(manifest: Manifest) -> tuple[datetime | None, str | None]:
    """The recording's time and the manifest key it came from.

    ``recording_date`` when present and valid, else ``received_at``; ``(None, None)`` when
    neither is a valid ISO 8601 value.
    """
    for key in ("recording_date", "received_at"):
        value = getattr(manifest, key)
        if value:
            try:
                return parse_time(value), key
            except ValueError:
                continue
    return None, None


def build_manifest(*, stream: Any, result: Any, stored_name: str, stored_size: int, stored_sha256: str,
                   compression: str | None, fmt: str | None, stored_at: float | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of one stored recording (keys: see the module docstring).

    :param stream: the :class:`voxpipe.model.Stream` (id, source, pipeline, facts, metadata, received time).
    :param result: the :class:`voxpipe.model.StreamResult` at commit (original size, digests,
        verdicts, public metadata).
    :param stored_name: the stored file's base name (or the object key's last segment).
    :param stored_size: bytes as stored; ``stored_sha256`` their SHA-256 (hex).
    :param compression: ``gzip:<engine>:<level>``, or ``None`` when stored as received.
    :param fmt: the stored format (``wav`` for the wav sink; else the source's).
    :param extra: sink-specific keys (an S3 sink's bucket, key, version id...), added last.
    """
    when = _recording_time(stream.facts, stream.metadata, stream.started_at)
    doc = {
        "source": stream.source, "pipeline": stream.pipeline, "recording_id": stream.id,
        "format": fmt, "original_size": result.bytes, "original_sha256": result.digests.get("sha256"),
        "stored_file": stored_name, "stored_size": stored_size, "stored_sha256": stored_sha256,
        "compression": compression,
        "recording_date": iso_utc(when.when) if when.origin != "received" else None,
        "recording_date_origin": when.origin,
        "received_at": utc_timestamp(stream.started_at),
        "stored_at": utc_timestamp(stored_at if stored_at is not None else time.time()),
        "facts": stream.facts.to_json(),
        "verdicts": [v.to_dict() for v in result.verdicts],
        "metadata": result.metadata,
    }
    if extra:
        doc.update(extra)
    return doc


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """The manifest's bytes as stored: indented, sorted keys, UTF-8."""
    return json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
