"""``voxpipe run --dry-run``: discovery only, and what a real run would do with each recording.

The pipeline's source is built and started and its ``discover`` listed to the end (a
batch source's listing calls: a token, analytics or id lists); nothing is downloaded.
Sinks are constructed only to learn where the pipeline keeps its state (their
``archive_dir``): none is started, begun or written. An existing ledger is read (never
created or changed) to tell which recordings a run would skip (already stored, or out
of attempts) and which it would resume. No audit log, report or ledger entry is written.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import click
import trio

from .components import Component, PipelineContext, aclose_all
from .config import PipelineConfig
from .engine import _primary_error, state_dir_of
from .manifest import parse_time
from .progress import human_bytes, shorten_middle

#: Most recordings a dry run lists (a batch source bounds its own listing as well).
MAX_DRY_RUN_STREAMS = 1_000_000
#: Seconds components get to close after the listing.
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Planned:
    """What a run would do with one discovered stream.

    :ivar action: ``fetch``, ``resume`` (from ``resume_offset``) or ``skip``.
    :ivar reason: why skipped (``already-stored``, ``attempts-exhausted``), else ``None``.
    :ivar size: bytes, when discovery announced it.
    :ivar date: the recording's start (ISO 8601), when discovery announced it.
    """

    id: str
    action: str
    reason: str | None = None
    size: int | None = None
    date: str | None = None
    resume_offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "reason": self.reason, "size": self.size, "date": self.date,
                "resume_offset": self.resume_offset}


@dataclass
class DryRunSummary:
    pipeline: str
    planned: list[Planned] = field(default_factory=list)
    ledger: str | None = None  # where the ledger read is (None: no ledger yet)
    discovery_error: str | None = None

    def count(self, action: str) -> int:
        return sum(1 for p in self.planned if p.action == action)

    @property
    def known_bytes(self) -> int:
        return sum(p.size or 0 for p in self.planned if p.action != "skip")


async def dry_run(config: PipelineConfig, on_planned: Callable[[Planned], None] = lambda p: None) -> DryRunSummary:
    """List what ``config``'s source discovers and what a run would do with each stream."""
    summary = DryRunSummary(pipeline=config.name)
    context = PipelineContext(pipeline=config.name, state_dir=Path("."))
    sinks = [c.info.cls(c.settings, context) for c in config.sinks]
    context.state_dir = state_dir_of(config, sinks)
    source = config.source.info.cls(config.source.settings, context)
    states = await trio.to_thread.run_sync(_LedgerView, config, context.state_dir, source.identity())
    summary.ledger = states.location
    components: list[Component] = [source, *sinks]
    try:
        async with trio.open_nursery() as nursery:
            try:
                await source.start(nursery)
                discovered = source.discover()
                async with contextlib.aclosing(discovered):
                    async for spec in discovered:
                        planned = _plan(spec, states.get(config.source.type, spec.id), config)
                        summary.planned.append(planned)
                        on_planned(planned)
                        if len(summary.planned) >= MAX_DRY_RUN_STREAMS:
                            break
            except Exception as exc:  # reported like a run's discovery failure
                summary.discovery_error = f"{config.source.type} discovery failed: {_primary_error(exc)}"
            finally:
                await aclose_all(components, CLOSE_TIMEOUT)
                nursery.cancel_scope.cancel()
    finally:
        states.close()
    return summary


def _plan(spec, state, config: PipelineConfig) -> Planned:
    size = spec.metadata.get("size")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    started = getattr(getattr(spec, "facts", None), "started_at", None)
    date = started.isoformat() if isinstance(started, datetime) else None
    if date is None:
        for key in ("recording_date", "date", "startTime", "start_time"):
            value = spec.metadata.get(key)
            if isinstance(value, datetime):
                date = value.isoformat()
                break
            if isinstance(value, str) and value:
                date = value
                break
    if state is not None:
        if state.state == "stored":
            return Planned(spec.id, "skip", "already-stored", size, date)
        if state.state == "failed" and state.attempts >= config.settings.max_attempts_total:
            return Planned(spec.id, "skip", "attempts-exhausted", size, date)
        if state.resume_offset and state.checkpoint:
            return Planned(spec.id, "resume", None, size if size is not None else state.size, date, state.resume_offset)
    return Planned(spec.id, "fetch", None, size, date)


class _LedgerView:
    """Reads of the pipeline's existing ledger (:func:`voxpipe.ledger.open_ledger`); a SQLite
    ledger that does not exist yet is not created (every recording is new)."""

    def __init__(self, config: PipelineConfig, state_dir: Path, identity: str):
        from .ledger import is_url, open_ledger
        from .ledger.locate import LEDGER_FILE

        spec = config.settings.ledger
        self.location: str | None = None
        self._ledger = None
        if is_url(spec) or Path(spec if spec is not None else state_dir / LEDGER_FILE).is_file():
            self._ledger = open_ledger(spec, state_dir=state_dir, pipeline=config.name, identity=identity)
            self.location = getattr(self._ledger, "location", None) or str(spec)

    def get(self, source: str, recording_id: str):
        return self._ledger.get(source, recording_id) if self._ledger is not None else None

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


def print_dry_run(pipeline: PipelineConfig, *, json_output: bool = False) -> int:
    """``run --dry-run``: one line per discovered recording on stdout (``--json``: one object),
    then a summary on stderr; returns the exit status (0, or 1 when discovery failed)."""

    def show(p) -> None:
        if json_output:
            click.echo(json.dumps(p.to_dict(), separators=(",", ":")))
            return
        what = {"fetch": "fetch", "resume": f"resume at byte {p.resume_offset}",
                "skip": f"skip ({(p.reason or '').replace('-', ' ')})"}[p.action]
        size = human_bytes(p.size) if p.size is not None else "size ?"
        # 80 columns: a UUID (36), size, date to the second (20), what a run would do
        click.echo(f"{shorten_middle(p.id, 36):<36} {size:>9}  {_short_date(p.date):<20}  {what}")

    summary = trio.run(dry_run, pipeline, show)
    parts = [f"{summary.count('fetch')} to fetch", f"{summary.count('resume')} to resume",
             f"{summary.count('skip')} to skip"]
    sized = any(p.size is not None for p in summary.planned if p.action != "skip")
    click.echo(f"{pipeline.name} (dry run): {len(summary.planned)} recordings discovered: {', '.join(parts)}; "
               + (f"{human_bytes(summary.known_bytes)} where sizes are known" if sized
                  else "sizes are known only once downloads start")
               + f". Nothing was downloaded, stored or recorded"
               f"{'' if summary.ledger else ' (no ledger yet: every recording is new)'}.", err=True)
    if summary.discovery_error:
        click.echo(f"error: {summary.discovery_error}", err=True)
        return 1
    return 0


def _short_date(value: str | None) -> str:
    """An ISO 8601 date-time as ``2026-11-01T08:00:00Z`` (UTC, to the second); others as given."""
    if not value:
        return ""
    try:
        return parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return value[:20]
