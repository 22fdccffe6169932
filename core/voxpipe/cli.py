"""The ``voxpipe`` command line.

Exit codes: 0 every stream ok; 1 some stream failed (or the run was interrupted);
2 bad configuration or usage; 3 another run of the pipeline is still going; 4 storage
failed before the run (disk full, I/O error, permissions); 5 a corrupt or foreign state
file (ledger, webhook outbox). docs/operations.md lists what to do for each.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click
import trio

from . import __version__
from .config import ConfigFile, PipelineConfig, load_config
from .engine import ObserverFanout, RunObserver, Runner, RunSummary
from .errors import ConfigError, PluginError, VoxpipeError
from .plugins import get_plugin_manager, get_registry

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
#: Deferred recordings `voxpipe run` names one by one at the end (the report lists them all).
DEFERRED_SHOWN = 20

log = logging.getLogger("voxpipe")


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr; HTTP client loggers stay at WARNING because they print URLs."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger()
    if not any(getattr(h, "_voxpipe", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        handler._voxpipe = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "hypercorn.access", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if verbose < 1:
        logging.getLogger("voxpipe.download").setLevel(logging.WARNING)


class JsonResults(RunObserver):
    """Prints one JSON object per finished stream on stdout (``voxpipe run --json``), and one
    per recording the source deferred to a later run (``"status": "deferred"``).

    When the reader goes away (``voxpipe run --json | head``), the run stops as after
    SIGINT (streams in flight finish within ``shutdown_grace``, nothing half-stored) and
    exits without a traceback: ``on_closed`` is called once.
    """

    def __init__(self, on_closed=lambda: None):
        self.closed = False
        self.on_closed = on_closed

    def stream_finished(self, result) -> None:
        self._emit(result.to_dict())

    def stream_deferred(self, deferral) -> None:  # "status": "deferred", no attempt
        self._emit(deferral.to_dict())

    def _emit(self, doc: dict) -> None:
        if self.closed:
            return
        try:
            click.echo(json.dumps(doc, default=str, separators=(",", ":")))
        except BrokenPipeError:
            self.closed = True
            silence_stdout()
            log.info("standard output was closed by its reader; stopping after the streams in flight")
            self.on_closed()


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot raise again
    (Python's documented way to handle SIGPIPE/EPIPE)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests' captured stdout)
        pass


async def run_with_signals(runner: Runner) -> RunSummary:
    """Run ``runner``; the first SIGINT/SIGTERM stops it gracefully, the second at once."""
    async with trio.open_nursery() as nursery:
        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                count = 0
                async for signum in signals:
                    count += 1
                    if count == 1:
                        log.warning("%s: finishing streams in flight (%.0f s grace); press Ctrl-C again to abort",
                                    signal.Signals(signum).name, runner.settings.shutdown_grace)
                        runner.request_stop()
                    else:
                        log.warning("aborting streams in flight")
                        runner.cancel_now()

        nursery.start_soon(watch)
        summary = await runner.run()
        nursery.cancel_scope.cancel()
    return summary


def load_or_exit(path: Path) -> ConfigFile:
    """Load and validate a pipeline file, or print every problem and exit 2."""
    try:
        return load_config(path, registry_or_exit())
    except ConfigError as exc:
        _config_exit(exc)


def load_pipeline_or_exit(path: Path, name: str | None) -> PipelineConfig:
    """Pipeline ``name`` (``None``: the file's only one) of a pipeline file, or print every
    problem (invalid file, unknown or ambiguous name) and exit 2."""
    try:
        return load_or_exit(path).pipeline(name)
    except ConfigError as exc:
        _config_exit(exc)


def _config_exit(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(problem, err=True)
    raise SystemExit(EXIT_CONFIG) from None


def registry_or_exit():
    """The component registry, or a clean error and exit 2 (e.g. two plugins claim one type name)."""
    try:
        return get_registry()
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None


def execute(pipeline: PipelineConfig, *, json_output: bool = False, progress: bool | None = None,
            observers: tuple[RunObserver, ...] = (), metrics_port: int | None = None,
            metrics_host: str = "127.0.0.1", metrics_textfile: Path | None = None) -> RunSummary:
    """Run a pipeline from synchronous code with the right progress display.

    With ``metrics_port``, Prometheus metrics are served at ``http://metrics_host:port/metrics``
    for the run (port 0: any free port, logged); with ``metrics_textfile``, they are
    written there at the end (node_exporter textfile collector). See :mod:`voxpipe.metrics`.
    """
    from .progress import LiveProgress, LogProgress, wants_live_display

    live = wants_live_display() if progress is None else progress
    display: RunObserver = LiveProgress() if live else LogProgress()
    metrics = None
    if metrics_port is not None or metrics_textfile is not None:
        from .metrics import RunMetrics

        metrics = RunMetrics()
    json_results = JsonResults() if json_output else None
    observer = ObserverFanout(display, json_results, metrics, *observers)
    # voice sources publish live call metrics into the run's registry
    runner = Runner(pipeline, observer=observer,
                    services={"metrics_registry": metrics.registry} if metrics is not None else None)
    if json_results is not None:
        json_results.on_closed = runner.request_stop
    try:
        if metrics is not None and metrics_port is not None:
            from .metrics import run_serving_metrics

            return trio.run(run_serving_metrics, run_with_signals, runner, metrics, metrics_host, metrics_port)
        return trio.run(run_with_signals, runner)
    finally:
        if metrics is not None and metrics_textfile is not None:
            from .metrics import MetricsError

            try:
                metrics.write_textfile(str(metrics_textfile))
            except MetricsError as exc:  # the run's own outcome decides the exit status
                log.error("%s", exc)


class _Root(click.Group):
    """The root group; plugins add their commands (``register_commands``) on first use."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            pm = get_plugin_manager()
            for impl in pm.hook.register_commands.get_hookimpls():
                try:
                    impl.function(cli=self)
                except Exception as exc:  # one broken plugin must not take the CLI down
                    click.echo(f"plugin {pm.get_name(impl.plugin)!r} failed to add its commands: "
                               f"{type(exc).__name__}: {exc}", err=True)

    def list_commands(self, ctx):
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._load()
        return super().get_command(ctx, name)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="voxpipe")
