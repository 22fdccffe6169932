"""The data that flows through a pipeline: chunks, streams, verdicts and results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .facts import EMPTY as _NO_FACTS, RecordingFacts

if TYPE_CHECKING:  # pragma: no cover
    from .audit import AuditLog
    from .facts import PhoneNumberPolicy


#: Audit events kept in memory per stream (the log file keeps them all).
MAX_AUDIT_ENTRIES_PER_STREAM = 1000


@dataclass(frozen=True, slots=True)
class Chunk:
    """A contiguous piece of a stream.

    :ivar offset: byte offset of ``data[0]`` within the stream (0-based).
    :ivar data: the bytes; immutable (``bytes``), shared read-only by every consumer.
    """

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """Offset one past the last byte."""
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream a source announces before it is opened: an id and what is known so far.

    :ivar id: the recording id or call id, unique within the source.
    :ivar metadata: anything known at discovery time (format, size in bytes, ...).
    :ivar facts: what the platform reported about the recording at discovery (its time,
        ids, agent...; see :mod:`voxpipe.facts`).
    """

    id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    facts: RecordingFacts = _NO_FACTS


class Stream:
    """One recording or call in flight, shared by the components working on it.

    Sources fill :attr:`metadata` as they learn it (``format``, ``size`` in bytes,
    ``duration`` in seconds, ``sha256``, ``etag``, ...); sinks read it when they name
    the stored file at commit time. :attr:`facts` holds what the platform reported about
    the recording (:class:`voxpipe.facts.RecordingFacts`), with phone numbers already kept,
    hashed or dropped by the pipeline's policy. :meth:`audit` appends a line to the run's
    audit log.
    """

    __slots__ = ("id", "source", "pipeline", "metadata", "started_at", "attempt", "audit_entries", "resume_offset",
                 "_audit", "_on_event", "_facts", "_phone_policy")

    def __init__(self, spec: StreamSpec, *, source: str, pipeline: str, audit: "AuditLog | None", attempt: int = 1,
                 on_event: "Callable[[Stream, str, dict[str, Any]], None] | None" = None,
                 phone_policy: "PhoneNumberPolicy | None" = None):
        self.id = spec.id
        self._phone_policy = phone_policy
        self._facts = self._protect(spec.facts)
        self.source = source
        self.pipeline = pipeline
        self.metadata: dict[str, Any] = dict(spec.metadata)
        self.started_at = time.time()
        self.attempt = attempt
        #: Bytes already durably received by an earlier run; a resumable source starts here.
        self.resume_offset = 0
        #: This stream's audit events (the first MAX_AUDIT_ENTRIES_PER_STREAM), for announcements.
        self.audit_entries: list[dict[str, Any]] = []
        self._audit = audit
        self._on_event = on_event

    def _protect(self, facts: RecordingFacts) -> RecordingFacts:
        return self._phone_policy.apply(facts) if self._phone_policy is not None else facts

    @property
    def facts(self) -> RecordingFacts:
        """What the platform reported about this recording or call (see :mod:`voxpipe.facts`)."""
        return self._facts

    def update_facts(self, facts: "RecordingFacts | Mapping[str, Any]") -> RecordingFacts:
        """Merge newly learnt facts (fields set in ``facts`` win) and return the result.

        :raises pydantic.ValidationError: a mapping with an unknown field or a bad value.
        """
        self._facts = self._protect(self._facts.merged(facts))
        return self._facts

    def audit(self, event: str, **fields: Any) -> None:
        """Record an audit event (``segment``, ``token-refresh``, ...) for this stream."""
        if len(self.audit_entries) < MAX_AUDIT_ENTRIES_PER_STREAM:
            self.audit_entries.append({"ts": round(time.time(), 6), "event": event, **fields})
        if self._audit is not None:
            self._audit.write(event, pipeline=self.pipeline, source=self.source, stream=self.id, **fields)
        if self._on_event is not None:
            self._on_event(self, event, fields)

    def __repr__(self) -> str:
        return f"<Stream {self.source}:{self.id} attempt={self.attempt}>"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verifier's judgement of a whole stream.

    :ivar verifier: the verifier's ``type`` (e.g. ``"sha256"``).
    :ivar ok: whether the stream passed.
    :ivar reason: short stable code when not ok (e.g. ``"sha256-mismatch"``), else ``None``.
    :ivar message: human-readable explanation when not ok.
    :ivar details: values to record, e.g. ``{"sha256": "<hex>"}``; digests land in the result.
    """

    verifier: str
    ok: bool
    reason: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"verifier": self.verifier, "ok": self.ok, "reason": self.reason,
                "message": self.message, "details": dict(self.details)}


@dataclass(slots=True)
class StreamResult:
    """How one stream ended: what the engine reports, audits and announces.

    :ivar bytes: bytes received from the source (before transforms).
    :ivar seconds: wall time from open to commit or abort.
    :ivar digests: digests of the bytes as received, by algorithm (``{"sha256": hex}``).
    :ivar stored: one entry per committing sink (``{"sink": "gzip", "path": ...}``).
    :ivar facts: the recording's facts as JSON (:meth:`voxpipe.facts.RecordingFacts.to_json`).
    :ivar retrying: set before sinks abort when the engine will start this stream again
        (a retryable failure with attempts left), so announcing sinks stay quiet until the
        stream's final outcome.
    """

    id: str
    source: str
    pipeline: str
    ok: bool = False
    skipped: bool = False
    reason: str | None = None
    message: str | None = None
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 1
    resumed_from: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    digests: dict[str, str] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    retrying: bool = False

    @property
    def status(self) -> str:
        """``ok``, ``failed``, or ``skipped`` (already stored by an earlier run)."""
        if self.skipped:
            return "skipped"
        return "ok" if self.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source, "pipeline": self.pipeline,
            "status": self.status, "reason": self.reason, "message": self.message,
            "bytes": self.bytes, "seconds": round(self.seconds, 6), "attempts": self.attempts,
            "resumed_from": self.resumed_from,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "digests": dict(self.digests), "verdicts": [v.to_dict() for v in self.verdicts],
            "stored": list(self.stored), "metadata": dict(self.metadata),
            "facts": dict(self.facts),
        }
