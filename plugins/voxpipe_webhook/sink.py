"""The ``webhook`` sink: signed, retried, at-least-once announcements of each stream.

An announcing sink (``announces = True``): the engine commits it after every storing sink
committed, so the event names where the stream was stored; it is aborted with the failed
result otherwise. Either way the event is written to the durable outbox (fsynced) before
``commit``/``abort`` returns; that is all that must succeed for the stream to count as
announced. The delivery loop started in :meth:`WebhookSink.start` sends it (Standard
Webhooks signatures, retry schedule, ``Retry-After``, 410 disabling), and
:meth:`WebhookSink.aclose` waits up to ``drain_timeout`` seconds for what is due, then
leaves the rest in the outbox for the next run or ``voxpipe webhooks --redeliver``.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from pathlib import Path
from typing import Any, Mapping

import trio
from pydantic import field_validator

from voxpipe.components import Sink, SinkWriter
from voxpipe.download.api import redact_url
from voxpipe.errors import SinkError, StorageError
from voxpipe.statefiles import check_sqlite, storage_error
from voxpipe.model import Chunk, Stream, StreamResult
from voxpipe.settings import SecretStr, Settings, setting

from .delivery import DeliveryLoop, Endpoint
from .events import build_event, encode_body, event_id
from .outbox import Outbox, OutboxError
from .schedule import (DEFAULT_HORIZON, DEFAULT_JITTER, DEFAULT_SCHEDULE, MAX_ATTEMPTS, Schedule, State,
                       first_attempt_at)
from .signing import SIGNATURE_HEADERS, parse_secret

log = logging.getLogger("voxpipe.webhook")

#: Secrets signing at once (rotation needs two; a few more allow staged roll-outs).
MAX_SECRETS = 4
#: Extra headers at most.
MAX_EXTRA_HEADERS = 32
#: Header names the sink sets itself and settings may not override.
RESERVED_HEADERS = frozenset({*SIGNATURE_HEADERS, "content-type", "content-length", "host", "x-stream-source",
                              "transfer-encoding"})
OUTBOX_FILE = "outbox.sqlite3"
OUTBOX_ASIDE = ("events still pending in it are not delivered unless you recover them from the moved file "
                "(`voxpipe webhooks FILE.broken` may still read it)")
#: Query parameter names that carry credentials (refused in `url`: it is stored in the outbox).
_CREDENTIAL_PARAM = re.compile(r"token|key|secret|passw|pwd|auth|sig|credential|session|code", re.IGNORECASE)


class WebhookSettings(Settings):
    url: str = setting(description="Endpoint the events are POSTed to (http or https). Put tokens in `headers`: "
                       "credentials in the URL (user:password@, or a query parameter such as `token`, `key`, "
                       "`sig`) are refused, because the URL is stored in the outbox.", example="https://archive.example.com/hooks/voxpipe")
    secrets: list[SecretStr] = setting(description="Standard Webhooks signing secrets, `whsec_` followed by the "
                                       "base64 of 24 to 64 random bytes. Every secret signs each delivery (one "
                                       "`v1,` signature each), so during a rotation list the new and the old one.",
                                       example=["${WEBHOOK_SECRET}"], min_length=1, max_length=MAX_SECRETS)
    timeout: float = setting(15.0, description="Seconds one delivery attempt may take, connection included.",
                             gt=0, le=300)
    retry_schedule: list[float] = setting(list(DEFAULT_SCHEDULE), description="Seconds before attempt 1, 2, 3, ... "
                                          "(the last repeats until `horizon`); default: the Standard Webhooks "
                                          "example schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.",
                                          example=[0, 5, 300, 1800, 7200, 18000, 36000, 36000],
                                          min_length=1, max_length=MAX_ATTEMPTS)
    horizon: float = setting(DEFAULT_HORIZON, description="Seconds after an event is created past which it is "
                             "no longer retried and is marked failed (default 3 days).", ge=0)
    jitter: float = setting(DEFAULT_JITTER, description="Each retry delay is spread randomly by this fraction "
                            "either way (0.2: ±20 %).", ge=0, lt=1)
    headers: dict[str, SecretStr] = setting({}, description="Extra request headers (e.g. `Authorization`); values "
                                            "are treated as secrets. The `webhook-*`, `Content-Type` and "
                                            "`X-Stream-Source` headers cannot be overridden.",
                                            example={"Authorization": "Bearer ${ARCHIVE_TOKEN}"})
    drain_timeout: float = setting(5.0, description="Seconds the end of a run waits for due deliveries before "
                                   "leaving them in the outbox (bounded by the engine's 10 s close limit).",
                                   ge=0, le=10)
    max_in_flight: int = setting(8, description="Delivery attempts in flight at once.", ge=1, le=256)
    outbox: Path | None = setting(None, description="SQLite outbox file; default `<state_dir>/outbox.sqlite3`, or, "
                                  "with a PostgreSQL ledger, tables in the ledger's database shared by every worker. "
                                  "`voxpipe webhooks -c PIPELINE.yaml` (either kind) or `voxpipe webhooks FILE` "
                                  "lists and redelivers its events.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        import httpx

        try:
            url = httpx.URL(value)
        except Exception:
            raise ValueError("not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        if url.userinfo:
            raise ValueError("must not carry credentials (user:password@); put them in `headers`")
        for name, _ in url.params.multi_items():
            if _CREDENTIAL_PARAM.search(name):
                # refused rather than stored: the URL is kept in the outbox file and shown by `voxpipe webhooks`
                raise ValueError(f"query parameter {name!r} looks like a credential; URLs are stored in the "
                                 "outbox and shown in listings, so put it in `headers` (e.g. Authorization)")
        return value

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for i, secret in enumerate(value):
            try:
                parse_secret(secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"secrets[{i}]: {exc}") from None  # the message never contains the value
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        if len(value) > MAX_EXTRA_HEADERS:
            raise ValueError(f"at most {MAX_EXTRA_HEADERS} extra headers")
        for name in value:
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the webhook sink and cannot be overridden")
            if not name or any(c.isspace() or c in ':()<>@,;"/[]?={}' for c in name):
                raise ValueError(f"header name {name!r} is not a valid HTTP field name")
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        Schedule(tuple(value))  # raises ValueError naming the problem
        return value

    def schedule(self) -> Schedule:
        """The retry schedule these settings describe."""
        return Schedule(tuple(self.retry_schedule), self.horizon, self.jitter)

    def endpoint(self) -> Endpoint:
        """The delivery endpoint (URL, decoded secrets, extra headers, timeout)."""
        return Endpoint(self.url, tuple(parse_secret(s.get_secret_value()) for s in self.secrets),
                        {k: v.get_secret_value() for k, v in self.headers.items()}, self.timeout)


class WebhookSink(Sink):
    """Announces each stream's outcome by a signed Standard Webhooks POST, retried from a durable outbox."""

    type = "webhook"
    Settings = WebhookSettings
    announces = True

    def __init__(self, settings: WebhookSettings, context):
        super().__init__(settings, context)
        self.endpoint = settings.endpoint()
        self.schedule = settings.schedule()
        self.outbox: Outbox | None = None
        self.loop: DeliveryLoop | None = None
        self.enqueued: list[str] = []
        self._scope: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None
        self._closed = False
        self._open_lock = trio.Lock()
        self._rng = random.Random()

    def outbox_path(self) -> Path:
        return Path(self.settings.outbox) if self.settings.outbox else Path(self.context.state_dir) / OUTBOX_FILE

    def _shared_ledger(self) -> Any:
        """The pipeline's PostgreSQL ledger when the outbox should live in it (no explicit
        ``outbox`` file set), else ``None``."""
        ledger = self.context.services.get("ledger")
        backend = getattr(ledger, "backend", None)
        if self.settings.outbox is None and getattr(ledger, "shared", False) and hasattr(backend, "connection"):
            return backend
        return None

    async def _open(self) -> Outbox:
        async with self._open_lock:  # streams begin concurrently: open the file once
            if self.outbox is None:
                shared = self._shared_ledger()
                if shared is not None:  # every worker delivers every worker's events
                    from .pg_outbox import PgOutbox

                    path = f"{shared.location} (webhook outbox)"
                    outbox = await trio.to_thread.run_sync(PgOutbox, shared)
                else:
                    path = self.outbox_path()
                    outbox = await self._open_file(path)
                pruned = await trio.to_thread.run_sync(outbox.prune)
                if pruned:
                    log.debug("outbox %s: pruned %d old delivered events", path, pruned)
                self.outbox = outbox
        return self.outbox

    async def _open_file(self, path: Path) -> Outbox:
        """The SQLite outbox at ``path``, refused with a clear error if corrupt, foreign or unwritable."""
        await trio.to_thread.run_sync(functools.partial(
            check_sqlite, path, what="webhook outbox", tables=("events",), consequence=OUTBOX_ASIDE))
        try:
            return await trio.to_thread.run_sync(Outbox, path)
        except OSError as exc:
            raise storage_error(exc, path, "opening the webhook outbox") from None
        except OutboxError as exc:
            raise StorageError(f"{exc}; free space on that filesystem, check its permissions, and run again") from None

    async def start(self, nursery: trio.Nursery) -> None:
        outbox = await self._open()
        self.loop = DeliveryLoop(outbox, self.endpoint, self.schedule, max_in_flight=self.settings.max_in_flight,
                                 audit=self.context.audit, rng=self._rng)
        self._stopped = trio.Event()
        await nursery.start(self._run_loop)

    async def _run_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.loop is not None and self._stopped is not None
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await self.loop.run(task_status=task_status)
        finally:
            self._stopped.set()
            if self._closed and self.outbox is not None:
                self.outbox.close()  # aclose gave up waiting for us; the last user closes

    async def begin(self, stream: Stream) -> SinkWriter:
        await self._open()
        return _WebhookWriter(self, stream)

    async def enqueue(self, result: StreamResult, stream: Stream, chunks: int) -> str:
        """Write the event for ``result`` to the outbox (durably) and wake the delivery loop.

        :returns: the event's ``webhook-id``.
        :raises SinkError: the outbox cannot be written (the stream then fails).
        """
        outbox = await self._open()
        event_doc = build_event(result, stream, chunks=chunks)
        body = encode_body(event_doc)
        webhook_id = event_id(self.endpoint.url, event_doc)
        first = first_attempt_at(self.schedule, time.time(), self._rng)
        try:
            # shielded: once the insert runs, its id must reach the writer, or a shutdown arriving now
            # would make abort() announce the same stream a second time
            with trio.CancelScope(shield=True):
                event = await trio.to_thread.run_sync(lambda: outbox.enqueue(
                    endpoint=self.endpoint.url, body=body, source=stream.source, pipeline=stream.pipeline,
                    recording_id=stream.id, first_attempt_at=first, event_id=webhook_id))
        except Exception as exc:
            raise SinkError(f"recording {stream.id}: cannot write the webhook event to outbox {outbox.path}: "
                            f"{type(exc).__name__}: {exc}", reason="outbox-error") from exc
        if event.duplicate:
            # announced before (a crash came between the outbox write and the ledger's "stored"):
            # the stored event, under its id, stands; nothing new is queued
            log.info("recording %s: event %s is already in the outbox (%s); not announced again", stream.id,
                     event.id, event.state.value)
            stream.audit("webhook-already-enqueued", webhook_id=event.id, state=event.state.value)
            return event.id
        self.enqueued.append(event.id)
        stream.audit("webhook-enqueued", webhook_id=event.id, endpoint=redact_url(self.endpoint.url),
                     state=event.state.value)
        if event.state is State.DISABLED:
            log.error("webhook %s (recording %s) not sent: endpoint %s is disabled (it answered 410); "
                      "`voxpipe webhooks %s --redeliver-failed` re-enables it", event.id, stream.id,
                      redact_url(self.endpoint.url), outbox.path)
        if self.loop is not None:
            self.loop.notify()
        return event.id

    async def check_connect(self):
        """``check --connect``: the endpoint resolves and accepts a TCP connection (nothing is sent)."""
        from voxpipe.connectcheck import check_endpoint

        return [await check_endpoint(self.endpoint.url, redact_url(self.endpoint.url))]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.loop is not None and self._stopped is not None and not self._stopped.is_set():
                drained = await self.loop.idle_until(trio.current_time() + self.settings.drain_timeout)
                if not drained:
                    log.warning("webhook deliveries to %s still pending after %.1f s; they stay in %s for the "
                                "next run or `voxpipe webhooks --deliver-pending`", redact_url(self.endpoint.url),
                                self.settings.drain_timeout, self.outbox.path if self.outbox else self.outbox_path())
                if self._scope is not None:
                    self._scope.cancel()
                await self._stopped.wait()
        finally:
            if self.outbox is not None and (self._stopped is None or self._stopped.is_set()):
                self.outbox.close()


class _WebhookWriter(SinkWriter):
    """Counts the stream's chunks; enqueues one event at commit or at the final abort."""

    def __init__(self, sink: WebhookSink, stream: Stream):
        self.sink = sink
        self.stream = stream
        self.chunks = 0
        self.event_id: str | None = None

    async def write(self, chunk: Chunk) -> None:
        self.chunks += 1

    async def commit(self, result: StreamResult) -> Mapping[str, Any] | None:
        self.event_id = await self.sink.enqueue(result, self.stream, self.chunks)
        return {"webhook_id": self.event_id}

    async def abort(self, result: StreamResult) -> None:
        if self.event_id is not None or result.retrying:
            return  # already announced (abort is idempotent), or the engine starts the stream again
        self.event_id = await self.sink.enqueue(result, self.stream, self.chunks)
