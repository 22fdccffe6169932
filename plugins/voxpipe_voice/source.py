"""The ``websocket-voice`` source: live call audio over WebSocket, one stream per call.

Modes (requirement: issue "Live call audio over WebSocket", item 1):

* ``client``: dial one URL per call (the seed's CXone voice stream). The token goes in
  ``Authorization: Bearer``; ``token_in_query: true`` appends ``?access_token=`` for
  servers that demand it, and every log line then shows the URL without its query.
  Close codes 1000/1001 end the call normally; 1006, network errors and read timeouts
  reconnect with exponential backoff while within ``reconnect_window`` seconds of the
  drop, continuing the same stream (and the same frame reassembly).
* ``server``: listen on ``host:port``; each accepted connection is a call (Twilio Media
  Streams, or any platform that pushes binary PCM16). Connections wait for a pipeline
  slot in a bounded queue of ``pending_calls``; beyond it they are closed with 1013
  ("try again later"). A Twilio stream's id is its ``callSid`` (from ``start``); a
  binary stream's id is the last segment of the request path (``/calls/<id>``).

Per connection: a ping every ``ping_interval`` s (a pong missing for ``read_timeout`` s
drops the connection), and a read deadline of ``read_timeout`` s between messages.
Messages are decoded by :class:`.decoder.CallDecoder` (frame reassembly, Twilio jitter
buffer, μ-law) in the connection's task and handed to ``read`` through a per-call
buffer bounded by ``buffer_ms``; ``read`` yields everything buffered as one chunk of
whole PCM16 frames, so a busy pipeline gets fewer, larger chunks.

The call's :class:`voxpipe.voice.callstate.CallStateMachine` follows the connection
(IDLE → CONNECTING → STREAMING → DISCONNECTING → TERMINATED); at the end
``stream.metadata["quality"]`` holds :meth:`CallQuality.snapshot` plus ``reconnects``.
Engine ``concurrency`` bounds calls in flight: set it to the most concurrent calls.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import re
import secrets
import time
from functools import partial
from typing import Any, AsyncIterator, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from trio_websocket import (ConnectionClosed, HandshakeError, WebSocketConnection, WebSocketRequest,
                            open_websocket_url, wrap_server_stream)
from wsproto.utilities import LocalProtocolError

from voxpipe.components import Source
from voxpipe.errors import StreamError
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.settings import ByteSize, Settings, setting
from voxpipe.voice.callstate import CallEvent, CallState, CallStateMachine, IllegalTransition

from .decoder import CallDecoder, CallProtocolError

log = logging.getLogger("voxpipe.voice")

#: Close codes that end a call normally (RFC 6455 §7.4.1: normal closure, going away).
NORMAL_CLOSE_CODES = frozenset({1000, 1001})
#: Close code for calls refused because the pipeline is full (RFC 6455 registry: Try Again Later).
TRY_AGAIN_LATER = 1013
#: First reconnect delay (s); doubles per attempt up to MAX_BACKOFF.
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 5.0
#: Bytes read from a socket at once: a backlog of small messages is parsed in one pass.
RECEIVE_BUFFER_BYTES = 64 * 1024
#: Seconds to open a connection (TCP + WebSocket handshake) before it counts as failed.
CONNECT_TIMEOUT = 10.0
#: Seconds to close a connection cleanly before it is dropped.
DISCONNECT_TIMEOUT = 5.0
_SAFE_ID = re.compile(r"[^A-Za-z0-9._@+=-]")
_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s'\"]*")


class _RedactQueryTokens(logging.Filter):
    """Removes ``access_token=`` values from trio-websocket's debug lines (it logs the
    resource it dials, query included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = _QUERY_TOKEN.sub(r"\1REDACTED", record.getMessage())
            record.args = None
        return True


_ws_logger = logging.getLogger("trio-websocket")
if not any(isinstance(f, _RedactQueryTokens) for f in _ws_logger.filters):
    _ws_logger.addFilter(_RedactQueryTokens())


