"""Finding a CXone tenant's recordings by date: Data Extraction jobs, their CSV, the watermark.

The I/O around :mod:`.extraction` (which has the rules). For one run:

1. the window: ``from``/``to``; or with ``since: last-run`` from the watermark the ledger
   keeps for ``(pipeline, "cxone:data-extraction")`` minus ``overlap`` (first run: ``from``,
   else the start of yesterday in ``timezone``) up to now;
2. one job per ``days_per_job`` days (:func:`.extraction.split_days`), each created, polled
   (``job_poll_interval`` doubling up to ``max_job_poll_interval``, at most ``max_job_wait``
   seconds) and, on SUCCEEDED, its CSV fetched from the signed URL without the bearer token
   (the URL authorises itself, and is never logged or put in a message) into a spooled
   temporary file of at most :data:`MAX_CSV_BYTES`, then parsed row by row;
3. every voice segment whose call started in the window, once, as a stream (id: the
   segment id) carrying the row's facts;
4. at the end of the run (:meth:`ExtractionDiscovery.settle`), if every job was read, the
   watermark moves to the window's end, or to the start of the earliest recording of the
   window that is not stored yet (it is then found again next run); never backwards. A
   failed, cancelled, expired or timed-out job fails discovery (exit 1) and keeps the
   watermark where it was.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, AsyncIterator
from urllib.parse import quote

import trio

from voxpipe.download.downloader import HTTPStatusError
from voxpipe.download.httpsource import get_with_retries
from voxpipe.errors import StreamError

from .extraction import (ExtractionError, JobState, JobStatus, Next, Segment, SegmentCsv, Window, job_request,
                         parse_bound, parse_job_id, parse_job_status, split_days, zone)

if TYPE_CHECKING:  # pragma: no cover
    from .source import CxoneSource

log = logging.getLogger("voxpipe.cxone")

#: Largest CSV accepted from one job (bytes).
MAX_CSV_BYTES = 512 * 1024 * 1024
#: CSV bytes kept in memory before the spooled file moves to disk.
CSV_SPOOL_BYTES = 8 * 1024 * 1024
#: Bytes per read of the CSV body.
CSV_READ_SIZE = 256 * 1024
#: Fresh CSV URLs asked for (by polling the job again) after a 403 on an expired one.
MAX_CSV_URL_REFRESHES = 2
#: The watermark's key in the ledger (per pipeline).
WATERMARK_KEY = "cxone:data-extraction"


class ExtractionDiscovery:
    """Data Extraction discovery for one run of a :class:`~.source.CxoneSource`."""

    def __init__(self, source: "CxoneSource"):
        self.source = source
        self.settings = source.settings
        self.window: Window | None = None
        #: Segment id → call start (Unix s) of every segment yielded this run.
        self.found: dict[str, float] = {}
        #: Whether every job of the window was read to its end (the watermark may move).
        self.complete = False
        self.stats = {"jobs": 0, "polls": 0, "rows": 0, "outside_window": 0, "duplicates": 0}

    # ---------------------------------------------------------------- window and watermark

    def _ledger(self):
        """The blocking ledger (called from worker threads): the engine's, or the backend behind
        an async wrapper (``.backend``), with ``get``, ``get_watermark`` and ``set_watermark``."""
        ledger = self.source.context.services.get("ledger")
        return getattr(ledger, "backend", ledger)

    async def _watermark(self) -> float | None:
        ledger = self._ledger()
        if ledger is None or not hasattr(ledger, "get_watermark"):
            if not getattr(self, "_warned", False):
                self._warned = True
                log.warning("%s: the ledger keeps no watermark; `since: last-run` starts from `from` or yesterday",
                            self.source.context.pipeline)
            return None
        return await trio.to_thread.run_sync(ledger.get_watermark, self.source.context.pipeline, WATERMARK_KEY)

    async def plan(self, now: float | None = None) -> Window:
        """The window of this run (see the module doc)."""
        s = self.settings
        tz = zone(s.timezone)
        now_dt = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
        if s.since == "last-run":
            mark = await self._watermark()
            if mark is not None:
                start = datetime.fromtimestamp(mark, timezone.utc) - timedelta(seconds=s.overlap_seconds)
            elif s.from_ is not None:
                start = parse_bound(s.from_, tz, end=False)
            else:
                today = now_dt.astimezone(tz).date()
                start = parse_bound((today - timedelta(days=1)).isoformat(), tz, end=False)
            end = now_dt
        else:
            assert s.from_ is not None  # settings validation
            start = parse_bound(s.from_, tz, end=False)
            end = parse_bound(s.to, tz, end=True) if s.to else now_dt
        try:
            self.window = Window(start, end)
        except ValueError as exc:
            raise StreamError(f"CXone data extraction: {exc}", reason="bad-window") from None
        return self.window

    async def settle(self) -> float | None:
        """Move the watermark after the run (see the module doc); returns the value written, or ``None``."""
        ledger = self._ledger()
        if not (self.complete and self.window is not None and self.settings.since == "last-run"
                and ledger is not None and hasattr(ledger, "set_watermark")):
            return None
        source_type = self.source.type

        def unsettled() -> list[float]:
            starts = []
            for sid, started in self.found.items():
                state = ledger.get(source_type, sid)
                if state is None or state.state != "stored":
                    starts.append(started)
            return starts

        pending = await trio.to_thread.run_sync(unsettled)
        mark = min(pending) if pending else self.window.end.timestamp()
        old = await self._watermark()
        if old is not None and mark <= old:
            return None
        pipeline = self.source.context.pipeline
        await trio.to_thread.run_sync(ledger.set_watermark, pipeline, WATERMARK_KEY, mark)
        self.source._audit("watermark", window=str(self.window), watermark=_iso(mark), unsettled=len(pending))
        log.info("%s: data extraction watermark now %s (%d recordings of the window not stored)", pipeline,
                 _iso(mark), len(pending))
        return mark

    # ---------------------------------------------------------------- segments

    async def segments(self) -> AsyncIterator[Segment]:
        """Every voice segment whose call started in the window, once, job after job.

        :raises StreamError: a job failed (``extraction-failed``/``-cancelled``/``-expired``),
            timed out (``extraction-timeout``), or its CSV is unusable (``extraction-csv``).
        """
        window = self.window or await self.plan()
        jobs = split_days(window, self.settings.days_per_job)
        self.source._audit("extraction-window", window=str(window), jobs=len(jobs))
        log.info("CXone data extraction: %s in %d job(s)", window, len(jobs))
        for first, stop in jobs:
            async for segment in self._job(first, stop):
                yield segment
        self.complete = True

    async def _job(self, first, stop) -> AsyncIterator[Segment]:
        s, src = self.settings, self.source
        days = f"{first.isoformat()}..{(stop - timedelta(days=1)).isoformat()}"
        _, body = await src.api_request("POST", f"{src.api_base}/data-extraction/v1/jobs", ok=(200, 201, 202),
                                        json=job_request(first, stop, s.entity_version),
                                        what=f"data extraction job for {days}", headers={"Accept": "application/json"})
        try:
            job_id = parse_job_id(body)
        except ExtractionError as exc:
            raise StreamError(f"data extraction for {days}: {exc}", reason="extraction-bad-answer") from None
        self.stats["jobs"] += 1
        src._audit("extraction-job", job=job_id, days=days)
        status = await self._wait(job_id, days)
        spool = await self._fetch_csv(status, days)
        try:
            text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
            rows = SegmentCsv(text, where=f"data extraction job {job_id} ({days})")
            try:
                for segment in rows:
                    self.stats["rows"] += 1
                    yield_it = self._admit(segment)
                    if yield_it:
                        yield segment
            except UnicodeDecodeError as exc:
                raise StreamError(f"data extraction job {job_id}: CSV is not UTF-8 ({exc.reason})",
                                  reason="extraction-csv") from None
            except ExtractionError as exc:
                raise StreamError(str(exc), reason="extraction-csv") from None
            if rows.unknown_columns:
                log.debug("job %s: CSV columns not used: %s", job_id, ", ".join(rows.unknown_columns))
        finally:
            spool.close()

    def _admit(self, segment: Segment) -> bool:
        started = segment.facts.started_at
        assert started is not None and self.window is not None  # required column
        if not self.window.holds(started):
            self.stats["outside_window"] += 1
            return False
        if segment.segment_id in self.found:
            self.stats["duplicates"] += 1
            return False
        self.found[segment.segment_id] = started.timestamp()
        return True

    async def _poll(self, job_id: str) -> JobStatus:
        src = self.source
        _, body = await src.api_request("GET", f"{src.api_base}/data-extraction/v1/jobs/{quote(job_id, safe='')}",
                                        what=f"data extraction job {job_id} status",
                                        headers={"Accept": "application/json"})
        self.stats["polls"] += 1
        try:
            return parse_job_status(body, job_id)
        except ExtractionError as exc:
            raise StreamError(str(exc), reason="extraction-bad-answer") from None

    async def _wait(self, job_id: str, days: str) -> JobStatus:
        """Poll until the job leaves RUNNING, at most ``max_job_wait`` seconds."""
        s = self.settings
        started = trio.current_time()
        wait = s.job_poll_interval
        while True:
            status = await self._poll(job_id)
            if status.next is Next.DOWNLOAD:
                return status
            if status.next is Next.FAIL:
                self.source._audit("extraction-job-failed", job=job_id, state=status.state.value)
                detail = f": {status.error_message}" if status.error_message else ""
                raise StreamError(f"data extraction job {job_id} ({days}) ended {status.state.value}{detail}; "
                                  "the watermark is unchanged, run again", reason=f"extraction-{status.state.value.lower()}")
            elapsed = trio.current_time() - started
            if elapsed + wait > s.max_job_wait:
                raise StreamError(f"data extraction job {job_id} ({days}) still RUNNING after {elapsed:.0f} s "
                                  f"(max_job_wait {s.max_job_wait:g} s)", reason="extraction-timeout")
            log.info("data extraction job %s (%s) RUNNING for %.0f s; next poll in %.1f s", job_id, days, elapsed, wait)
            await trio.sleep(wait)
            wait = min(wait * 2, s.max_job_poll_interval)

    async def _fetch_csv(self, status: JobStatus, days: str):
        """The job's CSV in a spooled temporary file (rewound), fetched without the bearer token.

        A 403 (the signed URL expired) polls the job again for a fresh URL, at most
        :data:`MAX_CSV_URL_REFRESHES` times.
        """
        src = self.source
        where = f"data extraction job {status.job_id} ({days}): result CSV"

        async def spool_body(response) -> tempfile.SpooledTemporaryFile:
            spool = tempfile.SpooledTemporaryFile(max_size=CSV_SPOOL_BYTES, mode="w+b")
            try:
                size = 0
                async for data in response.aiter_raw(CSV_READ_SIZE):
                    size += len(data)
                    if size > MAX_CSV_BYTES:
                        raise StreamError(f"{where} is larger than {MAX_CSV_BYTES} bytes; use a shorter "
                                          "days_per_job", reason="extraction-csv")
                    spool.write(data)
            except BaseException:
                spool.close()  # a retry starts a fresh file
                raise
            spool.seek(0)
            src._audit("extraction-csv", job=status.job_id, bytes=size)
            return spool

        refreshes = 0
        while True:
            assert status.url is not None
            try:
                return await get_with_retries(src.client, status.url, spool_body, what=where, policy=src.policy,
                                              rng=src.rng, headers={"Accept": "text/csv"})
            except HTTPStatusError as exc:
                if exc.reason != "http-403" or refreshes >= MAX_CSV_URL_REFRESHES:
                    raise StreamError(str(exc), reason=f"extraction-csv-{exc.reason}") from None
                refreshes += 1
                status = await self._poll(status.job_id)
                if status.state is not JobState.SUCCEEDED:
                    raise StreamError(f"{where}: refused (403) and the job is now {status.state.value}",
                                      reason=f"extraction-{status.state.value.lower()}") from None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
