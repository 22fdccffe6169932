"""The engine: runs a pipeline's streams concurrently on trio.

Per pipeline run (see ``docs/architecture.md``):

- the source's ``discover`` yields stream specs; a semaphore admits at most
  ``concurrency`` streams at once, so discovery waits while the pipeline is full;
- per stream, a producer task reads the source and sends each chunk into one bounded
  memory channel per verifier and, after the transforms, one per sink. A slow consumer
  fills its channel and blocks the producer, which stops reading the network: memory per
  stream is bounded by ``STREAM_CHANNEL_CHUNKS`` chunks per consumer, whatever the
  recording's size;
- verifier updates of large chunks run in worker threads (hashlib and zlib release the
  GIL), so hashing and compression use both cores while the event loop downloads. The
  verifiers and every sink writer that can write from a worker thread
  (:attr:`voxpipe.components.SinkWriter.threaded_write`, e.g. the file and gzip sinks) share
  one consumer: each large chunk is hashed by the verifiers and compressed, hashed and
  written by those sinks in one worker-thread hop, not one hop per consumer;
- commit protocol: when the source is exhausted, every verifier gives its verdict; only
  if all pass are the sinks prepared (fsync) and committed (rename), storing sinks first,
  announcing sinks (webhooks) last. Otherwise, or on any error, every sink aborts;
- every ledger call runs in a worker thread (:class:`voxpipe.ledger.AsyncLedger`); each
  stream holds a lease on its recording, renewed by a heartbeat, and every state change is
  fenced by it. With a shared ledger (PostgreSQL) and a shareable source, one worker
  discovers into the ledger's queue and every worker claims from it (``docs/scaling.md``);
- a stream's failure never stops the others; a retryable failure (the server's content
  changed mid-download) restarts that stream from byte 0 up to ``max_stream_attempts``;
- :meth:`Runner.request_stop` (SIGINT/SIGTERM) stops admitting streams and gives those
  in flight ``shutdown_grace`` seconds before cancelling them; cancelled streams abort
  their sinks under a cancel shield, so no partial file remains under a final name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from .audit import AuditLog
from .components import Component, PipelineContext, Sink, SinkWriter, Source, TransformRun, VerifierRun
from .config import ComponentConfig, PipelineConfig
from . import runlock
from .errors import RunError, StateFileError, StorageError, StreamError, VerificationError
from .statefiles import check_sqlite, no_space, storage_error
from .facts import PhoneNumberPolicy, RecordingFacts
from .ledger import (AsyncLedger, Claim, Finish, LeaseBusy, LeaseLost, LedgerBackend, LedgerError, RecordingState,
                     RunHandle, open_ledger)
from .ledger.locate import LEDGER_FILE, is_url
from .ledger.leases import Resume, resume_plan
from .ledger.worker import Held, LeaseKeeper, drain, host_of, worker_id
from .model import Chunk, Deferral, Stream, StreamResult, StreamSpec, Verdict
from .observer import MAX_DEFERRALS_LISTED, ObserverFanout, RunObserver, RunSummary  # noqa: F401 (public here too)
from .report import write_run_report

log = logging.getLogger("voxpipe.engine")

#: Chunks buffered between a stream's producer and each of its consumers.
STREAM_CHANNEL_CHUNKS = 4
#: Verifier updates of chunks at least this large run in a worker thread.
THREAD_OFFLOAD_MIN_BYTES = 64 * 1024
#: Seconds a sink's abort may take before it is abandoned (it runs under a cancel shield).
ABORT_TIMEOUT = 15.0
#: Seconds components get to release resources at the end of a run.
ACLOSE_TIMEOUT = 10.0


def state_dir_of(config: PipelineConfig, sinks: list[Sink]) -> Path:
    """The pipeline's state directory, not created: ``state_dir``, else ``.voxpipe/<pipeline>``
    inside the first sink's archive directory, else under the working directory."""
    if config.settings.state_dir is not None:
        return Path(config.settings.state_dir)
    base = next((d for s in sinks if (d := s.archive_dir()) is not None), None)
    return (Path(base) if base is not None else Path(".")) / ".voxpipe" / config.name