class CallTarget(BaseModel):
    """One call to dial in client mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    url: str


class VoiceSourceSettings(Settings):
    mode: Literal["client", "server"] = setting("client", description="`client`: dial a URL per call; `server`: "
                                                "listen and treat each incoming connection as a call.")
    url: str | None = setting(None, description="Client mode: one call's WebSocket URL (`ws://` or `wss://`).",
                              example="${VOICE_STREAM_URL}")
    urls: list[str] = setting([], description="Client mode: several calls' URLs; a call's id is the URL's last "
                              "path segment.", example=["wss://voice.example.com/calls/c-1"])
    calls: list[CallTarget] = setting([], description="Client mode: calls as `{id, url}` pairs.",
                                      example=[{"id": "c-1", "url": "wss://voice.example.com/calls/c-1"}])
    host: str = setting("127.0.0.1", description="Server mode: address to listen on.")
    port: int = setting(8765, description="Server mode: TCP port; 0 picks a free one (logged).", ge=0, le=65535)
    codec: Literal["pcm16", "twilio"] = setting("pcm16", description="`pcm16`: binary PCM16 little-endian "
                                                "messages; `twilio`: Twilio Media Streams JSON with base64 μ-law.")
    track: Literal["inbound", "outbound"] = setting("inbound", description="Twilio: the track recorded when a "
                                                   "stream carries both (`tracks=\"both_tracks\"`).")
    sample_rate: Literal[8000, 16000] = setting(8000, description="PCM16 sample rate in Hz (Twilio: from `start`).")
    frame_ms: int = setting(20, description="Frame length in ms; chunks hold whole frames.", ge=10, le=100)
    token: SecretStr | None = setting(None, description="Bearer token: sent in `Authorization` (client mode), "
                                      "required of callers (server mode). Use `${VAR}`.", example="${VOICE_TOKEN}")
    token_in_query: bool = setting(False, description="Send the token as `?access_token=` instead, for servers "
                                   "that demand it; URLs are then logged without their query.")
    ping_interval: float = setting(30.0, description="Seconds between WebSocket pings.", gt=0)
    read_timeout: float = setting(60.0, description="Seconds without a message (or a pong) before the connection "
                                  "counts as lost.", gt=0)
    reconnect_window: float = setting(30.0, description="Client mode: seconds after a drop (1006, network error, "
                                      "timeout) during which reconnects are attempted.", ge=0)
    max_reconnects: int = setting(10, description="Client mode: most reconnects per call.", ge=0, le=1000)
    jitter_depth_ms: int = setting(40, description="Twilio: jitter buffer depth in ms (multiple of `frame_ms`); "
                                   "packets up to this far out of order are put back in order.", ge=0, le=1000)
    max_calls: int | None = setting(None, description="Server mode: stop after accepting this many calls "
                                    "(tests, demos); default unlimited.", ge=1)
    pending_calls: int = setting(16, description="Server mode: connected calls waiting for a pipeline slot (besides "
                                 "the one discovery holds); "
                                 "more are closed with 1013 (try again later).", ge=0, le=10_000)
    start_timeout: float = setting(10.0, description="Server mode, Twilio: seconds to wait for the `start` event.",
                                   gt=0)
    message_queue_size: int = setting(64, description="WebSocket messages queued per connection before the "
                                      "connection stops reading (TCP backpressure).", ge=1, le=10_000)
    max_message_bytes: ByteSize = setting(1 << 20, description="Largest WebSocket message accepted (bytes); larger "
                                     "closes the connection with 1009.", ge=1024)
    buffer_ms: int = setting(2000, description="Audio (ms) buffered per call between the connection and the "
                             "pipeline before the connection waits.", ge=20, le=600_000)
    chunk_ms: int = setting(100, description="Audio (ms) gathered per chunk handed to the pipeline (whole frames; "
                            "the last chunk of a call may be shorter). Larger chunks cost less per second of audio.",
                            ge=1, le=10_000)
    backend: Literal["auto", "native", "python"] = setting("auto", description="DSP backend for reassembly and "
                                                           "μ-law decoding (see docs/native.md).")

    @field_validator("max_calls", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # ``${VAR:-}`` in YAML gives "" for an unset variable: treat it as not configured.
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> "VoiceSourceSettings":
        if self.mode == "client" and not (self.url or self.urls or self.calls):
            raise ValueError("client mode needs `url`, `urls` or `calls`")
        if self.mode == "server" and (self.url or self.urls or self.calls):
            raise ValueError("`url`, `urls` and `calls` are for client mode; server mode listens on host:port")
        for url in [self.url or "", *self.urls, *(c.url for c in self.calls)]:
            if url and not url.startswith(("ws://", "wss://")):
                raise ValueError(f"URL {_display(url)} is not ws:// or wss://")
        if self.jitter_depth_ms % self.frame_ms:
            raise ValueError(f"jitter_depth_ms={self.jitter_depth_ms} is not a multiple of frame_ms={self.frame_ms}")
        return self


def _display(url: str) -> str:
    """The URL without query or credentials, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def _call_id_from_path(path: str) -> str:
    segment = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
    return _SAFE_ID.sub("_", segment)[:100]


