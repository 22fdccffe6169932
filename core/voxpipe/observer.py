"""Watching a run: the observer interface the engine reports progress to, and the run's summary.

The engine (:mod:`voxpipe.engine`) calls a :class:`RunObserver` as streams are discovered,
start, move bytes, finish or are deferred, and hands it the :class:`RunSummary` at the end;
the terminal display, log lines, ``--json`` output and metrics are observers. Kept apart
from the engine so displays and reports depend on this small interface only.
Both names are also importable from :mod:`voxpipe.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import Deferral, Stream, StreamResult, StreamSpec

if TYPE_CHECKING:  # pragma: no cover
    from .config import PipelineConfig


class RunObserver:
    """Receives run events, for progress displays and metrics. Methods must not block."""

    def run_started(self, pipeline: PipelineConfig) -> None:
        """The run begins (components are built, the ledger is open)."""

    def stream_discovered(self, spec: StreamSpec) -> None:
        """The source announced a stream (before the ledger decides whether it needs an attempt)."""

    def discovery_finished(self, count: int) -> None:
        """The source has announced all ``count`` streams it will announce in this run (a
        discovery error or a stop ends discovery too)."""

    def stream_started(self, stream: Stream) -> None:
        """An attempt of a stream begins (a restarted stream starts again); a resumed
        stream's ``resume_offset`` is known from its first ``stream_bytes`` on."""

    def stream_bytes(self, stream: Stream, n: int) -> None:
        """``n`` more bytes of ``stream`` arrived from the source."""

    def stream_event(self, stream: Stream, event: str, fields: dict[str, Any]) -> None:
        """An audit event of a stream (``segment`` with status and ms, ``token-refresh``...)."""

    def stream_finished(self, result: StreamResult) -> None:
        """A stream ended for good (ok, failed, or skipped as already stored)."""

    def stream_deferred(self, deferral: Deferral) -> None:
        """The source left a recording for a later run (:meth:`Source.defer`): not failed."""

    def run_finished(self, summary: "RunSummary") -> None:
        """The run ended; ``summary`` holds every result."""


class ObserverFanout(RunObserver):
    """Forwards every event to several observers."""

    def __init__(self, *observers: RunObserver):
        self.observers = [o for o in observers if o is not None]

    def run_started(self, pipeline):
        for o in self.observers: o.run_started(pipeline)

    def stream_discovered(self, spec):
        for o in self.observers: o.stream_discovered(spec)

    def discovery_finished(self, count):
        for o in self.observers: o.discovery_finished(count)

    def stream_started(self, stream):
        for o in self.observers: o.stream_started(stream)

    def stream_bytes(self, stream, n):
        for o in self.observers: o.stream_bytes(stream, n)

    def stream_event(self, stream, event, fields):
        for o in self.observers: o.stream_event(stream, event, fields)

    def stream_finished(self, result):
        for o in self.observers: o.stream_finished(result)

    def stream_deferred(self, deferral):
        for o in self.observers: o.stream_deferred(deferral)

    def run_finished(self, summary):
        for o in self.observers: o.run_finished(summary)


#: Deferred recordings a run summary (and its report) lists one by one; more are counted.
MAX_DEFERRALS_LISTED = 100_000


@dataclass
class RunSummary:
    """Results of a run, in completion order."""

    pipeline: str
    results: list[StreamResult] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    interrupted: bool = False
    state_dir: Path | None = None
    ledger_path: Path | None = None
    #: Where the ledger lives (a path, or a URL without password).
    ledger_location: str | None = None
    #: Why the source could not list (all of) its streams, e.g. its credentials were refused.
    discovery_error: str | None = None
    #: The compliance report written at the end of the run (JSON, CSV), if any.
    report_paths: tuple[Path, Path] | None = None
    #: Recordings the source left for a later run (:meth:`Source.defer`), the first
    #: :data:`MAX_DEFERRALS_LISTED`; ``deferred_count`` counts them all. Not failures.
    deferred: list[Deferral] = field(default_factory=list)
    deferred_count: int = 0
    #: Where the storing sinks store (``Sink.destination()``: a directory, a bucket URL).
    destinations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results) and not self.interrupted and self.discovery_error is None

    @property
    def skipped(self) -> list[StreamResult]:
        return [r for r in self.results if r.skipped]

    @property
    def failed(self) -> list[StreamResult]:
        return [r for r in self.results if not r.ok]

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results)
