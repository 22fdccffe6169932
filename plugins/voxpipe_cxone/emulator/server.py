"""Serving the emulator: thin wrappers over :mod:`voxpipe.serving` (one hypercorn setup for all servers).

:func:`serve_emulator` binds a loopback address (port 0 picks a free port)
and reports the real base URL through ``task_status.started``.
:func:`run_in_thread` runs it in a daemon thread for synchronous tests and
benchmarks, yielding the base URL and stopping cleanly on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import trio
from hypercorn.config import Config

from voxpipe import serving

from .app import CxoneEmulator

__all__ = ["hypercorn_config", "serve_emulator", "run_in_thread", "KEEP_ALIVE_TIMEOUT"]

KEEP_ALIVE_TIMEOUT: Final = 30.0
"""Seconds an idle keep-alive connection stays open (clients reuse pooled connections)."""


def _overrides() -> dict[str, Any]:
    # hypercorn's access log stays off (voxpipe.serving's default: it would print query
    # strings with `sig`); the app writes its own redacted access log instead.
    return {"keep_alive_timeout": KEEP_ALIVE_TIMEOUT, "graceful_timeout": 1.0, "include_server_header": False}


def hypercorn_config(host: str = "127.0.0.1", port: int = 0) -> Config:
    """Hypercorn configuration for the emulator (:func:`voxpipe.serving.hypercorn_config` + its overrides)."""
    return serving.hypercorn_config(host, port, **_overrides())


async def serve_emulator(
    emulator: CxoneEmulator,
    host: str | None = None,
    port: int | None = None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``emulator`` until cancelled; ``task_status.started(base_url)`` once bound.

    ``host``/``port`` default to the emulator's settings. ``base_url`` is e.g.
    ``http://127.0.0.1:54321`` with the port actually bound.
    """
    host = host or emulator.settings.host
    port = emulator.settings.port if port is None else port
    await serving.serve_asgi(emulator, host, port, config=hypercorn_config(host, port), task_status=task_status)


@contextmanager
def run_in_thread(emulator: CxoneEmulator, host: str | None = None, port: int | None = None) -> Iterator[str]:
    """Run ``emulator`` in a background thread; yields its base URL, stops on exit.

    :raises RuntimeError: the server did not bind within
        :data:`voxpipe.serving.STARTUP_TIMEOUT` seconds (cause chained).
    """
    host = host or emulator.settings.host
    port = emulator.settings.port if port is None else port
    with serving.serve_in_thread(emulator, host, port, **_overrides()) as base_url:
        yield base_url