class CallEnded(Exception):
    """Internal: the connection ended; ``code`` is the close code (None: abnormal)."""


class _FrameBuffer:
    """PCM handed from a call's connection task to ``read``: at most ``limit`` bytes.

    ``put`` waits while full (the connection then stops reading: TCP backpressure);
    ``take`` waits for at least ``batch`` bytes (or the end) and returns everything
    buffered at once (``None`` at the end, or raises the error the call ended with).
    Batching wakes the pipeline once per ``chunk_ms`` of audio instead of once per
    message: with Twilio's 20 ms messages, per-chunk engine work is most of the cost.
    """

    def __init__(self, limit: int, batch: int = 1):
        self.limit = limit
        self.batch = max(1, min(batch, limit))
        self._data = bytearray()
        self._closed = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._readable = trio.Event()
        self._writable = trio.Event()

    async def put(self, data: bytes) -> None:
        while len(self._data) >= self.limit and not self._abandoned:
            self._writable = trio.Event()
            await self._writable.wait()
        if self._abandoned:
            raise trio.BrokenResourceError("the pipeline stopped reading this call")
        self._data += data
        if len(self._data) >= self.batch:
            self._readable.set()

    def close(self, error: BaseException | None = None) -> None:
        if not self._closed:
            self._closed = True
            self._error = error
            self._readable.set()

    def abandon(self) -> None:
        self._abandoned = True
        self._writable.set()

    async def take(self) -> bytes | None:
        while len(self._data) < self.batch:
            if self._closed:
                if self._error is not None:
                    raise self._error
                if self._data:
                    break
                return None
            self._readable = trio.Event()
            await self._readable.wait()
        out = bytes(self._data)
        self._data.clear()
        self._writable.set()
        return out


