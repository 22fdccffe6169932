"""``voxpipe serve ARCHIVE_DIR`` and ``voxpipe retention ARCHIVE_DIR``.

Exit codes follow the rest of the CLI: 0 ok, 1 a deletion failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import trio

from voxpipe.serving import hypercorn_config, serve_asgi

from .app import DEFAULT_MAX_IN_FLIGHT, ArchiveApp
from .auth import TOKENS_ENV, BearerAuth, TokenConfigError, load_tokens
from .durations import parse_duration
from .index import ArchiveIndex
from .retention import DELETE, RetentionPolicy, run_retention

log = logging.getLogger("voxpipe.archive")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: Default seconds an idle or stalled client connection is kept (``--idle-timeout``).
DEFAULT_IDLE_TIMEOUT = 30.0


class Duration(click.ParamType):
    """A click parameter for ``90d``/``12h``/``30m`` durations."""

    name = "duration"

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
_ARCHIVE = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command()
@click.argument("archive_dir", type=_ARCHIVE)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; keep loopback and put a TLS-terminating reverse proxy in front.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free port).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"File of bearer tokens, one per line (also read: ${TOKENS_ENV}, comma separated).")
@click.option("--allow-anonymous", is_flag=True, help="Serve requests that carry no Authorization header. Dangerous.")
@click.option("--retention", "older_than", type=DURATION, default=None,
              help="Also delete recordings older than this (e.g. 90d), periodically.")
@click.option("--retention-interval", type=DURATION, default="1h", show_default=True,
              help="How often the periodic retention runs.")
@click.option("--max-requests", type=click.IntRange(1, 100_000), default=DEFAULT_MAX_IN_FLIGHT, show_default=True,
              help="Requests handled at once; more are answered 503 with Retry-After.")
@click.option("--idle-timeout", type=click.FloatRange(0.5, 3600), default=DEFAULT_IDLE_TIMEOUT, show_default=True,
              help="Seconds a connection without a complete request (idle keep-alive, or headers "
                   "sent too slowly) is kept open.")
def serve(archive_dir: Path, host: str, port: int, token_file: Path | None, allow_anonymous: bool,
          older_than: timedelta | None, retention_interval: timedelta, max_requests: int,
          idle_timeout: float) -> None:
    """Serve the recordings in ARCHIVE_DIR over HTTP to holders of a bearer token.

    \b
    Routes: GET /recordings/{id}, GET /archive/retrieve?interactionId=...,
    GET /recordings?source=&from=&to=&limit=&offset=, GET /healthz.
    Stops gracefully on SIGINT/SIGTERM. See docs/serve.md.
    """
    try:
        auth = BearerAuth(load_tokens(token_file), allow_anonymous=allow_anonymous)
    except TokenConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if allow_anonymous:
        log.warning("anonymous access is enabled: anyone who can reach %s:%d can download recordings", host, port)
    index = ArchiveIndex(archive_dir)
    index.refresh(force=True)
    app = ArchiveApp(index, auth, max_in_flight=max_requests)
    policy = RetentionPolicy(older_than) if older_than else None
    try:
        trio.run(functools.partial(serve_archive, app, host, port, policy=policy, interval=retention_interval,
                                   idle_timeout=idle_timeout))
    except OSError as exc:
        click.echo(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None


async def serve_archive(app: ArchiveApp, host: str, port: int, *, policy: RetentionPolicy | None = None,
                        interval: timedelta = timedelta(hours=1), handle_signals: bool = True,
                        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` (and run retention every ``interval`` when ``policy`` is set) until
    SIGINT/SIGTERM: the first signal stops gracefully, a second at once. Reports the base URL.

    ``idle_timeout`` (seconds) closes connections with no complete request in progress:
    idle keep-alive connections and clients that stop sending their request headers
    half-way (hypercorn's ``keep_alive_timeout``, which runs until a request is parsed), so
    idle or stalled connections cannot pile up.
    """
    shutdown = trio.Event()
    async with trio.open_nursery() as outer:
        if handle_signals:
            outer.start_soon(_watch_signals, shutdown, outer.cancel_scope)
        async with trio.open_nursery() as inner:
            config = hypercorn_config(host, port, keep_alive_timeout=idle_timeout)
            url = await inner.start(functools.partial(serve_asgi, app, config=config, shutdown=shutdown))
            click.echo(f"serving {app.index.root} at {url} ({len(app.index.entries())} recordings; "
                       f"{app.auth.token_count} tokens{', anonymous allowed' if app.auth.allow_anonymous else ''})")
            if policy is not None:
                inner.start_soon(retention_loop, app.index, policy, interval, shutdown)
            task_status.started(url)
        outer.cancel_scope.cancel()


