"""Async access to a ledger from trio code: every call runs in a worker thread.

The backends block (SQLite commits with fsync and serialises writers on a lock;
PostgreSQL waits on the network), so a call made on the event loop would stall every
stream for its duration. :class:`AsyncLedger` offers the :class:`LedgerBackend`
methods as coroutines that run the blocking call with ``trio.to_thread.run_sync``,
at most :data:`LEDGER_THREADS` at once.
"""

from __future__ import annotations

import functools
from typing import Any

import trio

from .interface import LedgerBackend

#: Ledger calls in flight at once per process (each holds a worker thread).
LEDGER_THREADS = 8

_METHODS = ("close", "get", "recordings", "counts", "held_checkpoints", "start_run", "heartbeat", "finish_run", "runs",
            "workers", "outcomes", "record_outcome", "begin_discovery", "end_discovery", "enqueue", "claim",
            "queue_status", "acquire", "begin_attempt", "checkpoint", "clear_checkpoint", "verified", "finish",
            "reset", "forget")


class AsyncLedger:
    """``await ledger.get(source, id)`` etc.: :class:`LedgerBackend`'s methods, off the event loop.

    :ivar backend: the blocking ledger, for code that already runs in a worker thread.
    """

    def __init__(self, backend: LedgerBackend):
        self.backend = backend
        self.location = backend.location
        self.shared = backend.shared
        self._limiter = trio.CapacityLimiter(LEDGER_THREADS)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``backend.<name>(*args, **kwargs)`` in a worker thread."""
        if name not in _METHODS:
            raise AttributeError(f"the ledger has no method {name!r}")
        return await trio.to_thread.run_sync(functools.partial(getattr(self.backend, name), *args, **kwargs),
                                             limiter=self._limiter)

    def __getattr__(self, name: str) -> Any:
        if name not in _METHODS:
            raise AttributeError(name)
        return functools.partial(self.call, name)

    def __repr__(self) -> str:
        return f"AsyncLedger({self.backend!r})"