class CallSession:
    """One call: its decoder, state machine, buffer and connection handling.

    :ivar machine: the call's :class:`CallStateMachine`.
    :ivar decoder: the call's :class:`CallDecoder` (quality counters in ``decoder.quality``).
    """

    def __init__(self, source: "VoiceSource", call_id: str, decoder: CallDecoder | None = None):
        s = source.settings
        self.source = source
        self.settings = s
        self.call_id = call_id
        self.decoder = decoder or CallDecoder(s.codec, sample_rate=s.sample_rate, frame_ms=s.frame_ms,
                                              jitter_depth_ms=s.jitter_depth_ms, backend=_backend(s),
                                              call_id=call_id, track=s.track)
        self.machine = CallStateMachine(call_id, max_reconnects=s.max_reconnects)
        width = self.decoder.wire_width
        frame = self.decoder.frame_bytes // 2 * width
        self.buffer = _FrameBuffer(max(frame, s.sample_rate * width * s.buffer_ms // 1000),
                                   max(frame, s.sample_rate * width * s.chunk_ms // 1000))
        self.last_message = 0.0
        self.cancel_scope = trio.CancelScope()
        self.stream: Stream | None = None
        self.close_code: int | None = None

    def metadata(self) -> dict[str, Any]:
        d = self.decoder
        meta: dict[str, Any] = {"format": "pcm16", "codec": self.settings.codec, "sample_rate": d.sample_rate,
                                "channels": 1, "sample_width": 2, "frame_ms": self.settings.frame_ms,
                                "call_id": self.call_id}
        if d.start is not None:
            meta.update(call_sid=d.start.call_sid, stream_sid=d.start.stream_sid, account_sid=d.start.account_sid,
                        tracks=list(d.start.tracks), custom_parameters=dict(d.start.custom_parameters))
        return meta

    def _audit(self, event: str, **fields: Any) -> None:
        if self.stream is not None:
            self.stream.audit(event, **fields)

    # ----------------------------------------------------------------- reading

    async def chunks(self, stream: Stream) -> AsyncIterator[Chunk]:
        """Yield the call's PCM16 as chunks of whole frames until it ends."""
        self.stream = stream
        offset = 0
        to_pcm = self.decoder.to_pcm
        try:
            while (wire := await self.buffer.take()) is not None:
                data = to_pcm(wire)
                if data:
                    yield Chunk(offset, data)
                    offset += len(data)
            # Ended normally: the connection task fed its last message before closing the
            # buffer, so the jitter buffer and partial frame can be flushed here, in order.
            tail = self.decoder.finish()
            if tail:
                yield Chunk(offset, tail)
        finally:
            stream.metadata.update(self.metadata())
            quality = self.decoder.quality.snapshot().to_dict()
            quality.update(reconnects=self.machine.reconnects, messages=self.decoder.messages,
                           close_code=self.close_code, state=self.machine.state.value)
            stream.metadata["quality"] = quality
            self.buffer.abandon()
            self.cancel_scope.cancel()

    # ----------------------------------------------------------------- one connection

    async def pump(self, ws: WebSocketConnection) -> int | None:
        """Read messages until the connection closes; returns the close code, or ``None``
        when the connection was lost (no close frame, read timeout, missing pong).

        :raises CallProtocolError: a message does not fit the codec.
        :raises trio.BrokenResourceError: the pipeline stopped reading the call.
        """
        s = self.settings
        decoder, buffer, machine = self.decoder, self.buffer, self.machine
        media = CallEvent.MEDIA
        lost = False
        error: Exception | None = None  # raised after the nursery, not wrapped in an ExceptionGroup
        code: int | None = None
        closed = False
        self.last_message = trio.current_time()
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as deadline:
                nursery.start_soon(self._keepalive, ws, deadline)
                nursery.start_soon(self._watchdog, deadline)
                try:
                    while True:
                        message = await ws.get_message()
                        # A timestamp, not a moving cancel-scope deadline: cheaper per message.
                        self.last_message = trio.current_time()
                        if machine.state is not CallState.STREAMING:
                            machine.apply(media)  # raises if media is illegal now; STREAMING→STREAMING is a no-op
                        pcm = decoder.feed(message, time.monotonic())
                        if pcm:
                            await buffer.put(pcm)
                        if decoder.stopped and machine.state is CallState.STREAMING:
                            machine.apply(CallEvent.HANGUP)
                            with trio.move_on_after(DISCONNECT_TIMEOUT):
                                await ws.aclose(1000, "stream stopped")
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason is not None else None
                    closed = True
                except (CallProtocolError, IllegalTransition, trio.BrokenResourceError) as exc:
                    error = exc
            lost = deadline.cancelled_caught
            nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if closed:
            self.close_code = code
            return None if code is None or code == 1006 else code
        if lost:
            log.warning("call %s: no message for %.0f s; connection counts as lost", self.call_id, s.read_timeout)
            self.close_code = None
        return None

    async def _watchdog(self, deadline: trio.CancelScope) -> None:
        """Cancel ``deadline`` once no message arrived for ``read_timeout`` s (checked at
        a quarter of that interval, so the timeout fires within 125 % of it)."""
        timeout = self.settings.read_timeout
        while True:
            await trio.sleep_until(self.last_message + timeout + timeout / 4)
            if trio.current_time() - self.last_message >= timeout:
                deadline.cancel()
                return

    async def _keepalive(self, ws: WebSocketConnection, deadline: trio.CancelScope) -> None:
        s = self.settings
        try:
            while True:
                await trio.sleep(s.ping_interval)
                with trio.move_on_after(s.read_timeout) as scope:
                    await ws.ping()
                if scope.cancelled_caught:
                    log.warning("call %s: no pong within %.0f s", self.call_id, s.read_timeout)
                    deadline.cancel()
                    return
        except (ConnectionClosed, LocalProtocolError):  # closing: wsproto refuses pings then
            return

    def _end_normally(self) -> None:
        m = self.machine
        if m.state in (CallState.CONNECTING, CallState.STREAMING):
            m.apply(CallEvent.HANGUP)
        m.apply(CallEvent.CLOSED)

    def _fail(self, error: StreamError) -> None:
        if self.machine.can_apply(CallEvent.ERROR):
            self.machine.apply(CallEvent.ERROR)
        self.buffer.close(error)

    async def _finish(self) -> None:
        self.buffer.close()  # ``chunks`` flushes the decoder after the last batch

    # ----------------------------------------------------------------- server mode

    async def serve(self, ws: WebSocketConnection) -> None:
        """Server mode: run the accepted connection until the call ends."""
        try:
            await self._serve(ws)
        finally:
            # Whatever ended the connection (including a cancellation by trio-websocket's
            # reader failing mid-close), ``read`` must not wait forever: a call whose
            # Twilio ``stop`` arrived is complete; anything else is interrupted.
            if self.decoder.stopped:
                if self.machine.state is CallState.DISCONNECTING:
                    self.machine.apply(CallEvent.CLOSED)
                self.buffer.close()
            self.buffer.close(StreamError(f"call {self.call_id}: connection handler stopped", reason="interrupted"))

    async def _serve(self, ws: WebSocketConnection) -> None:
        with self.cancel_scope:
            try:
                if self.machine.state is CallState.IDLE:
                    self.machine.apply(CallEvent.DIAL)
                if self.machine.state is CallState.CONNECTING:
                    self.machine.apply(CallEvent.CONNECTED)
                code = await self.pump(ws)
                if code in NORMAL_CLOSE_CODES or self.decoder.stopped:
                    self._end_normally()
                    await self._finish()
                else:
                    what = "the connection was lost" if code is None else f"close code {code}"
                    self._fail(StreamError(f"call {self.call_id}: {what} after {self.decoder.assembler.bytes_in} "
                                           "bytes of audio", reason="call-dropped"))
            except CallProtocolError as exc:
                self._fail(StreamError(str(exc), reason="bad-message"))
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1007, "bad message")
            except trio.BrokenResourceError:
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1011, "call not recorded")
            except IllegalTransition as exc:
                self._fail(StreamError(str(exc), reason="call-state"))

    # ----------------------------------------------------------------- client mode

    async def dial(self, url: str, headers: list[tuple[bytes, bytes]], task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Client mode: connect, read, and reconnect after abnormal ends within the window."""
        s = self.settings
        shown = _display(url)
        machine = self.machine
        task_status.started()
        with self.cancel_scope:
            machine.apply(CallEvent.DIAL)
            dropped_at: float | None = None
            attempt = 0
            while True:
                code: int | None = None
                problem = ""
                try:
                    async with open_websocket_url(url, extra_headers=headers, message_queue_size=s.message_queue_size,
                                                  max_message_size=s.max_message_bytes,
                                                  receive_buffer_size=RECEIVE_BUFFER_BYTES,
                                                  connect_timeout=CONNECT_TIMEOUT,
                                                  disconnect_timeout=DISCONNECT_TIMEOUT) as ws:
                        machine.apply(CallEvent.CONNECTED)
                        if dropped_at is not None:
                            log.info("call %s: reconnected to %s", self.call_id, shown)
                            self._audit("call-reconnected", url=shown, attempt=attempt)
                        dropped_at, attempt = None, 0
                        code = await self.pump(ws)
                except CallProtocolError as exc:
                    self._fail(StreamError(str(exc), reason="bad-message"))
                    return
                except trio.BrokenResourceError:
                    return  # the pipeline stopped reading: the call's stream already ended
                except HandshakeError as exc:
                    problem = f"{type(exc).__name__}"
                    status = getattr(exc, "status_code", None)
                    if status is not None:
                        problem += f" (HTTP {status})"
                        if status in (401, 403, 404):
                            self._fail(StreamError(f"call {self.call_id}: {shown} refused the connection with HTTP "
                                                   f"{status}", reason=f"http-{status}"))
                            return
                except OSError as exc:
                    problem = f"{type(exc).__name__}: {exc.strerror or exc}"
                except Exception as exc:
                    if not _is_close_race(exc):
                        raise
                    problem = "connection failed while closing"
                if code in NORMAL_CLOSE_CODES or self.decoder.stopped:
                    self._end_normally()
                    await self._finish()
                    return
                if code is not None:
                    self._fail(StreamError(f"call {self.call_id}: {shown} closed the call with code {code}",
                                           reason=f"close-{code}"))
                    return
                now = trio.current_time()
                if dropped_at is None:
                    dropped_at = now
                problem = problem or "connection lost (no close frame, 1006)"
                if machine.state is CallState.STREAMING or machine.state is CallState.CONNECTING:
                    target = machine.apply(CallEvent.DROPPED)
                else:
                    target = CallState.TERMINATED
                if target is CallState.TERMINATED or now - dropped_at >= s.reconnect_window:
                    self._fail(StreamError(
                        f"call {self.call_id}: {shown}: {problem}; gave up after {machine.reconnects} reconnects in "
                        f"{now - dropped_at:.1f} s (reconnect_window {s.reconnect_window} s)", reason="call-dropped"))
                    return
                delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** attempt, max(0.0, dropped_at + s.reconnect_window - now))
                attempt += 1
                log.warning("call %s: %s: %s; reconnecting in %.2f s", self.call_id, shown, problem, delay)
                self._audit("call-dropped", url=shown, problem=problem, retry_in=round(delay, 3))
                await trio.sleep(delay)
        self.buffer.close(StreamError(f"call {self.call_id}: stopped", reason="interrupted"))


def _is_close_race(exc: BaseException) -> bool:
    """Whether ``exc`` is only wsproto refusing a frame on a closing connection."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_close_race(e) for e in exc.exceptions)
    return isinstance(exc, LocalProtocolError)


def _backend(settings: VoiceSourceSettings) -> str | None:
    return None if settings.backend == "auto" else settings.backend


class VoiceSource(Source):
    """Live call audio over WebSocket (client or server mode), as whole PCM16 frames per call."""

    type = "websocket-voice"
    Settings = VoiceSourceSettings

    def __init__(self, settings: VoiceSourceSettings, context):
        super().__init__(settings, context)
        self._nursery: trio.Nursery | None = None
        self._sessions: dict[str, CallSession] = {}
        send, receive = trio.open_memory_channel[CallSession](settings.pending_calls)
        self._pending_send, self._pending_receive = send, receive
        self._refusing = False
        self._ids = itertools.count(1)
        self.server = None
        self.port: int | None = None
        self.accepted = 0
        self.refused = 0

    @property
    def url(self) -> str | None:
        """Server mode: ``ws://host:port`` once listening."""
        return None if self.port is None else f"ws://{self.settings.host}:{self.port}"

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        s = self.settings
        if s.mode != "server":
            return
        listeners = await nursery.start(partial(trio.serve_tcp, self._connection, s.port, host=s.host))
        self.server = listeners
        self.port = listeners[0].socket.getsockname()[1]
        log.info("websocket-voice listening on %s (%s)", self.url, s.codec)
        announce = self.context.services.get("voice_listening")
        if callable(announce):
            announce(self.url)

    async def aclose(self) -> None:
        self._refusing = True
        self._pending_send.close()

    async def check_connect(self):
        """``check --connect``: server mode, the port was bound by :meth:`start`; client mode,
        every URL's host resolves and accepts a TCP connection (no call is made)."""
        from voxpipe.components import ConnectCheck
        from voxpipe.connectcheck import check_endpoint

        if self.settings.mode == "server":
            return [ConnectCheck("listen", True, f"listening on {self.url}")]
        origins = {}  # one check per scheme://host:port, however many calls dial it
        for _, url in self._targets():
            parts = urlsplit(url)
            origins.setdefault((parts.scheme, parts.hostname, parts.port), url)
        return [await check_endpoint(url) for url in origins.values()]

    # ----------------------------------------------------------------- discovery

    async def discover(self) -> AsyncIterator[StreamSpec]:
        s = self.settings
        if s.mode == "client":
            for call_id, url in self._targets():
                yield StreamSpec(call_id, {"format": "pcm16", "codec": s.codec, "sample_rate": s.sample_rate,
                                           "channels": 1, "sample_width": 2, "frame_ms": s.frame_ms,
                                           "call_id": call_id, "url": _display(url)})
            return
        count = 0
        async with self._pending_receive:
            async for session in self._pending_receive:
                call_id = session.call_id = session.machine.call_id = await self._unique_id(session.call_id)
                self._sessions[call_id] = session
                yield StreamSpec(call_id, session.metadata())
                count += 1
                if s.max_calls is not None and count >= s.max_calls:
                    self._refusing = True
                    return

    async def _unique_id(self, base: str) -> str:
        """``base``, or ``base-N`` if a call in flight or one stored by an earlier run has it.

        A second stream of the same call (Twilio: another ``<Stream>`` with the same
        ``callSid``) must not be skipped by the engine as already stored: it is a live
        connection nobody else will read, and its audio would be lost. The ledger (an
        :class:`voxpipe.ledger.AsyncLedger`) is read in a worker thread, off the event loop.
        """
        ledger = self.context.services.get("ledger")
        call_id = base
        while call_id in self._sessions or (ledger is not None and (state := await ledger.get(self.type, call_id))
                                            is not None and state.state == "stored"):
            call_id = f"{base}-{next(self._ids)}"
        return call_id

    def _targets(self) -> list[tuple[str, str]]:
        s = self.settings
        out = [(c.id, c.url) for c in s.calls]
        for i, url in enumerate(([s.url] if s.url else []) + list(s.urls), start=1):
            out.append((_call_id_from_path(url) or f"call-{i}", url))
        return out

    # ----------------------------------------------------------------- reading

    async def read(self, stream: Stream) -> AsyncIterator[Chunk]:
        s = self.settings
        if s.mode == "server":
            session = self._sessions.pop(stream.id, None)
            if session is None:
                raise StreamError(f"call {stream.id}: no such connection", reason="no-call")
        else:
            url = dict(self._targets()).get(stream.id)
            if url is None:
                raise StreamError(f"call {stream.id}: not in the configured calls", reason="no-call")
            session = CallSession(self, stream.id)
            dial_url, headers = self._auth(url)
            assert self._nursery is not None, "start() was not called"
            await self._nursery.start(session.dial, dial_url, headers)
        async for chunk in session.chunks(stream):
            yield chunk

    def _auth(self, url: str) -> tuple[str, list[tuple[bytes, bytes]]]:
        token = self.settings.token
        if token is None:
            return url, []
        if self.settings.token_in_query:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True) + [("access_token", token.get_secret_value())]
            return urlunsplit(parts._replace(query=urlencode(query))), []
        return url, [(b"authorization", b"Bearer " + token.get_secret_value().encode())]

    # ----------------------------------------------------------------- server handler

    def _authorized(self, request: WebSocketRequest) -> bool:
        token = self.settings.token
        if token is None:
            return True
        expected = token.get_secret_value().encode()
        for name, value in request.headers:
            if name.lower() == b"authorization" and hmac.compare_digest(value, b"Bearer " + expected):
                return True
        if self.settings.token_in_query:
            for key, value in parse_qsl(urlsplit(request.path).query):
                if key == "access_token" and hmac.compare_digest(value.encode(), expected):
                    return True
        return False

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One TCP connection: WebSocket handshake, then :meth:`_handle`.

        Each connection runs in its own nursery, so an error inside trio-websocket (e.g.
        its reader answering a ping after we started closing, trio-websocket issue #184)
        ends that connection only, never the server.
        """
        s = self.settings
        try:
            async with trio.open_nursery() as nursery:
                request: WebSocketRequest | None = None
                with trio.move_on_after(CONNECT_TIMEOUT):
                    request = await wrap_server_stream(nursery, stream, message_queue_size=s.message_queue_size,
                                                       max_message_size=s.max_message_bytes,
                                                       receive_buffer_size=RECEIVE_BUFFER_BYTES)
                if request is not None:
                    await self._handle(request)
                nursery.cancel_scope.cancel()
        except Exception as exc:
            if _is_close_race(exc) or isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError,
                                                       HandshakeError, ConnectionClosed)):
                log.debug("websocket-voice: connection ended: %r", exc)
            else:
                log.error("websocket-voice: connection failed", exc_info=exc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                await stream.aclose()

    async def _handle(self, request: WebSocketRequest) -> None:
        s = self.settings
        if not self._authorized(request):
            log.warning("websocket-voice: refused a connection without a valid token")
            await request.reject(401)
            return
        ws = await request.accept()
        if self._refusing:
            self.refused += 1
            await ws.aclose(TRY_AGAIN_LATER, "try again later")
            return
        call_id = _call_id_from_path(request.path) or f"call-{secrets.token_hex(6)}"
        session = CallSession(self, call_id)
        session.machine.apply(CallEvent.DIAL)
        if s.codec == "twilio":
            try:
                with trio.fail_after(s.start_timeout):
                    while session.decoder.start is None:
                        session.decoder.feed(await ws.get_message(), time.monotonic())
            except (trio.TooSlowError, CallProtocolError, ConnectionClosed) as exc:
                what = "no start event" if isinstance(exc, trio.TooSlowError) else str(exc)
                log.warning("websocket-voice: refused a Twilio stream: %s", what)
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1008, "expected a Twilio start event")
                return
            session.call_id = session.decoder.call_id = _SAFE_ID.sub("_", session.decoder.start.call_sid)[:100] \
                or call_id
        try:
            self._pending_send.send_nowait(session)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.refused += 1
            log.warning("websocket-voice: refused call %s: %d calls already wait for a pipeline slot (close %d)",
                        session.call_id, s.pending_calls, TRY_AGAIN_LATER)
            await ws.aclose(TRY_AGAIN_LATER, "try again later")
            return
        self.accepted += 1
        try:
            await session.serve(ws)
        finally:
            if ws.closed is None:  # ended without a close handshake (lost, interrupted): say goodbye
                with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1001, "going away")