def state_dir_for(config: PipelineConfig, sinks: list[Sink]) -> Path:
    """The pipeline's state directory (:func:`state_dir_of`), created."""
    path = state_dir_of(config, sinks)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Runner:
    """Runs one pipeline once. Create, then ``await runner.run()``.

    :param config: the validated pipeline.
    :param observer: receives progress events.
    :param services: shared objects handed to components through the context.
    """

    def __init__(self, config: PipelineConfig, *, observer: RunObserver | None = None,
                 services: dict[str, Any] | None = None):
        self.config = config
        self.settings = config.settings
        self.observer = observer or RunObserver()
        self.services = dict(services or {})
        self._stopping = False
        self._discover_scope: trio.CancelScope | None = None
        self._streams_scope: trio.CancelScope | None = None
        self._run_lock: runlock.RunLock | None = None
        self.summary = RunSummary(pipeline=config.name)
        self._phone_policy = PhoneNumberPolicy(
            self.settings.phone_numbers,
            self.settings.phone_number_key.get_secret_value() if self.settings.phone_number_key else None)
        self.worker = worker_id()
        self.ledger: AsyncLedger | None = None
        self.keeper: LeaseKeeper | None = None

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop admitting streams; cancel in-flight ones after ``shutdown_grace`` seconds."""
        if self._stopping:
            return
        self._stopping = True
        self.summary.interrupted = True
        if self._discover_scope is not None:
            self._discover_scope.cancel()
        if self._streams_scope is not None:
            self._streams_scope.deadline = min(self._streams_scope.deadline,
                                               trio.current_time() + self.settings.shutdown_grace)

    def cancel_now(self) -> None:
        """Abort every in-flight stream at once."""
        self.request_stop()
        if self._streams_scope is not None:
            self._streams_scope.cancel()

    # ------------------------------------------------------------------ run

    async def run(self) -> RunSummary:
        """Run every stream the source yields; returns when all have ended or the run is stopped."""
        summary = self.summary
        summary.started_at = time.time()
        context = self.context = PipelineContext(pipeline=self.config.name, state_dir=Path("."),
                                                 services=self.services, on_deferred=self._deferred)
        components: list[Component] = []
        audit: AuditLog | None = None
        run: RunHandle | None = None
        try:
            self.sinks = [self._make(c, context, components) for c in self.config.sinks]
            summary.destinations = [d for s in self.sinks if not s.announces and (d := s.destination())]
            with _storage_step(self.settings.state_dir or "state_dir", "creating the state directory"):
                context.state_dir = state_dir_for(self.config, self.sinks)
            summary.state_dir = context.state_dir
            shared = is_url(self.settings.ledger)  # PostgreSQL: workers join one run instead of excluding
            if not shared:
                with _storage_step(context.state_dir / runlock.LOCK_FILE, "taking the run lock"):
                    self._run_lock = await runlock.acquire(context.state_dir, self.config.name,
                                                           on_overlap=self.settings.on_overlap,
                                                           wait_seconds=self.settings.overlap_wait)
            audit_path = self.settings.audit_log or context.state_dir / "audit.jsonl"
            with _storage_step(audit_path, "opening the audit log"):
                audit = context.audit = AuditLog(audit_path)
            self.source: Source = self._make(self.config.source, context, components)
            ledger_file = None if shared else Path(self.settings.ledger or context.state_dir / LEDGER_FILE)
            if ledger_file is not None:
                await trio.to_thread.run_sync(functools.partial(
                    check_sqlite, ledger_file, what="ledger", tables=LEDGER_TABLES, consequence=LEDGER_ASIDE))
            with _storage_step(ledger_file, "opening the ledger"):
                backend: LedgerBackend = await trio.to_thread.run_sync(functools.partial(
                    open_ledger, self.settings.ledger, state_dir=context.state_dir, pipeline=self.config.name,
                    identity=self.source.identity()))
                self.ledger = AsyncLedger(backend)
                summary.ledger_location = backend.location
                summary.ledger_path = getattr(backend, "path", None)
                context.services.setdefault("ledger", self.ledger)
                run = self.run = await self.ledger.start_run(self.config.name, worker=self.worker,
                                                              lease_seconds=self.settings.lease_seconds)
            run_id = self.run_id = run.run_id
            self.keeper = LeaseKeeper(self.ledger, run, lease_seconds=self.settings.lease_seconds,
                                      heartbeat_seconds=self.settings.heartbeat_seconds)
            self.transforms = [self._make(c, context, components) for c in self.config.transforms]
            self.verifiers = [self._make(c, context, components) for c in self.config.verifiers]
            with _storage_step(audit_path, "writing the audit log"):
                audit.write("run-start", pipeline=self.config.name, pid=os.getpid(), run_id=run_id,
                            worker=self.worker, joined=run.joined)
            if not run.joined:  # a joining worker's peers have temporaries in flight
                with _storage_step(context.state_dir, "removing orphaned temporary files"):
                    await self._cleanup_orphans()
            self.observer.run_started(self.config)
            async with trio.open_nursery() as services:
                await services.start(self.keeper.run_forever)
                try:
                    for component in components:
                        try:
                            await component.start(services)
                        except Exception as exc:
                            primary = _primary_error(exc)
                            if isinstance(primary, (StateFileError, StorageError)):
                                raise primary from None  # its own message and exit code (broken outbox, full disk)
                            raise RunError(f"{component.kind} {component.type!r} failed to start: "
                                           f"{primary}") from exc
                    await self._run_streams()
                finally:
                    await self._close(components)
                    services.cancel_scope.cancel()
        finally:
            await self._close(components)
            summary.finished_at = time.time()
            if audit is not None:
                try:
                    audit.write("run-end", pipeline=self.config.name, streams=len(summary.results),
                                failed=len(summary.failed), deferred=summary.deferred_count,
                                bytes=summary.bytes, interrupted=summary.interrupted)
                    audit.close()
                except OSError as exc:  # a full disk must not hide the run's own outcome or error
                    # when the run is already failing (e.g. with this very disk), that error says it once
                    level = logging.DEBUG if sys.exc_info()[0] is not None else logging.ERROR
                    log.log(level, "%s: cannot finish the audit log: %s", audit.path, exc.strerror or exc)
            if self.ledger is not None:
                with trio.CancelScope(shield=True):
                    if run is not None:
                        try:
                            await self.ledger.finish_run(run, interrupted=summary.interrupted)
                        except Exception:
                            log.exception("could not record the end of run %s in %s", run.run_id,
                                          self.ledger.location)
                        await trio.to_thread.run_sync(self._write_report, run.run_id, context.state_dir)
                    await self.ledger.close()
            if self._run_lock is not None:
                self._run_lock.release()
        self.observer.run_finished(summary)
        return summary

    def _deferred(self, deferral: Deferral) -> None:
        summary = self.summary
        summary.deferred_count += 1
        if len(summary.deferred) < MAX_DEFERRALS_LISTED:
            summary.deferred.append(deferral)
        self.observer.stream_deferred(deferral)

    def _write_report(self, run_id: int, state_dir: Path) -> None:
        """The run's compliance report (``voxpipe.report``); a failure is logged, never fatal."""
        try:
            paths = write_run_report(self.ledger.backend, run_id, state_dir, deferred=self.summary.deferred)
        except Exception:
            log.exception("could not write the compliance report of run %s", run_id)
        else:
            self.summary.report_paths = paths

    async def _close(self, components: list[Component]) -> None:
        """aclose every component once, newest first, bounded by ACLOSE_TIMEOUT, shielded."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(ACLOSE_TIMEOUT):
                while components:
                    component = components.pop()
                    try:
                        await component.aclose()
                    except Exception:
                        log.exception("%s %r failed to close", component.kind, component.type)

    def _make(self, cfg: ComponentConfig, context: PipelineContext, components: list[Component]) -> Any:
        component = cfg.info.cls(cfg.settings, context)
        components.append(component)
        return component

    async def _cleanup_orphans(self) -> None:
        """Delete temporary files left by a crash, except those a resumable checkpoint holds."""
        storing = [s for s in self.sinks if not s.announces]
        keep: list[list[dict[str, Any]]] = [[] for _ in storing]
        for checkpoint in await self.ledger.held_checkpoints():
            entries = checkpoint.get("sinks", [])
            if len(entries) == len(storing):  # one opaque resume state per storing sink, in order
                for held, entry in zip(keep, entries):
                    held.append(entry)
        for sink, held in zip(storing, keep):
            removed = await trio.to_thread.run_sync(sink.cleanup_orphans, held)
            for path in removed:
                self.context.audit.write("orphan-removed", pipeline=self.config.name, sink=sink.type, path=path)

    @property
    def _can_resume(self) -> bool:
        return self.source.resumable and not self.transforms

    async def _run_streams(self) -> None:
        if self.ledger.shared and self.source.shareable:
            await self._run_shared()
            return
        admit = trio.Semaphore(self.settings.concurrency)
        async with trio.open_nursery() as nursery:
            self._streams_scope = nursery.cancel_scope

            async def admit_one(spec: StreamSpec) -> None:
                if not await self._skip(spec):
                    await admit.acquire()
                    nursery.start_soon(self._stream_task, spec, admit)

            # streams already started go on after a discovery failure; the run reports it
            await self._each_discovered(admit_one)

    async def _each_discovered(self, handle: Callable[[StreamSpec], Awaitable[None]]) -> tuple[bool, str | None]:
        """Run the source's discovery, ``await handle(spec)`` for each spec, under a cancel
        scope that :meth:`request_stop` cancels. Returns ``(stopped, error)``: whether the
        stop request ended it, and why it failed (also recorded in the summary and audit log)."""
        with trio.CancelScope() as scope:
            self._discover_scope = scope
            if self._stopping:
                scope.cancel()
            discovered = self.source.discover()
            count = 0
            try:
                async with contextlib.aclosing(discovered):
                    async for spec in discovered:
                        count += 1
                        self.observer.stream_discovered(spec)
                        await handle(spec)
            except Exception as exc:
                return False, self._discovery_failed(exc)
            finally:
                self.observer.discovery_finished(count)
        return scope.cancelled_caught, None

    def _discovery_failed(self, exc: BaseException) -> str:
        error = _primary_error(exc)
        if not isinstance(error, StreamError):
            log.error("%s: discovery failed", self.config.name, exc_info=error)
        self.summary.discovery_error = f"{self.config.source.type} discovery failed: {error}"
        self.context.audit.write("discovery-failed", pipeline=self.config.name, message=self.summary.discovery_error)
        return self.summary.discovery_error

    async def _run_shared(self) -> None:
        """Shared ledger: claim from the run's queue (and discover into it, if this worker should)."""
        admit = trio.Semaphore(self.settings.concurrency)
        async with trio.open_nursery() as nursery:
            self._streams_scope = nursery.cancel_scope

            def start(claim: Claim) -> None:
                nursery.start_soon(self._stream_task, _claimed_spec(claim), admit, claim)

            await drain(self.ledger, self.run, admit=admit, lease_seconds=self.settings.lease_seconds, start=start,
                        stopping=lambda: self._stopping, discover=self._discover_into_queue, nursery=nursery)

    async def _discover_into_queue(self) -> None:
        """Run the source's discovery into the shared queue, in batches (idempotent)."""
        source = self.config.source.type
        batch: list[tuple[str, dict[str, Any]]] = []
        flushed = time.monotonic()

        async def flush() -> None:
            settled = await self.ledger.enqueue(self.run, source, batch,
                                                max_attempts_total=self.settings.max_attempts_total)
            batch.clear()
            for state in settled:
                await self._settle(state.id, state)

        async def queue(spec: StreamSpec) -> None:
            nonlocal flushed
            batch.append((spec.id, _queue_metadata(spec, self._phone_policy)))
            if len(batch) >= ENQUEUE_BATCH or time.monotonic() - flushed >= ENQUEUE_FLUSH_SECONDS:
                await flush()
                flushed = time.monotonic()

        stopped, error = await self._each_discovered(queue)
        if stopped:
            return  # another worker takes discovery over once this one's heartbeat ends
        if batch and error is None:
            try:
                await flush()
            except Exception as exc:
                error = self._discovery_failed(exc)
        try:
            await self.ledger.end_discovery(self.run, error=error)
        except LedgerError as exc:  # still "running" under this worker: the claim loop runs it again
            log.warning("could not record the end of discovery (%s); it will be repeated", exc)

    async def _skip(self, spec: StreamSpec) -> bool:
        """Settle streams the ledger says need no attempt: stored already, or out of attempts."""
        state = await self.ledger.get(self.config.source.type, spec.id)
        if state is None:
            return False
        return await self._settle(spec.id, state)

    async def _settle(self, recording_id: str, state: RecordingState) -> bool:
        source = self.config.source.type
        spec = StreamSpec(recording_id)
        result = StreamResult(id=spec.id, source=source, pipeline=self.config.name, attempts=state.attempts,
                              started_at=time.time(), digests={"sha256": state.sha256} if state.sha256 else {})
        if state.state == "stored":
            result.ok = result.skipped = True
            result.reason, result.message = "already-stored", f"recording {spec.id} was stored by an earlier run"
            result.stored = state.stored or []
        elif state.state == "failed" and state.attempts >= self.settings.max_attempts_total:
            result.reason = "attempts-exhausted"
            result.message = (f"recording {spec.id}: failed {state.attempts} times (last: {state.message}); "
                              f"max_attempts_total is {self.settings.max_attempts_total}")
        else:
            return False
        result.finished_at = time.time()
        self.summary.results.append(result)
        await self.ledger.record_outcome(self.run_id, source, spec.id, result.status, result.to_dict())
        self.context.audit.write("stream", pipeline=self.config.name, source=source, stream=spec.id,
                                 status=result.status, reason=result.reason, message=result.message)
        self.observer.stream_finished(result)
        return True

    async def _stream_task(self, spec: StreamSpec, admit: trio.Semaphore, claim: Claim | None = None) -> None:
        held: Held | None = None
        try:
            if claim is None:
                try:
                    lease = await self.ledger.acquire(self.config.source.type, spec.id, run=self.run,
                                                      lease_seconds=self.settings.lease_seconds)
                except LeaseBusy as exc:  # another worker of a shared ledger has it in flight
                    self._elsewhere(spec, exc)
                    return
                takeover = False
            else:
                lease, takeover = claim.lease, claim.takeover and self.ledger.shared
            held = self.keeper.hold(lease)
            with held.scope:
                for attempt in range(1, self.settings.max_stream_attempts + 1):
                    begun = claim.attempt if claim is not None and attempt == 1 else None
                    result, retry = await self._attempt(spec, attempt, held, takeover, begun)
                    if result.ok or not retry or self._stopping or held.lost:
                        break
                    log.warning("stream %s: %s; restarting from byte 0 (attempt %d of %d)", spec.id, result.message,
                                attempt + 1, self.settings.max_stream_attempts)
        finally:
            if held is not None:
                self.keeper.release(held)
            admit.release()

    # ------------------------------------------------------------------ one stream

    async def _open_writers(self, stream: Stream, result: StreamResult, writers: list[tuple[Sink, SinkWriter]],
                            held: Held, takeover: bool) -> list[dict[str, Any]] | None:
        """Begin (or resume, from the ledger's checkpoint) every sink's writer.

        Returns the storing sinks' checkpoint entries when resuming, else ``None``.
        """
        state = await self.ledger.get(stream.source, stream.id)
        checkpoint = state.checkpoint if state and state.resume_offset and state.checkpoint else None
        entries = checkpoint.get("sinks") if checkpoint else None
        storing = [s for s in self.sinks if not s.announces]
        if entries is not None:
            plan = resume_plan(checkpoint_host=checkpoint.get("host"), my_host=host_of(self.worker) or "",
                               takeover=takeover and stream.attempt == 1,
                               sinks_share_state=all(s.shares_partial_state for s in storing),
                               can_resume=self._can_resume, first_attempt=stream.attempt == 1,
                               entries_match=len(entries) == len(storing))
            if plan is not Resume.RESUME:
                if plan is Resume.DISCARD:
                    await self._discard(storing, entries)
                entries = None
        if entries is not None:
            try:
                for sink, entry in zip(storing, entries):
                    writers.append((sink, await sink.resume(stream, entry)))
            except StreamError as exc:
                log.warning("stream %s: cannot resume (%s); starting from byte 0", stream.id, exc)
                await self._abort_all(writers, result)
                writers.clear()
                await self._discard(storing, entries)
                entries = None
            else:
                # each writer may ask for an earlier offset than the ledger's (it holds less,
                # e.g. only whole multipart-upload parts): read the source from the earliest
                for _, writer in writers:
                    if writer.resume_offset is None:
                        writer.resume_offset = state.resume_offset
                stream.resume_offset = result.resumed_from = min(w.resume_offset for _, w in writers)
                if state.etag:
                    stream.metadata["etag"] = state.etag
                if state.size is not None:
                    stream.metadata["size"] = state.size
        if entries is None:
            if state is not None and state.resume_offset:
                await self.ledger.clear_checkpoint(held.lease)
            for sink in storing:
                writers.append((sink, await sink.begin(stream)))
        for sink in self.sinks:
            if sink.announces:
                writers.append((sink, await sink.begin(stream)))
        return entries

    async def _discard(self, sinks: list[Sink], entries: list[dict[str, Any]]) -> None:
        for sink, entry in zip(sinks, entries):
            try:
                await trio.to_thread.run_sync(sink.discard, entry)
            except Exception:
                log.exception("sink %r failed to discard a checkpoint", sink.type)

    async def _attempt(self, spec: StreamSpec, attempt: int, held: Held, takeover: bool, begun: int | None = None
                       ) -> tuple[StreamResult, bool]:
        """One attempt of a stream under ``held``'s lease; ``begun``: the attempt number a
        claim already counted (else :meth:`LedgerBackend.begin_attempt` counts it)."""
        stream = Stream(spec, source=self.config.source.type, pipeline=self.config.name,
                        audit=self.context.audit, attempt=attempt, on_event=self.observer.stream_event,
                        phone_policy=self._phone_policy)
        # Hash once: sinks see the received bytes unchanged and a verifier's verdict (which
        # must pass before any commit) carries their SHA-256.
        stream.shared_sha256 = not self.transforms and any("sha256" in v.digests for v in self.verifiers)
        result = StreamResult(id=stream.id, source=stream.source, pipeline=stream.pipeline,
                              attempts=attempt, started_at=stream.started_at)
        writers: list[tuple[Sink, SinkWriter]] = []
        t0 = time.perf_counter()
        retry = False
        ledger, lease = self.ledger, held.lease
        try:
            result.attempts = begun if begun is not None else await ledger.begin_attempt(lease)
        except LeaseLost as exc:
            return self._lost(stream, result, exc), False
        except LedgerError as exc:
            return self._unrecorded(stream, result, exc), False
        self.observer.stream_started(stream)
        verifier_runs: list[_TrackedRun] = []
        try:
            verifier_runs = [_TrackedRun(v.type, v.begin(stream)) for v in self.verifiers]
            transform_runs = [t.begin(stream) for t in self.transforms]
            entries = await self._open_writers(stream, result, writers, held, takeover)
            if entries is not None and verifier_runs and stream.resume_offset:
                await self._replay(stream, entries, verifier_runs)
            await self._pump(stream, verifier_runs, transform_runs, writers, result, lease)
            result.verdicts = [run.finish() for run in verifier_runs]
            for verdict in result.verdicts:
                for key, value in verdict.details.items():
                    if key in ("sha256", "sha512", "md5", "hmac-sha256"):
                        result.digests[key] = value
            failed = [v for v in result.verdicts if not v.ok]
            if failed:
                first = failed[0]
                raise VerificationError(first.message or f"{first.verifier} rejected the stream",
                                        reason=first.reason or f"{first.verifier}-failed")
            for _, writer in writers:
                await writer.prepare()
            await ledger.verified(lease, sha256=result.digests.get("sha256"),
                                  verdicts=[v.to_dict() for v in result.verdicts])
            result.ok = True
            result.seconds = time.perf_counter() - t0
            result.metadata = _public_metadata(stream.metadata)
            result.facts = stream.facts.to_json()
            for sink, writer in sorted(writers, key=lambda sw: sw[0].announces):
                stored = await writer.commit(result)
                if stored:
                    result.stored.append({"sink": sink.type, **stored})
            # "stored" only once announcing sinks have committed too (the webhook sink's commit
            # is its durable enqueue): a crash before this point re-runs the stream, whose
            # storing sinks find their identical files and whose announcement is then made,
            # so no announcement is lost (at-least-once)
            result.finished_at = time.time()
            await ledger.finish(lease, Finish("stored", stored=result.stored,
                                              outcome=(result.status, result.to_dict())), run_id=self.run_id)
        except BaseException as exc:  # noqa: B036 - classified below; cancellation is re-raised
            error = _primary_error(exc)
            cancelled = isinstance(error, (trio.Cancelled, KeyboardInterrupt))
            result.ok = False
            if held.lost or isinstance(error, LeaseLost):  # another worker holds it now: hands off the ledger
                await self._abort_all(writers, result)
                if cancelled and not held.lost:
                    raise
                return self._lost(stream, result, error), False
            if cancelled:
                result.reason, result.message = "interrupted", f"stream {stream.id} interrupted by shutdown"
            elif isinstance(error, StreamError):
                result.reason, result.message = error.reason, str(error)
                retry = error.retryable
            elif no_space(error):  # a sink that does not name its path itself (file sinks do)
                where = f" ({error.filename})" if getattr(error, "filename", None) else ""
                result.reason = "disk-full"
                result.message = f"recording {stream.id}: {error.strerror}{where}; free space and run again"
            else:
                log.error("stream %s: internal error", stream.id, exc_info=error)
                result.reason, result.message = "internal-error", f"{type(error).__name__}: {error}"
            result.seconds = time.perf_counter() - t0
            result.metadata = _public_metadata(stream.metadata)
            result.facts = stream.facts.to_json()
            if not result.verdicts and any(run.error is not None for run in verifier_runs):
                result.verdicts = [run.early_verdict() for run in verifier_runs]
            result.retrying = retry and attempt < self.settings.max_stream_attempts and not self._stopping
            keep_checkpoint = cancelled and self._can_resume
            with trio.CancelScope(shield=True):
                if keep_checkpoint:  # storing sinks keep their checkpoints for the next run
                    await self._abort_all([(s, w) for s, w in writers if s.announces], result)
                    await self._abort_all([(s, w) for s, w in writers if not s.announces], result, suspend=True)
                else:
                    await self._abort_all(writers, result)
                final = not result.retrying
                if final:
                    result.finished_at = time.time()
                try:
                    await ledger.finish(lease, Finish(
                        "failed", reason=result.reason, message=result.message,
                        verdicts=[v.to_dict() for v in result.verdicts] or None, keep_checkpoint=keep_checkpoint,
                        outcome=(result.status, result.to_dict()) if final else None), run_id=self.run_id)
                except LeaseLost as lost:
                    return self._lost(stream, result, lost), False
                except LedgerError as exc:  # the database is away: the next run settles the recording
                    return self._unrecorded(stream, result, exc), False
                if final:
                    self._finished(stream, result)
            if cancelled:
                raise
            return result, retry
        self._finished(stream, result)
        return result, False

    def _lost(self, stream: Stream, result: StreamResult, error: BaseException) -> StreamResult:
        """The stream's lease was taken over: report it here; the new holder records the outcome."""
        result.ok = False
        result.reason = "lease-lost"
        result.message = (f"recording {stream.id}: lease lost to another worker (this worker was silent longer "
                          f"than lease_seconds={self.settings.lease_seconds:g}); it is archived there")
        result.finished_at = time.time()
        log.warning("%s (%s)", result.message, error)
        self._finished(stream, result)
        return result

    def _elsewhere(self, spec: StreamSpec, error: LeaseBusy) -> None:
        """A stream this worker discovered is held by another worker's live lease: skipped here."""
        now = time.time()
        result = StreamResult(id=spec.id, source=self.config.source.type, pipeline=self.config.name,
                              started_at=now, finished_at=now, ok=True, skipped=True, reason="leased-elsewhere",
                              message=f"recording {spec.id}: another worker is archiving it ({error})")
        log.info("%s", result.message)
        self.summary.results.append(result)
        self.context.audit.write("stream", pipeline=self.config.name, source=result.source, stream=spec.id,
                                 status=result.status, reason=result.reason, message=result.message)
        self.observer.stream_finished(result)

    def _unrecorded(self, stream: Stream, result: StreamResult, error: LedgerError) -> StreamResult:
        """The ledger could not record the stream's end (database unreachable): reported here;
        the row keeps its last recorded state, so a later run (or the holder of a takeover)
        settles the recording; files a sink already committed are found identical then."""
        result.ok = False
        result.reason = "ledger-unavailable"
        result.message = f"recording {stream.id}: the ledger could not record it: {error}"
        result.finished_at = time.time()
        log.error("%s", result.message)
        self._finished(stream, result)
        return result

    async def _replay(self, stream: Stream, entries: list[dict[str, Any]], verifier_runs: list[VerifierRun]) -> None:
        """Feed the bytes a checkpoint holds to the verifiers, so their digests cover the whole stream."""
        storing = [s for s in self.sinks if not s.announces]
        # A resume offset above 0 means every storing writer holds at least that much, so
        # any sink able to read its checkpoint back will do.
        index = next(i for i, s in enumerate(storing) if s.replays)
        sink = storing[index]
        limit = stream.resume_offset

        def feed() -> None:
            offset = 0
            for block in sink.replay(entries[index]):
                block = block[: max(0, limit - offset)]
                if not block:
                    break
                chunk = Chunk(offset, bytes(block))
                for run in verifier_runs:
                    run.update(chunk)
                offset += len(block)
            if offset != limit:
                raise StreamError(f"recording {stream.id}: checkpoint holds {offset} bytes, ledger says {limit}",
                                  reason="checkpoint-mismatch", retryable=True)

        await trio.to_thread.run_sync(feed)

    def _finished(self, stream: Stream, result: StreamResult) -> None:
        """A stream ended for good (its outcome is in the ledger): summary, audit log, observer."""
        self.summary.results.append(result)
        stream.audit("stream", status=result.status, reason=result.reason, message=result.message,
                     bytes=result.bytes, seconds=round(result.seconds, 6), attempts=result.attempts,
                     resumed_from=result.resumed_from, digests=result.digests, stored=result.stored,
                     verdicts=[v.to_dict() for v in result.verdicts])
        self.observer.stream_finished(result)

    async def _abort_all(self, writers: list[tuple[Sink, SinkWriter]], result: StreamResult, *,
                         suspend: bool = False) -> None:
        """Abort (or, with ``suspend``, suspend for resume) every writer, newest first,
        each bounded by ABORT_TIMEOUT, under a cancel shield; failures are logged."""
        what = "suspend" if suspend else "abort"
        with trio.CancelScope(shield=True):
            for sink, writer in reversed(writers):
                with trio.move_on_after(ABORT_TIMEOUT) as scope:
                    try:
                        await (writer.suspend(result) if suspend else writer.abort(result))
                    except Exception:
                        log.exception("stream %s: sink %r failed to %s", result.id, sink.type, what)
                if scope.cancelled_caught:
                    log.error("stream %s: sink %r %s timed out after %ss", result.id, sink.type, what, ABORT_TIMEOUT)

    async def _pump(self, stream: Stream, verifier_runs: list[VerifierRun], transform_runs: list[TransformRun],
                    writers: list[tuple[Sink, SinkWriter]], result: StreamResult, lease) -> None:
        checkpoints = _Checkpoints(self, stream, [w for s, w in writers if not s.announces], lease) \
            if self._can_resume else None
        # One consumer for the verifiers and the writers that can write from a worker
        # thread: one hop per chunk for all of them (see the module docstring).
        # A resumed writer holding more than the read starts at sees only what follows: it
        # gets a channel of its own, which drops those bytes (_feed_sink).
        skip = {id(w): max(0, (stream.resume_offset if w.resume_offset is None else w.resume_offset)
                           - stream.resume_offset) for _, w in writers}
        fused = [(s, w) for s, w in writers if getattr(w, "threaded_write", None) is not None and not skip[id(w)]]
        separate = [(s, w) for s, w in writers if (s, w) not in fused]
        async with trio.open_nursery() as nursery:
            if checkpoints is not None:
                checkpoints.nursery = nursery
            fused_channel = None
            if verifier_runs or fused:
                fused_channel, receive = trio.open_memory_channel[Any](STREAM_CHANNEL_CHUNKS)
                nursery.start_soon(_feed_fused, verifier_runs, [w for _, w in fused], receive,
                                   checkpoints if any(not s.announces for s, _ in fused) else None)
            sink_channels = []
            for sink, writer in separate:
                send, receive = trio.open_memory_channel[Any](STREAM_CHANNEL_CHUNKS)
                nursery.start_soon(_feed_sink, writer, receive, None if sink.announces else checkpoints,
                                   skip[id(writer)])
                sink_channels.append((sink, send))
            with contextlib.ExitStack() as closing:
                for channel in [c for c in [fused_channel] if c is not None] + [c for _, c in sink_channels]:
                    closing.enter_context(channel)
                expected = out_offset = result.bytes = stream.resume_offset
                # no checkpoint before every resumed writer has caught up with what it held
                caught_up = max([expected] + [w.resume_offset for _, w in writers if w.resume_offset is not None])
                next_checkpoint = caught_up + self.settings.checkpoint_bytes
                chunks = self.source.read(stream)
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        if chunk.offset != expected:
                            raise StreamError(f"recording {stream.id}: source delivered byte offset {chunk.offset}, "
                                              f"expected {expected}", reason="source-order")
                        expected = chunk.end
                        result.bytes = expected
                        self.observer.stream_bytes(stream, len(chunk.data))
                        data = chunk.data
                        for run in transform_runs:
                            data = run.process(data)
                        out = None
                        if data:
                            out = chunk if data is chunk.data else Chunk(out_offset, bytes(data))
                            out_offset = out.end
                        if fused_channel is not None:
                            await fused_channel.send((chunk, out))
                        if out is not None:
                            for _, channel in sink_channels:
                                await channel.send(out)
                        if checkpoints is not None and expected >= next_checkpoint:
                            next_checkpoint = expected + self.settings.checkpoint_bytes
                            marker = checkpoints.marker(expected)
                            if fused_channel is not None and any(not s.announces for s, _ in fused):
                                await fused_channel.send(marker)
                            for sink, channel in sink_channels:
                                if not sink.announces:
                                    await channel.send(marker)
                for i, run in enumerate(transform_runs):
                    data = run.flush()
                    for later in transform_runs[i + 1:]:
                        data = later.process(data)
                    if data:
                        out = Chunk(out_offset, bytes(data))
                        out_offset = out.end
                        if fused and fused_channel is not None:
                            await fused_channel.send((None, out))
                        for _, channel in sink_channels:
                            await channel.send(out)


