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
import secrets
import time
from functools import partial
from typing import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, WebSocketRequest, wrap_server_stream

from voxpipe.components import Source
from voxpipe.download.oauth import client_credentials_token
from voxpipe.download.tokens import BearerTokens, Token
from voxpipe.errors import StreamError
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.voice.callstate import CallEvent
from voxpipe.voice.metrics import VoiceMetrics

from . import audiohook
from .decoder import CallProtocolError
from .httpsig import SignatureError, decode_secret, verify
from .platforms import AudioHookDecoder, CxoneDecoder, parse_cxone_hello
from .session import (CONNECT_TIMEOUT, DISCONNECT_TIMEOUT, RECEIVE_BUFFER_BYTES, TOKEN_REFRESH_MARGIN, TRY_AGAIN_LATER,
                      _SAFE_ID, CallSession, _backend, _is_close_race, _send_all, audiohook_goodbye, log)
from .settings import CallTarget, VoiceSourceSettings, _display

__all__ = ["VoiceSource", "VoiceSourceSettings", "CallTarget", "CallSession", "TRY_AGAIN_LATER", "_is_close_race"]


def _call_id_from_path(path: str) -> str:
    segment = urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1]
    return _SAFE_ID.sub("_", segment)[:100]


#: Ledger states of a call id that a new call must not reuse: stored, or being stored
#: (its stream ended but its sinks are still committing).
_TAKEN_STATES = frozenset({"downloading", "verified", "stored"})


async def _refuse_handshake(ws: WebSocketConnection, exc: Exception, platform: str, missing: str,
                            close_reason: str) -> None:
    """A stream whose opening message did not come (``missing``) or did not fit: log why
    and close with 1008 (policy violation)."""
    what = missing if isinstance(exc, trio.TooSlowError) else str(exc) or type(exc).__name__
    log.warning("websocket-voice: refused a %s stream: %s", platform, what)
    with trio.move_on_after(DISCONNECT_TIMEOUT):
        await ws.aclose(1008, close_reason)


