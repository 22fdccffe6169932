"""Data Extraction job lifecycle of the emulator (sans-IO).

``POST /data-extraction/v1/jobs`` with ``{"entityName": "recording-interaction-metadata",
"version": "7"|"10", "startDate", "endDate"}`` (dates ``YYYY-MM-DD``, ``endDate``
exclusive and after ``startDate``, at most :attr:`ExtractionJobs.max_days` days) creates a
job; ``GET /data-extraction/v1/jobs/{id}`` answers ``{"jobStatus": {"id", "status",
"result": {"url", "errorMessage"}}}``. A job is RUNNING for its first ``running_polls``
status requests and at least ``running_seconds`` (a slow extraction), then ends in its
fate: SUCCEEDED unless scripted otherwise (:meth:`ExtractionJobs.script`: FAILED,
CANCELLED, EXPIRED). A SUCCEEDED job's result expires ``result_ttl`` seconds after it
finished: its status becomes EXPIRED and its file URL stops working.

States (a transition table; the job only moves forward)::

    RUNNING ──► SUCCEEDED ──► EXPIRED
       ├──────► FAILED
       ├──────► CANCELLED
       └──────► EXPIRED
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import date

__all__ = ["ExtractionJobs", "Job", "JobRequestError", "FATES", "TRANSITIONS"]

ENTITY = "recording-interaction-metadata"
VERSIONS = ("7", "10")
FATES = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
TRANSITIONS = {
    "RUNNING": frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}),
    "SUCCEEDED": frozenset({"EXPIRED"}),
    "FAILED": frozenset(),
    "CANCELLED": frozenset(),
    "EXPIRED": frozenset(),
}
ERROR_MESSAGES = {
    "FAILED": "Extraction failed: internal error while reading recording-interaction-metadata",
    "CANCELLED": "Extraction was cancelled",
    "EXPIRED": "Extraction results have expired",
}
#: Most jobs remembered (oldest forgotten first).
MAX_JOBS = 10_000


class JobRequestError(ValueError):
    """A job request the API refuses (400); the message says why."""


@dataclass
class Job:
    id: str
    version: str
    first: date
    stop: date
    created_at: float
    fate: str
    state: str = "RUNNING"
    polls: int = 0
    finished_at: float | None = None
    history: list[str] = field(default_factory=lambda: ["RUNNING"])

    def move(self, state: str, now: float) -> None:
        if state == self.state:
            return
        if state not in TRANSITIONS[self.state]:
            raise AssertionError(f"job {self.id}: {self.state} -> {state} is not a transition")
        self.state = state
        self.finished_at = self.finished_at or now
        self.history.append(state)


class ExtractionJobs:
    """The jobs of one emulator instance (thread-safe)."""

    def __init__(self, *, running_polls: int = 1, running_seconds: float = 0.0, result_ttl: float = 3600.0,
                 max_days: int = 31, id_shape: str = "object"):
        self.running_polls = running_polls
        self.running_seconds = running_seconds
        self.result_ttl = result_ttl
        self.max_days = max_days
        self.id_shape = id_shape
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._script: deque[str] = deque()
        self._ids = itertools.count(1)

    def script(self, *fates: str) -> None:
        """The fates of the next jobs created, in order (then SUCCEEDED again)."""
        for fate in fates:
            if fate not in FATES:
                raise ValueError(f"job fate {fate!r} is not one of {', '.join(FATES)}")
        with self._lock:
            self._script.extend(fates)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def create(self, body: object, now: float) -> Job:
        """A new job from a request body.

        :raises JobRequestError: not an object, another entity, an unknown version, bad dates,
            ``endDate`` not after ``startDate``, or more than :attr:`max_days` days.
        """
        if not isinstance(body, dict):
            raise JobRequestError("request body must be a JSON object")
        if body.get("entityName") != ENTITY:
            raise JobRequestError(f"entityName {body.get('entityName')!r} is not supported; use {ENTITY}")
        version = str(body.get("version", ""))
        if version not in VERSIONS:
            raise JobRequestError(f"version {version!r} of {ENTITY} is not available (available: 7, 10)")
        try:
            first = date.fromisoformat(str(body.get("startDate")))
            stop = date.fromisoformat(str(body.get("endDate")))
        except ValueError:
            raise JobRequestError("startDate and endDate must be dates YYYY-MM-DD") from None
        if stop <= first:
            raise JobRequestError("endDate must be after startDate")
        if (stop - first).days > self.max_days:
            raise JobRequestError(f"the date range is {(stop - first).days} days; at most {self.max_days} per job")
        with self._lock:
            fate = self._script.popleft() if self._script else "SUCCEEDED"
            job = Job(f"{next(self._ids):08d}-de", version, first, stop, now, fate)
            self._jobs[job.id] = job
            while len(self._jobs) > MAX_JOBS:
                self._jobs.pop(next(iter(self._jobs)))
        return job

    def created_answer(self, job: Job) -> object:
        """The 202 body: the bare id (``id_shape="string"``) or ``{"jobId": …}``."""
        return job.id if self.id_shape == "string" else {"jobId": job.id}

    def poll(self, job_id: str, now: float) -> Job | None:
        """Advance and return the job (``None``: unknown id)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.polls += 1
            if job.state == "RUNNING" and job.polls > self.running_polls \
                    and now - job.created_at >= self.running_seconds:
                job.move(job.fate, now)
            if job.state == "SUCCEEDED" and job.finished_at is not None and now - job.finished_at > self.result_ttl:
                job.move("EXPIRED", now)
            return job

    def readable(self, job_id: str, now: float) -> Job | None:
        """The job whose result file may be served now, else ``None``."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state != "SUCCEEDED":
                return None
            if job.finished_at is not None and now - job.finished_at > self.result_ttl:
                job.move("EXPIRED", now)
                return None
            return job

    @staticmethod
    def status_answer(job: Job, url: str | None) -> dict:
        result: dict = {}
        if job.state == "SUCCEEDED":
            result["url"] = url
        elif job.state != "RUNNING":
            result["errorMessage"] = ERROR_MESSAGES[job.state]
        return {"jobStatus": {"id": job.id, "status": job.state, "entityName": ENTITY, "version": job.version,
                              "startDate": job.first.isoformat(), "endDate": job.stop.isoformat(),
                              "result": result}}