@dataclass
class _Marker:
    """A checkpoint request travelling in-band through the storing sinks' channels."""

    offset: int
    entries: list[dict[str, Any] | None]
    pending: int


class _Checkpoints:
    """Collects every storing sink's checkpoint for one offset, then records it in the ledger.

    The ledger write runs beside the data path (in the stream's pump nursery, which waits
    for it before the stream ends), so the sinks do not stall on the ledger's commit: the
    checkpoint's bytes are already durable, and until the write commits the ledger simply
    holds the previous checkpoint, which a resume truncates back to. At most one write per
    stream is pending: the next checkpoint waits for the previous one, so they stay in order.
    """

    def __init__(self, runner: Runner, stream: Stream, writers: list[SinkWriter], lease):
        self.runner, self.stream, self.writers, self.lease = runner, stream, writers, lease
        self.disabled = False
        #: Where the ledger writes run (the pump's nursery); ``None``: inline.
        self.nursery: trio.Nursery | None = None
        self._pending: trio.Event | None = None

    def marker(self, offset: int) -> _Marker:
        return _Marker(offset, [None] * len(self.writers), len(self.writers))

    async def reached(self, marker: _Marker, writer: SinkWriter) -> None:
        if self.disabled:
            return
        entry = await writer.checkpoint()
        if entry is None:
            self.disabled = True  # a writer that cannot resume: no checkpoints for this stream
            return
        marker.entries[self.writers.index(writer)] = entry
        marker.pending -= 1
        if marker.pending == 0 and not self.disabled:
            if self._pending is not None:
                await self._pending.wait()
            if self.nursery is None:
                await self._record(marker, trio.Event())
            else:
                self._pending = trio.Event()
                self.nursery.start_soon(self._record, marker, self._pending)

    async def _record(self, marker: _Marker, done: trio.Event) -> None:
        stream = self.stream
        size = stream.metadata.get("size")
        try:
            await self.runner.ledger.checkpoint(
                self.lease, resume_offset=marker.offset,
                checkpoint={"sinks": marker.entries, "host": host_of(self.runner.worker)},
                etag=stream.metadata.get("etag"), size=size if isinstance(size, int) else None)
        finally:
            done.set()


