"""What a person sees while a pipeline runs, and when it ends.

On a terminal (:class:`LiveProgress`): a live display that fits the terminal's width
(80 columns and up; nothing wraps): a totals line ("3 of 6 recordings", ok / skipped /
failed, bytes, rate, ETA) and one row per stream in flight, at most :data:`MAX_STREAM_ROWS`
(fewer on a short terminal) with "+N more" for the rest; long ids are shortened in the
middle. Log records (the SIGINT/SIGTERM notice among them) print above the display
instead of tearing it. Failed and interrupted streams are printed once each, as they end.
At the end, the run's summary (:func:`summary_lines`).

Elsewhere (logs, CI, cron; :class:`LogProgress`): one log line per finished stream (ok,
skipped as already stored, failed) and the summary as log lines.

Neither shows secrets: streams are named by recording id only.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .engine import RunObserver, RunSummary
from .model import Deferral, Stream, StreamResult, StreamSpec

log = logging.getLogger("voxpipe.run")

#: Most stream rows the live display shows; the others are counted in a "+N more" row.
MAX_STREAM_ROWS = 12
#: Lines the live display keeps free on a short terminal (totals, "+N more", prompt).
RESERVED_LINES = 4
#: Live display refreshes per second.
REFRESH_PER_SECOND = 4
#: Narrowest and widest id column, in characters.
ID_MIN, ID_MAX = 12, 24
#: Seconds of history the displayed rate is averaged over.
RATE_WINDOW = 5.0


def shorten_middle(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` characters, else its start and end around "…"."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def human_bytes(n: float) -> str:
    """Bytes in SI units, e.g. ``84.5 kB`` (like rclone and rich's download column)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def human_duration(seconds: float) -> str:
    """``0:07``, ``12:03``, ``1:02:03``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Rate:
    """Bytes per second over the last :data:`RATE_WINDOW` seconds (bounded samples)."""

    MAX_SAMPLES = 64

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def add(self, now: float, total: int) -> None:
        if self.samples and now - self.samples[-1][0] < RATE_WINDOW / self.MAX_SAMPLES:
            self.samples[-1] = (self.samples[-1][0], total)
            return
        self.samples.append((now, total))
        while len(self.samples) > self.MAX_SAMPLES or (len(self.samples) > 2 and now - self.samples[1][0] > RATE_WINDOW):
            self.samples.pop(0)

    def value(self, now: float) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (_, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / max(now - t0, 1e-3)


class _Row:
    """One stream in flight."""

    __slots__ = ("stream", "received", "rate")

    def __init__(self, stream: Stream):
        self.stream = stream
        self.received = 0  # bytes of this attempt
        self.rate = _Rate()

    @property
    def done(self) -> int:
        """Bytes the stream holds: what an earlier run stored (resume) plus this attempt's."""
        return self.stream.resume_offset + self.received

    @property
    def size(self) -> int | None:
        size = self.stream.metadata.get("size")
        return size if isinstance(size, int) and size > 0 else None


class RunTally(RunObserver):
    """Counts a run's progress: discovered, ok, skipped, failed, bytes; the ETA."""

    def __init__(self) -> None:
        self.pipeline = ""
        self.discovered = 0
        self.discovery_done = False
        self.known_sizes = 0  # bytes of discovered streams whose size was announced
        self.unsized = 0  # discovered streams without an announced size
        self.done = self.skipped = self.failed = 0
        self.deferred = 0  # left by the source for a later run (not failed, no attempt)
        self.bytes = 0  # received this run
        self.settled_bytes = 0  # bytes of ended streams, whether received now or resumed
        self.started = time.monotonic()
        self.rate = _Rate()
        self._last: tuple[str, int] = ("", 0)  # the latest discovered stream's id and size

    def run_started(self, pipeline) -> None:
        self.pipeline = pipeline.name
        self.started = time.monotonic()

    def stream_discovered(self, spec: StreamSpec) -> None:
        self.discovered += 1
        size = spec.metadata.get("size")
        self._last = (spec.id, size if isinstance(size, int) and size > 0 else 0)
        if self._last[1]:
            self.known_sizes += self._last[1]
        else:
            self.unsized += 1

    def discovery_finished(self, count: int) -> None:
        self.discovery_done = True

    def stream_bytes(self, stream: Stream, n: int) -> None:
        self.bytes += n
        self.rate.add(time.monotonic(), self.bytes)

    def stream_finished(self, result: StreamResult) -> None:
        if result.skipped:
            self.skipped += 1
            # the engine settles a stream it skips right after announcing it: its size is
            # no longer work to do
            if result.id == self._last[0]:
                self.known_sizes -= self._last[1]
        elif result.ok:
            self.done += 1
            self.settled_bytes += result.bytes
        else:
            self.failed += 1
            size = result.metadata.get("size")
            self.settled_bytes += size if isinstance(size, int) and size >= result.bytes else result.bytes

    def stream_deferred(self, deferral: Deferral) -> None:
        self.deferred += 1

    @property
    def ended(self) -> int:
        return self.done + self.skipped + self.failed

    def eta(self, in_flight_bytes: int = 0) -> float | None:
        """Seconds left, once discovery has ended: by bytes when every size is known, else
        by recordings at the pace so far; ``None`` when there is no basis yet."""
        if not self.discovery_done or self.discovered == 0:
            return None
        now = time.monotonic()
        remaining = self.discovered - self.ended
        if remaining <= 0:
            return 0.0
        if self.unsized == 0 and self.known_sizes:
            rate = self.rate.value(now)
            left = self.known_sizes - self.settled_bytes - in_flight_bytes
            return max(left, 0) / rate if rate > 0 else None
        finished = self.done + self.failed
        if finished == 0:
            return None
        return (now - self.started) / finished * remaining

    def totals_text(self, in_flight_bytes: int = 0) -> str:
        """``3 of 6 recordings · 2 ok · 1 skipped · 0 failed · 1.2 MB · 3.4 MB/s · ETA 0:05``."""
        if self.discovered:
            of = f"{self.ended} of {self.discovered}{'' if self.discovery_done else '+'} recordings"
        else:  # a worker of a shared ledger claims from a queue another worker may fill
            of = f"{self.ended} recordings"
        parts = [of, f"{self.done} ok"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.deferred:
            parts.append(f"{self.deferred} deferred")
        parts += [human_bytes(self.bytes), f"{human_bytes(self.rate.value(time.monotonic()))}/s"]
        eta = self.eta(in_flight_bytes)
        if eta is not None:
            parts.append(f"ETA {human_duration(eta)}")
        return " · ".join(parts)


class _ConsoleLogHandler(logging.Handler):
    """Prints log records above the live display (a plain stderr write would tear it)."""

    def __init__(self, console: Console, formatter: logging.Formatter | None):
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = Text(self.format(record), style="yellow" if record.levelno >= logging.WARNING else "")
            self.console.print(text, soft_wrap=False, overflow="fold")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class LiveProgress(RunTally):
    """A rich live display on ``console`` (stderr by default); see the module docstring.

    Rows are keyed by recording, so a stream restarted from byte 0 keeps its row; a resumed
    stream's bar starts at its resume offset.
    """

    def __init__(self, console: Console | None = None):
        super().__init__()
        self.console = console or Console(stderr=True)
        self.rows: dict[tuple[str, str], _Row] = {}
        self.live = Live(console=self.console, get_renderable=self._render, transient=True,
                         refresh_per_second=REFRESH_PER_SECOND, redirect_stdout=False, redirect_stderr=False)
        self._handler: _ConsoleLogHandler | None = None
        self._muted: list[tuple[logging.Handler, int]] = []

    # ------------------------------------------------------------------ events

    def run_started(self, pipeline) -> None:
        super().run_started(pipeline)
        self._capture_logs()
        self.live.start()

    def stream_started(self, stream: Stream) -> None:
        self.rows[(stream.source, stream.id)] = _Row(stream)  # a new attempt starts a fresh row

    def stream_bytes(self, stream: Stream, n: int) -> None:
        super().stream_bytes(stream, n)
        row = self.rows.get((stream.source, stream.id))
        if row is not None:
            row.received += n
            row.rate.add(time.monotonic(), row.received)

    def stream_finished(self, result: StreamResult) -> None:
        super().stream_finished(result)
        self.rows.pop((result.source, result.id), None)
        if not result.ok:
            label = "interrupted" if result.reason == "interrupted" else "failed"
            self.console.print(Text.assemble((label, "yellow" if label == "interrupted" else "red"),
                                             f" {result.id}: {result.message}"), soft_wrap=False, overflow="fold")

    def run_finished(self, summary: RunSummary) -> None:
        self.live.stop()
        self._release_logs()
        for line in summary_lines(summary):  # soft wrap: a long path stays one copyable line
            self.console.print(line, highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------ logging

    def _capture_logs(self) -> None:
        root = logging.getLogger()
        formatter = None
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (sys.stderr, sys.stdout):
                formatter = formatter or handler.formatter
                self._muted.append((handler, handler.level))
                handler.setLevel(logging.CRITICAL + 1)
        self._handler = _ConsoleLogHandler(self.console, formatter)
        root.addHandler(self._handler)

    def _release_logs(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler = None
        for handler, level in self._muted:
            handler.setLevel(level)
        self._muted.clear()

    # ------------------------------------------------------------------ rendering

    def stream_rows_limit(self) -> int:
        """Stream rows that fit: :data:`MAX_STREAM_ROWS`, fewer on a short terminal."""
        return max(1, min(MAX_STREAM_ROWS, self.console.size.height - RESERVED_LINES))

    def _render(self) -> Group:
        width = max(self.console.size.width, 40)
        in_flight = sum(r.received for r in self.rows.values())
        lines = [_fit(Text.assemble((self.pipeline, "bold"), "  ", self.totals_text(in_flight)), width)]
        rows = list(self.rows.values())
        limit = self.stream_rows_limit()
        shown = rows if len(rows) <= limit else rows[: limit - 1]
        now = time.monotonic()
        for row in shown:
            lines.append(_fit(self._row_text(row, width, now), width))
        if len(shown) < len(rows):
            lines.append(Text(f"  +{len(rows) - len(shown)} more", style="dim"))
        return Group(*lines)

    @staticmethod
    def _row_text(row: _Row, width: int, now: float) -> Text:
        stream = row.stream
        name = stream.id + (f" (attempt {stream.attempt})" if stream.attempt > 1 else "")
        id_width = max(ID_MIN, min(ID_MAX, width // 4))
        size = row.size
        amount = f"{human_bytes(row.done)}" + (f"/{human_bytes(size)}" if size else "")
        rate = f"{human_bytes(row.rate.value(now))}/s"
        tail = f" {amount:>19} {rate:>11}"
        bar_width = max(4, width - 2 - id_width - 1 - len(tail))
        if size:
            filled = min(bar_width, int(bar_width * row.done / size))
            bar = Text.assemble(("━" * filled, "green"), ("─" * (bar_width - filled), "grey37"))
        else:  # size unknown: a plain track
            bar = Text("╌" * bar_width, style="grey37")
        return Text.assemble("  ", shorten_middle(name, id_width).ljust(id_width), " ", bar, tail)


def _fit(text: Text, width: int) -> Text:
    """One line, cropped to ``width`` cells (the live display never wraps)."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.truncate(width, overflow="ellipsis")
    return text


class LogProgress(RunTally):
    """One log line per finished stream and the run's summary, for non-terminal output."""

    def stream_finished(self, result: StreamResult) -> None:
        super().stream_finished(result)
        if result.skipped:
            log.info("skipped %s: already stored by an earlier run", result.id)
        elif result.ok:
            log.info("ok %s: %d bytes in %.2f s%s", result.id, result.bytes, result.seconds,
                     f" (resumed at byte {result.resumed_from})" if result.resumed_from else "")
        elif result.reason == "interrupted":
            log.warning("interrupted %s: %s", result.id, result.message)
        else:
            log.warning("failed %s: %s (%s)", result.id, result.message, result.reason)

    def stream_deferred(self, deferral: Deferral) -> None:
        super().stream_deferred(deferral)
        log.info("deferred %s: %s", deferral.id, deferral.message or deferral.reason)

    def run_finished(self, summary: RunSummary) -> None:
        for line in summary_lines(summary):
            log.info("%s", line)


def summary_lines(summary: RunSummary) -> list[str]:
    """The end-of-run summary: counts, bytes, rate, duration, and where the report and the
    archive are. Plain text (no markup), each line shorter than 80 columns where paths allow."""
    seconds = max(summary.finished_at - summary.started_at, 1e-9)
    ok = sum(1 for r in summary.results if r.ok and not r.skipped)
    skipped = len(summary.skipped)
    interrupted = sum(1 for r in summary.results if r.reason == "interrupted")
    failed = len(summary.failed) - interrupted
    received = sum(r.bytes - r.resumed_from for r in summary.results if not r.skipped)
    counts = (f"{ok} ok, {failed} failed, {skipped} skipped" + (f", {interrupted} interrupted" if interrupted else "")
              + (f", {summary.deferred_count} deferred" if summary.deferred_count else ""))
    lines = [f"{summary.pipeline}: {len(summary.results)} recordings: {counts}",
             f"  {human_bytes(received)} in {human_duration(seconds)} ({human_bytes(received / seconds)}/s)"
             + ("; stopped early (SIGINT/SIGTERM)" if summary.interrupted else "")]
    if summary.discovery_error:
        lines.append(f"  discovery: {summary.discovery_error}")
    for dest in summary.destinations:
        lines.append(f"  archive: {dest}")
    if summary.report_paths:
        lines.append(f"  report:  {summary.report_paths[0]}")
    if interrupted and not summary.discovery_error:
        lines.append("  run it again to finish: stored recordings are skipped, partial ones resume")
    return lines


def results_table(summary: RunSummary, *, extra: dict[str, dict[str, Any]] | None = None,
                  relative_to: Path | None = None) -> Table:
    """A table of every stream's outcome, for the end of a run; fits 80 columns.

    Paths are shown relative to ``relative_to``; digests as their first 8 hex digits;
    ``extra`` adds columns per recording id.
    """
    table = Table(title=f"pipeline {summary.pipeline}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("recording", no_wrap=True, max_width=ID_MAX)
    table.add_column("status", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sec", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("stored", overflow="fold")
    extra_cols = sorted({k for row in (extra or {}).values() for k in row})
    for col in extra_cols:
        table.add_column(col, no_wrap=True)
    for r in sorted(summary.results, key=lambda r: r.id):
        status = ("[green]ok[/green]" if not r.skipped else "[cyan]skipped[/cyan]") if r.ok \
            else f"[red]{'interrupted' if r.reason == 'interrupted' else 'failed'}[/red]"
        stored = ", ".join(_shown(s.get("path", s.get("sink", "")), relative_to) for s in r.stored) if r.ok \
            else (r.message or "")
        row = [shorten_middle(r.id, ID_MAX), status, human_bytes(r.bytes), f"{r.seconds:.2f}",
               (r.digests.get("sha256") or "")[:8], stored]
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
