"""Parallel ranged downloads: one resource fetched by up to N concurrent segment requests.

Like aria2's split downloads: the resource's segments (:func:`.ranges.plan_segments`)
are fetched by up to ``connections`` concurrent requests, each a span download with the
sequential downloader's rules (:class:`.downloader.RangedDownload`: exact
``Content-Range``, resume inside the segment after a drop, ``If-Range``, 429/5xx/JSON-error
retries), and handed on **in order** as one chunk stream with strictly increasing,
contiguous offsets.

Bounded memory: at most ``connections`` segments are in flight or buffered at once (the
head segment is passed on as it arrives; the others are held until the head reaches
them), so a stream holds at most ``connections × segment_size`` bytes, never the whole
recording.

ETag consistency: every segment response must carry the same ETag (the first one seen,
or the one a checkpoint recorded); a different one means the recording changed between
two requests and raises :class:`~voxpipe.errors.StreamRestart` (the stream starts again
from byte 0; splicing two versions is never possible).

Global cap: every in-flight segment request holds a slot of a :class:`trio.CapacityLimiter`
shared by all streams of a source (sized to the HTTP pool's ``max_connections``). Segment
workers never wait for the consumer (they append to their own bounded buffer), so slots
are always released and the cap cannot deadlock the reassembly.

Structure (trio): the reassembly runs as a task in a long-lived nursery supplied by the
caller (a source's service nursery, :meth:`voxpipe.components.Component.start`), with its
own nursery of segment workers; chunks reach :meth:`ParallelDownload.chunks` through an
unbuffered memory channel. No nursery is held open across a ``yield``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import httpx
import trio

from ..errors import StreamError, StreamRestart
from ..model import Chunk
from .downloader import DownloadStats, RangedDownload
from .ranges import Segment, plan_segments

#: Most concurrent segment requests one stream may use (aria2's ``--split`` default cap is 16).
MAX_CONNECTIONS_PER_STREAM = 16


@dataclass
class _Slot:
    """One segment being fetched: its bytes so far (bounded by the segment's length)."""

    segment: Segment
    chunks: deque[Chunk] = field(default_factory=deque)
    done: bool = False


class ParallelDownload:
    """Downloads one resource of known ``size`` with up to ``connections`` concurrent requests.

    Parameters as :class:`~.downloader.RangedDownload` (those not named here are passed
    through to each segment's request unchanged), plus:

    :param connections: concurrent segment requests for this resource (1 .. 16).
    :param nursery: a long-lived nursery that runs the reassembly task.
    :param slots: the source-wide cap on in-flight segment requests (``None``: no cap).
    :raises ValueError: ``size`` unknown, ``connections`` out of range.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, *, recording_id: str, size: int, segment_size: int,
                 connections: int, nursery: trio.Nursery, slots: trio.CapacityLimiter | None = None,
                 etag: str | None = None, start: int = 0, **request_options: Any):
        if size is None or size < 0:
            raise ValueError(f"recording {recording_id}: a parallel download needs the size in bytes, got {size}")
        if not 1 <= connections <= MAX_CONNECTIONS_PER_STREAM:
            raise ValueError(f"connections must be 1..{MAX_CONNECTIONS_PER_STREAM}, got {connections}")
        self.client = client
        self.url = url
        self.recording_id = recording_id
        self.size = size
        self.segment_size = segment_size
        self.connections = connections
        self.nursery = nursery
        self.slots = slots
        self.etag = etag
        #: Passed unchanged to every segment's RangedDownload (auth, on_401, on_segment,
        #: on_response, policy, read_size, params, rng, limiter).
        self.request_options = request_options
        self.stats = DownloadStats()
        #: Next byte to deliver to the consumer.
        self.position = start
        #: Most bytes held in segment buffers at once (for tests and stats).
        self.peak_buffered = 0
        self._buffered = 0
        self._error: BaseException | None = None
        self._wake = trio.Event()
        self._complete = False

    def segments(self) -> list[Segment]:
        """The segments still to fetch, the first one starting at :attr:`position`."""
        out = []
        for seg in plan_segments(self.size, self.segment_size):
            if seg.end >= self.position:
                out.append(Segment(max(seg.start, self.position), seg.end))
        return out

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield the resource's bytes from :attr:`position` in order.

        :raises StreamRestart: segments disagree on the ETag, or the resource changed.
        :raises StreamError: as :meth:`RangedDownload.chunks`; reason ``download-cancelled``
            when the service nursery was cancelled under the download.
        """
        send, receive = trio.open_memory_channel[Chunk](0)
        scope: trio.CancelScope = await self.nursery.start(self._reassemble, send)
        try:
            async with receive:
                async for chunk in receive:
                    self.position = chunk.end
                    yield chunk
        finally:
            scope.cancel()
        if self._error is not None:
            raise self._error
        if not self._complete:
            raise StreamError(f"recording {self.recording_id}: download cancelled at byte {self.position}",
                              reason="download-cancelled")

    def _check_etag(self, worker: RangedDownload) -> None:
        if worker.etag is None:
            return
        if self.etag is None:
            self.etag = worker.etag
        elif worker.etag != self.etag:
            raise StreamRestart(f"recording {self.recording_id}: segment at byte {worker.position} carries ETag "
                                f"{worker.etag}, other segments {self.etag}; the recording changed during the "
                                f"download", reason="etag-changed")

    async def _worker(self, slot: _Slot) -> None:
        """Fetch one segment into ``slot``; never raises (errors go to the reassembly)."""
        seg = slot.segment
        worker = RangedDownload(
            self.client, self.url, recording_id=self.recording_id, size=self.size, segment_size=self.segment_size,
            etag=self.etag, start=seg.start, stop=seg.end + 1, **self.request_options)
        try:
            async with self.slots if self.slots is not None else _NO_CAP:
                async for chunk in worker.chunks():
                    self._check_etag(worker)
                    slot.chunks.append(chunk)
                    self._buffered += len(chunk.data)
                    self.peak_buffered = max(self.peak_buffered, self._buffered)
                    self._wake.set()
            if worker.position != seg.end + 1:
                raise StreamError(f"recording {self.recording_id}: segment {seg.range_header()} ended at byte "
                                  f"{worker.position}", reason="download-failed")
            slot.done = True
        except Exception as exc:  # handed to the reassembly task, which raises it in the consumer
            if self._error is None:
                self._error = exc
        finally:
            for name in ("requests", "retries", "rate_limited", "bytes"):
                setattr(self.stats, name, getattr(self.stats, name) + getattr(worker.stats, name))
            self._wake.set()

    async def _reassemble(self, send: trio.MemorySendChannel[Chunk],
                          task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with send, trio.open_nursery() as workers:
                pending = iter(self.segments())
                window: deque[_Slot] = deque()

                def launch() -> None:
                    seg = next(pending, None)
                    if seg is not None:
                        slot = _Slot(seg)
                        window.append(slot)
                        workers.start_soon(self._worker, slot)

                for _ in range(self.connections):
                    launch()
                while window and self._error is None:
                    head = window[0]
                    while head.chunks and self._error is None:
                        chunk = head.chunks.popleft()
                        self._buffered -= len(chunk.data)
                        await send.send(chunk)
                    if self._error is not None:
                        break
                    if head.done and not head.chunks:
                        window.popleft()
                        launch()
                        continue
                    self._wake = trio.Event()
                    await self._wake.wait()
                if self._error is None:
                    self._complete = True
                workers.cancel_scope.cancel()


class _NoCap:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_CAP = _NoCap()


def effective_connections(size: int | None, segment_size: int, connections: int, start: int = 0) -> int:
    """Concurrent requests worth opening: no more than the segments left (1 when the size is unknown)."""
    if not size or connections <= 1:
        return 1
    return max(1, min(connections, math.ceil(max(0, size - start) / segment_size)))
