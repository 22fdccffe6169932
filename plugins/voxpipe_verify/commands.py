"""``voxpipe report STATE_DB``: reprint a past run's compliance report from its ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from voxpipe.ledger import LedgerError, SqliteLedger
from voxpipe.report import ReportError, build_report, render_csv, render_json, render_table

LEDGER_NAME = "ledger.sqlite3"
EXIT_FAILED, EXIT_USAGE = 1, 2


@click.command("report")
@click.argument("state_db", type=click.Path(exists=True, path_type=Path))
@click.option("--run", "run_id", type=int, default=None, help="Run number (default: the latest run).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="table", show_default=True,
              help="Output format; json and csv are the documents written at the end of the run.")
def report_command(state_db: Path, run_id: int | None, fmt: str) -> None:
    """Print the compliance report of a past run from STATE_DB (a pipeline's ledger file, or its state directory).

    Totals (processed, stored, skipped, failed, checksum errors, format errors, HMAC
    failures, other failures) and one entry per recording: id, status, SHA-256, stored
    path, every verifier's verdict, error. Exit status 2 when there is no such run.
    """
    path = state_db / LEDGER_NAME if state_db.is_dir() else state_db
    if not path.is_file():
        click.echo(f"error: {path}: no ledger database", err=True)
        raise SystemExit(EXIT_USAGE)
    try:
        ledger = SqliteLedger(path)
    except LedgerError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    try:
        report = build_report(ledger, run_id)
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    finally:
        ledger.close()
    render = {"json": render_json, "csv": render_csv, "table": render_table}[fmt]
    sys.stdout.write(render(report))
