"""CXone Data Extraction, without I/O: time windows, job requests and states, the CSV of segments.

Finding a tenant's recordings by date (developer.niceincontact.com, Data Extraction API;
public integration code; ``/work/shared/reference/cxone.md``):

1. ``POST /data-extraction/v1/jobs`` with ``{"entityName": "recording-interaction-metadata",
   "version": "7", "startDate": "YYYY-MM-DD", "endDate": "YYYY-MM-DD"}`` → 202 and the job
   id, as a bare JSON string or as ``{"jobId": …}`` (:func:`parse_job_id`). voxpipe sends
   ``endDate`` as the day *after* the last day wanted (exclusive) and filters the rows by
   their start time, so either reading of ``endDate`` finds every recording of the window;
2. ``GET /data-extraction/v1/jobs/{jobId}`` → ``{"jobStatus": {"id", "status", "result":
   {"url", "errorMessage"}}}`` with ``status`` one of :data:`JOB_STATES`
   (:func:`parse_job_status`; what each state means next: :data:`JOB_TRANSITIONS`);
3. on ``SUCCEEDED`` the CSV at ``result.url``, a temporary signed URL fetched without the
   bearer token: UTF-8 with a byte-order mark, one row per recording segment, parsed by
   header name (:class:`SegmentCsv`) because versions 7 and 10 of the entity differ.

Windows (:func:`plan_window`, :func:`split_days`): ``from``/``to`` are dates (whole days)
or times, in UTC or a named zone; a window longer than ``days_per_job`` days is several
jobs, each over whole UTC days.
"""

from __future__ import annotations

import csv
import enum
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import IO, Any, Iterator, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voxpipe.facts import RecordingFacts

#: The Data Extraction entity of recorded segments.
ENTITY_NAME = "recording-interaction-metadata"
#: Entity versions known to be in use (both parse through the same header aliases).
ENTITY_VERSIONS = ("7", "10")
#: Most rows accepted from one job's CSV.
MAX_CSV_ROWS = 1_000_000
#: Longest CSV field accepted, in characters (csv module's limit, made explicit).
MAX_CSV_FIELD = 64 * 1024
#: Most days one window may cover (a longer backfill is several runs).
MAX_WINDOW_DAYS = 366


class ExtractionError(ValueError):
    """A Data Extraction answer or CSV that cannot be used; the message says what and where."""


# ---------------------------------------------------------------------------- windows


