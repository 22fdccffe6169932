"""``voxpipe report STATE_DB``: reprint a past run's compliance report from its ledger.

STATE_DB is a SQLite ledger file, a state directory holding one, or a pipeline file
(whose ``ledger`` may be a shared PostgreSQL database: the report then covers every
worker of the run)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

import click

from voxpipe.errors import ConfigError
from voxpipe.ledger import LedgerBackend, LedgerError, SqliteLedger
from voxpipe.ledger.cli import pipeline_ledger
from voxpipe.report import ReportError, build_report, render_csv, render_json, render_table

LEDGER_NAME = "ledger.sqlite3"
#: File name suffixes read as pipeline files rather than ledger databases.
PIPELINE_SUFFIXES = (".yaml", ".yml")
EXIT_FAILED, EXIT_USAGE = 1, 2


@click.command("report")
@click.argument("state_db", type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_id", type=int, default=None, help="Run number (default: the latest run).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="table", show_default=True,
              help="Output format; json and csv are the documents written at the end of the run.")
@click.option("--pipeline", "-p", "name", default=None,
              help="With a pipeline file defining several pipelines: which one.")
def report_command(state_db: Path, run_id: int | None, fmt: str, name: str | None) -> None:
    """Print the compliance report of a past run from STATE_DB: a pipeline's ledger file, its
    state directory, or the pipeline file (needed for a PostgreSQL ledger; the report then
    covers every worker of the run).

    Totals (processed, stored, skipped, failed, checksum errors, format errors, HMAC
    failures, other failures) and one entry per recording: id, status, SHA-256, stored
    path, every verifier's verdict, error. Exit status 2 when there is no such run.
    """
    try:
        with _open(state_db, name) as ledger:
            report = build_report(ledger, run_id)
    except (LedgerError, ReportError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    render = {"json": render_json, "csv": render_csv, "table": render_table}[fmt]
    sys.stdout.write(render(report))


@contextlib.contextmanager
def _open(state_db: Path, name: str | None) -> Iterator[LedgerBackend]:
    if state_db.suffix in PIPELINE_SUFFIXES and state_db.is_file():
        from voxpipe.cli import load_or_exit

        try:
            config = load_or_exit(state_db).pipeline(name)
        except ConfigError as exc:
            raise LedgerError("; ".join(exc.problems)) from None
        with pipeline_ledger(config) as ledger:
            yield ledger
        return
    path = state_db / LEDGER_NAME if state_db.is_dir() else state_db
    if not path.is_file():
        raise LedgerError(f"{path}: no ledger database")
    ledger = SqliteLedger(path)
    try:
        yield ledger
    finally:
        ledger.close()