class VoiceSource(Source):
    """Live call audio over WebSocket (client or server mode), as whole PCM16 frames per call."""

    type = "websocket-voice"
    Settings = VoiceSourceSettings

    def __init__(self, settings: VoiceSourceSettings, context):
        super().__init__(settings, context)
        self._nursery: trio.Nursery | None = None
        self._sessions: dict[str, CallSession] = {}
        self._in_flight: set[str] = set()  # ids announced and not yet ended (being recorded)
        send, receive = trio.open_memory_channel[CallSession](settings.pending_calls)
        self._pending_send, self._pending_receive = send, receive
        self._refusing = False
        self._joined: dict[tuple[str, bool], CallSession] = {}  # CXone: (contact id, MIX?) -> call
        self.metrics = VoiceMetrics.for_registry(context.services.get("metrics_registry"))
        self._http: httpx.AsyncClient | None = None
        self.tokens: BearerTokens | None = None  # client mode with OAuth: the cached token
        self.token_refreshes = 0
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
            if s.token_url is not None:
                self._http = httpx.AsyncClient(timeout=httpx.Timeout(CONNECT_TIMEOUT))
                self.tokens = BearerTokens(self._fetch_token, refresh_margin=TOKEN_REFRESH_MARGIN)
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
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

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
                self._in_flight.add(call_id)
                yield StreamSpec(call_id, session.metadata(), facts=session.recording_facts())
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
        while call_id in self._in_flight or (ledger is not None and (state := await ledger.get(self.type, call_id))
                                             is not None and state.state in _TAKEN_STATES):
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
            assert self._nursery is not None, "start() was not called"
            await self._nursery.start(session.dial, url)
        try:
            async for chunk in session.chunks(stream):
                yield chunk
        finally:
            self._in_flight.discard(stream.id)

    async def dial_target(self, url: str, renew: str | None = None) -> tuple[str, list[tuple[bytes, bytes]],
                                                                            str | None]:
        """Client mode: ``(url, headers, token)`` for one connection attempt: the bearer
        token (fixed, or from the OAuth cache, renewing ``renew`` first), the configured
        headers and User-Agent.

        :raises StreamError: reason ``auth-failed`` when the token endpoint refuses.
        """
        s = self.settings
        headers = [(b"user-agent", s.user_agent.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in s.headers.items()]
        if self.tokens is not None:
            if renew is not None:
                self.tokens.invalidate(renew)
            token: str | None = await self.tokens.get()
        else:
            token = s.token.get_secret_value() if s.token is not None else None
        if token is None:
            return url, headers, None
        if s.token_in_query:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True) + [("access_token", token)]
            return urlunsplit(parts._replace(query=urlencode(query))), headers, token
        return url, headers + [(b"authorization", b"Bearer " + token.encode())], token

    async def _fetch_token(self) -> Token:
        s = self.settings
        assert self._http is not None and s.token_url and s.client_id and s.client_secret is not None
        token = await client_credentials_token(self._http, s.token_url, s.client_id,
                                               s.client_secret.get_secret_value(), scope=s.scope,
                                               client_auth=s.client_auth, headers={"User-Agent": s.user_agent})
        self.token_refreshes += 1
        log.info("websocket-voice: new access token for client %s (expires in %.0f s)", s.client_id,
                 token.expires_in)
        return token

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
        call_id = _call_id_from_path(request.path) or f"call-{secrets.token_hex(6)}"
        if s.codec == "cxone":  # a connection may continue a call in flight: decided after its first message
            await self._handle_cxone(ws, call_id)
            return
        if self._refusing:
            self.refused += 1
            await ws.aclose(TRY_AGAIN_LATER, "try again later")
            return
        if s.codec == "audiohook":
            session = await self._audiohook_handshake(ws, request, call_id)
            if session is None:
                return
        else:
            session = CallSession(self, call_id)
            session.machine.apply(CallEvent.DIAL)
        if s.codec == "twilio":
            try:
                with trio.fail_after(s.start_timeout):
                    while session.decoder.start is None:
                        session.decoder.feed(await ws.get_message(), time.monotonic())
            except (trio.TooSlowError, CallProtocolError, ConnectionClosed) as exc:
                await _refuse_handshake(ws, exc, "Twilio", "no start event", "expected a Twilio start event")
                return
            session.call_id = session.decoder.call_id = _SAFE_ID.sub("_", session.decoder.start.call_sid)[:100] \
                or call_id
            session._size_buffer()  # a both-tracks start made the call stereo
        if not self._enqueue(session):
            await ws.aclose(TRY_AGAIN_LATER, "try again later")
            return
        try:
            await session.serve(ws)
        finally:
            if ws.closed is None:  # ended without a close handshake (lost, interrupted): say goodbye
                with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1001, "going away")

    def _enqueue(self, session: CallSession) -> bool:
        """Hand a handshaken call to discovery; ``False`` when the queue is full."""
        try:
            self._pending_send.send_nowait(session)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self.refused += 1
            log.warning("websocket-voice: refused call %s: %d calls already wait for a pipeline slot (close %d)",
                        session.call_id, self.settings.pending_calls, TRY_AGAIN_LATER)
            return False
        self.accepted += 1
        return True

    # ----------------------------------------------------------------- Genesys AudioHook

    def _audiohook_check(self, request: WebSocketRequest) -> str | None:
        """``None`` if the upgrade request carries the configured API key (and a valid
        signature when a client secret is set), else why not (never a secret)."""
        s = self.settings
        if s.audiohook_api_key is None:
            return None
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        # wsproto keeps Host out of the extra headers; the signature's @authority needs it.
        headers.setdefault("host", getattr(getattr(request, "_event", None), "host", "") or "")
        api_key = s.audiohook_api_key.get_secret_value()
        if not hmac.compare_digest(headers.get("x-api-key", "").encode(), api_key.encode()):
            return "missing or unknown X-API-KEY"
        if s.audiohook_client_secret is not None:
            try:
                verify(headers, request_target=request.path, api_key=api_key,
                       key=decode_secret(s.audiohook_client_secret.get_secret_value()), now=time.time())
            except SignatureError as exc:
                return f"signature: {exc}"
        return None

    async def _audiohook_handshake(self, ws: WebSocketConnection, request: WebSocketRequest,
                                   call_id: str) -> CallSession | None:
        """Run the ``open`` transaction; the call (id: the conversation id) once ``opened``.
        An unauthenticated or unacceptable ``open`` gets ``disconnect`` and, after the
        client's ``close``, ``closed``: nothing is recorded."""
        s = self.settings
        refused = self._audiohook_check(request)
        org = next((v.decode("latin-1") for n, v in request.headers if n.lower() == b"audiohook-organization-id"),
                   None)
        session = audiohook.ServerSession(authorized=refused, stereo=s.stereo, organization_id=org)
        decoder = AudioHookDecoder(session, frame_ms=s.frame_ms, pause_mode=s.pause_mode, backend=_backend(s),
                                   call_id=call_id)
        try:
            with trio.fail_after(s.start_timeout):
                while decoder.opened is None and decoder.refused is None:
                    decoder.feed(await ws.get_message(), time.monotonic())
                    await _send_all(ws, decoder.outbox)
        except (trio.TooSlowError, ConnectionClosed) as exc:
            log.warning("websocket-voice: AudioHook session without open: %s",
                        "no open message" if isinstance(exc, trio.TooSlowError) else "connection closed")
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await ws.aclose(1008, "expected an AudioHook open message")
            return None
        if decoder.refused is not None:
            self.refused += 1
            log.warning("websocket-voice: refused AudioHook session %s: %s", session.session_id, decoder.refused)
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                try:
                    await audiohook_goodbye(ws, decoder)
                except ConnectionClosed:
                    return None
                await ws.aclose(1000, "refused")
            return None
        opened = decoder.opened
        conversation = opened.open.get("conversationId")
        call_id = _SAFE_ID.sub("_", str(conversation or opened.session_id))[:100] or call_id
        decoder.call_id = call_id
        call = CallSession(self, call_id, decoder)
        call.machine.apply(CallEvent.DIAL)
        return call

    # ----------------------------------------------------------------- CXone Agent Assist

    async def _handle_cxone(self, ws: WebSocketConnection, path_id: str) -> None:
        """One CXone connection: its initial message names the perspective; RX and TX of a
        contact feed one stereo call (MIX: a mono call), new connections of a contact whose
        call still waits (``rejoin_window``) continue it."""
        s = self.settings
        try:
            with trio.fail_after(s.start_timeout):
                perspective, contact, hello = parse_cxone_hello(await ws.get_message(), path_id)
        except (trio.TooSlowError, CallProtocolError, ConnectionClosed) as exc:
            await _refuse_handshake(ws, exc, "CXone", "no initial message",
                                    "expected the initial message with streamPerspective")
            return
        contact = _SAFE_ID.sub("_", contact)[:100] or path_id
        key = (contact, perspective == "MIX")
        call = self._joined.get(key)
        if call is None and self._refusing:
            self.refused += 1
            await ws.aclose(TRY_AGAIN_LATER, "try again later")
            return
        if call is None:
            decoder = CxoneDecoder(stereo=perspective != "MIX", frame_ms=s.frame_ms, max_skew_ms=s.max_skew_ms,
                                   backend=_backend(s), call_id=contact)
            decoder.hello = hello
            call = CallSession(self, contact, decoder)
            call.machine.apply(CallEvent.DIAL)
            if not self._enqueue(call):
                await ws.aclose(TRY_AGAIN_LATER, "try again later")
                return
            self._joined[key] = call
            call.joined_key = key
        try:
            await call.serve_perspective(ws, perspective)
        finally:
            if ws.closed is None:
                with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT):
                    await ws.aclose(1001, "going away")

    def _forget_joined(self, call: CallSession) -> None:
        key = call.joined_key
        if key is not None and self._joined.get(key) is call:
            del self._joined[key]
