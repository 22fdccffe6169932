"""Base classes for pipeline components: sources, transforms, verifiers and sinks.

A component class declares:

- ``type``: its name in YAML (``type: gzip``);
- ``Settings``: a :class:`voxpipe.settings.Settings` subclass (validated from YAML);
- a docstring whose first line is its one-line summary.

The engine creates one instance per pipeline with ``cls(settings, context)`` and, per
stream, asks it for a per-stream worker (``begin``). Per-stream workers are called by
one task at a time, so they need no locks.

Data flow for one stream (see ``docs/architecture.md``)::

    source.read ──► verifiers (see the bytes as received)
                └─► transforms ──► sinks (write, prepare) ──► commit | abort
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, ClassVar, Iterator, Mapping

import trio

from .model import Chunk, Deferral, Stream, StreamResult, StreamSpec, Verdict
from . import settings as _settings

if TYPE_CHECKING:  # pragma: no cover
    from .audit import AuditLog

log = logging.getLogger("voxpipe.components")


@dataclass
class PipelineContext:
    """What the engine gives every component of a pipeline.

    :ivar pipeline: the pipeline's name.
    :ivar state_dir: a directory for the pipeline's state (ledger, outbox, audit log).
    :ivar audit: the run's audit log, or ``None`` when disabled.
    :ivar services: shared objects registered by the engine (``ledger``, ``metrics``...).
    :ivar on_deferred: where :meth:`Source.defer` reports (the engine's run summary and
        observers); ``None`` outside a run.
    """

    pipeline: str
    state_dir: Path
    audit: "AuditLog | None" = None
    services: dict[str, Any] = field(default_factory=dict)
    on_deferred: "Callable[[Deferral], None] | None" = None


#: Seconds a source's default :meth:`Source.check_connect` waits for its first stream.
DISCOVERY_PEEK_TIMEOUT = 30.0


@dataclass(frozen=True)
class ConnectCheck:
    """The outcome of one check of ``voxpipe check --connect``.

    :ivar what: what was checked, short (``token``, ``discovery``, ``destination``, ``endpoint``).
    :ivar ok: whether it passed.
    :ivar detail: what was found, or what is wrong and where (a URL without secrets, a path).
    """

    what: str
    ok: bool
    detail: str


class Component:
    """Common base: holds ``settings`` and ``context``; ``aclose`` releases resources."""

    type: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Settings: ClassVar[type[_settings.Settings]] = _settings.NoSettings

    def __init__(self, settings: _settings.Settings, context: PipelineContext):
        self.settings = settings
        self.context = context

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    async def start(self, nursery: "trio.Nursery") -> None:
        """Start long-lived background tasks (delivery loops, servers) in ``nursery``.

        Called once per run, before the first stream. The nursery is cancelled after every
        component's :meth:`aclose` has returned, so ``aclose`` may wait (bounded) for
        background work to drain first.
        """

    async def aclose(self) -> None:
        """Release pipeline-wide resources (HTTP pools, servers). Idempotent."""

    async def check_connect(self) -> list[ConnectCheck]:
        """``voxpipe check --connect``: check that this component can reach what it needs
        (credentials accepted, a destination writable, an endpoint reachable) without
        downloading, storing or announcing any recording. A source is started first
        (:meth:`start`); a sink is not (it must not open outboxes or state to check).

        Return one :class:`ConnectCheck` per thing checked; an exception raised here is
        reported as a failed check with its message. Default: nothing to check. An object
        storage sink checks that its bucket exists and, when its settings ask for it, has
        Object Lock enabled.
        """
        return []


class Source(Component):
    """Produces streams: one per recording or call."""

    kind = "source"
    #: Whether ``read`` honours ``stream.resume_offset`` (start at that byte, validating
    #: the resource against ``stream.metadata["etag"]``). Set by sources that can.
    resumable: ClassVar[bool] = False
    #: Whether any worker may read a stream this source discovered (a finite batch of
    #: recordings whose spec metadata is JSON): with a shared ledger (PostgreSQL) one worker
    #: discovers into the ledger's queue and every worker claims from it. Live sources
    #: (a call connects to *this* process) leave it ``False`` and keep their own streams.
    #: ``read`` must cope with private (``_``) metadata values that are not JSON being
    #: absent (they are not queued).
    shareable: ClassVar[bool] = False

    def identity(self) -> str:
        """What this source reads from, without secrets: with the pipeline name it keys a
        shared ledger's rows, so two tenants' recording ids never collide. Default: the
        source type; sources with accounts or tenants add them (e.g. the OAuth client id)."""
        return self.type

    def defer(self, stream_id: str, reason: str, message: str = "", **details: Any) -> None:
        """Report that ``stream_id`` exists but is left for a later run (not yet readable at
        the vendor, e.g. still uploading): the run lists it as *deferred* in its summary,
        ``--json`` output and compliance report; it is not failed and counts no attempt.
        Call it from ``discover`` instead of yielding the stream; the source itself keeps
        whatever it needs to pick the stream up next time. ``details`` must be JSON values.
        """
        if self.context.on_deferred is not None:
            self.context.on_deferred(Deferral(stream_id, self.type, self.context.pipeline, reason, message,
                                              dict(details)))

    def discover(self) -> AsyncIterator[StreamSpec]:
        """Yield the streams to process, as an async generator.

        A batch source yields its recording ids and returns; a server source yields a
        spec each time a call connects and returns when told to stop.
        """
        raise NotImplementedError

    async def check_connect(self) -> list[ConnectCheck]:
        """Default: read the first stream :meth:`discover` yields (a listing's first page),
        within :data:`DISCOVERY_PEEK_TIMEOUT` seconds. Sources that wait for callers (a
        server) override this; sources with credentials check a token first."""
        discovered = self.discover()
        async with contextlib.aclosing(discovered):
            with trio.move_on_after(DISCOVERY_PEEK_TIMEOUT):
                async for spec in discovered:
                    return [ConnectCheck("discovery", True, f"lists streams (first: {spec.id})")]
                return [ConnectCheck("discovery", True, "lists no streams right now")]
        return [ConnectCheck("discovery", False, f"listed nothing within {DISCOVERY_PEEK_TIMEOUT:.0f} s")]

    def read(self, stream: Stream) -> AsyncIterator[Chunk]:
        """Yield the stream's bytes in order as :class:`Chunk` objects, as an async generator.

        Fills ``stream.metadata`` as it learns it (before the first chunk where possible).
        Raises :class:`voxpipe.errors.StreamError` (or a subclass) when the stream cannot
        be delivered; anything else is reported as an internal error of the source.
        """
        raise NotImplementedError


class TransformRun:
    """A transform's per-stream worker: bytes in, bytes out, in order."""

    def process(self, data: bytes) -> bytes:
        """Transform the next bytes of the stream (any length, possibly empty); return the
        output so far (possibly empty: a transform may hold a partial frame back)."""
        raise NotImplementedError

    def flush(self) -> bytes:
        """Return what is still buffered at the end of the stream."""
        return b""


class Transform(Component):
    """Changes the bytes on their way to the sinks (verifiers see them unchanged)."""

    kind = "transform"

    def begin(self, stream: Stream) -> TransformRun:
        """A fresh per-stream worker (per-stream state, e.g. a noise gate's envelope, lives there)."""
        raise NotImplementedError


class VerifierRun:
    """A verifier's per-stream worker.

    ``update`` is called with every chunk in order (in a worker thread when the chunk is
    large, so hashing runs beside the event loop); it may raise
    :class:`voxpipe.errors.VerificationError` to reject the stream early. ``finish``
    returns the verdict once the source is exhausted.
    """

    def update(self, chunk: Chunk) -> None:
        """See the next chunk (contiguous with the previous one); may raise
        :class:`voxpipe.errors.VerificationError` to stop the stream early."""
        raise NotImplementedError

    def finish(self) -> Verdict:
        """The verdict on the whole stream; digests to record go in ``Verdict.details``."""
        raise NotImplementedError


class Verifier(Component):
    """Judges the bytes as received from the source."""

    kind = "verifier"
    #: Digests of the whole stream as received that every passing verdict reports in its
    #: ``details`` (e.g. ``{"sha256"}``): the engine lets sinks reuse them (hash once).
    digests: ClassVar[frozenset[str]] = frozenset()

    def begin(self, stream: Stream) -> VerifierRun:
        """A fresh per-stream worker; ``stream.metadata`` may still grow while it runs
        (read expected values in ``finish``)."""
        raise NotImplementedError


class SinkWriter:
    """A sink's per-stream worker.

    Lifecycle: ``write``* → ``prepare`` → ``commit`` on success; ``abort`` at any point
    on failure (also after ``prepare``). ``prepare`` makes the data durable under a
    temporary name; ``commit`` makes it visible under its final name and returns what to
    record in the result's ``stored`` list. ``abort`` must be idempotent and must leave
    nothing under a final name.
    """

    #: Set by :meth:`Sink.resume`: the stream byte offset the resumed writer expects its
    #: next ``write`` at. ``None`` (the default): the offset of the ledger's checkpoint.
    #: A writer that cannot hold the bytes written since its durable state (an object
    #: store holds whole parts only) asks for an earlier offset, down to 0; the engine
    #: then reads the source from there and gives each writer only the bytes after its own
    #: offset (see ``docs/architecture.md``, resume).
    resume_offset: int | None = None

    async def write(self, chunk: Chunk) -> None:
        """Store the next chunk (offsets are contiguous; ``chunk.data`` is immutable bytes)."""
        raise NotImplementedError

    #: Optional: a synchronous ``threaded_write(data: bytes) -> None`` doing what :meth:`write`
    #: does, safe to call from a worker thread (never concurrently with this writer's other
    #: methods). When a writer has one, the engine calls it instead of :meth:`write`, in the
    #: same worker-thread hop as the verifiers' updates of the chunk (one hop per chunk).
    threaded_write: Any = None

    async def checkpoint(self) -> dict[str, Any] | None:
        """Make everything written so far durable and return what :meth:`Sink.resume` needs
        to continue from here (JSON-serialisable), or ``None`` if this writer cannot resume."""
        return None

    async def prepare(self) -> None:
        """Flush and fsync what was written (default: nothing to do)."""

    async def commit(self, result: StreamResult) -> Mapping[str, Any] | None:
        """Make the stream visible under its final name; return what to record in the
        result's ``stored`` list (e.g. ``{"path": ..., "sha256": ...}``) or ``None``."""
        raise NotImplementedError

    async def abort(self, result: StreamResult) -> None:
        """Discard (or quarantine) what was written; ``result.reason`` says why. Idempotent;
        runs under a cancel shield with a time limit."""
        raise NotImplementedError

    async def suspend(self, result: StreamResult) -> None:
        """The run is shutting down mid-stream and the stream will be resumed by a later
        run: keep what the last :meth:`checkpoint` made durable. Writers that cannot resume
        abort (the default)."""
        await self.abort(result)


class Sink(Component):
    """Stores or announces streams.

    A sink with ``announces = True`` (webhooks) receives no data worth storing; the engine
    commits it after every storing sink has committed, so its ``commit`` sees where the
    stream was stored, and calls its ``abort`` with the failed result otherwise.
    """

    kind = "sink"
    announces: ClassVar[bool] = False
    #: Whether :meth:`replay` can give back the bytes a checkpoint holds. A sink whose
    #: storage cannot be read back before it is complete (a multipart upload) sets this
    #: to ``False`` and resumes its writers at offset 0 (:attr:`SinkWriter.resume_offset`),
    #: so the verifiers see the re-read prefix from the source instead.
    replays: ClassVar[bool] = True
    #: Whether another machine can resume this sink's checkpoints (its partial state lives
    #: in shared storage, e.g. an S3 multipart upload). Otherwise a recording taken over
    #: from another worker restarts at byte 0 (see :mod:`voxpipe.ledger.leases`).
    shares_partial_state: ClassVar[bool] = False

    async def begin(self, stream: Stream) -> SinkWriter:
        """A fresh per-stream writer (open a temporary file, etc.)."""
        raise NotImplementedError

    async def resume(self, stream: Stream, checkpoint: dict[str, Any]) -> SinkWriter:
        """Reopen a writer from a :meth:`SinkWriter.checkpoint` taken by an earlier run.

        :raises voxpipe.errors.SinkError: the checkpoint is unusable (the engine then starts
            the stream from byte 0).
        """
        raise NotImplementedError

    def replay(self, checkpoint: dict[str, Any]) -> Iterator[bytes]:
        """Yield, in order, the stream bytes (as received) held by a checkpoint, so
        verifiers can catch up after a resume. Runs in a worker thread."""
        raise NotImplementedError

    def discard(self, checkpoint: dict[str, Any]) -> None:
        """Delete what a checkpoint holds (its stream will not be resumed)."""

    def cleanup_orphans(self, checkpoints: list[dict[str, Any]]) -> list[str]:
        """Delete temporaries a crash left behind, except those the given checkpoints hold;
        return what was deleted (paths, keys). Called once at the start of a run, in a
        worker thread.

        :param checkpoints: this sink's own resume states (as its writers' :meth:`SinkWriter.checkpoint`
            returned them) of every recording the ledger may still resume. The engine stores
            them opaquely: their shape is the sink's business.
        """
        return []

    def archive_dir(self) -> Path | None:
        """The directory this sink stores into, if any (the default home of pipeline state)."""
        return None

    def destination(self) -> str | None:
        """Where this sink stores, for people (run summaries, ``check --connect``): a
        directory by default (:meth:`archive_dir`); an object-storage sink returns its
        ``s3://bucket/prefix``."""
        path = self.archive_dir()
        return str(path) if path is not None else None


KINDS: tuple[str, ...] = ("source", "transform", "verifier", "sink")


async def aclose_all(components: list[Component], timeout: float) -> None:
    """``aclose`` every component, newest first, under a cancel shield, all within
    ``timeout`` seconds; a component that fails to close is logged and the others go on."""
    with trio.CancelScope(shield=True), trio.move_on_after(timeout):
        for component in reversed(components):
            try:
                await component.aclose()
            except Exception:
                log.exception("%s %r failed to close", component.kind, component.type)
