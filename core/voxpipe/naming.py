"""Stored names (file paths, object keys): template expansion that can never escape the archive.

Every storing sink names what it stores from a template such as
``{year}/{month}/{day}/{contact_id}.{format}``. The fields (:data:`TEMPLATE_FIELDS`):

- ``{recording_id}``, ``{format}``, ``{source}``, ``{pipeline}``;
- the recording's own date, from the call's start as the platform reported it
  (:attr:`voxpipe.facts.RecordingFacts.started_at`; else a ``date`` the source put in the
  metadata; else, for sources that know no date, the time the stream was received):
  ``{recording_date}`` (``YYYY-MM-DD``), ``{date}`` (the same), ``{year}``, ``{month}``,
  ``{day}``, ``{hour}`` (UTC, zero-padded);
- the download time, under its own names: ``{received_date}``, ``{received_year}``,
  ``{received_month}``, ``{received_day}``, ``{received_hour}``;
- the platform's facts: ``{contact_id}`` (``{acd_call_id}``), ``{segment_id}``,
  ``{conversation_id}``, ``{interaction_id}``, ``{session_id}``, ``{call_sid}``,
  ``{org_id}``, ``{direction}``, ``{agent_id}``, ``{skill}``, ``{queue}``.

A fact the platform did not report fails the recording with ``missing-name-field``
rather than storing it under a name nobody would look for. Recording ids and facts come
from a remote server; a hostile or buggy one could send ``../x`` or an absolute path, so
id-like values must match :data:`SAFE_ID`, free text (skill, queue names) is reduced to
safe characters, and the expanded name must stay inside the sink's directory (or key
prefix), or the recording fails with ``unsafe-name``.
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from .errors import SinkError
from .facts import RecordingFacts

#: Id-like fields taken from the recording's facts.
FACT_ID_FIELDS = ("contact_id", "acd_call_id", "segment_id", "conversation_id", "interaction_id", "session_id",
                  "call_sid", "org_id", "agent_id")
#: Free-text facts: unsafe characters become ``_``.
FACT_TEXT_FIELDS = ("direction", "skill", "queue")
#: Date fields of the recording's own time (the call's start).
RECORDING_TIME_FIELDS = ("recording_date", "date", "year", "month", "day", "hour")
#: Date fields of the time the stream was received (the download).
RECEIVED_TIME_FIELDS = ("received_date", "received_year", "received_month", "received_day", "received_hour")
#: Every field a name template may use.
TEMPLATE_FIELDS = ("recording_id", "format", "source", "pipeline", *RECORDING_TIME_FIELDS, *RECEIVED_TIME_FIELDS,
                   *FACT_ID_FIELDS, *FACT_TEXT_FIELDS)
#: What an id (recording id or id-like fact) used in a name must look like.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$")
_SAFE_FORMAT = re.compile(r"^[a-z0-9_]{1,16}$")
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9._@+=-]+")
#: Longest free-text field used in a name, in characters.
MAX_TEXT_FIELD = 64


def check_template(template: str) -> str:
    """Validate a name template's fields; raises ValueError naming an unknown field."""
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is not None and field_name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown field {{{field_name}}} in name template; known: {', '.join(TEMPLATE_FIELDS)}")
    if template.startswith("/") or ".." in PurePosixPath(template).parts:
        raise ValueError("name template must be a relative path without '..'")
    return template


def template_fields(template: str) -> tuple[str, ...]:
    """The fields ``template`` uses, in order."""
    return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f)


@dataclass(frozen=True)
class RecordingTime:
    """The recording's own time used for names and retention, and where it came from.

    :ivar when: aware UTC datetime.
    :ivar origin: ``facts`` (the platform's start time), ``metadata`` (a ``date`` the source
        gave) or ``received`` (no date known: the time the stream was received).
    """

    when: datetime
    origin: str


def recording_time(facts: RecordingFacts, metadata: Mapping[str, Any], received_at: float) -> RecordingTime:
    """The recording's time: the call's start, else the metadata's ``date``, else ``received_at`` (epoch seconds)."""
    if facts.started_at is not None:
        return RecordingTime(facts.started_at, "facts")
    value = metadata.get("date")
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            parsed = parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)
            return RecordingTime(parsed, "metadata")
    return RecordingTime(datetime.fromtimestamp(received_at, timezone.utc), "received")


