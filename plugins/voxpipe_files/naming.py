"""Stored-file names: template expansion that can never escape the archive directory.

Recording ids come from a remote server; a hostile or buggy one could send ``../x`` or
an absolute path. Ids are therefore checked, and the expanded name must resolve inside
the sink's directory, or the stream fails with ``unsafe-name``.
"""

from __future__ import annotations

import re
import string
import time
from pathlib import Path
from typing import Any, Mapping

from voxpipe.errors import SinkError

#: Fields a name template may use.
TEMPLATE_FIELDS = ("recording_id", "format", "source", "pipeline", "date", "year", "month", "day")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,199}$")
_SAFE_FORMAT = re.compile(r"^[a-z0-9_]{1,16}$")


def check_template(template: str) -> str:
    """Validate a name template's fields; raises ValueError naming an unknown field."""
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is not None and field_name not in TEMPLATE_FIELDS:
            raise ValueError(f"unknown field {{{field_name}}} in name template; known: {', '.join(TEMPLATE_FIELDS)}")
    if template.startswith("/") or ".." in Path(template).parts:
        raise ValueError("name template must be a relative path without '..'")
    return template


def expand(template: str, *, directory: Path, recording_id: str, metadata: Mapping[str, Any], source: str,
           pipeline: str, started_at: float, suffix: str = "") -> Path:
    """The final path for a stream inside ``directory``.

    :raises SinkError: reason ``unsafe-name`` if the id or the result would escape ``directory``.
    """
    if not _SAFE_ID.match(recording_id) or recording_id in (".", ".."):
        raise SinkError(f"recording id {recording_id!r} is not safe to use in a file name", reason="unsafe-name")
    fmt = str(metadata.get("format") or "bin").lower()
    if not _SAFE_FORMAT.match(fmt):
        raise SinkError(f"recording {recording_id}: format {fmt!r} is not safe to use in a file name",
                        reason="unsafe-name")
    t = time.gmtime(started_at)
    name = template.format(recording_id=recording_id, format=fmt, source=source, pipeline=pipeline,
                           date=time.strftime("%Y-%m-%d", t), year=f"{t.tm_year:04d}", month=f"{t.tm_mon:02d}",
                           day=f"{t.tm_mday:02d}") + suffix
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
