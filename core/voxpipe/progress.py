"""What a person sees while a pipeline runs.

On a terminal: a live display (rich) with one line per stream in flight (bytes received
of the size, rate) and an overall line (streams ok, already stored, failed; bytes,
overall rate).
Elsewhere (logs, CI, cron): one plain log line per finished stream. Neither shows
secrets: streams are named by recording id only.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TransferSpeedColumn)
from rich.table import Table

from .engine import RunObserver, RunSummary
from .model import Deferral, Stream, StreamResult

log = logging.getLogger("voxpipe.run")

#: Streams shown individually in the live display; more are summarised in the totals line.
MAX_STREAM_ROWS = 12


class LiveProgress(RunObserver):
    """A rich live display on ``console`` (stderr by default).

    One row per stream in flight (the first :data:`MAX_STREAM_ROWS`; a row frees up when
    its stream ends), keyed by recording, so a stream restarted from byte 0 reuses its
    row; and a totals row: streams ok, skipped (stored by an earlier run), failed, and the
    bytes and rate of the whole run.
    """

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]{task.description}", justify="left"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
                                 console=self.console, transient=True, refresh_per_second=8)
        self.tasks: dict[tuple[str, str], TaskID] = {}
        self.total: TaskID | None = None
        self.pipeline = ""
        self.done = self.skipped = self.failed = self.deferred = 0
        self.bytes = 0
        self.started = time.perf_counter()

    def run_started(self, pipeline) -> None:
        self.pipeline = pipeline.name
        self.progress.start()
        self.total = self.progress.add_task(self._totals(), total=None)

    def stream_started(self, stream: Stream) -> None:
        key = (stream.source, stream.id)
        task = self.tasks.get(key)
        if task is not None:  # a new attempt starts again from the resume offset (or byte 0)
            self.progress.reset(task, total=None, description=f"  {stream.id} (attempt {stream.attempt})")
        elif len(self.tasks) < MAX_STREAM_ROWS:
            self.tasks[key] = self.progress.add_task(f"  {stream.id}", total=None)

    def stream_bytes(self, stream: Stream, n: int) -> None:
        self.bytes += n
        task = self.tasks.get((stream.source, stream.id))
        if task is not None:
            size = stream.metadata.get("size")
            self.progress.update(task, advance=n, total=size if isinstance(size, int) and size > 0 else None)
        if self.total is not None:
            self.progress.update(self.total, advance=n)

    def stream_finished(self, result: StreamResult) -> None:
        if result.skipped:
            self.skipped += 1
        elif result.ok:
            self.done += 1
        else:
            self.failed += 1
            self.console.print(f"[red]failed[/red] {result.id}: {result.message}")
        task = self.tasks.pop((result.source, result.id), None)
        if task is not None:
            self.progress.remove_task(task)
        if self.total is not None:
            self.progress.update(self.total, description=self._totals())

    def stream_deferred(self, deferral: Deferral) -> None:
        self.deferred += 1
        self.console.print(f"[yellow]deferred[/yellow] {deferral.id}: {deferral.message or deferral.reason}")
        if self.total is not None:
            self.progress.update(self.total, description=self._totals())

    def _totals(self) -> str:
        text = f"{self.pipeline}: {self.done} ok"
        if self.skipped:
            text += f", {self.skipped} already stored"
        if self.deferred:
            text += f", [yellow]{self.deferred} deferred[/yellow]"
        if self.failed:
            text += f", [red]{self.failed} failed[/red]"
        return text

    def run_finished(self, summary: RunSummary) -> None:
        self.progress.stop()


class LogProgress(RunObserver):
    """One log line per finished stream, for non-terminal output."""

    def stream_finished(self, result: StreamResult) -> None:
        if result.ok:
            log.info("ok %s: %d bytes in %.2f s", result.id, result.bytes, result.seconds)
        else:
            log.warning("failed %s: %s (%s)", result.id, result.message, result.reason)

    def run_finished(self, summary: RunSummary) -> None:
        seconds = max(summary.finished_at - summary.started_at, 1e-9)
        log.info("%s: %d streams, %d failed, %d deferred, %d bytes in %.2f s (%.1f MB/s)%s", summary.pipeline,
                 len(summary.results), len(summary.failed), summary.deferred_count, summary.bytes, seconds,
                 summary.bytes / seconds / 1e6, " (interrupted)" if summary.interrupted else "")


def results_table(summary: RunSummary, *, extra: dict[str, dict[str, Any]] | None = None,
                  relative_to: Path | None = None) -> Table:
    """A table of every stream's outcome, for the end of a run (paths shown relative to ``relative_to``)."""
    table = Table(title=f"pipeline {summary.pipeline}", title_justify="left")
    for col in ("recording", "status", "bytes", "seconds", "sha256", "stored"):
        table.add_column(col, no_wrap=col in ("recording", "bytes", "sha256"), overflow="fold")
    extra_cols = sorted({k for row in (extra or {}).values() for k in row})
    for col in extra_cols:
        table.add_column(col)
    for r in sorted(summary.results, key=lambda r: r.id):
        status = ("[green]ok[/green]" if not r.skipped else "[cyan]already stored[/cyan]") if r.ok \
            else f"[red]failed[/red] ({r.reason})"
        stored = ", ".join(_shown(s.get("path", s.get("sink", "")), relative_to) for s in r.stored) if r.ok \
            else (r.message or "")
        row = [r.id, status, f"{r.bytes:,}", f"{r.seconds:.2f}", (r.digests.get("sha256") or "")[:12], stored]
        row += [str((extra or {}).get(r.id, {}).get(c, "")) for c in extra_cols]
        table.add_row(*row)
    for d in sorted(summary.deferred, key=lambda d: d.id):  # not failed, no attempt: a later run takes them
        table.add_row(d.id, f"[yellow]deferred[/yellow] ({d.reason})", "0", "", "", d.message, *([""] * len(extra_cols)))
    return table


def _shown(path: str, base: Path | None) -> str:
    if base is None:
        return path
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


def wants_live_display(stream=None) -> bool:
    """True when stderr is a terminal (a person is watching)."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()
