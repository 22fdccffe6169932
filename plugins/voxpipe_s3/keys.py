"""Object keys, sidecar keys, upload-journal keys and retain-until dates (no I/O).

Keys come from :mod:`voxpipe.naming` (the file sinks' templates and safety rules), after
the sink's ``prefix``. ``layout: genesys-export`` reproduces Genesys Cloud's own S3
export ("Working with exported recordings in AWS S3 bucket", help.mypurecloud.com):
``{orgId}/year={yyyy}/month={m}/day={d}/hour={h}/conversation_id={id}/{recordingId}``
with ``{recordingId}_metadata.json`` beside it, partitioned by the conversation's start
in UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from voxpipe import naming
from voxpipe.errors import SinkError
from voxpipe.facts import RecordingFacts
from voxpipe.manifest import MANIFEST_SUFFIX

#: Suffix of a Genesys-layout sidecar (replacing the ``.json`` of the template layout).
GENESYS_SIDECAR_SUFFIX = "_metadata.json"
#: Folder (after the prefix) of the sink's upload journal: one small object per open
#: multipart upload, so ``voxpipe s3 uploads`` and orphan cleanup touch only uploads
#: this sink created (ListMultipartUploads cannot tell who created an upload).
JOURNAL_DIR = ".voxpipe/uploads/"
#: Suffix of a journal entry (not ``.json``: the archive reads ``*.json`` as manifests).
JOURNAL_SUFFIX = ".upload"


@dataclass(frozen=True)
class Names:
    """Where one recording goes: ``key`` (the object) and ``sidecar`` (its manifest)."""

    key: str
    sidecar: str


def object_names(*, layout: str, prefix: str, template: str, recording_id: str, metadata: Mapping[str, Any],
                 source: str, pipeline: str, received_at: float, facts: RecordingFacts, suffix: str) -> Names:
    """The object key and sidecar key of one recording.

    :param suffix: ``.gz`` when stored gzip-compressed, else empty.
    :raises SinkError: ``missing-name-field`` (a fact the key needs was not reported, e.g.
        ``org_id`` or ``conversation_id`` for the Genesys layout), ``unsafe-name``.
    """
    fields = naming.name_fields(recording_id=recording_id, metadata=metadata, source=source, pipeline=pipeline,
                                received_at=received_at, facts=facts)
    if layout == "genesys-export":
        for name in ("month", "day", "hour"):
            fields[f"{name}_n"] = str(int(fields[name] or 0))
        relative = _format_genesys(fields, recording_id, suffix)
        slash = relative.rfind("/")
        sidecar = relative[: slash + 1] + recording_id + GENESYS_SIDECAR_SUFFIX
        return Names(prefix + relative, prefix + sidecar)
    relative = naming.render(template, fields, recording_id=recording_id, suffix=suffix)
    return Names(prefix + relative, prefix + relative + MANIFEST_SUFFIX)


def _format_genesys(fields: dict[str, str | None], recording_id: str, suffix: str) -> str:
    template = "{org_id}/year={year}/month={month}/day={day}/hour={hour}/conversation_id={conversation_id}/" \
               "{recording_id}"
    # render() validates the ids and the result; the unpadded month/day/hour go in after
    name = naming.render(template, fields, recording_id=recording_id, suffix=suffix)
    parts = name.split("/")
    parts[2] = f"month={fields['month_n']}"
    parts[3] = f"day={fields['day_n']}"
    parts[4] = f"hour={fields['hour_n']}"
    return "/".join(parts)


def retain_until(facts: RecordingFacts, metadata: Mapping[str, Any], received_at: float, days: int) -> datetime:
    """When a recording's Object Lock retention ends: its own date (the call's start, see
    :func:`voxpipe.naming.recording_time`) plus ``days``, in UTC."""
    return naming.recording_time(facts, metadata, received_at).when + timedelta(days=days)


def journal_key(prefix: str, upload_id: str) -> str:
    """The journal entry of one multipart upload (a hash of the upload id: ids may hold any character)."""
    return f"{prefix}{JOURNAL_DIR}{hashlib.sha256(upload_id.encode()).hexdigest()[:40]}{JOURNAL_SUFFIX}"


def is_internal_key(prefix: str, key: str) -> bool:
    """Whether ``key`` is the sink's own bookkeeping (the upload journal), not an archived object."""
    return key.startswith(prefix + ".voxpipe/")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def key_prefix_of(prefix: str, template: str, layout: str) -> str:
    """The longest fixed prefix of every key the sink writes (for listings)."""
    if layout == "genesys-export":
        return prefix
    head = template.split("{", 1)[0]
    return prefix + head[: head.rfind("/") + 1]


def sidecar_to_object(key: str) -> str | None:
    """The object key a sidecar key describes (either layout), or ``None`` if ``key`` is no sidecar."""
    if key.endswith(GENESYS_SIDECAR_SUFFIX):
        return key[: -len(GENESYS_SIDECAR_SUFFIX)]
    if key.endswith(MANIFEST_SUFFIX):
        return key[: -len(MANIFEST_SUFFIX)]
    return None