async def _watch_signals(shutdown: trio.Event, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not shutdown.is_set():
                log.warning("%s: finishing responses in flight; press Ctrl-C again to stop at once",
                            signal.Signals(signum).name)
                shutdown.set()
            else:
                scope.cancel()


async def retention_loop(index: ArchiveIndex, policy: RetentionPolicy, interval: timedelta,
                         shutdown: trio.Event) -> None:
    """Run retention on ``index.root`` now and every ``interval`` until ``shutdown`` is set."""
    while not shutdown.is_set():
        now = datetime.now(timezone.utc)
        # Not abandoned on cancel: a deletion in progress finishes (stored file, manifest, audit line).
        decisions, outcomes = await trio.to_thread.run_sync(functools.partial(run_retention, index.root, policy, now))
        deleted = sum(o.deleted for o in outcomes)
        failed = [o for o in outcomes if not o.deleted]
        log.info("retention (%s): %d deleted, %d kept or skipped", policy.describe(), deleted,
                 len(decisions) - len(outcomes))
        for o in failed:
            log.error("retention: %s not deleted: %s", o.decision.stored_rel, o.error)
        if deleted:
            index.invalidate()
        with trio.move_on_after(interval.total_seconds()):
            await shutdown.wait()


@click.command()
@click.argument("archive_dir", type=_ARCHIVE)
@click.option("--older-than", type=DURATION, required=True, help="Delete recordings older than this, e.g. 90d.")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per recording on stdout.")
def retention(archive_dir: Path, older_than: timedelta, dry_run: bool, json_output: bool) -> None:
    """Delete recordings in ARCHIVE_DIR older than --older-than, except those on legal hold.

    Age is the manifest's recording_date (received_at when absent), never the file's
    mtime. Legal holds: a `<file>.hold` marker beside the recording, a `.legal-hold`
    file in its directory or any parent within the archive, or "legal_hold": true in
    the manifest's metadata. Each deletion is audited in .voxpipe/retention-audit.jsonl.
    Exit status 1 when a deletion failed.
    """
    policy = RetentionPolicy(older_than)
    decisions, outcomes = run_retention(archive_dir, policy, datetime.now(timezone.utc), dry_run=dry_run)
    by_manifest = {o.decision.manifest_rel: o for o in outcomes}
    for d in decisions:
        o = by_manifest.get(d.manifest_rel)
        if json_output:
            outcome = ("would-delete" if dry_run else ("deleted" if o and o.deleted else "failed")) \
                if d.action == DELETE else d.action
            click.echo(json.dumps({**d.to_dict(), "outcome": outcome, "error": o.error if o else None},
                                  separators=(",", ":")))
        else:
            verb = d.action if d.action != DELETE else ("would delete" if dry_run else
                                                         ("deleted" if o and o.deleted else "FAILED"))
            extra = f" ({o.error})" if o and o.error else ""
            click.echo(f"{verb:<12} {d.stored_rel}: {d.reason}: {d.detail}{extra}")
    n_delete = sum(d.action == DELETE for d in decisions)
    failed = [o for o in outcomes if not o.deleted]
    if not json_output:
        summary = (f"{n_delete} would be deleted" if dry_run else f"{n_delete - len(failed)} deleted, {len(failed)} failed")
        click.echo(f"retention {policy.describe()}: {len(decisions)} recordings, {summary}", err=True)
    raise SystemExit(EXIT_FAILED if failed else EXIT_OK)