def zone(name: str) -> timezone | ZoneInfo:
    """``UTC`` or an IANA zone name (``Europe/Paris``).

    :raises ValueError: an unknown zone.
    """
    if name.upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not UTC or an IANA zone name such as Europe/Paris") from None


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bound(text: str, tz: timezone | ZoneInfo, *, end: bool) -> datetime:
    """A ``from``/``to`` value as an aware UTC datetime.

    A date (``2026-11-29``) means the start of that day in ``tz``, or for ``to`` (``end``)
    the start of the next day: ``from: 2026-11-29, to: 2026-11-29`` is that whole day. A
    time (``2026-11-29T08:00``, with or without an offset or ``Z``) is taken as given; without
    an offset it is a time in ``tz``.

    :raises ValueError: neither a date nor an ISO 8601 time.
    """
    text = text.strip()
    if _DATE_RE.match(text):
        day = date.fromisoformat(text) + (timedelta(days=1) if end else timedelta())
        return datetime.combine(day, time(), tz).astimezone(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time (YYYY-MM-DDTHH:MM[:SS][+HH:MM])") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.astimezone(timezone.utc)


@dataclass(frozen=True)
class Window:
    """A half-open interval ``[start, end)`` of call start times, aware UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window {self} ends before it starts")
        if self.end - self.start > timedelta(days=MAX_WINDOW_DAYS):
            raise ValueError(f"window {self} is longer than {MAX_WINDOW_DAYS} days; split the backfill over runs")

    def __str__(self) -> str:
        return f"{_iso(self.start)}/{_iso(self.end)}"

    def holds(self, when: datetime) -> bool:
        return self.start <= when < self.end


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_days(window: Window, days_per_job: int) -> list[tuple[date, date]]:
    """The jobs that cover ``window``: ``(startDate, endDate)`` pairs of whole UTC days,
    ``endDate`` exclusive, each at most ``days_per_job`` days long, in time order."""
    first = window.start.astimezone(timezone.utc).date()
    last_instant = window.end - timedelta(microseconds=1)
    stop = last_instant.astimezone(timezone.utc).date() + timedelta(days=1)
    jobs = []
    day = first
    while day < stop:
        nxt = min(stop, day + timedelta(days=days_per_job))
        jobs.append((day, nxt))
        day = nxt
    return jobs


def job_request(start: date, end: date, version: str) -> dict[str, str]:
    """The JSON body of ``POST /data-extraction/v1/jobs`` for days ``start`` .. ``end`` (exclusive)."""
    return {"entityName": ENTITY_NAME, "version": version, "startDate": start.isoformat(),
            "endDate": end.isoformat()}


# ---------------------------------------------------------------------------- jobs


class JobState(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


JOB_STATES = tuple(s.value for s in JobState)


class Next(enum.Enum):
    """What the source does after reading a job's state."""

    POLL = "poll"          # wait (bounded), then ask again
    DOWNLOAD = "download"  # fetch the CSV from result.url
    FAIL = "fail"          # the window cannot be read: error, exit 1, watermark kept


#: Job state → what to do next. Not-yet-started spellings (``QUEUED``, ``PENDING``,
#: ``CREATED``) are read as RUNNING by :func:`parse_job_status`.
JOB_TRANSITIONS: Mapping[JobState, Next] = {
    JobState.RUNNING: Next.POLL,
    JobState.SUCCEEDED: Next.DOWNLOAD,
    JobState.FAILED: Next.FAIL,
    JobState.CANCELLED: Next.FAIL,
    JobState.EXPIRED: Next.FAIL,
}
_NOT_STARTED = frozenset({"QUEUED", "PENDING", "CREATED", "SUBMITTED", "IN_PROGRESS"})


@dataclass(frozen=True)
class JobStatus:
    """One poll's answer. ``url`` is secret-bearing (hidden from ``repr``; never log it)."""

    job_id: str
    state: JobState
    url: str | None = None
    error_message: str | None = None

    def __repr__(self) -> str:
        return f"JobStatus({self.job_id!r}, {self.state.value}, error_message={self.error_message!r})"

    @property
    def next(self) -> Next:
        return JOB_TRANSITIONS[self.state]


def parse_job_id(body: Any) -> str:
    """The job id of a job-creation answer: a bare JSON string or ``{"jobId": …}`` (``id`` too).

    :raises ExtractionError: neither shape.
    """
    if isinstance(body, str) and body.strip():
        return body.strip()
    if isinstance(body, dict):
        for key in ("jobId", "id"):
            value = body.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()
    raise ExtractionError("job creation answer carries no job id (expected a JSON string or {\"jobId\": ...})")


def parse_job_status(body: Any, job_id: str) -> JobStatus:
    """A ``GET /data-extraction/v1/jobs/{jobId}`` answer.

    :raises ExtractionError: no ``jobStatus.status``, an unknown state, or SUCCEEDED without
        an http(s) ``result.url``.
    """
    status = body.get("jobStatus") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        raise ExtractionError(f"job {job_id}: status answer has no jobStatus object")
    raw = str(status.get("status") or "").strip().upper()
    if raw in _NOT_STARTED:
        raw = "RUNNING"
    try:
        state = JobState(raw)
    except ValueError:
        raise ExtractionError(f"job {job_id}: unknown status {raw or '(none)'!r}; expected one of "
                              f"{', '.join(JOB_STATES)}") from None
    result = status.get("result") if isinstance(status.get("result"), dict) else {}
    url = result.get("url")
    message = result.get("errorMessage") or status.get("errorMessage")
    if state is JobState.SUCCEEDED and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise ExtractionError(f"job {job_id}: SUCCEEDED without an http(s) result.url")
    return JobStatus(job_id, state, url if isinstance(url, str) else None,
                     str(message)[:500] if message else None)


# ---------------------------------------------------------------------------- CSV

#: Fact → header names that carry it, in preference order (compared case-insensitively,
#: spaces/underscores/dashes ignored). Versions 7 and 10 of the entity name columns
#: differently; unknown columns are ignored.
COLUMNS: Mapping[str, tuple[str, ...]] = {
    "segment_id": ("Segment ID", "SegmentId", "Recording Segment ID"),
    "contact_id": ("Contact ID", "Agent 1 Contact Number", "ACD Call ID", "Master Contact ID"),
    "started_at": ("Segment Start Time", "Segment Start Date Time", "Start Time", "Start Date Time",
                   "Segment Start Time (UTC)", "Start Date"),
    "ended_at": ("Segment End Time", "Segment End Date Time", "End Time", "End Date Time",
                 "Segment End Time (UTC)", "End Date"),
    "duration_seconds": ("Segment Duration", "Duration", "Duration Seconds", "Recording Duration"),
    "agent_id": ("Agent 1 ID", "Agent ID", "Agent 1 Agent ID"),
    "agent_name": ("Agent 1 Name", "Agent Name", "Agent 1 Full Name"),
    "skill": ("Skill Name", "Skill", "Agent 1 Skill Name", "Skill ID"),
    "direction": ("Direction", "Contact Direction", "Call Direction"),
    "ani": ("ANI", "Agent 1 ANI", "Caller Number", "From"),
    "dnis": ("DNIS", "Agent 1 DNIS", "Dialed Number", "To"),
    "media_type": ("Media Type", "Media", "Channel"),
    "org_id": ("Business Unit", "Business Unit ID", "Tenant ID"),
}
#: Columns a CSV must have.
REQUIRED = ("segment_id", "contact_id", "started_at")
#: ``Media Type`` values that are voice (rows of other media are skipped).
VOICE_MEDIA = frozenset({"", "voice", "voice-only", "voiceonly", "call", "phone", "phonecall", "audio"})
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M", "%m/%d/%Y %I:%M:%S %p",
                 "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M")


