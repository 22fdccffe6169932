"""Prometheus metrics of a pipeline run (``voxpipe run --metrics-port N``).

:class:`RunMetrics` is a :class:`~voxpipe.engine.RunObserver` that keeps these in its
own :class:`prometheus_client.CollectorRegistry` (never the process-global one, so two
runs in one process do not mix):

=====================================  =========  =============================  ==========================================
metric                                 type       labels                         what
=====================================  =========  =============================  ==========================================
``voxpipe_bytes_received_total``       counter    pipeline, source               recording bytes received (after resume
                                                                                 offsets: bytes actually transferred)
``voxpipe_streams_total``              counter    pipeline, source, status       streams ended: ``ok``, ``failed``,
                                                                                 ``skipped`` (stored by an earlier run)
``voxpipe_stream_failures_total``      counter    reason                         failed streams by reason code
                                                                                 (``http-404``, ``sha256-mismatch``...)
``voxpipe_http_requests_total``        counter    status                         download requests by HTTP status;
                                                                                 ``error`` when no status arrived
``voxpipe_http_retries_total``         counter                                   download requests repeated after one
                                                                                 that did not deliver its segment
``voxpipe_http_rate_limited_total``    counter                                   ``429 Too Many Requests`` answers
``voxpipe_http_request_seconds``       histogram                                 time from request to the end of its body
``voxpipe_streams_in_flight``          gauge                                     streams being transferred now
=====================================  =========  =============================  ==========================================

HTTP figures come from the ``segment`` audit events sources emit once per download
response (:class:`voxpipe.download.downloader.RangedDownload` ``on_segment``), so they
count recording downloads, not token or metadata requests.

Label sets are bounded: pipeline and source come from the configuration, HTTP status is
a three-digit code, and failure reasons are stable codes; a reason that does not look
like one, or any past :data:`MAX_REASON_LABELS` distinct reasons, is counted as
``other``.

:func:`serve_metrics` serves the registry with ``prometheus_client``'s ASGI app through
:func:`voxpipe.serving.serve_asgi` (hypercorn, in the run's trio loop), on 127.0.0.1
unless told otherwise; :func:`run_serving_metrics` keeps it up for one run.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Awaitable, Callable

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, write_to_textfile

from .engine import RunObserver, Runner, RunSummary
from .errors import VoxpipeError
from .model import Stream, StreamResult
from .serving import serve_asgi

log = logging.getLogger("voxpipe.metrics")

#: Distinct ``reason`` label values kept; later new reasons are counted as ``other``.
MAX_REASON_LABELS = 64
#: What a reason code looks like (lower-case words joined by ``-``, at most 64 characters).
REASON_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: Buckets of ``voxpipe_http_request_seconds``: a small segment on loopback (ms) to a
#: large one over a slow link (minutes).
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Default address of the metrics endpoint: loopback only (metrics name recording counts).
DEFAULT_METRICS_HOST = "127.0.0.1"

_SUCCESS = (200, 206)


class MetricsError(VoxpipeError):
    """The metrics endpoint could not be served (address in use, not a local address)."""


class RunMetrics(RunObserver):
    """Prometheus metrics fed by run events; ``registry`` holds them.

    :param registry: where the metrics are registered (default: a new private registry).
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.bytes_received = Counter("voxpipe_bytes_received", "Recording bytes received from sources.",
                                      ["pipeline", "source"], registry=r)
        self.streams = Counter("voxpipe_streams", "Streams ended, by status (ok, failed, skipped).",
                               ["pipeline", "source", "status"], registry=r)
        self.failures = Counter("voxpipe_stream_failures", "Failed streams by reason code.", ["reason"], registry=r)
        self.requests = Counter("voxpipe_http_requests", "Download requests by HTTP status (error: none received).",
                                ["status"], registry=r)
        self.retries = Counter("voxpipe_http_retries", "Download requests repeated after an incomplete one.",
                               registry=r)
        self.rate_limited = Counter("voxpipe_http_rate_limited", "429 Too Many Requests answers.", registry=r)
        self.request_seconds = Histogram("voxpipe_http_request_seconds", "Seconds from a download request to the "
                                         "end of its body.", buckets=REQUEST_SECONDS_BUCKETS, registry=r)
        self.in_flight = Gauge("voxpipe_streams_in_flight", "Streams being transferred now.", registry=r)
        self._active: set[tuple[str, str, str]] = set()
        #: Streams whose last download request did not deliver its segment (the next one is a retry).
        self._incomplete: set[tuple[str, str, str]] = set()
        self._reasons: set[str] = set()

    # ------------------------------------------------------------------ RunObserver

    def stream_started(self, stream: Stream) -> None:
        self._active.add(_key(stream.pipeline, stream.source, stream.id))
        self.in_flight.set(len(self._active))

    def stream_bytes(self, stream: Stream, n: int) -> None:
        self.bytes_received.labels(stream.pipeline, stream.source).inc(n)

    def stream_event(self, stream: Stream, event: str, fields: dict[str, Any]) -> None:
        if event != "segment":
            return
        key = _key(stream.pipeline, stream.source, stream.id)
        if key in self._incomplete:
            self.retries.inc()
        status = fields.get("status")
        status = status if isinstance(status, int) and 100 <= status <= 599 else None
        self.requests.labels(str(status) if status else "error").inc()
        if status == 429:
            self.rate_limited.inc()
        ms = fields.get("ms")
        if isinstance(ms, (int, float)) and ms >= 0:
            self.request_seconds.observe(ms / 1000.0)
        if _delivered(status, fields):
            self._incomplete.discard(key)
        else:
            self._incomplete.add(key)

    def stream_finished(self, result: StreamResult) -> None:
        key = _key(result.pipeline, result.source, result.id)
        self._active.discard(key)
        self._incomplete.discard(key)
        self.in_flight.set(len(self._active))
        self.streams.labels(result.pipeline, result.source, result.status).inc()
        if result.status == "failed":
            self.failures.labels(self._reason_label(result.reason)).inc()

    # ------------------------------------------------------------------ output

    def _reason_label(self, reason: str | None) -> str:
        if not reason or not REASON_PATTERN.match(reason):
            return "other"
        if reason not in self._reasons:
            if len(self._reasons) >= MAX_REASON_LABELS:
                return "other"
            self._reasons.add(reason)
        return reason

    def asgi_app(self) -> Any:
        """The ASGI app answering ``GET /metrics`` (any path) in Prometheus text format."""
        return make_asgi_app(self.registry)

    def write_textfile(self, path: str) -> None:
        """Write the metrics for node_exporter's textfile collector (atomically: temp file, rename).

        :raises MetricsError: the file cannot be written (the OS error's text included).
        """
        try:
            write_to_textfile(path, self.registry)
        except OSError as exc:
            raise MetricsError(f"cannot write metrics to {path}: {exc.strerror or exc}") from None


