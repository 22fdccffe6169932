"""Helpers for testing plugins and pipelines: register a plugin, run an emulator, run a pipeline.

Public and stable; ``docs/plugins.md`` and the example plugin under ``examples/plugins/``
use them. Everything runs for real on loopback: the CXone emulator is the same HTTP server
``voxpipe emulate cxone`` runs, and pipelines run through the same engine as ``voxpipe run``.

A plugin's test, in full::

    from voxpipe.testing import cxone_emulator, registered, run_pipeline

    def test_my_sink(tmp_path):
        with registered(MyPlugin()), cxone_emulator() as emulator:
            summary = run_pipeline(PIPELINE_YAML, environ=emulator.environ(ARCHIVE=str(tmp_path)))
        assert summary.ok and len(summary.results) == 6

(When the plugin is installed, its entry point registers it already: ``registered`` is for
plugin objects defined in the test itself.)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import trio

from .config import parse_config
from .engine import RunObserver, Runner, RunSummary
from .plugins import get_plugin_manager, get_registry
from .resources import example_recordings

__all__ = ["registered", "run_pipeline", "cxone_emulator", "CxoneEmulatorHandle"]


@contextlib.contextmanager
def registered(plugin: object, name: str | None = None) -> Iterator[None]:
    """Register ``plugin`` (an object or module with ``@hookimpl`` functions) with the
    process's plugin manager for the ``with`` block, then unregister it.

    :raises voxpipe.errors.PluginError: on entry, when it registers a type name another
        plugin already uses.
    """
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    try:
        get_registry()  # fail here, at the registration, on a conflict
        yield
    finally:
        pm.unregister(plugin)


def run_pipeline(config: str | os.PathLike[str], *, pipeline: str | None = None,
                 environ: Mapping[str, str] | None = None, observer: RunObserver | None = None) -> RunSummary:
    """Run a pipeline once, synchronously, and return its summary.

    :param config: YAML text, or the path of a pipeline file (a :class:`os.PathLike`).
    :param pipeline: its name, when the file defines several.
    :param environ: variables for ``${VAR}`` interpolation (default: the process environment).
    :param observer: receives run events (:class:`voxpipe.engine.RunObserver`).
    :raises voxpipe.errors.ConfigError: the YAML is invalid (every problem listed).
    """
    if isinstance(config, os.PathLike):
        path = Path(config)
        text, filename = path.read_text(encoding="utf-8"), str(path)
    else:
        text, filename = config, "<test>"
    parsed = parse_config(text, get_registry(), filename=filename, environ=environ)
    return trio.run(Runner(parsed.pipeline(pipeline), observer=observer).run)


@dataclass(frozen=True)
class CxoneEmulatorHandle:
    """A running CXone emulator: its base URL, credentials and the emulator object
    (``emulator.stats.bytes_served()``, ...)."""

    base_url: str
    client_id: str
    client_secret: str
    emulator: Any

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    def environ(self, **extra: str) -> dict[str, str]:
        """The process environment plus ``CXONE_API_BASE``, ``CXONE_TOKEN_URL``,
        ``CXONE_CLIENT_ID``, ``CXONE_CLIENT_SECRET`` (what the shipped examples read) and ``extra``."""
        return {**os.environ, "CXONE_API_BASE": self.base_url, "CXONE_TOKEN_URL": self.token_url,
                "CXONE_CLIENT_ID": self.client_id, "CXONE_CLIENT_SECRET": self.client_secret, **extra}


@contextlib.contextmanager
def cxone_emulator(recordings: str | os.PathLike[str] | None = None, **settings: Any) -> Iterator[CxoneEmulatorHandle]:
    """Run the NICE CXone emulator on a free loopback port for the ``with`` block.

    :param recordings: a directory of audio files, each file's stem a recording id
        (default: the shipped example recordings 100001..100006).
    :param settings: more emulator settings (``faults``, ``tamper``, ``rate_limit``...; see
        ``voxpipe emulate cxone --help``).
    """
    from voxpipe_cxone.emulator.app import CxoneEmulator
    from voxpipe_cxone.emulator.settings import EmulatorSettings

    from .serving import serve_in_thread

    emulator_settings = EmulatorSettings(recordings=Path(recordings) if recordings else example_recordings(),
                                         **settings)
    emulator = CxoneEmulator(emulator_settings)
    try:
        with serve_in_thread(emulator) as base_url:
            yield CxoneEmulatorHandle(base_url, emulator_settings.client_id,
                                      emulator_settings.client_secret.get_secret_value(), emulator)
    finally:
        emulator.close()