class _TrackedRun(VerifierRun):
    """A verifier's run that remembers the error it raised from ``update`` (an early
    rejection), so the ledger and audit log record a verdict for every verifier."""

    def __init__(self, verifier: str, run: VerifierRun):
        self.verifier, self.run = verifier, run
        self.error: StreamError | None = None

    def update(self, chunk: Chunk) -> None:
        try:
            self.run.update(chunk)
        except StreamError as exc:
            self.error = exc
            raise

    def finish(self) -> Verdict:
        try:
            return self.run.finish()
        except StreamError as exc:
            self.error = exc
            raise

    def early_verdict(self) -> Verdict:
        if self.error is not None:
            return Verdict(self.verifier, False, self.error.reason, str(self.error))
        return Verdict(self.verifier, False, "incomplete", "no verdict: the stream was rejected by another check "
                       "before it ended")


async def _feed_fused(verifier_runs: list[VerifierRun], writers: list[SinkWriter],
                      receive: trio.MemoryReceiveChannel[Any], checkpoints: _Checkpoints | None) -> None:
    """Feed each ``(received chunk, sink chunk)`` to every verifier and every threaded writer,
    in one worker-thread hop (verifiers update small chunks inline, at once); checkpoint
    markers go to the writers, in order with their data."""

    def work(chunk: Chunk | None, out: Chunk | None) -> None:
        if chunk is not None:
            for run in verifier_runs:
                run.update(chunk)
        if out is not None:
            for writer in writers:
                writer.threaded_write(out.data)

    # ``with``, not ``async with``: aclose() checkpoints, and a cancellation arriving there
    # would replace a verifier's own error (the reason the stream failed) with Cancelled.
    with receive:
        async for item in receive:
            if isinstance(item, _Marker):
                if checkpoints is not None:
                    for writer in writers:
                        if writer in checkpoints.writers:  # storing writers only
                            await checkpoints.reached(item, writer)
                continue
            chunk, out = item
            if chunk is not None and len(chunk.data) < THREAD_OFFLOAD_MIN_BYTES:
                # Small chunks: verifiers update at once, on the event loop, as they did with a
                # task of their own; a verifier reading per-response headers (hmac segment
                # mode) then never lags a whole response behind the download.
                work(chunk, None)
                chunk = None
            if chunk is not None or (out is not None and writers):
                await trio.to_thread.run_sync(work, chunk, out if writers else None)


