"""``voxpipe webhooks``: list the outbox's deliveries and redeliver them.

The outbox is either named (``STATE_DB``: an ``outbox.sqlite3`` file or a state directory)
or found from the pipeline file (``--config`` alone), as the webhook sink finds it when the
pipeline runs: with ``ledger: postgresql://...`` (and no ``outbox:`` file set) the outbox is
in the ledger's database, scoped by pipeline and source identity like ``voxpipe ledger``;
otherwise it is the sink's ``outbox`` file or ``<state_dir>/outbox.sqlite3``.

Exit status: 0 ok (every redelivered event delivered); 1 some redelivery did not
succeed; 2 bad usage, unreadable outbox or configuration.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import click
import trio

from voxpipe.download.api import redact_url

from .delivery import Endpoint, deliver_now
from .events import iso_utc
from .outbox import Outbox, OutboxError, OutboxEvent
from .schedule import Schedule, State
from .signing import generate_secret
from .sink import OUTBOX_FILE, WebhookSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Rows listed at most (newest last); use --limit to change.
DEFAULT_LIST_LIMIT = 1000
_STATES = [s.value for s in State]


def _row(event: OutboxEvent) -> dict:
    return {"id": event.id, "state": event.state.value, "recording_id": event.recording_id, "source": event.source,
            "pipeline": event.pipeline, "endpoint": redact_url(event.endpoint), "attempts": event.attempts,
            "created_at": iso_utc(event.created_at),
            "next_attempt_at": iso_utc(event.next_attempt_at) if event.next_attempt_at else None,
            "last_status": event.last_status, "last_error": event.last_error,
            "delivered_at": iso_utc(event.delivered_at) if event.delivered_at else None}


@contextlib.contextmanager
def pipeline_outbox(config_path: Path, pipeline: str | None) -> Iterator[Any]:
    """The outbox the webhook sinks of ``pipeline`` in ``config_path`` use when it runs
    (see the module docstring), opened; closed afterwards (with its ledger, if shared).

    Exits with status 2 (message on stderr) when the pipeline is ambiguous, has no webhook
    sink, its sinks use several outboxes, or the outbox or ledger cannot be opened.
    """
    from voxpipe.cli import load_pipeline_or_exit
    from voxpipe.components import PipelineContext
    from voxpipe.engine import state_dir_for
    from voxpipe.ledger import LedgerError
    from voxpipe.ledger.cli import pipeline_ledger
    from voxpipe.ledger.locate import is_url

    config = load_pipeline_or_exit(config_path, pipeline)
    hooks = [s.settings for s in config.sinks if isinstance(s.settings, WebhookSettings)]
    if not hooks:
        click.echo(f"pipeline {config.name!r} of {config_path} has no webhook sink: no outbox", err=True)
        raise SystemExit(EXIT_USAGE)
    # the sink's own rule (WebhookSink._open): an explicit outbox file wins, else a shared ledger, else state_dir
    explicit = {Path(h.outbox) for h in hooks if h.outbox}
    shared = is_url(config.settings.ledger) and any(h.outbox is None for h in hooks)
    if len(explicit) + shared > 1 or (not shared and explicit and any(h.outbox is None for h in hooks)):
        click.echo(f"pipeline {config.name!r} of {config_path}: its webhook sinks use several outboxes; "
                   "name one (STATE_DB)", err=True)
        raise SystemExit(EXIT_USAGE)
    try:
        if shared:
            from .pg_outbox import PgOutbox

            with pipeline_ledger(config) as ledger, PgOutbox(ledger) as outbox:
                yield outbox
            return
        if explicit:
            path = explicit.pop()
        else:
            context = PipelineContext(pipeline=config.name, state_dir=Path("."))
            path = state_dir_for(config, [c.info.cls(c.settings, context) for c in config.sinks]) / OUTBOX_FILE
        with Outbox(path, create=False) as outbox:
            yield outbox
    except (OutboxError, LedgerError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None


@contextlib.contextmanager
def _open_outbox(state_db: Path | None, config_path: Path | None, pipeline: str | None) -> Iterator[Any]:
    if state_db is None:
        with pipeline_outbox(config_path, pipeline) as outbox:  # type: ignore[arg-type]
            yield outbox
        return
    try:
        outbox = Outbox(state_db / OUTBOX_FILE if state_db.is_dir() else state_db, create=False)
    except OutboxError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    with outbox:
        yield outbox


def _endpoints(config_path: Path, pipeline: str | None) -> dict[str, tuple[Endpoint, Schedule]]:
    from voxpipe.cli import load_or_exit

    config = load_or_exit(config_path)
    out: dict[str, tuple[Endpoint, Schedule]] = {}
    for name, p in config.pipelines.items():
        if pipeline is not None and name != pipeline:
            continue
        for sink in p.sinks:
            if isinstance(sink.settings, WebhookSettings):
                out[sink.settings.url] = (sink.settings.endpoint(), sink.settings.schedule())
    if not out:
        where = f"pipeline {pipeline!r} of " if pipeline else ""
        click.echo(f"{where}{config_path} has no webhook sink: nothing to deliver with", err=True)
        raise SystemExit(EXIT_USAGE)
    return out


def _print_events(events: list[OutboxEvent], json_output: bool) -> None:
    if json_output:
        for event in events:
            click.echo(json.dumps(_row(event), separators=(",", ":")))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="webhook deliveries")
    for col in ("webhook-id", "state", "recording", "attempts", "last", "next attempt / delivered"):
        table.add_column(col, overflow="fold")
    for event in events:
        last = f"HTTP {event.last_status}" if event.last_status else (event.last_error or "")
        if event.last_error and event.last_status and event.state is not State.DELIVERED:
            last = event.last_error
        when = iso_utc(event.delivered_at) if event.delivered_at else (
            iso_utc(event.next_attempt_at) if event.next_attempt_at else "")
        table.add_row(event.id, event.state.value, event.recording_id, str(event.attempts), last, when)
    Console().print(table)


@click.command("webhooks")
@click.argument("state_db", required=False, type=click.Path(path_type=Path))
@click.option("--state", "state", type=click.Choice(_STATES + ["all"]), default="all", show_default=True,
              help="Which deliveries to list.")
@click.option("--redeliver", "redeliver_ids", multiple=True, metavar="ID",
              help="Deliver this event (webhook-id) again now, whatever its state. Repeatable.")
@click.option("--redeliver-failed", is_flag=True, help="Deliver every failed or disabled event again now "
              "(re-enables endpoints that answered 410).")
@click.option("--deliver-pending", is_flag=True, help="Attempt every pending event now, ignoring its schedule "
              "(after a crash or a long outage).")
@click.option("--config", "-c", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pipeline file whose webhook sinks give URL, secrets and headers (needed to deliver).")
@click.option("--pipeline", "-p", help="Only the webhook sinks of this pipeline.")
@click.option("--limit", type=click.IntRange(1), default=DEFAULT_LIST_LIMIT, show_default=True,
              help="Deliveries listed at most.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per delivery (JSON Lines).")
@click.option("--new-secret", is_flag=True, help="Print a new random whsec_ signing secret and exit.")
def webhooks(state_db: Path | None, state: str, redeliver_ids: tuple[str, ...], redeliver_failed: bool,
             deliver_pending: bool, config_path: Path | None, pipeline: str | None, limit: int,
             json_output: bool, new_secret: bool) -> None:
    """List the webhook deliveries in the outbox STATE_DB and redeliver them.

    STATE_DB is the outbox file (default `<state_dir>/outbox.sqlite3`) or the pipeline's
    state directory. Without STATE_DB, --config's pipeline names the outbox as the running
    sink finds it: in the ledger's database with `ledger: postgresql://...`, else the
    sink's `outbox` file or `<state_dir>/outbox.sqlite3`. Delivering (--redeliver,
    --redeliver-failed, --deliver-pending) needs --config: secrets are never stored in the outbox. Each chosen event gets one
    attempt right away, with its original webhook-id; the outcomes are printed.
    """
    if new_secret:
        click.echo(generate_secret())
        return
    if state_db is None and config_path is None:
        raise click.UsageError("missing argument STATE_DB (or --config PIPELINE.yaml to use the pipeline's outbox)")
    delivering = bool(redeliver_ids or redeliver_failed or deliver_pending)
    if delivering and config_path is None:
        raise click.UsageError("delivering needs --config PIPELINE.yaml (URL, secrets and headers come from its "
                               "webhook sink)")
    with _open_outbox(state_db, config_path, pipeline) as outbox:
        path = outbox.path
        if not delivering:
            states = None if state == "all" else [State(state)]
            events = outbox.events(states, limit=limit)
            _print_events(events, json_output)
            if not json_output:
                counts = outbox.counts()
                click.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
                for url, (at, reason) in outbox.disabled_endpoints().items():
                    click.echo(f"endpoint {redact_url(url)} disabled since {iso_utc(at)}: {reason}")
            return
        endpoints = _endpoints(config_path, pipeline)  # type: ignore[arg-type]
        try:
            chosen = outbox.reopen(redeliver_ids, states=[State.FAILED, State.DISABLED] if redeliver_failed else [])
        except KeyError as exc:
            click.echo(f"error: no event {exc.args[0]!r} in {path}", err=True)
            raise SystemExit(EXIT_USAGE) from None
        if deliver_pending:
            chosen += outbox.reopen([e.id for e in outbox.events([State.PENDING])])
        chosen = list({e.id: e for e in chosen}.values())
        unknown = [e for e in chosen if e.endpoint not in endpoints]
        for event in unknown:
            click.echo(f"skipped {event.id}: no webhook sink in {config_path} sends to {redact_url(event.endpoint)}",
                       err=True)
        results = trio.run(lambda: deliver_now(outbox, endpoints, [e for e in chosen if e.endpoint in endpoints]))
        after = [outbox.get(r.event.id) for r in results]
        if json_output:
            for result, event in zip(results, after):
                click.echo(json.dumps({**_row(event), "status": result.status, "outcome": result.decision.note},
                                      separators=(",", ":")))
        else:
            for result in results:
                click.echo(f"{result.event.id} {result.event.recording_id}: {result.state.value} "
                           f"({result.decision.note})")
            click.echo(f"{sum(r.state is State.DELIVERED for r in results)} of {len(chosen)} delivered")
        ok = not unknown and len(results) == len(chosen) and all(r.state is State.DELIVERED for r in results)
        raise SystemExit(EXIT_OK if ok else EXIT_FAILED)
