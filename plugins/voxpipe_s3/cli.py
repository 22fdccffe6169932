"""``voxpipe s3 uploads``: list and abort the multipart uploads an ``s3`` sink left open.

Only uploads the sink created are touched: those in its upload journal (under
``<prefix>.voxpipe/uploads/``), never another tool's uploads in the same bucket. An open
upload costs storage for its parts until it is completed or aborted.

Exit status: 0 ok; 1 some abort failed; 2 bad usage or configuration, unreachable bucket.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from . import client as s3
from .settings import S3SinkSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _sinks(config_path: Path, pipeline: str | None) -> list[tuple[str, S3SinkSettings]]:
    from voxpipe.cli import load_or_exit

    config = load_or_exit(config_path)
    out = []
    for name, p in config.pipelines.items():
        if pipeline is not None and name != pipeline:
            continue
        out += [(name, sink.settings) for sink in p.sinks if isinstance(sink.settings, S3SinkSettings)]
    if not out:
        where = f"pipeline {pipeline!r} of " if pipeline else ""
        click.echo(f"{where}{config_path} has no s3 sink", err=True)
        raise SystemExit(EXIT_USAGE)
    return out


@click.group("s3")
def s3_group() -> None:
    """Object storage (the s3 sink): stale multipart uploads."""


@s3_group.command("uploads")
@click.option("--config", "-c", "config_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Pipeline file with the s3 sink.")
@click.option("--pipeline", "-p", help="Only this pipeline's uploads.")
@click.option("--abort", "abort_ids", multiple=True, metavar="UPLOAD_ID", help="Abort this upload. Repeatable.")
@click.option("--abort-older-than", type=click.FloatRange(min=0), metavar="HOURS",
              help="Abort every listed upload created more than HOURS ago (0: all of them). Do not abort uploads "
              "of a run still going: it would fail those recordings.")
@click.option("--json", "json_output", is_flag=True, help="One JSON object per upload (JSON Lines).")
def uploads(config_path: Path, pipeline: str | None, abort_ids: tuple[str, ...], abort_older_than: float | None,
            json_output: bool) -> None:
    """List the multipart uploads the s3 sinks of a pipeline file created and left open; abort them.

    Uploads a later run can resume (after a crash) are listed too: aborting one makes
    that recording start again from byte 0.
    """
    status = EXIT_OK
    now = time.time()
    seen: set[tuple[str, str]] = set()
    found = False
    for name, settings in _sinks(config_path, pipeline):
        try:
            client = s3.client_for(settings)
            entries = list(s3.journal_entries(client, settings.bucket, settings.prefix))
        except s3.S3Unavailable as exc:
            click.echo(str(exc), err=True)
            raise SystemExit(EXIT_USAGE) from None
        except s3.ERRORS as exc:
            click.echo(f"bucket {settings.bucket}: {s3.describe(exc)}", err=True)
            raise SystemExit(EXIT_USAGE) from None
        for entry in entries:
            if entry.pipeline != name or (settings.bucket, entry.upload_id) in seen:
                continue
            seen.add((settings.bucket, entry.upload_id))
            found = True
            age_hours = (now - entry.created_at) / 3600
            row = {"pipeline": entry.pipeline, "bucket": entry.bucket, "key": entry.key, "upload_id": entry.upload_id,
                   "recording_id": entry.recording_id, "age_hours": round(age_hours, 2), "action": "listed"}
            wanted = entry.upload_id in abort_ids or (abort_older_than is not None and age_hours >= abort_older_than)
            if wanted:
                try:
                    row["action"] = "aborted" if s3.abort_upload(client, settings.bucket, settings.prefix, entry.key,
                                                                 entry.upload_id) else "already-gone"
                except s3.ERRORS as exc:
                    row["action"], status = f"abort failed: {s3.describe(exc)}", EXIT_FAILED
            if json_output:
                click.echo(json.dumps(row, separators=(",", ":")))
            else:
                click.echo(f"{row['action']:>12}  s3://{entry.bucket}/{entry.key}  upload {entry.upload_id}  "
                           f"recording {entry.recording_id}  {row['age_hours']} h old")
    missing = set(abort_ids) - {u for _, u in seen}
    for upload_id in sorted(missing):
        click.echo(f"upload {upload_id} is not one of this configuration's open uploads", err=True)
        status = EXIT_FAILED
    if not found and not json_output:
        click.echo("no open uploads")
    raise SystemExit(status)
