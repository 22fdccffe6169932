"""The ``voxpipe emulate genesys`` command."""

from __future__ import annotations

import functools
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import trio

from voxpipe.resources import recordings_or_examples
from voxpipe.serving import serve_asgi

from .app import EmulatorConfig, GenesysEmulator
from .catalogue import DEFAULT_START, MAX_SYNTHETIC, SyntheticCatalogue, load_catalogue


@click.command("genesys")
@click.option("--recordings", "directory", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory of audio files (wav, mp3, ogg, opus, webm): one recording each; "
              "NAME__LEG.ext files share conversation NAME. Default (without --generate): the shipped example "
              "recordings.")
@click.option("--generate", type=click.IntRange(1, MAX_SYNTHETIC), default=None,
              help="Instead of --recordings: this many conversations (one short WAV recording each), computed on "
              "demand and spread evenly over --generate-hours from --start (e.g. 150000 to rehearse the analytics "
              "query's 100,000-result paging limit).")
@click.option("--generate-hours", type=click.FloatRange(0.001, 24 * 366), default=24.0, show_default=True,
              help="Hours the generated conversations are spread over.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8098, show_default=True, type=int, help="Port to bind (0: any free port).")
@click.option("--client-id", default=EmulatorConfig.client_id, show_default=True, help="OAuth client id accepted.")
@click.option("--client-secret", default=EmulatorConfig.client_secret, show_default=True,
              help="OAuth client secret accepted.")
@click.option("--start", default=DEFAULT_START.strftime("%Y-%m-%dT%H:%M:%SZ"), show_default=True,
              help="Start of the first conversation (ISO-8601); the others follow every 13 hours.")
@click.option("--not-ready-polls", default=1, show_default=True, type=click.IntRange(0, 100),
              help="Status polls of each batch job that still miss results.")
@click.option("--fail", "fail", multiple=True, help="Recording id or file name whose batch result has errorMsg "
              "(repeatable).")
@click.option("--archived", multiple=True, help="Recording id or file name with fileState ARCHIVED (repeatable).")
@click.option("--uploading", multiple=True, help="Recording id or file name whose fileState is UPLOADING for the "
              "first --transient-polls metadata reads, then AVAILABLE (repeatable).")
@click.option("--restoring", multiple=True, help="The same with RESTORING, then RESTORED (repeatable).")
@click.option("--transient-polls", default=2, show_default=True, type=click.IntRange(0),
              help="Metadata reads answered with UPLOADING/RESTORING.")
@click.option("--deleted", multiple=True, help="Recording id or file name with fileState DELETED (repeatable).")
@click.option("--errored", multiple=True, help="Recording id or file name with fileState ERROR (repeatable).")
@click.option("--duplicate-result", "duplicates", multiple=True, help="Recording id or file name that gets a second, "
              "failed batch result, counted late (expectedResultCount grows) (repeatable).")
@click.option("--status/--no-status", "send_status", default=True, show_default=True,
              help="Send `status` (InProgress/Completed) in batch job answers.")
@click.option("--expire-once", multiple=True, help="Recording id or file name whose first result URL is already "
              "expired (repeatable).")
@click.option("--checksums/--no-checksums", default=False, show_default=True,
              help="Add a non-standard `checksum` (SHA-256 hex) field to recording metadata.")
@click.option("--bad-checksum", multiple=True, help="Recording id or file name with a wrong checksum (repeatable).")
@click.option("--p429", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Probability of an injected 429 per API or media request.")
@click.option("--retry-after", default=1, show_default=True, type=click.IntRange(0, 3600),
              help="Retry-After seconds of injected 429s.")
@click.option("--rate-limit", default=300, show_default=True, type=click.IntRange(1),
              help="Requests per minute per token (Genesys: 300 per client-credentials token).")
@click.option("--url-ttl", default=600.0, show_default=True, type=click.FloatRange(0),
              help="Seconds a result URL stays valid.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random faults.")
def command(directory: Path | None, generate: int | None, generate_hours: float, host: str, port: int,
            client_id: str, client_secret: str, start: str, not_ready_polls: int, fail: tuple[str, ...],
            archived: tuple[str, ...], uploading: tuple[str, ...], restoring: tuple[str, ...], transient_polls: int,
            deleted: tuple[str, ...], errored: tuple[str, ...], duplicates: tuple[str, ...], send_status: bool,
            expire_once: tuple[str, ...], checksums: bool, bad_checksum: tuple[str, ...], p429: float,
            retry_after: int, rate_limit: int, url_ttl: float, seed: int) -> None:
    """Emulate the Genesys Cloud Platform API (OAuth, analytics query, recording metadata, batch
    downloads, pre-signed media URLs, and the read endpoints scripts use) over the audio files
    in a directory, or over generated conversations."""
    if directory is not None and generate is not None:
        raise click.UsageError("give either --recordings DIR or --generate COUNT, not both")
    if directory is None and generate is None:  # the shipped example recordings (package data)
        directory = recordings_or_examples(click.get_current_context(), None, None)
    try:
        begin = datetime.fromisoformat(start)
        begin = begin if begin.tzinfo else begin.replace(tzinfo=timezone.utc)
        if generate is not None:
            catalogue = SyntheticCatalogue(generate, start=begin, span=timedelta(hours=generate_hours))
        else:
            catalogue = load_catalogue(directory, start=begin)
        config = EmulatorConfig(client_id=client_id, client_secret=client_secret, not_ready_polls=not_ready_polls,
                                fail_recordings=frozenset(fail), archived=frozenset(archived),
                                uploading=frozenset(uploading), restoring=frozenset(restoring),
                                transient_polls=transient_polls, deleted=frozenset(deleted),
                                errored=frozenset(errored), duplicate_results=frozenset(duplicates),
                                send_status=send_status, expire_once=frozenset(expire_once),
                                checksums=checksums or bool(bad_checksum), bad_checksums=frozenset(bad_checksum),
                                p429=p429, retry_after=retry_after, rate_limit=rate_limit, url_ttl=url_ttl, seed=seed)
        app = GenesysEmulator(catalogue, config)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    first, last = catalogue.span()
    conversations, recordings = catalogue.count()
    # whole days: a conversation belongs to the interval it started in, so end at the next midnight
    interval = f"{first:%Y-%m-%dT00:00:00Z}/{(last.date() + timedelta(days=1)).isoformat()}T00:00:00Z"

    async def main() -> None:
        # Ctrl-C and SIGTERM end it quietly (a KeyboardInterrupt inside the nursery would
        # surface as an exception-group traceback)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(functools.partial(serve_asgi, app, host, port))
                click.echo(f"Genesys Cloud emulator at {url}: {conversations} conversations, "
                           f"{recordings} recordings ({interval})")
                click.echo(f"  export GENESYS_API_BASE={url} GENESYS_LOGIN_BASE={url}")
                click.echo(f"  export GENESYS_CLIENT_ID={client_id} GENESYS_CLIENT_SECRET=...  # --client-secret")
                click.echo(f"  export GENESYS_INTERVAL={interval}")
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    click.echo(f"stopped; requests: {app.stats.requests}", err=True)
