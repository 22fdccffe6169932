"""Serving ASGI apps with hypercorn on trio: emulators, the retrieval API, metrics.

:func:`serve_asgi` is a trio service (``await nursery.start(serve_asgi, app, ...)``
returns the base URL once the socket is bound, port 0 meaning "any free port").
:func:`serve_in_thread` runs one in a background thread for synchronous callers (tests
that drive the pipeline in a subprocess, benchmarks, ``voxpipe demo``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import Any, Awaitable, Callable, Iterator

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

#: Seconds a graceful shutdown may take before connections are dropped.
SHUTDOWN_TIMEOUT = 5.0
#: Seconds to wait for a server thread to bind its socket.
STARTUP_TIMEOUT = 15.0


class BodyTooLarge(Exception):
    """An HTTP request body is longer than the limit its reader was given."""


async def read_body(receive: Callable[[], Awaitable[dict]], limit: int) -> bytes:
    """The whole body of an ASGI HTTP request: ``http.request`` messages until one says
    ``more_body`` is false (an ``http.disconnect`` ends it early with what came).

    :param limit: most bytes accepted; the reading stops as soon as more arrived.
    :raises BodyTooLarge: the body is longer than ``limit`` bytes (answer 413).
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        body = message.get("body", b"")
        total += len(body)
        if total > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def hypercorn_config(host: str = "127.0.0.1", port: int = 0, **overrides: Any) -> Config:
    """A hypercorn Config bound to ``host:port`` with no access log (it would print URLs)."""
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]  # IPv6 literals in brackets
    config.accesslog = None
    config.errorlog = logging.getLogger("voxpipe.serving")
    config.graceful_timeout = SHUTDOWN_TIMEOUT
    config.keep_alive_timeout = 30
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def with_lifespan(app: Any) -> Any:
    """Wrap an ASGI app that ignores the ``lifespan`` scope so hypercorn starts it cleanly.

    Apps that manage startup/shutdown themselves set ``handles_lifespan = True``.
    """
    if getattr(app, "handles_lifespan", False):
        return app

    async def wrapped(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            await app(scope, receive, send)

    return wrapped


async def serve_asgi(app: Any, host: str = "127.0.0.1", port: int = 0, *, config: Config | None = None,
                     shutdown: trio.Event | None = None,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` until cancelled (or until ``shutdown`` is set, gracefully).

    Reports the base URL (``http://127.0.0.1:PORT``) through ``task_status``.
    """
    config = config or hypercorn_config(host, port)
    trigger = shutdown.wait if shutdown is not None else None

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, with_lifespan(app), config, shutdown_trigger=trigger))
        task_status.started(binds[0].rstrip("/"))


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **overrides: Any) -> Iterator[str]:
    """Run ``app`` in a background thread for the ``with`` block; yields the base URL.

    :raises RuntimeError: the server did not bind within ``STARTUP_TIMEOUT`` seconds, or
        failed to start (the error is chained).
    """
    ready = threading.Event()
    box: dict[str, Any] = {}
    token_box: dict[str, trio.lowlevel.TrioToken] = {}
    stop_box: dict[str, trio.Event] = {}

    async def main() -> None:
        stop = trio.Event()
        stop_box["stop"] = stop
        token_box["token"] = trio.lowlevel.current_trio_token()
        config = hypercorn_config(host, port, **overrides)
        async with trio.open_nursery() as nursery:
            box["url"] = await nursery.start(functools.partial(serve_asgi, app, config=config))
            ready.set()
            await stop.wait()
            nursery.cancel_scope.cancel()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the caller below
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="voxpipe-server", daemon=True)
    thread.start()
    if not ready.wait(STARTUP_TIMEOUT) or "url" not in box:
        raise RuntimeError(f"server did not start on {host}:{port}") from box.get("error")
    try:
        yield box["url"]
    finally:
        trio.from_thread.run_sync(stop_box["stop"].set, trio_token=token_box["token"])
        thread.join(SHUTDOWN_TIMEOUT + 5)
