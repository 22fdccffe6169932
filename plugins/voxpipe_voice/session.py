"""One call of the ``websocket-voice`` source: its connection(s), decoder, state machine
and the bounded buffer towards the pipeline (see :mod:`.source` for the modes).

:class:`CallSession` reads a connection's messages (``pump``), feeds them to the call's
decoder, sends protocol replies (AudioHook), keeps the degradation monitor and live
metrics, and hands whole PCM16 frames to ``read`` through :class:`_FrameBuffer`.
Server mode serves one connection per call (``serve``), CXone several
(``serve_perspective``), client mode dials and reconnects (``dial``).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, AsyncIterator

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url
from wsproto.utilities import LocalProtocolError

from voxpipe.errors import StreamError
from voxpipe.facts import RecordingFacts
from voxpipe.model import Chunk, Stream
from voxpipe.voice.callstate import CallEvent, CallState, CallStateMachine, IllegalTransition
from voxpipe.voice.degradation import DegradationMonitor
from voxpipe.voice.metrics import CallMetrics

from . import audiohook
from .decoder import CallDecoder, CallProtocolError
from .platforms import AudioHookDecoder, CxoneDecoder
from .settings import VoiceSourceSettings, _display

if TYPE_CHECKING:
    from .source import VoiceSource

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
#: Seconds before expiry at which a cached OAuth token is refreshed (the seed's 30 s).
TOKEN_REFRESH_MARGIN = 30.0
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



async def _send_all(ws: WebSocketConnection, outbox: list[str]) -> None:
    """Send the protocol replies a decoder queued (AudioHook ``opened``, ``pong``, ...), in order."""
    while outbox:
        await ws.send_message(outbox.pop(0))


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
                                              call_id=call_id, track=s.track, max_skew_ms=s.max_skew_ms)
        self.machine = CallStateMachine(call_id, max_reconnects=s.max_reconnects)
        self._size_buffer()
        self.active = 0  # CXone: connections feeding this call now
        self._scopes: set[trio.CancelScope] = set()  # CXone: one per connection
        self._live: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self.joined_key: tuple[str, bool] | None = None  # CXone: this call's key in the source's joined calls  # CXone: perspective -> its connection
        self.generation = 0  # CXone: connections seen (a rejoin timer checks nobody came back)
        self.last_message = 0.0
        self.started_at = datetime.now(timezone.utc)
        self.monitor = DegradationMonitor(s.degraded_bitrate_bps, s.degraded_after)
        self.call_metrics: CallMetrics | None = None
        self._next_check = 0.0
        self.cancel_scope = trio.CancelScope()
        self.stream: Stream | None = None
        self.close_code: int | None = None

    def _size_buffer(self) -> None:
        """The connection→pipeline buffer, sized by the decoder's wire format (call again
        when a handshake changed it, e.g. a Twilio both-tracks ``start``)."""
        s, d = self.settings, self.decoder
        per_second = d.sample_rate * d.wire_width * d.channels
        frame = d.frame_bytes // 2 * d.wire_width
        self.buffer = _FrameBuffer(max(frame, per_second * s.buffer_ms // 1000),
                                   max(frame, per_second * s.chunk_ms // 1000))

    def metadata(self) -> dict[str, Any]:
        d = self.decoder
        meta: dict[str, Any] = {"format": "pcm16", "codec": self.settings.codec, "sample_rate": d.sample_rate,
                                "channels": d.channels, "sample_width": 2, "frame_ms": self.settings.frame_ms,
                                "call_id": self.call_id}
        meta.update(d.facts())
        return meta

    def recording_facts(self) -> RecordingFacts:
        """The platform's ids for this call (:mod:`voxpipe.facts`), with when it started."""
        facts = self.decoder.recording_facts()
        return facts.merged({"started_at": self.started_at})

    def _audit(self, event: str, **fields: Any) -> None:
        if self.stream is not None:
            self.stream.audit(event, **fields)

    # ----------------------------------------------------------------- reading

    async def chunks(self, stream: Stream) -> AsyncIterator[Chunk]:
        """Yield the call's PCM16 as chunks of whole frames until it ends."""
        self.stream = stream
        offset = 0
        to_pcm = self.decoder.to_pcm
        source = self.source
        self.call_metrics = CallMetrics(source.metrics, source.context.pipeline, self.settings.codec, stream.id,
                                        timed=self.settings.codec == "twilio")
        self.call_metrics.started()
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
            self.monitor.update(time.monotonic(), self.decoder.quality.bytes, final=True)
            degradation = self.monitor.snapshot()
            quality = self.decoder.quality_report()
            quality.update(reconnects=self.machine.reconnects, messages=self.decoder.messages,
                           close_code=self.close_code, state=self.machine.state.value,
                           degraded=degradation.degraded, degradation=degradation.to_dict())
            stream.metadata["quality"] = quality
            self.call_metrics.ended(degradation.degraded)
            self.buffer.abandon()
            self.source._forget_joined(self)  # CXone: a later connection of this contact starts a new call
            self.cancel_scope.cancel()
            for scope in self._scopes:
                scope.cancel()

    # ----------------------------------------------------------------- one connection

    async def pump(self, ws: WebSocketConnection, feed=None) -> int | None:
        """Read messages until the connection closes; returns the close code, or ``None``
        when the connection was lost (no close frame, read timeout, missing pong).

        :raises CallProtocolError: a message does not fit the codec.
        :raises trio.BrokenResourceError: the pipeline stopped reading the call.
        """
        s = self.settings
        decoder, buffer, machine = self.decoder, self.buffer, self.machine
        feed = feed or decoder.feed
        outbox: list[str] | None = getattr(decoder, "outbox", None)
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
                        now = time.monotonic()
                        pcm = feed(message, now)
                        if now >= self._next_check:
                            self._check(now)
                        if outbox:
                            await _send_all(ws, outbox)
                        if decoder.error:
                            raise CallProtocolError(decoder.error)
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

    def _check(self, now: float) -> None:
        """Once a second per call: the degradation monitor and the live metrics."""
        self._next_check = now + self.monitor.interval
        q = self.decoder.quality
        self.monitor.update(now, q.bytes)
        if self.call_metrics is not None:
            self.call_metrics.update(q.packets, q.frames_concealed, q.frames_late, q.jitter_ms, self.monitor.bitrate)

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
                    if isinstance(self.decoder, AudioHookDecoder):
                        await audiohook_goodbye(ws, self.decoder)  # disconnect sent: await close, say closed
                    await ws.aclose(1007, "bad message")
            except trio.BrokenResourceError:
                with trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1011, "call not recorded")
            except IllegalTransition as exc:
                self._fail(StreamError(str(exc), reason="call-state"))

    # ----------------------------------------------------------------- CXone: many connections, one call

    async def serve_perspective(self, ws: WebSocketConnection, perspective: str) -> None:
        """CXone: feed one connection of ``perspective`` into this call. When the last
        connection ends, the call waits ``rejoin_window`` s for one to come back (a drop,
        or the new connection after a hold) and is then stored."""
        decoder = self.decoder
        assert isinstance(decoder, CxoneDecoder)
        arrived = time.monotonic()
        self.active += 1
        self.generation += 1
        previous = self._live.get(perspective)
        if previous is not None:
            # CXone reconnected while the old connection of this perspective is still being
            # read (its last messages queued, or a half-open TCP connection): let it finish
            # first, so the channel's audio stays in order; a dead one is cut after read_timeout.
            old_scope, old_done = previous
            with trio.move_on_after(self.settings.read_timeout):
                await old_done.wait()
            old_scope.cancel()
            await old_done.wait()
        done = trio.Event()
        scope = trio.CancelScope()
        self._live[perspective] = (scope, done)
        decoder.connect(perspective, arrived)
        if self.machine.state is CallState.CONNECTING:
            self.machine.apply(CallEvent.CONNECTED)
        if self.active > 1 or self.generation > 1:
            self._audit("call-joined", perspective=perspective, connection=decoder.connections[perspective])
        try:
            with scope:
                self._scopes.add(scope)
                await self.pump(ws, partial(decoder.feed_from, perspective))
        except CallProtocolError as exc:
            self._fail(StreamError(str(exc), reason="bad-message"))
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await ws.aclose(1007, "bad message")
        except trio.BrokenResourceError:
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await ws.aclose(1011, "call not recorded")
        finally:
            self._scopes.discard(scope)
            self.active -= 1
            decoder.disconnect(perspective)
            done.set()
            if self._live.get(perspective) == (scope, done):
                del self._live[perspective]
            if self.active == 0 and not self.buffer._closed:
                nursery = self.source._nursery
                if nursery is None or self.cancel_scope.cancel_called:
                    self.buffer.close(StreamError(f"call {self.call_id}: interrupted", reason="interrupted"))
                else:
                    nursery.start_soon(self._rejoin_timer, self.generation)

    async def _rejoin_timer(self, generation: int) -> None:
        await trio.sleep(self.settings.rejoin_window)
        if self.active == 0 and self.generation == generation:
            self.source._forget_joined(self)
            self._end_normally()
            await self._finish()

    # ----------------------------------------------------------------- client mode

    async def dial(self, url: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Client mode: connect, read, and reconnect after abnormal ends within the window.

        Each attempt asks the source for its headers: with OAuth, a reconnect renews the
        token the dropped connection used (once for every call that used it), and an
        upgrade refused with 401 is retried once with a new token.
        """
        s = self.settings
        shown = _display(url)
        machine = self.machine
        task_status.started()
        with self.cancel_scope:
            machine.apply(CallEvent.DIAL)
            dropped_at: float | None = None
            attempt = 0
            used: str | None = None
            retried_401 = False
            while True:
                code: int | None = None
                problem = ""
                try:
                    try:
                        target, headers, used = await self.source.dial_target(url, renew=used if attempt or
                                                                              retried_401 else None)
                    except StreamError as exc:
                        self._fail(exc)
                        return
                    async with open_websocket_url(target, extra_headers=headers,
                                                  message_queue_size=s.message_queue_size,
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
                        if status == 401 and self.source.tokens is not None and not retried_401:
                            retried_401 = True  # the token may have been revoked: renew it once
                            continue
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


async def audiohook_goodbye(ws: WebSocketConnection, decoder: AudioHookDecoder) -> None:
    """After our ``disconnect``: read until the client's ``close``, answer ``closed``
    (the caller bounds the wait)."""
    await _send_all(ws, decoder.outbox)
    while decoder.session.state is not audiohook.State.CLOSED:
        decoder.feed(await ws.get_message())
        await _send_all(ws, decoder.outbox)


def _is_close_race(exc: BaseException) -> bool:
    """Whether ``exc`` is only wsproto refusing a frame on a closing connection."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_close_race(e) for e in exc.exceptions)
    return isinstance(exc, LocalProtocolError)


def _backend(settings: VoiceSourceSettings) -> str | None:
    return None if settings.backend == "auto" else settings.backend


