"""``voxpipe ledger``: inspect and repair a pipeline's ledger (SQLite or PostgreSQL).

Every subcommand takes the pipeline file (the ledger's location, and for a shared ledger
the pipeline name and source identity that scope its rows, come from it)::

    voxpipe ledger status pipeline.yaml            recordings per state, the latest run's workers
    voxpipe ledger list pipeline.yaml --state failed   recordings in a state, with reasons
    voxpipe ledger reset pipeline.yaml [--id ID]   failed recordings become eligible again
    voxpipe ledger forget pipeline.yaml ID         the next run treats ID as new

All accept ``--json``. Exit status: 0 done; 1 nothing matched (``forget`` of an unknown
id); 2 bad pipeline file or unusable ledger.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

import click

from ..components import PipelineContext
from ..config import PipelineConfig
from .interface import STATES, LedgerBackend, LedgerError
from .locate import open_ledger

EXIT_OK, EXIT_NONE, EXIT_USAGE = 0, 1, 2
#: Rows ``list`` prints unless ``--limit`` says otherwise.
DEFAULT_LIST_LIMIT = 1000
#: Characters of a failure message shown per row in the table (``--json`` has it whole).
MESSAGE_CHARS = 100


@contextlib.contextmanager
def pipeline_ledger(config: PipelineConfig) -> Iterator[LedgerBackend]:
    """The ledger ``config`` runs against, opened as the engine opens it; closed afterwards.

    :raises LedgerError: the ledger cannot be opened.
    """
    from ..engine import state_dir_for

    context = PipelineContext(pipeline=config.name, state_dir=Path("."))
    sinks = [c.info.cls(c.settings, context) for c in config.sinks]
    source = config.source.info.cls(config.source.settings, context)
    ledger = open_ledger(config.settings.ledger, state_dir=state_dir_for(config, sinks), pipeline=config.name,
                         identity=source.identity())
    try:
        yield ledger
    finally:
        ledger.close()


def _options(f):
    f = click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")(f)
    f = click.option("--pipeline", "-p", "name", help="Pipeline (needed when the file defines several).")(f)
    return click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))(f)


@click.group("ledger")
def ledger_group() -> None:
    """Inspect and repair a pipeline's ledger (SQLite file or shared PostgreSQL).

    \b
      voxpipe ledger status pipeline.yaml
      voxpipe ledger list pipeline.yaml --state failed
      voxpipe ledger reset pipeline.yaml              # every failed recording
      voxpipe ledger forget pipeline.yaml 100042
    """


@contextlib.contextmanager
def _ledger(file: Path, name: str | None) -> Iterator[tuple[LedgerBackend, PipelineConfig]]:
    from ..cli import load_or_exit
    from ..errors import ConfigError

    try:
        config = load_or_exit(file).pipeline(name)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise SystemExit(EXIT_USAGE) from None
    try:
        with pipeline_ledger(config) as ledger:
            yield ledger, config
    except LedgerError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@ledger_group.command("status")
@_options
def status(file: Path, name: str | None, json_output: bool) -> None:
    """Recordings per state, and the latest run with its workers."""
    with _ledger(file, name) as (ledger, config):
        counts = ledger.counts()
        runs = ledger.runs()
        latest = runs[-1] if runs else None
        workers = ledger.workers(latest["run_id"]) if latest else []
        data = {"ledger": ledger.location, "shared": ledger.shared,
                "states": {state: counts.get(state, 0) for state in STATES}, "total": sum(counts.values()),
                "latest_run": latest, "workers": [w.__dict__ for w in workers]}
    if json_output:
        _emit(data)
        return
    click.echo(f"ledger: {data['ledger']}")
    for state, n in data["states"].items():
        click.echo(f"  {state:<12} {n:>8}")
    click.echo(f"  {'total':<12} {data['total']:>8}")
    if latest:
        end = "running" if latest["finished_at"] is None else _ago(latest["finished_at"])
        click.echo(f"latest run: {latest['run_id']} ({latest['pipeline']}), started {_ago(latest['started_at'])}, "
                   f"finished {end}{', interrupted' if latest['interrupted'] else ''}, "
                   f"{latest.get('workers', 1)} worker(s)")
        for w in workers:
            left = f"left {_ago(w.finished_at)}" if w.finished_at else f"heartbeat {_ago(w.heartbeat_at)}"
            click.echo(f"  {w.worker}: {left}, {w.leases} lease(s) held")


@ledger_group.command("list")
@_options
@click.option("--state", type=click.Choice(STATES), default=None, help="Only recordings in this state.")
@click.option("--limit", type=click.IntRange(1), default=DEFAULT_LIST_LIMIT, show_default=True,
              help="Most rows printed.")
def list_(file: Path, name: str | None, json_output: bool, state: str | None, limit: int) -> None:
    """Recordings (in a state), with attempts and the reason of their last failure."""
    with _ledger(file, name) as (ledger, config):
        rows = ledger.recordings(state, limit=limit)
    if json_output:
        _emit([r.to_dict() for r in rows])
        return
    for r in rows:
        why = f" {r.reason}: {(r.message or '')[:MESSAGE_CHARS]}" if r.reason else ""
        click.echo(f"{r.source}/{r.id}  {r.state}  attempts={r.attempts}{why}")
    if len(rows) == limit:
        click.echo(f"(first {limit}; use --limit for more)", err=True)


@ledger_group.command("reset")
@_options
@click.option("--id", "ids", multiple=True, help="Only this recording (repeatable); default: every failed one.")
def reset(file: Path, name: str | None, json_output: bool, ids: tuple[str, ...]) -> None:
    """Make failed recordings eligible again: queued, attempts back to 0, reason cleared.

    Use it once the cause is fixed (a wrong secret, a full disk): recordings that
    reached max_attempts_total are otherwise never tried again.
    """
    with _ledger(file, name) as (ledger, config):
        n = ledger.reset(ids=list(ids) or None)
    if json_output:
        _emit({"reset": n, "ids": list(ids) or None})
    else:
        click.echo(f"reset {n} failed recording(s); the next run tries them again")


@ledger_group.command("forget")
@_options
@click.argument("recording_id")
@click.option("--source", default=None, help="Source type (default: the pipeline's).")
def forget(file: Path, name: str | None, json_output: bool, recording_id: str, source: str | None) -> None:
    """Delete one recording's row: the next run treats it as never seen (and fetches it again)."""
    with _ledger(file, name) as (ledger, config):
        source = source or config.source.type
        found = ledger.forget(source, recording_id)
    if json_output:
        _emit({"forgotten": found, "source": source, "id": recording_id})
    else:
        click.echo(f"forgot {source}/{recording_id}" if found else f"{source}/{recording_id}: not in the ledger",
                   err=not found)
    if not found:
        raise SystemExit(EXIT_NONE)


def _ago(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))
