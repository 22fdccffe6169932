"""The webhook event: what a receiver learns about one stream, and its exact body bytes.

One event per stream outcome (never per failed attempt that the engine restarts). The
fields keep the seed's names (``recording_id``, ``total_bytes``, ``chunks_processed``,
``latency_ms``, ``success``, ``timestamp``, ``audit_entries``) and add where the stream was
stored, its SHA-256, the failure reason, and the call-quality metrics of live calls.
``docs/webhooks.md`` lists every field with its type and unit.

The body is deterministic JSON (sorted keys, no spaces, ASCII only): the same event
always encodes to the same bytes, and those bytes are what is stored and signed.
Nothing secret goes in: stored locations lose any query string (signed URLs) and
credentials, and metadata keys starting with ``_`` never reach results.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from voxpipe.model import Stream, StreamResult

EVENT_STORED = "stream.stored"
EVENT_FAILED = "stream.failed"
#: The result metadata key live sources fill with per-call quality metrics.
QUALITY_KEY = "quality"


def iso_utc(ts: float) -> str:
    """RFC 3339 UTC time with milliseconds: ``2026-11-21T05:40:00.123Z``."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scrub_location(value: Any) -> Any:
    """A stored location fit to announce: URLs lose credentials, query and fragment."""
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return value


def build_event(result: StreamResult, stream: Stream | None = None, *, chunks: int,
                now: float | None = None) -> dict[str, Any]:
    """The event for one stream's final outcome.

    :param result: the engine's result (after every storing sink committed, or failed).
    :param stream: the stream, for its ``audit_entries`` (bounded by the engine).
    :param chunks: chunks this sink's writer received for the stream.
    :param now: Unix seconds for ``timestamp`` (default: the clock).
    :returns: a JSON-ready dict (see ``docs/webhooks.md`` for the schema).
    """
    now = time.time() if now is None else now
    stored = [{k: scrub_location(v) for k, v in entry.items()} for entry in result.stored]
    location = next((e.get("path") or e.get("url") for e in stored if e.get("path") or e.get("url")), None)
    event: dict[str, Any] = {
        "type": EVENT_STORED if result.ok else EVENT_FAILED,
        "recording_id": result.id,
        "source": result.source,
        "pipeline": result.pipeline,
        "success": bool(result.ok),
        "total_bytes": int(result.bytes),
        "chunks_processed": int(chunks),
        "latency_ms": round(result.seconds * 1000, 3),
        "attempts": int(result.attempts),
        "timestamp": iso_utc(now),
        "sha256": result.digests.get("sha256"),
        "location": location,
        "stored": stored,
        "reason": None if result.ok else result.reason,
        "message": None if result.ok else result.message,
        "audit_entries": list(stream.audit_entries) if stream is not None else [],
    }
    quality = result.metadata.get(QUALITY_KEY)
    if isinstance(quality, Mapping):
        event["quality"] = dict(quality)
    return jsonable(event)


def event_id(endpoint: str, event: Mapping[str, Any]) -> str:
    """The ``webhook-id`` of ``event`` for ``endpoint``: derived from the fact it announces.

    ``msg_`` and 32 hex digits of a SHA-256 over the endpoint, event type, pipeline,
    source, recording id, and, for ``stream.stored``, the content SHA-256 and every stored
    file's SHA-256 (the stored digest); for ``stream.failed``, the reason and the attempt
    count. Announcing the same fact again therefore gives the same id: a crash between
    the outbox write and the ledger's ``stored`` state makes the next run re-announce the
    recording under the id already used, which the outbox keeps once and receivers that
    de-duplicate by ``webhook-id`` (Standard Webhooks) see once. A new failure in a later
    run (more attempts) is a new fact with a new id. The id reveals nothing: the
    endpoint is hashed, never shown.
    """
    parts: list[Any] = [endpoint, event.get("type"), event.get("pipeline"), event.get("source"), event.get("recording_id")]
    if event.get("type") == EVENT_STORED:
        parts += [event.get("sha256"), sorted(str(e["sha256"]) for e in event.get("stored", [])
                                              if isinstance(e, Mapping) and e.get("sha256"))]
    else:
        parts += [event.get("reason"), event.get("attempts")]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":"), default=str).encode()).hexdigest()
    return "msg_" + digest[:32]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: non-finite floats become ``None``, unknown objects their ``str``.

    Audit entries and metadata come from any plugin; announcing must not fail on them.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return str(value)


def encode_body(event: Mapping[str, Any]) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact separators, ASCII (``\\u`` escapes).

    :raises TypeError: a value is not JSON-serialisable (pass events through :func:`jsonable`).
    """
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
