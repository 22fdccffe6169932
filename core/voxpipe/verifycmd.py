"""The ``voxpipe verify`` command's presentation: progress, lines or JSON, exit status.

The checking itself is :mod:`voxpipe.archivecheck`; this module only shows it.
"""

from __future__ import annotations

import json

import click

from .archivecheck import ArchiveReport, Finding, check_archive
from .archivestore import ArchiveStoreError, open_store
from .progress import human_bytes, human_duration, shorten_middle, wants_live_display

EXIT_OK, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2


def run_verify(location: str, *, json_output: bool = False, jobs: int = 2, progress: bool | None = None) -> int:
    """Check the archive at ``location``; print problems (or JSON); return the exit status."""
    try:
        store = open_store(location)
    except ArchiveStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_UNREADABLE
    live = wants_live_display() if progress is None else progress
    bar = _Bar() if live else None

    def finding(f: Finding) -> None:
        if f.status != "ok" and not json_output:
            line = f"{f.status} {f.name}" + (f" (recording {f.recording_id})" if f.recording_id else "") + f": {f.detail}"
            if bar is not None:
                bar.print(line)
            else:
                click.echo(line, err=True)
        if bar is not None:
            bar.file_done()

    try:
        if bar is not None:
            with bar:
                report = check_archive(store, jobs=jobs, on_listed=bar.listed, on_bytes=bar.advance, on_finding=finding)
        else:
            report = check_archive(store, jobs=jobs, on_finding=finding)
    except ArchiveStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_UNREADABLE
    if json_output:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(summary_line(report), err=not report.ok)
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def summary_line(report: ArchiveReport) -> str:
    c = report.counts
    checked = c["ok"] + c["corrupt"] + c["missing"]
    return (f"{report.location}: {checked} stored files checked: {c['ok']} ok, {c['missing']} missing, "
            f"{c['corrupt']} corrupt\n  {c['orphan']} orphan files, {c['bad-manifest']} unreadable manifests; "
            f"{human_bytes(report.bytes_read)} read in {human_duration(report.seconds)}")


class _Bar:
    """A transient rich progress bar on stderr: files and bytes checked."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("verify"), BarColumn(bar_width=20), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[files]}"),
                                 console=self.console, transient=True)
        self.task = self.progress.add_task("verify", total=None, files="listing")
        self.files = self.done = 0

    def __enter__(self) -> "_Bar":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def listed(self, files: int, total_bytes: int) -> None:
        self.files = files
        self.progress.update(self.task, total=total_bytes, files=f"0/{files} files")

    def advance(self, n: int) -> None:  # from worker threads: rich's Progress is thread-safe
        self.progress.advance(self.task, n)

    def file_done(self) -> None:
        self.done += 1
        self.progress.update(self.task, files=f"{min(self.done, self.files)}/{self.files} files")

    def print(self, line: str) -> None:
        self.console.print(shorten_middle(line, 4000), highlight=False, markup=False, soft_wrap=True)


__all__ = ["run_verify", "summary_line", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_UNREADABLE"]