def _key(pipeline: str, source: str, stream_id: str) -> tuple[str, str, str]:
    return (pipeline, source, stream_id)


def _delivered(status: int | None, fields: dict[str, Any]) -> bool:
    """Whether a download response delivered every byte of the segment it was asked for."""
    if status not in _SUCCESS:
        return False
    offset, length, received_to = fields.get("offset"), fields.get("length"), fields.get("received_to")
    if not all(isinstance(v, int) for v in (offset, length, received_to)):
        return True  # size unknown: a 200/206 body read to its end
    return received_to >= offset + length


async def serve_metrics(metrics: RunMetrics, host: str = DEFAULT_METRICS_HOST, port: int = 0, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``metrics`` at ``http://host:port/metrics`` until cancelled; reports the base URL.

    :raises OSError: the address cannot be bound (port in use, host not local).
    """
    await serve_asgi(metrics.asgi_app(), host, port, task_status=task_status)


async def run_serving_metrics(run: Callable[[Runner], Awaitable[RunSummary]], runner: Runner, metrics: RunMetrics,
                              host: str = DEFAULT_METRICS_HOST, port: int = 0) -> RunSummary:
    """``await run(runner)`` while :func:`serve_metrics` serves ``metrics``; the server stops after the run.

    ``metrics`` must be among ``runner``'s observers.

    :raises MetricsError: ``host:port`` cannot be bound (the run does not start).
    """
    failed: OSError | None = None
    summary: RunSummary | None = None
    async with trio.open_nursery() as nursery:
        try:
            url = await nursery.start(functools.partial(serve_metrics, metrics, host, port))
        except* OSError as group:
            failed = _first_oserror(group)
        if failed is None:
            log.info("metrics at %s/metrics", url)
            summary = await run(runner)
        nursery.cancel_scope.cancel()
    if failed is not None or summary is None:
        detail = failed.strerror if failed is not None and failed.strerror else str(failed)
        raise MetricsError(f"cannot serve metrics on {host}:{port}: {detail}")
    return summary


def _first_oserror(exc: BaseException) -> OSError | None:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _first_oserror(sub)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, OSError) else None
