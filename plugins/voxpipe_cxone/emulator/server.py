"""Serving the emulator: hypercorn on trio, and a background-thread runner.

:func:`serve_emulator` binds a loopback address (port 0 picks a free port)
and reports the real base URL through ``task_status.started``.
:func:`run_in_thread` runs it in a daemon thread for synchronous tests and
benchmarks, yielding the base URL and stopping cleanly on exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager
from functools import partial
from typing import Final
from collections.abc import Iterator

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .app import CxoneEmulator

__all__ = ["hypercorn_config", "serve_emulator", "run_in_thread", "STARTUP_TIMEOUT", "STOP_TIMEOUT"]

STARTUP_TIMEOUT: Final = 10.0
"""Seconds :func:`run_in_thread` waits for the server to bind."""

STOP_TIMEOUT: Final = 10.0
"""Seconds :func:`run_in_thread` waits for the server thread to end."""

KEEP_ALIVE_TIMEOUT: Final = 30.0
"""Seconds an idle keep-alive connection stays open (clients reuse pooled connections)."""


def hypercorn_config(host: str = "127.0.0.1", port: int = 0) -> Config:
    """Hypercorn configuration for the emulator.

    hypercorn's access log is off (it would print the request line with its
    query string); the app writes its own redacted access log instead.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("voxpipe_cxone.emulator.server")
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT
    config.graceful_timeout = 1.0
    config.include_server_header = False
    return config


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
    config = hypercorn_config(host or emulator.settings.host, emulator.settings.port if port is None else port)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, emulator, config, mode="asgi"))  # type: ignore[arg-type]
        task_status.started(binds[0])


@contextmanager
def run_in_thread(emulator: CxoneEmulator, host: str | None = None, port: int | None = None) -> Iterator[str]:
    """Run ``emulator`` in a background thread; yields its base URL, stops on exit.

    Raises RuntimeError when the server does not bind within
    :data:`STARTUP_TIMEOUT` seconds (with the underlying error as cause).
    """
    started: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.CancelScope] | BaseException] = queue.Queue(maxsize=1)

    async def main() -> None:
        with trio.CancelScope() as cancel_scope:
            async with trio.open_nursery() as nursery:
                base_url = await nursery.start(partial(serve_emulator, emulator, host, port))
                started.put((base_url, trio.lowlevel.current_trio_token(), cancel_scope))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # report start-up failures to the waiting caller
            if started.empty():
                started.put(exc)
            else:
                logging.getLogger("voxpipe_cxone.emulator.server").exception("emulator thread failed")

    thread = threading.Thread(target=run, name="cxone-emulator", daemon=True)
    thread.start()
    try:
        item = started.get(timeout=STARTUP_TIMEOUT)
    except queue.Empty:
        raise RuntimeError(f"CXone emulator did not start within {STARTUP_TIMEOUT} s") from None
    if isinstance(item, BaseException):
        thread.join(STOP_TIMEOUT)
        raise RuntimeError(f"CXone emulator failed to start: {item}") from item
    base_url, token, cancel_scope = item
    try:
        yield base_url
    finally:
        try:
            trio.from_thread.run_sync(cancel_scope.cancel, trio_token=token)
        except trio.RunFinishedError:
            pass
        thread.join(STOP_TIMEOUT)
