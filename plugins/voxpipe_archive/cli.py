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

from voxpipe.serving import serve_asgi

from .app import ArchiveApp
from .auth import TOKENS_ENV, BearerAuth, TokenConfigError, load_tokens
from .durations import parse_duration
from voxpipe.archive_storage import ArchiveStorage
from voxpipe.audit import AuditLog

from .index import ArchiveIndex
from .retention import DELETE, RetentionPolicy, run_retention
from .retention_store import run_storage_retention
from .storage import DirectoryStorage

log = logging.getLogger("voxpipe.archive")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


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
#: Audit log of retention on an object store (a directory archive keeps its own inside it).
DEFAULT_STORE_AUDIT = Path(".voxpipe") / "retention-audit.jsonl"


class ArchiveLocation(click.ParamType):
    """An archive directory (must exist) or an object-store location such as ``s3://bucket/prefix``."""

    name = "archive"

    def convert(self, value, param, ctx) -> Path | str:
        if isinstance(value, (Path, str)) and "://" in str(value):
            return str(value)
        return click.Path(exists=True, file_okay=False, path_type=Path).convert(value, param, ctx)


_ARCHIVE = ArchiveLocation()


def open_store(location: str) -> ArchiveStorage:
    """The plugin-provided storage for an object-store location, or exit 2 saying why."""
    from voxpipe.plugins import get_plugin_manager

    try:
        storage = get_plugin_manager().hook.open_archive_storage(location=location)
    except ValueError as exc:
        click.echo(f"error: {location.split('?', 1)[0]}: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if storage is None:
        click.echo(f"error: no installed plugin serves {location.split('://', 1)[0]}:// archives "
                   "(for s3://: pip install 'voxpipe[s3]')", err=True)
        raise SystemExit(EXIT_CONFIG)
    return storage


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
def serve(archive_dir: Path, host: str, port: int, token_file: Path | None, allow_anonymous: bool,
          older_than: timedelta | None, retention_interval: timedelta) -> None:
    """Serve the recordings in ARCHIVE_DIR over HTTP to holders of a bearer token.

    ARCHIVE_DIR may also be an object store, e.g. s3://bucket/prefix?endpoint_url=...

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
    if isinstance(archive_dir, str):
        app = ArchiveApp(None, auth, storage=open_store(archive_dir))
    else:
        app = ArchiveApp(ArchiveIndex(archive_dir), auth)
    app.index.refresh(force=True)
    policy = RetentionPolicy(older_than) if older_than else None
    try:
        trio.run(functools.partial(serve_archive, app, host, port, policy=policy, interval=retention_interval))
    except OSError as exc:
        click.echo(f"error: cannot serve on {host}:{port}: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None


async def serve_archive(app: ArchiveApp, host: str, port: int, *, policy: RetentionPolicy | None = None,
                        interval: timedelta = timedelta(hours=1), handle_signals: bool = True,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` (and run retention every ``interval`` when ``policy`` is set) until
    SIGINT/SIGTERM: the first signal stops gracefully, a second at once. Reports the base URL."""
    shutdown = trio.Event()
    async with trio.open_nursery() as outer:
        if handle_signals:
            outer.start_soon(_watch_signals, shutdown, outer.cancel_scope)
        async with trio.open_nursery() as inner:
            url = await inner.start(functools.partial(serve_asgi, app, host, port, shutdown=shutdown))
            click.echo(f"serving {app.storage.label} at {url} ({len(app.index.entries())} recordings; "
                       f"{app.auth.token_count} tokens{', anonymous allowed' if app.auth.allow_anonymous else ''})")
            if policy is not None:
                inner.start_soon(retention_loop, app.storage, policy, interval, shutdown)
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


async def retention_loop(storage: ArchiveStorage | ArchiveIndex, policy: RetentionPolicy, interval: timedelta,
                         shutdown: trio.Event) -> None:
    """Run retention on the archive now and every ``interval`` until ``shutdown`` is set."""
    if isinstance(storage, ArchiveIndex):
        storage = DirectoryStorage(storage)
    index = storage.catalogue
    while not shutdown.is_set():
        now = datetime.now(timezone.utc)
        # Not abandoned on cancel: a deletion in progress finishes (stored file, manifest, audit line).
        if isinstance(storage, DirectoryStorage):
            decisions, outcomes = await trio.to_thread.run_sync(functools.partial(run_retention, index.root, policy,
                                                                                  now))
        else:
            decisions, outcomes = await trio.to_thread.run_sync(functools.partial(
                _store_retention, storage, policy, now, DEFAULT_STORE_AUDIT, False))
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
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_STORE_AUDIT,
              show_default=True, help="Audit log of deletions in an object store (a directory archive keeps "
              "its own, in .voxpipe/ inside it).")
def retention(archive_dir: Path | str, older_than: timedelta, dry_run: bool, json_output: bool,
              audit_log: Path) -> None:
    """Delete recordings in ARCHIVE_DIR older than --older-than, except those on legal hold.

    ARCHIVE_DIR may also be an object store, e.g. s3://bucket/prefix?endpoint_url=...
    (see docs/object-storage.md): there an S3 legal hold or an Object Lock retention not
    yet over keeps a recording too, and the store refuses what its locks protect.

    Age is the manifest's recording_date (received_at when absent), never the file's
    mtime. Legal holds: a `<file>.hold` marker beside the recording, a `.legal-hold`
    file in its directory or any parent within the archive, or "legal_hold": true in
    the manifest's metadata. Each deletion is audited in .voxpipe/retention-audit.jsonl.
    Exit status 1 when a deletion failed.
    """
    policy = RetentionPolicy(older_than)
    now = datetime.now(timezone.utc)
    if isinstance(archive_dir, str):
        decisions, outcomes = _store_retention(open_store(archive_dir), policy, now, audit_log, dry_run)
    else:
        decisions, outcomes = run_retention(archive_dir, policy, now, dry_run=dry_run)
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


def _store_retention(storage: ArchiveStorage, policy: RetentionPolicy, now: datetime, audit_log: Path,
                     dry_run: bool):
    """Retention on an object store, audited in ``audit_log`` (created with its directory)."""
    if dry_run:
        return run_storage_retention(storage, policy, now, audit=None, dry_run=True)
    audit_log.parent.mkdir(parents=True, exist_ok=True)
    with AuditLog(audit_log) as audit:
        return run_storage_retention(storage, policy, now, audit=audit)
