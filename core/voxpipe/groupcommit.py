"""Group commit: blocking write calls from many trio tasks, applied in batches of one transaction each.

A durable commit costs a disk flush (SQLite ``synchronous=FULL``: an fsync of the WAL,
about 5-10 ms on a VM disk; PostgreSQL: a WAL flush) whatever it holds, and a ledger
serialises its writers, so streams finishing together that commit one by one queue up
behind each other's flushes: about 40 recordings/s at 4 commits per recording. Here each
caller hands over its call and waits; whoever finds no batch running becomes the
*leader*: it takes every call queued so far (up to :data:`MAX_BATCH`), runs them in one
worker-thread hop through the backend's ``run_batch`` (one transaction, one flush), wakes
their callers, and hands the leadership to the first caller still waiting, if any.
While a batch runs, new calls queue up for the next one, so the batch size adapts to the
load with no added delay: a lone caller commits at once.

Guarantees (what a caller sees is what one transaction per call gave):

- a call returns (or raises its own exception) only after the batch holding it is
  committed; a call that failed (e.g. an illegal ledger transition) is rolled back alone
  (the backend runs each call in a savepoint) and raises in its caller only;
- each caller's calls apply in the order it makes them (it waits for each), so a
  stream's state changes stay ordered; calls of different callers in one batch are
  independent;
- a crash loses only batches not yet committed, whose callers never went on: the
  database holds, for every stream, the last state it was told is durable;
- a caller cancelled before its call is taken into a batch withdraws it; once taken, it
  waits (shielded) for the batch to commit, as a worker-thread call would, then sees the
  cancellation.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

import outcome
import trio

#: Most calls in one batch (one transaction): bounds a batch's duration and memory.
MAX_BATCH = 256

#: ``run_batch(calls)``: run every call in one transaction, each in a savepoint, and
#: return one :class:`outcome.Outcome` per call (a failed call's Error, rolled back alone).
BatchRunner = Callable[[Sequence[Callable[[], Any]]], list[outcome.Outcome]]


class _Request:
    __slots__ = ("call", "result", "done", "taken", "lead")

    def __init__(self, call: Callable[[], Any]):
        self.call = call
        self.result: outcome.Outcome | None = None
        self.done = trio.Event()
        self.taken = False
        self.lead = False


class GroupCommit:
    """Batches blocking write calls into shared transactions (see the module docstring).

    :param run_batch: the backend's batch runner (e.g. :meth:`voxpipe.ledger.Ledger.run_batch`).
    :param limiter: worker threads the batches may use (default: trio's).
    """

    def __init__(self, run_batch: BatchRunner, *, limiter: trio.CapacityLimiter | None = None):
        self._run_batch = run_batch
        self._limiter = limiter
        self._queue: deque[_Request] = deque()
        self._leading = False
        #: Counters: batches run and calls committed through them (for benchmarks and tests).
        self.batches = 0
        self.calls = 0

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` (a blocking write) in the next batch; return its result or raise its error."""
        request = _Request(fn)
        self._queue.append(request)
        if not self._leading:
            self._leading = True
            request.lead = True
        if not request.lead:
            try:
                await request.done.wait()
            except trio.Cancelled:
                if not request.taken and not request.lead:
                    self._queue.remove(request)
                    raise
                with trio.CancelScope(shield=True):
                    await self._finish_waiting(request)
                raise
            await self._finish_waiting(request)
        else:
            with trio.CancelScope(shield=True):  # others' calls ride in this batch
                await self._lead()
        assert request.result is not None
        return request.result.unwrap()

    async def _finish_waiting(self, request: _Request) -> None:
        # Woken either because the batch holding the request committed, or to lead the next one.
        while request.result is None:
            if request.lead:
                with trio.CancelScope(shield=True):
                    await self._lead()
            else:
                await request.done.wait()

    async def _lead(self) -> None:
        """Run one batch starting with the queue's head, then hand the leadership over."""
        batch: list[_Request] = []
        while self._queue and len(batch) < MAX_BATCH:
            request = self._queue.popleft()
            request.taken = True
            batch.append(request)
        try:
            results = await trio.to_thread.run_sync(self._run_batch, [r.call for r in batch], limiter=self._limiter)
        except BaseException as exc:  # the batch as a whole failed (e.g. the database is gone)
            results = [outcome.Error(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))] * len(batch)
        self.batches += 1
        self.calls += len(batch)
        for request, result in zip(batch, results):
            request.result = result
            request.lead = False
            request.done.set()
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            successor.done.set()  # wakes it to lead; its own result is still to come
            successor.done = trio.Event()  # reset for its own completion
        else:
            self._leading = False