async def _feed_sink(writer: SinkWriter, receive: trio.MemoryReceiveChannel[Any],
                     checkpoints: _Checkpoints | None, skip: int = 0) -> None:
    """Pass chunks and checkpoint markers to ``writer``, dropping the first ``skip`` bytes
    (those a resumed writer already holds when the read starts earlier for another one)."""
    with receive:  # see _feed_fused
        async for item in receive:
            if isinstance(item, _Marker):
                if checkpoints is not None:
                    await checkpoints.reached(item, writer)
            elif skip:
                if len(item.data) <= skip:
                    skip -= len(item.data)
                    continue
                item, skip = Chunk(item.offset + skip, item.data[skip:]), 0
                await writer.write(item)
            else:
                await writer.write(item)


#: Tables every ledger has (a file without them is another program's database).
LEDGER_TABLES = ("recordings", "runs")
LEDGER_ASIDE = ("the next run starts a new ledger: recordings whose identical files are already archived count as "
                "stored again, others are fetched again")


@contextlib.contextmanager
def _storage_step(path: Any, doing: str):
    """Report an OSError (or the ledger's SQLite failing to open or write) while preparing the
    run as a :class:`StorageError` naming ``path`` and what to do, not a traceback.
    ``path`` None: nothing is translated (a PostgreSQL ledger reports its own errors)."""
    if path is None:
        yield
        return
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, path, doing) from None
    except (LedgerError, sqlite3.OperationalError) as exc:
        raise StorageError(f"{path}: {doing} failed: {exc}; free space on that filesystem, check its permissions, "
                           "and run again") from None