def _key(header: str) -> str:
    return re.sub(r"[\s_\-]+", "", header.strip().lstrip("\ufeff")).lower()


_ALIASES = {fact: tuple(_key(n) for n in names) for fact, names in COLUMNS.items()}


def parse_time(text: str) -> datetime:
    """A CSV time as aware UTC: ISO 8601 (offset or ``Z`` honoured) or CXone's report
    formats (``2026-11-29 13:04:05``, ``11/29/2026 1:04:05 PM``); no offset means UTC.

    :raises ValueError: none of those.
    """
    text = text.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in _TIME_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"{text!r} is not a time") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _duration(text: str) -> float:
    """Seconds from ``123``, ``123.4`` or ``HH:MM:SS``."""
    text = text.strip()
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60 + p
        return seconds
    return float(text)


@dataclass(frozen=True)
class Segment:
    """One voice recording segment of the CSV: its ids and what the platform knows of it."""

    segment_id: str
    contact_id: str
    facts: RecordingFacts
    line: int  # CSV line number (1 = header), for messages


class SegmentCsv:
    """Rows of one job's CSV, read by header name.

    :param text: a text stream of the CSV (decoded as UTF-8; a leading BOM is dropped).
    :param where: the job, for messages (``job 42``).
    :raises ExtractionError: (on iteration) a missing required column, a row without a
        required value or with a bad time, more than :data:`MAX_CSV_ROWS` rows, a broken CSV.
    """

    def __init__(self, text: IO[str], *, where: str):
        self.where = where
        self._text = text
        self.skipped_media = 0
        self.unknown_columns: tuple[str, ...] = ()

    def _columns(self, header: list[str]) -> dict[str, int]:
        keys = [_key(h) for h in header]
        found: dict[str, int] = {}
        for fact, aliases in _ALIASES.items():
            for alias in aliases:
                if alias in keys:
                    found[fact] = keys.index(alias)
                    break
        missing = [f for f in REQUIRED if f not in found]
        if missing:
            wanted = "; ".join(f"{f} (one of: {', '.join(COLUMNS[f])})" for f in missing)
            raise ExtractionError(f"{self.where}: CSV header lacks required columns: {wanted}; "
                                  f"it has: {', '.join(h.strip() for h in header) or '(nothing)'}")
        used = set(found.values())
        self.unknown_columns = tuple(h.strip() for i, h in enumerate(header) if i not in used)
        return found

    def __iter__(self) -> Iterator[Segment]:
        previous_limit = csv.field_size_limit(MAX_CSV_FIELD)
        try:
            yield from self._rows()
        except csv.Error as exc:
            raise ExtractionError(f"{self.where}: CSV is malformed: {exc}") from None
        finally:
            csv.field_size_limit(previous_limit)

    def _rows(self) -> Iterator[Segment]:
        reader = csv.reader(self._text)
        header = next(reader, None)
        if header is None:
            raise ExtractionError(f"{self.where}: CSV is empty (no header line)")
        if header:
            header[0] = header[0].lstrip("\ufeff")
        columns = self._columns(header)
        rows = 0
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            rows += 1
            if rows > MAX_CSV_ROWS:
                raise ExtractionError(f"{self.where}: CSV has more than {MAX_CSV_ROWS} rows; use a shorter "
                                      "days_per_job")
            values = {fact: row[i].strip() for fact, i in columns.items() if i < len(row)}
            if values.get("media_type", "").lower().replace(" ", "") not in VOICE_MEDIA:
                self.skipped_media += 1
                continue
            for fact in REQUIRED:
                if not values.get(fact):
                    raise ExtractionError(f"{self.where}: CSV line {line}: empty {COLUMNS[fact][0]!r}")
            yield self._segment(values, line)

    def _segment(self, values: dict[str, str], line: int) -> Segment:
        fields: dict[str, Any] = {"platform": "cxone", "segment_id": values["segment_id"],
                                  "contact_id": values["contact_id"]}
        for name in ("started_at", "ended_at"):
            if values.get(name):
                try:
                    fields[name] = parse_time(values[name])
                except ValueError as exc:
                    raise ExtractionError(f"{self.where}: CSV line {line}: {COLUMNS[name][0]}: {exc}") from None
        if values.get("duration_seconds"):
            try:
                fields["duration_seconds"] = _duration(values["duration_seconds"])
            except ValueError:
                pass  # the duration is a convenience; start and end times remain
        for name in ("agent_id", "agent_name", "skill", "direction", "ani", "dnis", "org_id"):
            if values.get(name):
                fields[name] = values[name]
        try:
            facts = RecordingFacts.model_validate(fields)
        except ValueError as exc:
            raise ExtractionError(f"{self.where}: CSV line {line}: {exc}") from None
        return Segment(values["segment_id"], values["contact_id"], facts, line)


def read_csv(data: bytes, *, where: str) -> list[Segment]:
    """Every voice segment of a CSV held in memory (tests; the source streams from a file).

    :raises ExtractionError: see :class:`SegmentCsv`, or bytes that are not UTF-8.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"{where}: CSV is not UTF-8 (byte {exc.start})") from None
    return list(SegmentCsv(io.StringIO(text, newline=""), where=where))
