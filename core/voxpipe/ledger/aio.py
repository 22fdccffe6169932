"""Async access to a ledger from trio code: every call runs in a worker thread.

The backends block (SQLite commits with fsync and serialises writers on a lock;
PostgreSQL waits on the network), so a call made on the event loop would stall every
stream for its duration. :class:`AsyncLedger` offers the :class:`LedgerBackend`
methods as coroutines that run the blocking call with ``trio.to_thread.run_sync``,
at most :data:`LEDGER_THREADS` at once.

Group commit: with a backend that has ``run_batch`` (SQLite), the per-recording writes
(:data:`GROUP_COMMITTED`) of streams changing state together share one transaction and
one fsync (:mod:`voxpipe.groupcommit`): each caller still waits for its own change to be
committed and gets its own result or error. PostgreSQL commits each call on its own
pooled connection, and the server's WAL flushes already serve concurrent commits together.
"""

from __future__ import annotations

import functools
from typing import Any

import trio

from ..groupcommit import GroupCommit
from .interface import LedgerBackend

#: Ledger calls in flight at once per process (each holds a worker thread).
LEDGER_THREADS = 8

_METHODS = ("close", "get", "recordings", "counts", "held_checkpoints", "start_run", "heartbeat", "finish_run", "runs",
            "workers", "outcomes", "record_outcome", "begin_discovery", "end_discovery", "enqueue", "claim",
            "queue_status", "acquire", "begin_attempt", "checkpoint", "clear_checkpoint", "verified", "finish",
            "reset", "forget", "get_watermark", "set_watermark")


#: Writes of one recording's attempt that go through the group commit (when the backend can).
GROUP_COMMITTED = frozenset({"acquire", "begin_attempt", "checkpoint", "clear_checkpoint", "verified", "finish",
                             "record_outcome"})


class AsyncLedger:
    """``await ledger.get(source, id)`` etc.: :class:`LedgerBackend`'s methods, off the event loop.

    :ivar backend: the blocking ledger, for code that already runs in a worker thread.
    """

    def __init__(self, backend: LedgerBackend):
        self.backend = backend
        self.location = backend.location
        self.shared = backend.shared
        self._limiter = trio.CapacityLimiter(LEDGER_THREADS)
        run_batch = getattr(backend, "run_batch", None)
        #: The group commit of :data:`GROUP_COMMITTED` writes, or ``None`` (one transaction per call).
        self.group = GroupCommit(run_batch, limiter=self._limiter) if run_batch is not None else None

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``backend.<name>(*args, **kwargs)`` in a worker thread."""
        if name not in _METHODS:
            raise AttributeError(f"the ledger has no method {name!r}")
        if self.group is not None and name in GROUP_COMMITTED:
            return await self.group.call(functools.partial(getattr(self.backend, name), *args, **kwargs))
        return await trio.to_thread.run_sync(functools.partial(getattr(self.backend, name), *args, **kwargs),
                                             limiter=self._limiter)

    def __getattr__(self, name: str) -> Any:
        if name not in _METHODS:
            raise AttributeError(name)
        return functools.partial(self.call, name)

    def __repr__(self) -> str:
        return f"AsyncLedger({self.backend!r})"