def _primary_error(exc: BaseException) -> BaseException:
    """The error that explains a failure: a StreamError before other errors before cancellation."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(exc)

    def rank(e: BaseException) -> int:
        if isinstance(e, StreamError):
            return 0
        if isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError)):
            return 2  # a symptom: the consumer on the other end failed first
        if isinstance(e, Exception):
            return 1
        return 3

    return min(leaves, key=rank) if leaves else exc


_PRIVATE_METADATA_PREFIX = "_"
#: Discovered specs queued per ledger call, and the longest a discovered spec waits to be queued.
ENQUEUE_BATCH = 500
ENQUEUE_FLUSH_SECONDS = 1.0


#: Key under which a queued spec's facts travel through a shared ledger's queue.
QUEUED_FACTS_KEY = "voxpipe:facts"


def _queue_metadata(spec: StreamSpec, phone_policy: PhoneNumberPolicy) -> dict[str, Any]:
    """A spec's metadata as stored in a shared queue (JSON), its facts under :data:`QUEUED_FACTS_KEY`.

    Private values (``_`` keys) that are not JSON, such as a Media Playback file with its
    temporary URL, are left out: the source looks them up again when it reads the stream.
    Facts are queued with the pipeline's phone-number policy already applied, so a shared
    database never holds a number the policy hashes or drops.

    :raises RunError: a public value is not JSON.
    """
    metadata: dict[str, Any] = {}
    facts = phone_policy.apply(spec.facts).to_json()
    if facts:
        metadata[QUEUED_FACTS_KEY] = facts
    for key, value in spec.metadata.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            if key.startswith(_PRIVATE_METADATA_PREFIX):
                continue
            raise RunError(f"stream {spec.id}: metadata {key!r} cannot be queued in a shared ledger ({exc})") from None
        metadata[key] = value
    return metadata


def _claimed_spec(claim: Claim) -> StreamSpec:
    """The spec a claimed recording was queued with (metadata and facts, see :func:`_queue_metadata`)."""
    metadata = dict(claim.metadata)
    facts = RecordingFacts.from_json(metadata.pop(QUEUED_FACTS_KEY, None))
    return StreamSpec(claim.lease.id, metadata, facts)


def _public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata fit for results and reports: keys starting with ``_`` (URLs, internal state) are dropped."""
    return {k: v for k, v in metadata.items() if not k.startswith(_PRIVATE_METADATA_PREFIX)}