def _time_fields(prefix: str, when: datetime) -> dict[str, str]:
    return {f"{prefix}year": f"{when.year:04d}", f"{prefix}month": f"{when.month:02d}",
            f"{prefix}day": f"{when.day:02d}", f"{prefix}hour": f"{when.hour:02d}",
            f"{prefix}date": when.strftime("%Y-%m-%d")}


def name_fields(*, recording_id: str, metadata: Mapping[str, Any], source: str, pipeline: str,
                received_at: float, facts: RecordingFacts | None = None) -> dict[str, str | None]:
    """Every template field's value for one recording (``None`` where a fact is unknown).

    :raises SinkError: reason ``unsafe-name`` when the recording id or format cannot be
        used in a name.
    """
    facts = facts or RecordingFacts()
    if not SAFE_ID.match(recording_id) or recording_id in (".", ".."):
        raise SinkError(f"recording id {recording_id!r} is not safe to use in a stored name", reason="unsafe-name")
    fmt = str(metadata.get("format") or "bin").lower()
    if not _SAFE_FORMAT.match(fmt):
        raise SinkError(f"recording {recording_id}: format {fmt!r} is not safe to use in a stored name",
                        reason="unsafe-name")
    when = recording_time(facts, metadata, received_at).when
    fields: dict[str, str | None] = {"recording_id": recording_id, "format": fmt, "source": source,
                                     "pipeline": pipeline, **_time_fields("", when),
                                     **_time_fields("received_", datetime.fromtimestamp(received_at, timezone.utc))}
    fields["recording_date"] = fields["date"]
    for name in FACT_ID_FIELDS:
        fields[name] = getattr(facts, name)
    for name in FACT_TEXT_FIELDS:
        value = getattr(facts, name)
        fields[name] = _UNSAFE_TEXT.sub("_", value).strip("._")[:MAX_TEXT_FIELD] or None if value else None
    return fields


def render(template: str, fields: Mapping[str, str | None], *, recording_id: str, suffix: str = "") -> str:
    """The relative name (``/``-separated) ``template`` gives for ``fields``, plus ``suffix``.

    :raises SinkError: ``missing-name-field`` when the template uses a fact the platform
        did not report; ``unsafe-name`` when a value is not safe or the name leaves its root.
    """
    used = template_fields(template)
    missing = [f for f in used if fields.get(f) is None]
    if missing:
        raise SinkError(f"recording {recording_id}: the name template uses {', '.join('{%s}' % f for f in missing)}, "
                        "which its source did not report", reason="missing-name-field")
    for name in used:
        if name in FACT_ID_FIELDS and not SAFE_ID.match(str(fields[name])):
            raise SinkError(f"recording {recording_id}: {name} {fields[name]!r} is not safe to use in a stored name",
                            reason="unsafe-name")
    name = template.format(**{f: fields[f] for f in used}) + suffix
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or any(p in ("..", ".") for p in parts) or "\x00" in name:
        raise SinkError(f"recording {recording_id}: stored name {name!r} is not a safe relative name",
                        reason="unsafe-name")
    return name


def expand(template: str, *, directory: Path, recording_id: str, metadata: Mapping[str, Any], source: str,
           pipeline: str, started_at: float, suffix: str = "", facts: RecordingFacts | None = None) -> Path:
    """The final path for a recording inside ``directory``.

    :param started_at: when the stream was received (epoch seconds): the ``received_*`` fields,
        and the recording's date when neither facts nor metadata give one.
    :raises SinkError: reason ``unsafe-name`` if the id or the result would escape ``directory``;
        ``missing-name-field`` if the template uses a fact the source did not report.
    """
    fields = name_fields(recording_id=recording_id, metadata=metadata, source=source, pipeline=pipeline,
                         received_at=started_at, facts=facts)
    name = render(template, fields, recording_id=recording_id, suffix=suffix)
    root = directory.resolve()
    final = (root / name).resolve()
    if root not in final.parents:
        raise SinkError(f"recording {recording_id}: stored name {name!r} escapes {directory}", reason="unsafe-name")
    return final


def temp_stem(recording_id: str) -> str:
    """A file-name-safe form of an id for temporary names."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", recording_id)[:64] or "stream"


def is_safe_format(fmt: str) -> bool:
    """Whether a format name may be used as a file extension."""
    return bool(_SAFE_FORMAT.match(fmt))


def utc_timestamp(ts: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for epoch seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
