"""``voxpipe emulate cxone``: run the CXone emulator in the foreground.

The lead mounts :data:`cxone` under ``voxpipe emulate``. It prints the base
URL, token URL and credentials (the secrets only when they are the built-in
demo values), then serves until Ctrl-C.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import click
import trio
from pydantic import SecretStr, ValidationError

from voxpipe.resources import recordings_or_examples

from .app import CxoneEmulator
from .faults import FaultConfig
from .ratelimit import RateLimit
from .server import serve_emulator
from .settings import DEMO_ACCESS_KEY_SECRET, DEMO_CLIENT_SECRET, EmulatorSettings
from .store import RecordingStoreError

__all__ = ["cxone", "build_settings"]


def _probability(ctx: click.Context, param: click.Parameter, value: float | None) -> float:
    if value is None:
        return 0.0
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter(f"{value} is not a probability in 0..1")
    return value


def _rate_limit(ctx: click.Context, param: click.Parameter, value: str | None) -> RateLimit | None:
    if value is None:
        return None
    try:
        return RateLimit.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _storage_states(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        rec_id, sep, state = item.partition("=")
        if not sep or not rec_id or not state:
            raise click.BadParameter(f"{item!r} is not ID=STATE (e.g. call-0042=archived)")
        out[rec_id] = state
    return out


def build_settings(**options: object) -> EmulatorSettings:
    """EmulatorSettings from the command's option values (raises ValidationError)."""
    faults = FaultConfig(
        rate_limit=options.pop("fail_429"),  # type: ignore[arg-type]
        server_error=options.pop("fail_5xx"),  # type: ignore[arg-type]
        drop=options.pop("drop"),  # type: ignore[arg-type]
        ignore_range=options.pop("ignore_range"),  # type: ignore[arg-type]
        json_error=options.pop("json_errors"),  # type: ignore[arg-type]
        retry_after=options.pop("retry_after"),  # type: ignore[arg-type]
        retry_after_http_date=options.pop("retry_after_http_date"),  # type: ignore[arg-type]
    )
    hmac_key = options.pop("hmac_key")
    return EmulatorSettings(
        faults=faults,
        hmac_key=SecretStr(hmac_key) if hmac_key else None,  # type: ignore[arg-type]
        tamper=tuple(options.pop("tamper")),  # type: ignore[arg-type]
        job_fates=tuple(options.pop("job_fates", ()) or ()),  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


@click.command("cxone")
@click.option("--recordings", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              callback=recordings_or_examples,
              help="Directory of audio files; each file's stem is a recording id (and ACD call id). "
              "Default: the shipped example recordings.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--client-id", default="demo-client", show_default=True, envvar="VOXPIPE_CXONE_CLIENT_ID")
@click.option("--client-secret", default=DEMO_CLIENT_SECRET, envvar="VOXPIPE_CXONE_CLIENT_SECRET", show_default=False,
              help="Client secret (default: the demo secret). Also from $VOXPIPE_CXONE_CLIENT_SECRET.")
@click.option("--access-key-id", default="demo-access-key", show_default=True, envvar="VOXPIPE_CXONE_ACCESS_KEY_ID")
@click.option("--access-key-secret", default=DEMO_ACCESS_KEY_SECRET, envvar="VOXPIPE_CXONE_ACCESS_KEY_SECRET",
              help="Access-key secret for the password grant. Also from $VOXPIPE_CXONE_ACCESS_KEY_SECRET.")
@click.option("--area", default="na1", show_default=True, help="area claim of the id token.")
@click.option("--token-ttl", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True,
              help="Access-token lifetime, seconds.")
@click.option("--media-url-ttl", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              help="Lifetime of Media Playback temporary URLs, seconds.")
@click.option("--rate-limit", callback=_rate_limit, metavar="N/WINDOW",
              help="Per-host window, e.g. 150/300 or 150/5m (CXone Media Playback default: 150 per 5 minutes).")
@click.option("--fail-429", type=float, callback=_probability, metavar="PROB", help="Probability of an injected 429.")
@click.option("--retry-after", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Retry-After of injected 429s, seconds.")
@click.option("--retry-after-http-date", is_flag=True, help="Send Retry-After as an HTTP date instead of seconds.")
@click.option("--fail-5xx", type=float, callback=_probability, metavar="PROB", help="Probability of a 5xx.")
@click.option("--drop", type=float, callback=_probability, metavar="PROB", help="Probability of dropping the connection mid-body.")
@click.option("--ignore-range", type=float, callback=_probability, metavar="PROB", help="Probability of answering 200 with the whole body to a Range request (1 = always).")
@click.option("--json-errors", type=float, callback=_probability, metavar="PROB",
              help="Probability of a 200/206 with an application/json blob-storage timeout body.")
@click.option("--tamper", multiple=True, metavar="ID", help="Serve this recording with one byte changed (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed of the fault schedule (printed when omitted).")
@click.option("--hmac-key", envvar="VOXPIPE_CXONE_HMAC_KEY", default=None,
              help="Sign recordings with HMAC-SHA256 under this key (UTF-8). Also from $VOXPIPE_CXONE_HMAC_KEY.")
@click.option("--hmac-encoding", type=click.Choice(["hex", "base64"]), default="hex", show_default=True)
@click.option("--sha256-in-metadata/--no-sha256-in-metadata", default=True, show_default=True)
@click.option("--storage-state", "storage_states", multiple=True, callback=_storage_states, metavar="ID=STATE",
              help="Report a storageState (available, stored, archived, purged) for a recording (repeatable).")
@click.option("--calls-end", type=float, default=None, metavar="UNIX_SECONDS",
              help="Calls end before this time (default: now, to the minute); one starts every --call-spacing seconds.")
@click.option("--call-spacing", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds between the starts of consecutive calls (recordings sorted by id).")
@click.option("--tenant-id", default="emulator-tenant", show_default=True,
              help="Tenant id of the id token and of /.well-known/cxone-configuration.")
@click.option("--segment-answer", type=click.Choice(["interactions", "redirectUrl", "fileToPlayUrl"]),
              default="interactions", show_default=True, help="Where segment lookups put the media URL.")
@click.option("--extraction-running-polls", type=click.IntRange(0, 10_000), default=1, show_default=True,
              help="Status polls a Data Extraction job answers RUNNING before it ends.")
@click.option("--extraction-running-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds a Data Extraction job stays RUNNING at least (a slow extraction).")
@click.option("--extraction-result-ttl", type=click.FloatRange(min=0, min_open=True), default=3600.0,
              show_default=True, help="Seconds a finished job's CSV stays available (then EXPIRED).")
@click.option("--job-fate", "job_fates", multiple=True,
              type=click.Choice(["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"]),
              help="Fate of the next Data Extraction job (repeatable, in order; then SUCCEEDED).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info", show_default=True)
def cxone(log_level: str, **options: object) -> None:
    """Run a NICE CXone emulator on loopback over the audio files in --recordings (default: the shipped examples)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = build_settings(**options)
        emulator = CxoneEmulator(settings)
    except (ValidationError, RecordingStoreError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if len(emulator.store) == 0:
        raise click.UsageError(f"no audio files in {settings.recordings} (looked for .wav, .mp3, .opus, .ogg, .webm, .m4a, .flac)")

    async def main() -> None:
        # SIGTERM as well as Ctrl-C: a background job started by a script has
        # SIGINT ignored, and supervisors stop services with SIGTERM.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                base_url = await nursery.start(serve_emulator, emulator)
                _banner(emulator, base_url)
                async for signum in signals:
                    click.echo(f"CXone emulator stopping ({signal.Signals(signum).name}).", err=True)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    finally:
        emulator.close()


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def min_start(emulator: CxoneEmulator) -> float:
    starts = [c.started_at for rid in emulator.store.ids() if (c := emulator.calls.get(rid)) is not None]
    return min(starts) if starts else emulator.calls_end


def _banner(emulator: CxoneEmulator, base_url: str) -> None:
    s = emulator.settings
    client_secret = s.client_secret.get_secret_value()
    key_secret = s.access_key_secret.get_secret_value()
    lines = [
        f"CXone emulator serving {len(emulator.store)} recordings from {s.recordings}",
        f"  base URL:   {base_url}",
        f"  token URL:  {base_url}/oauth/token  (also {base_url}/auth/token)",
        f"  client id:  {s.client_id}",
        f"  client secret: {client_secret if client_secret == DEMO_CLIENT_SECRET else '(as configured, not shown)'}",
        f"  access key: {s.access_key_id} / {key_secret if key_secret == DEMO_ACCESS_KEY_SECRET else '(as configured, not shown)'}",
        f"  token ttl:  {s.token_ttl:g} s; fault seed: {emulator.faults.seed}",
        f"  tenant:     {s.tenant_id} (area {s.area}); {base_url}/.well-known/cxone-configuration?tenantId={s.tenant_id}",
        f"  calls:      {len(emulator.store)} between {_utc(min_start(emulator))} and {_utc(emulator.calls_end)} "
        f"(Data Extraction: POST {base_url}/data-extraction/v1/jobs)",
        f"  stats:      {base_url}/_emulator/stats",
        "Press Ctrl-C to stop.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()