@click.option("-v", "--verbose", count=True, help="More log detail (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """voxpipe: archive contact-center call recordings and capture live call audio,
    through pipelines written in YAML.

    \b
    Typical use:
      voxpipe demo                       archive the shipped examples end to end
      voxpipe check pipeline.yaml        validate a pipeline file (--connect: and its credentials,
                                         destinations and endpoints, for real)
      voxpipe run --dry-run pipeline.yaml   what a run would fetch, resume or skip
      voxpipe run pipeline.yaml          run it (progress on a terminal, then a summary)
      voxpipe verify ARCHIVE_DIR         re-read every stored file against its manifest
      voxpipe schema -o voxpipe.schema.json   JSON Schema of pipeline files, for editors
      voxpipe plugins                    list every source, transform, verifier and sink
      voxpipe emulate cxone              rehearse against a local CXone emulator
    """
    setup_logging(verbose, quiet)


@cli.group()
def emulate() -> None:
    """Run a local emulator of a vendor platform (for rehearsals and tests)."""


cli.emulate = emulate  # type: ignore[attr-defined]  # where plugins add emulators (hookspecs.register_commands)

from .ledger.cli import ledger_group  # noqa: E402  (after the root group it joins)

cli.add_command(ledger_group)


@cli.command()
# not click.Path(exists=True, dir_okay=False): load_config reports a missing file, a directory or a FIFO as FILE:1: ...
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--pipeline", "-p", "name", help="Pipeline to run (needed when the file defines several).")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON result per stream on stdout.")
@click.option("--progress/--no-progress", default=None, help="Live progress display (default: on a terminal).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics during the run (0: any free port).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address the metrics endpoint binds.")
@click.option("--metrics-textfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the run's final metrics to this file (node_exporter textfile collector).")
@click.option("--dry-run", is_flag=True, help="Only list what the source discovers and what a run would fetch, "
              "resume or skip (ids, sizes and dates when known); download, store and record nothing.")
def run(file: Path, name: str | None, json_output: bool, progress: bool | None, metrics_port: int | None,
        metrics_host: str, metrics_textfile: Path | None, dry_run: bool) -> None:
    """Run a pipeline from FILE.

    Exit status: 0 when every stream succeeded, 1 when any failed, 2 for a bad file (or a
    metrics address that cannot be bound), 3 when another run of the pipeline is still
    going (see on_overlap), 4 when storage failed before the run (disk full, I/O error,
    permissions), 5 for a corrupt or foreign ledger or outbox file. With --dry-run: 0 when discovery succeeded.
    """
    from .metrics import MetricsError

    config = load_or_exit(file)
    try:
        pipeline = config.pipeline(name)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if dry_run:
        from .dryrun import print_dry_run

        raise SystemExit(print_dry_run(pipeline, json_output=json_output))
    try:
        summary = execute(pipeline, json_output=json_output, progress=progress, metrics_port=metrics_port,
                          metrics_host=metrics_host, metrics_textfile=metrics_textfile)
    except MetricsError as exc:  # --metrics-host/--metrics-port cannot be bound
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    except BaseException as exc:
        error = run_error(exc)
        if error is None:
            raise
        click.echo(f"error: {error}", err=True)
        # 3: another run holds the pipeline; 4: storage failed before the run; 5: a broken state file
        raise SystemExit(getattr(error, "exit_code", EXIT_FAILED)) from None
    # each failed stream was printed once as it ended (live display or log line) and the
    # display printed the summary; the discovery error is repeated as the last word
    if not json_output and summary.deferred_count:
        for d in summary.deferred[:DEFERRED_SHOWN]:
            click.echo(f"deferred {d.id}: {d.message or d.reason}", err=True)
        more = summary.deferred_count - min(len(summary.deferred), DEFERRED_SHOWN)
        click.echo(f"{summary.deferred_count} recording(s) deferred to a later run (not failed)"
                   + (f", {more} more not shown" if more else ""), err=True)
    if summary.discovery_error:
        click.echo(f"error: {summary.discovery_error}", err=True)
    raise SystemExit(EXIT_OK if summary.ok else EXIT_FAILED)


def run_error(exc: BaseException) -> VoxpipeError | None:
    """The voxpipe error inside ``exc`` (possibly an exception group), if any."""
    if isinstance(exc, VoxpipeError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = run_error(sub)
            if found is not None:
                return found
    return None


@cli.command()
# not click.Path(exists=True, dir_okay=False): load_config reports a missing file, a directory or a FIFO as FILE:1: ...
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--connect", is_flag=True, help="Then, per pipeline, check for real: obtain a token, read the first "
              "page of discovery, probe each storing sink's destination and each webhook endpoint. Nothing is "
              "downloaded, stored or announced.")
@click.option("--pipeline", "-p", "name", help="Only this pipeline (default: every pipeline in FILE).")
def check(file: Path, connect: bool, name: str | None) -> None:
    """Validate FILE without running anything: every problem as FILE:LINE: key.path: message.

    Also reports input files the configuration names (recordings_file, ...) that are
    missing or unreadable. With --connect, one line per check, "ok" or "FAIL".

    Exit status: 0 valid (and every check passed), 1 a --connect check failed, 2 invalid.
    """
    from .config import local_file_problems

    config = load_or_exit(file)
    try:
        pipelines = [config.pipeline(name)] if name else list(config.pipelines.values())
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(EXIT_CONFIG) from None
    problems = [p for pipeline in pipelines for p in local_file_problems(pipeline)]
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise SystemExit(EXIT_CONFIG)
    for p in pipelines:
        parts = [f"source {p.source.type}"] + [f"{len(getattr(p, k))} {k}" for k in ("transforms", "verifiers", "sinks")]
        click.echo(f"{file}: pipeline {p.name!r} is valid ({', '.join(parts)}; concurrency {p.settings.concurrency})")
    if not connect:
        return
    from .connectcheck import check_pipeline

    failed = 0

    def show(line) -> None:
        nonlocal failed
        failed += not line.check.ok
        mark = "ok  " if line.check.ok else "FAIL"
        click.echo(f"{mark} {line.pipeline}: {line.component}: {line.check.what}: {line.check.detail}")

    for p in pipelines:
        trio.run(check_pipeline, p, show)
    if failed:
        click.echo(f"{failed} check{'s' if failed > 1 else ''} failed", err=True)
        raise SystemExit(EXIT_FAILED)


@cli.command()
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output.")
def plugins(json_output: bool) -> None:
    """List every component (type, kind, plugin, summary) and plugins that failed to load."""
    try:
        registry = get_registry()
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if json_output:
        click.echo(json.dumps({
            "components": [{"kind": i.kind, "type": i.type, "plugin": i.plugin, "summary": i.summary}
                           for i in registry.all()],
            "load_errors": [e.__dict__ for e in registry.load_errors]}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="voxpipe components")
        for col in ("kind", "type", "plugin", "summary"):
            table.add_column(col)
        for info in registry.all():
            table.add_row(info.kind, info.type, info.plugin, info.summary)
        Console().print(table)
        for err in registry.load_errors:
            click.echo(f"plugin {err.name!r} ({err.target}) failed to load: {err.error}", err=True)
    if registry.load_errors:
        raise SystemExit(EXIT_FAILED)


@cli.command()
@click.argument("archive")
@click.option("--json", "json_output", is_flag=True, help="Print the report as one JSON object on stdout.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Files checked at once (worker threads).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
def verify(archive: str, json_output: bool, jobs: int, progress: bool | None) -> None:
    """Re-read every stored recording in ARCHIVE against its manifest.

    Checks each stored file's size and SHA-256, and for gzip files every member's CRC and
    the decompressed size and SHA-256 the manifest records. Reports files that are
    missing, corrupt, orphan (no manifest) and manifests that cannot be read. Nothing is
    written. ARCHIVE is a sink's directory (or a URL an installed plugin reads, e.g. s3://).

    Exit status: 0 every file checked out, 1 problems found, 2 the archive cannot be read.
    """
    from .verifycmd import run_verify

    raise SystemExit(run_verify(archive, json_output=json_output, jobs=jobs, progress=progress))


@cli.command()
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the schema to this file instead of standard output.")
def schema(out: Path | None) -> None:
    """Print a JSON Schema of pipeline files (every installed component's settings), for editors.

    \b
    With the YAML language server (VS Code's YAML extension, Neovim, Helix...):
      voxpipe schema -o voxpipe.schema.json
    and make this the first line of a pipeline file:
      # yaml-language-server: $schema=./voxpipe.schema.json
    """
    from .schema import config_schema

    try:
        text = json.dumps(config_schema(get_registry()), indent=2) + "\n"
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if out is None:
        click.echo(text, nl=False)
        return
    from .atomic import write_atomic

    try:
        write_atomic(out, text.encode())
    except OSError as exc:
        click.echo(f"error: cannot write {out}: {exc.strerror}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    click.echo(f"wrote {out}; first line of a pipeline file for the YAML language server:\n"
               f"  # yaml-language-server: $schema={out}")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("voxpipe-demo"),
              show_default=True, help="Where the demo archive is written.")
def demo(out: Path) -> None:
    """Archive the shipped example recordings from a local CXone emulator, end to end.

    Starts the emulator on a free loopback port, runs examples/cxone-archive.yaml into
    OUT, checks every archived recording against its source byte for byte, and prints a
    table of the results.
    """
    from .demo import run_demo

    raise SystemExit(run_demo(out))


def main() -> None:
    try:
        cli(prog_name="voxpipe")
    except PluginError as exc:  # e.g. two plugins claim one type name, met outside load_or_exit
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    except BrokenPipeError:  # stdout's reader went away (voxpipe plugins | head)
        silence_stdout()
        raise SystemExit(EXIT_OK) from None
