"""What the emulated platform knows about each recording's call (sans-IO).

Every endpoint that describes a recording (recording metadata, Media Playback contacts and
segments answers, the Data Extraction CSV) reads the same :class:`CallRecord`, so facts
are consistent across endpoints, as on a real tenant.

Calls are laid out in time deterministically: with ``n`` recordings sorted by id, the
``k``-th (0-based) starts at ``calls_end - (n - k) * spacing`` seconds, so all of them
lie in the ``n * spacing`` seconds before ``calls_end`` (default: when the emulator
started, rounded down to the minute). The contact id is the recording id (CXone's ACD call
id, as the Media Playback API is asked for it); the segment id a stable UUID derived from it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Mapping

__all__ = ["CallRecord", "CallCatalogue", "render_csv", "CSV_COLUMNS"]

_NAMESPACE = uuid.UUID("6f1c1b52-4c57-4b8e-9a55-2f0c4e1d7a10")
_AGENTS = (("1181", "Doe, Jane"), ("1182", "Smith, \"Bob\""), ("1183", "Ng Wei"), ("1184", "Ólafsdóttir, Anna"))
_SKILLS = ("Billing", "Support - Tier 1", "Sales,Outbound", "Retention")
_DIRECTIONS = ("Inbound", "Outbound", "Inbound", "Internal")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class CallRecord:
    """One recording's call as the platform describes it (times: Unix seconds)."""

    recording_id: str
    contact_id: str
    segment_id: str
    started_at: float
    ended_at: float
    agent_id: str
    agent_name: str
    skill: str
    direction: str
    ani: str
    dnis: str
    business_unit: str = "4600001"

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    def json_fields(self) -> dict:
        """The facts as recording-metadata / Media Playback JSON fields."""
        return {"contactId": self.contact_id, "acdCallId": self.contact_id, "segmentId": self.segment_id,
                "startDate": _iso(self.started_at), "endDate": _iso(self.ended_at), "agentId": self.agent_id,
                "agentName": self.agent_name, "skillName": self.skill, "direction": self.direction,
                "ani": self.ani, "dnis": self.dnis, "businessUnitId": self.business_unit}


def _describe(rec_id: str, started_at: float, duration: float) -> CallRecord:
    h = int.from_bytes(hashlib.sha256(rec_id.encode()).digest()[:8], "big")
    agent_id, agent_name = _AGENTS[h % len(_AGENTS)]
    return CallRecord(
        recording_id=rec_id, contact_id=rec_id, segment_id=str(uuid.uuid5(_NAMESPACE, rec_id)),
        started_at=float(int(started_at)), ended_at=float(int(started_at)) + max(0.0, duration),
        agent_id=agent_id, agent_name=agent_name, skill=_SKILLS[(h >> 8) % len(_SKILLS)],
        direction=_DIRECTIONS[(h >> 16) % len(_DIRECTIONS)], ani=f"+1555{(h >> 20) % 10_000_000:07d}",
        dnis=f"+1800555{(h >> 44) % 10_000:04d}")


class CallCatalogue:
    """Thread-safe map of recording id → :class:`CallRecord` (and segment id → recording id)."""

    def __init__(self, durations: Mapping[str, float], *, calls_end: float, spacing: float):
        ids = sorted(durations)
        self._lock = threading.Lock()
        self._calls: dict[str, CallRecord] = {}
        self._segments: dict[str, str] = {}
        n = len(ids)
        for k, rec_id in enumerate(ids):
            self._put(_describe(rec_id, calls_end - (n - k) * spacing, durations[rec_id]))

    def _put(self, call: CallRecord) -> None:
        self._calls[call.recording_id] = call
        self._segments[call.segment_id] = call.recording_id

    def add(self, rec_id: str, *, started_at: float, duration: float) -> CallRecord:
        """Describe a recording added at runtime (a call that just ended)."""
        call = _describe(rec_id, started_at, duration)
        with self._lock:
            self._put(call)
        return call

    def get(self, rec_id: str) -> CallRecord | None:
        with self._lock:
            return self._calls.get(rec_id)

    def recording_of_segment(self, segment_id: str) -> str | None:
        with self._lock:
            return self._segments.get(segment_id)

    def between(self, first: date, stop: date) -> list[CallRecord]:
        """Calls that started on UTC days ``first`` .. ``stop`` (exclusive), by start time."""
        lo = datetime.combine(first, datetime.min.time(), timezone.utc).timestamp()
        hi = datetime.combine(stop, datetime.min.time(), timezone.utc).timestamp()
        with self._lock:
            calls = [c for c in self._calls.values() if lo <= c.started_at < hi]
        return sorted(calls, key=lambda c: (c.started_at, c.segment_id))


#: Columns of the ``recording-interaction-metadata`` CSV per entity version (the shapes
#: differ between versions, as on real tenants; voxpipe reads them by name).
CSV_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "7": ("Segment ID", "Agent 1 Contact Number", "Segment Start Time", "Segment End Time", "Duration",
          "Agent 1 ID", "Agent 1 Name", "Skill Name", "Direction", "ANI", "DNIS", "Media Type", "Business Unit",
          "Recording Status"),
    "10": ("Business Unit ID", "Contact ID", "Master Contact ID", "Segment ID", "Segment Start Date Time",
           "Segment End Date Time", "Segment Duration", "Agent ID", "Agent Name", "Skill", "Contact Direction",
           "ANI", "DNIS", "Media Type", "Screen Recording", "Categories"),
}


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _row(call: CallRecord, version: str) -> dict[str, str]:
    start = datetime.fromtimestamp(call.started_at, timezone.utc)
    end = datetime.fromtimestamp(call.ended_at, timezone.utc)
    if version == "7":
        return {"Segment ID": call.segment_id, "Agent 1 Contact Number": call.contact_id,
                "Segment Start Time": start.strftime("%Y-%m-%d %H:%M:%S"),
                "Segment End Time": end.strftime("%Y-%m-%d %H:%M:%S"), "Duration": _hms(call.duration),
                "Agent 1 ID": call.agent_id, "Agent 1 Name": call.agent_name, "Skill Name": call.skill,
                "Direction": call.direction, "ANI": call.ani, "DNIS": call.dnis, "Media Type": "Voice",
                "Business Unit": call.business_unit, "Recording Status": "Completed"}
    return {"Business Unit ID": call.business_unit, "Contact ID": call.contact_id,
            "Master Contact ID": call.contact_id, "Segment ID": call.segment_id,
            "Segment Start Date Time": _iso(call.started_at), "Segment End Date Time": _iso(call.ended_at),
            "Segment Duration": f"{call.duration:.3f}", "Agent ID": call.agent_id, "Agent Name": call.agent_name,
            "Skill": call.skill, "Contact Direction": call.direction.upper(), "ANI": call.ani, "DNIS": call.dnis,
            "Media Type": "voice-only", "Screen Recording": "false", "Categories": "billing; \"vip\"\nfollow-up"}


def render_csv(calls: Iterable[CallRecord], version: str) -> bytes:
    """The CSV of a job: UTF-8 with a byte-order mark, CRLF line ends, fields quoted where needed."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS[version], lineterminator="\r\n")
    writer.writeheader()
    for call in calls:
        writer.writerow(_row(call, version))
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
