"""What the platform knows about a recording or call: one typed model, everywhere.

A source fills :class:`RecordingFacts` from what its platform reports (CXone's Data
Extraction rows and recording metadata, Genesys' analytics conversation details,
AudioHook's ``open`` message, Agent Assist's first message, Twilio's ``start``), at
discovery (:attr:`voxpipe.model.StreamSpec.facts`) and while the stream opens
(:meth:`voxpipe.model.Stream.update_facts`). Everything downstream reads them from
there: name templates (``{recording_date}``, ``{year}/{month}/{day}/{hour}`` of the
call's start, ``{contact_id}``, ``{conversation_id}``...), the manifest beside each
stored file (key ``facts``), retention (the recording's date, not the download date),
the compliance report and the retrieval API (lookup by any platform id).

Phone numbers (``ani``, ``dnis``) are personal data: :class:`PhoneNumberPolicy` keeps
them, replaces them by a keyed hash (HMAC-SHA256, so equal numbers stay joinable
without being readable), or drops them, before any component sees them.

Field names follow the platforms' own terms: CXone's *contact id* (which its APIs also
call the *ACD call id*), *segment id*; Genesys' *conversation id*, *participant*,
*queue*; AudioHook's *session id*.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

#: Longest text kept in one fact (an id, an agent name, a skill), in characters.
MAX_FACT_CHARS = 256
#: Fields holding platform ids, in the order lookups try them (see :meth:`RecordingFacts.platform_ids`).
ID_FIELDS = ("contact_id", "conversation_id", "interaction_id", "segment_id", "session_id", "call_sid")
#: Fields holding phone numbers (personal data; see :class:`PhoneNumberPolicy`).
PHONE_FIELDS = ("ani", "dnis")
Direction = Literal["inbound", "outbound", "internal"]


class RecordingFacts(BaseModel):
    """Typed facts about one recording or call, all optional (a platform reports what it knows).

    :ivar platform: ``cxone``, ``genesys``, ``audiohook``, ``agent-assist``, ``twilio``...
    :ivar started_at: when the call (or recorded segment) started, aware UTC datetime.
    :ivar ended_at: when it ended, aware UTC datetime.
    :ivar duration_seconds: its length in seconds (from the platform, or ``ended_at - started_at``).
    :ivar contact_id: CXone contact id (the *ACD call id* of the Media Playback API).
    :ivar segment_id: CXone recording segment id (Data Extraction ``Segment ID``).
    :ivar conversation_id: Genesys conversation id (also AudioHook's ``conversationId``).
    :ivar interaction_id: a platform's interaction id where it differs from the above.
    :ivar session_id: a live-audio session id (AudioHook session, Agent Assist stream).
    :ivar call_sid: Twilio call SID.
    :ivar org_id: Genesys organization id or CXone tenant/business unit id.
    :ivar direction: ``inbound``, ``outbound`` or ``internal``.
    :ivar agent_id: the agent's id on the platform.
    :ivar agent_name: the agent's display name.
    :ivar skill: CXone skill name or id.
    :ivar queue: Genesys queue name or id.
    :ivar ani: calling number (ANI); personal data.
    :ivar dnis: called number (DNIS); personal data.
    :ivar participants: other participant ids (Genesys participant ids, ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=MAX_FACT_CHARS)

    platform: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    contact_id: str | None = None
    segment_id: str | None = None
    conversation_id: str | None = None
    interaction_id: str | None = None
    session_id: str | None = None
    call_sid: str | None = None
    org_id: str | None = None
    direction: Direction | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    skill: str | None = None
    queue: str | None = None
    ani: str | None = None
    dnis: str | None = None
    participants: tuple[str, ...] = ()

    @field_validator("started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # Platforms send ISO 8601 with an offset or Z; a naive value is taken as UTC
        # (CXone's Data Extraction CSV gives UTC without an offset).
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, value: Any) -> Any:
        # Platforms spell it "Inbound", "INBOUND", "inbound"; anything else is unknown, not an error.
        if value is None or value == "":
            return None
        text = str(value).strip().lower()
        return text if text in ("inbound", "outbound", "internal") else None

    @field_validator("contact_id", "segment_id", "conversation_id", "interaction_id", "session_id", "call_sid",
                     "org_id", "agent_id", "agent_name", "skill", "queue", "ani", "dnis", "platform",
                     mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        return text or None

    # ------------------------------------------------------------------ derived

    @property
    def acd_call_id(self) -> str | None:
        """CXone's ACD call id: the contact id under the name the Media Playback API uses."""
        return self.contact_id

    @property
    def duration(self) -> float | None:
        """Seconds: ``duration_seconds``, else ``ended_at - started_at`` when both are known."""
        if self.duration_seconds is not None:
            return self.duration_seconds
        if self.started_at is not None and self.ended_at is not None:
            return max(0.0, (self.ended_at - self.started_at).total_seconds())
        return None

    def platform_ids(self) -> tuple[str, ...]:
        """Every platform id this recording can be found by, in :data:`ID_FIELDS` order, no repeats."""
        out: list[str] = []
        for name in ID_FIELDS:
            value = getattr(self, name)
            if value and value not in out:
                out.append(value)
        return tuple(out)

    def merged(self, other: "RecordingFacts | Mapping[str, Any] | None") -> "RecordingFacts":
        """These facts with every field ``other`` knows (not ``None``/empty) taken from ``other``.

        :raises pydantic.ValidationError: a mapping with an unknown field or a bad value.
        """
        if other is None:
            return self
        update = other.to_fields() if isinstance(other, RecordingFacts) else dict(other)
        update = {k: v for k, v in update.items() if v is not None and v != () and v != ""}
        if not update:
            return self
        return RecordingFacts.model_validate({**self.to_fields(), **update})

    def to_fields(self) -> dict[str, Any]:
        """The fields that are set, as Python values (datetimes stay datetimes)."""
        return {k: v for k, v in self.__dict__.items() if v is not None and v != ()}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the fields that are set; times as ISO 8601 UTC with ``Z``."""
        out: dict[str, Any] = {}
        for key, value in self.to_fields().items():
            if isinstance(value, datetime):
                out[key] = iso_utc(value)
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, doc: Any) -> "RecordingFacts":
        """Facts from :meth:`to_json` output (e.g. a manifest's ``facts``); unknown or bad values are dropped.

        Lenient on purpose: a manifest written by a newer voxpipe must still be readable.
        """
        if not isinstance(doc, Mapping):
            return cls()
        known = {k: v for k, v in doc.items() if k in cls.model_fields}
        try:
            return cls.model_validate(known)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            try:
                return cls.model_validate({k: v for k, v in known.items() if k not in bad})
            except ValidationError:
                return cls()


EMPTY = RecordingFacts()


def iso_utc(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (milliseconds kept when present) for an aware or naive-UTC datetime."""
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class PhoneNumberPolicy:
    """What happens to phone numbers (ANI, DNIS) before any component sees them.

    - ``keep``: stored as the platform sent them.
    - ``hash``: replaced by ``hmac-sha256:<first 32 hex digits>`` of the number with only
      its digits and a leading ``+`` kept, keyed by a secret the operator holds, so the
      same number gives the same value across recordings (joinable) without being
      readable; without the key nobody can test a guessed number against it.
    - ``drop``: removed.

    :raises ValueError: ``hash`` without a key, or an unknown mode.
    """

    MODES = ("keep", "hash", "drop")

    def __init__(self, mode: str = "keep", key: str | None = None):
        if mode not in self.MODES:
            raise ValueError(f"phone_numbers: {mode!r} is not one of {', '.join(self.MODES)}")
        if mode == "hash" and not key:
            raise ValueError("phone_numbers: hash needs phone_number_key (a secret, e.g. ${PHONE_NUMBER_KEY})")
        self.mode = mode
        self._key = key.encode() if key else b""

    def __repr__(self) -> str:  # never the key
        return f"PhoneNumberPolicy({self.mode!r})"

    def hash_number(self, number: str) -> str:
        """The keyed hash stored for ``number`` under the ``hash`` mode."""
        normal = ("+" if number.strip().startswith("+") else "") + "".join(c for c in number if c.isdigit())
        return "hmac-sha256:" + hmac.new(self._key, normal.encode(), hashlib.sha256).hexdigest()[:32]

    def apply(self, facts: RecordingFacts) -> RecordingFacts:
        """``facts`` with the phone numbers kept, hashed or dropped (values already hashed stay as they are)."""
        if self.mode == "keep" or not any(getattr(facts, f) for f in PHONE_FIELDS):
            return facts
        fields = facts.to_fields()
        for name in PHONE_FIELDS:
            value = fields.get(name)
            if value is None:
                continue
            if self.mode == "drop":
                del fields[name]
            elif not value.startswith("hmac-sha256:"):
                fields[name] = self.hash_number(value)
        return RecordingFacts.model_validate(fields)
