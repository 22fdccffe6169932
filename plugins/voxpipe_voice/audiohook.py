"""Genesys AudioHook protocol version 2, server side (sans-IO: text in, events out).

Genesys Cloud connects to our WebSocket server (developer.genesys.cloud/devapps/audiohook;
message shapes as in Genesys' reference implementation,
``purecloudlabs/audiohook-reference-implementation`` ``protocol/message.ts``). Text
frames carry JSON messages ``{"version": "2", "type", "seq", "id", "parameters", ...}``;
client messages add ``serverseq`` and ``position`` (ISO 8601 duration ``PT1.5S``),
server messages ``clientseq``. Binary frames carry audio in the medium chosen in
``opened``: ``PCMU`` (G.711 μ-law) or ``L16`` (PCM16 little-endian), 8 kHz, one channel
or two interleaved (``external`` = customer left, ``internal`` = agent right).

:class:`ServerSession` follows :data:`TABLE` ((state, message type) → next state) and
returns frozen-dataclass events: :class:`Send` (a reply to send), :class:`Opened`,
:class:`Paused`, :class:`Resumed`, :class:`Discarded`, :class:`Updated`,
:class:`ClientError`, :class:`Closing`, :class:`Ignored`, :class:`Violation`.

* ``open`` → ``opened`` choosing the offered medium (:func:`choose_media`), or, when the
  connection was not authenticated, ``disconnect`` reason ``unauthorized`` (as Genesys'
  reference authenticator does); no acceptable medium → ``disconnect`` reason ``error``.
* ``ping`` → ``pong`` (its ``clientseq`` is the ping's ``seq``), in any state.
* ``paused``/``resumed``: ACTIVE ⇄ PAUSED; ``resumed`` and ``discarded`` carry the
  ``start`` and ``discarded`` durations the receiver fills (or not) with silence.
* ``close`` → ``closed`` in any state but CLOSED.
* ``update``, ``error``: reported, state unchanged. A message out of order (``paused``
  before ``open``, a second ``open``...) is ignored, as the reference server does.
* A malformed message, a wrong ``seq`` or session id, an unknown type, or audio outside
  ACTIVE → ``disconnect`` reason ``error`` (state ERROR; the client then closes).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

VERSION = "2"
#: Longest text message accepted (the reference server's limit).
MAX_TEXT_BYTES = 65535
#: Sample rate AudioHook uses (Hz).
RATE = 8000
#: Formats we accept, most preferred first: μ-law halves the bandwidth and is what
#: Genesys offers by default.
FORMATS = ("PCMU", "L16")
#: Channel names in stereo order: customer (external) left, agent (internal) right.
STEREO = ("external", "internal")
_DURATION = re.compile(r"^PT(\d+(?:\.\d+)?)S$")


class AudioHookError(ValueError):
    """A client message is malformed (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Media:
    """One medium: ``format`` (PCMU or L16), ``channels`` (names), ``rate`` (Hz)."""

    format: str
    channels: tuple[str, ...]
    rate: int = RATE

    @property
    def sample_width(self) -> int:
        """Bytes per sample on the wire (1 for PCMU, 2 for L16)."""
        return 1 if self.format == "PCMU" else 2

    def to_json(self) -> dict[str, Any]:
        return {"type": "audio", "format": self.format, "channels": list(self.channels), "rate": self.rate}


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed client message; ``position`` in seconds."""

    type: str
    seq: int
    serverseq: int
    id: str
    position: float
    parameters: Mapping[str, Any] = field(default_factory=dict)


def parse_duration(text: Any, where: str) -> float:
    """ISO 8601 ``PT<seconds>S`` → seconds. :raises AudioHookError: another shape."""
    if not isinstance(text, str) or not (m := _DURATION.match(text)):
        raise AudioHookError(f"{where} is {text!r}, not a duration like 'PT1.5S'")
    return float(m.group(1))


def format_duration(seconds: float) -> str:
    """Seconds → ``PT<seconds>S`` with millisecond precision (``PT0S``, ``PT1.5S``)."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text}S"


def parse_media(value: Any, where: str = "media") -> list[Media]:
    if not isinstance(value, list):
        raise AudioHookError(f"{where} is not a list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise AudioHookError(f"{where}[{i}] is not an object")
        channels = m.get("channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise AudioHookError(f"{where}[{i}].channels is not a list of names")
        rate = m.get("rate")
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise AudioHookError(f"{where}[{i}].rate is {rate!r}, not an integer")
        out.append(Media(str(m.get("format")), tuple(channels), rate))
    return out


def parse_message(text: str | bytes) -> Message:
    """One client text message. :raises AudioHookError: not JSON, or a field missing or
    of the wrong type (the message names it)."""
    if len(text) > MAX_TEXT_BYTES:
        raise AudioHookError(f"text message of {len(text)} bytes exceeds {MAX_TEXT_BYTES}")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise AudioHookError(f"text message is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise AudioHookError("text message is not a JSON object")
    kind = obj.get("type")
    where = f"AudioHook {kind!r} message (seq {obj.get('seq')!r})"
    if obj.get("version") != VERSION:
        raise AudioHookError(f"{where}: version {obj.get('version')!r} is not {VERSION!r}")
    if not isinstance(kind, str):
        raise AudioHookError("AudioHook message has no 'type'")
    for key in ("seq", "serverseq"):
        v = obj.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise AudioHookError(f"{where}: {key} is {v!r}, not a non-negative integer")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise AudioHookError(f"{where}: id is missing")
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise AudioHookError(f"{where}: parameters is not an object")
    return Message(kind, obj["seq"], obj["serverseq"], obj["id"], parse_duration(obj.get("position"),
                                                                                  f"{where}: position"), params)


def choose_media(offered: list[Media], *, stereo: bool = True, formats: tuple[str, ...] = FORMATS) -> Media | None:
    """The medium to accept: 8 kHz, a format in ``formats`` (in that order of
    preference), both channels (``external`` + ``internal``) when ``stereo`` and offered,
    else one channel. ``None`` when nothing offered fits."""
    fitting = [m for m in offered if m.rate == RATE and m.format in formats and m.channels
               and set(m.channels) <= set(STEREO) and len(set(m.channels)) == len(m.channels)]

    def rank(m: Media) -> tuple[int, int]:
        channels = 0 if (len(m.channels) == 2) == stereo else 1
        return channels, formats.index(m.format)

    return min(fitting, key=rank) if fitting else None


class State(enum.Enum):
    AWAIT_OPEN = "await-open"
    ACTIVE = "active"
    PAUSED = "paused"
    UNAUTHORIZED = "unauthorized"  # disconnect(unauthorized) sent; waiting for close
    ERROR = "error"  # disconnect(error) sent; waiting for close
    CLOSED = "closed"  # closed sent


S = State
_LIVE = (S.AWAIT_OPEN, S.ACTIVE, S.PAUSED, S.UNAUTHORIZED, S.ERROR)
#: (state, client message type) -> next state; pairs not listed are ignored (logged).
TABLE: dict[tuple[State, str], State] = {
    (S.AWAIT_OPEN, "open"): S.ACTIVE,  # or UNAUTHORIZED / ERROR, decided by the open handler
    **{(s, "ping"): s for s in _LIVE},
    (S.ACTIVE, "paused"): S.PAUSED,
    (S.PAUSED, "resumed"): S.ACTIVE,
    (S.ACTIVE, "update"): S.ACTIVE,
    (S.PAUSED, "update"): S.PAUSED,
    (S.ACTIVE, "discarded"): S.ACTIVE,
    (S.PAUSED, "discarded"): S.PAUSED,
    **{(s, "error"): s for s in _LIVE},
    **{(s, "close"): S.CLOSED for s in _LIVE},
}
#: Every client message type AudioHook v2 defines; others are a protocol violation.
CLIENT_TYPES = frozenset({"open", "close", "ping", "paused", "resumed", "update", "discarded", "error"})
del S


@dataclass(frozen=True, slots=True)
class Send:
    """A server message to send: its JSON ``text``, its ``type`` and ``parameters``."""

    text: str
    type: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Opened:
    """The session is open: ``media`` chosen; ``open`` holds the open parameters."""

    media: Media
    session_id: str
    open: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Paused:
    position: float


@dataclass(frozen=True, slots=True)
class Resumed:
    """Audio resumes; ``discarded`` seconds of audio from ``start`` were not sent."""

    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class Discarded:
    """The client dropped ``discarded`` seconds of audio from ``start`` (e.g. backlog)."""

    start: float
    discarded: float


@dataclass(frozen=True, slots=True)
class Updated:
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ClientError:
    code: Any
    message: str


@dataclass(frozen=True, slots=True)
class Closing:
    """The client closed the session (``reason``: end, error, disconnect, reconnect)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message not allowed in the current state, ignored as the protocol says."""

    type: str
    state: State


@dataclass(frozen=True, slots=True)
class Violation:
    """The client broke the protocol; a ``disconnect`` (reason error) was queued."""

    info: str


Event = Send | Opened | Paused | Resumed | Discarded | Updated | ClientError | Closing | Ignored | Violation


class ServerSession:
    """One AudioHook session, server side.

    :param authorized: ``None`` if the upgrade request was authenticated, else why not
        (sent as the ``disconnect`` info).
    :param stereo: prefer both channels when offered.
    :param formats: accepted formats, preferred first.
    :param organization_id: the ``Audiohook-Organization-Id`` upgrade header, if any; an
        ``open`` naming another organization is refused as unauthorized.

    ``receive_text(text) -> list[Event]``, ``receive_audio(nbytes) -> list[Event]``
    (a :class:`Violation` when audio is not allowed now or is not whole samples).
    """

    def __init__(self, *, authorized: str | None = None, stereo: bool = True, formats: tuple[str, ...] = FORMATS,
                 organization_id: str | None = None):
        self.state = State.AWAIT_OPEN
        self.authorized = authorized
        self.stereo = stereo
        self.formats = formats
        self.organization_id = organization_id
        self.session_id: str | None = None
        self.media: Media | None = None
        self.seq = 0  # last server seq sent
        self.clientseq = 0  # last client seq received
        self.position = 0.0  # seconds of audio received, as the client counts it

    def _send(self, kind: str, parameters: Mapping[str, Any], clientseq: int | None = None) -> Send:
        self.seq += 1
        return Send(json.dumps({"version": VERSION, "type": kind, "seq": self.seq,
                                "clientseq": self.clientseq if clientseq is None else clientseq,
                                "id": self.session_id or "00000000-0000-0000-0000-000000000000",
                                "parameters": dict(parameters)}, separators=(",", ":")), kind, dict(parameters))

    def disconnect(self, reason: str, info: str) -> list[Event]:
        """Queue a ``disconnect`` (reason ``error`` or ``unauthorized``) and wait for close."""
        self.state = State.UNAUTHORIZED if reason == "unauthorized" else State.ERROR
        return [self._send("disconnect", {"reason": reason, "info": info})]

    def _violation(self, info: str) -> list[Event]:
        if self.state in (State.ERROR, State.UNAUTHORIZED, State.CLOSED):
            return [Violation(info)]  # already said goodbye: do not repeat
        return [Violation(info), *self.disconnect("error", info)]

    def receive_text(self, text: str | bytes) -> list[Event]:
        try:
            msg = parse_message(text)
        except AudioHookError as exc:
            return self._violation(str(exc))
        if msg.seq != self.clientseq + 1:
            return self._violation(f"seq {msg.seq} of a {msg.type!r} message does not follow {self.clientseq}")
        self.clientseq = msg.seq
        if msg.serverseq > self.seq:
            return self._violation(f"serverseq {msg.serverseq} is beyond the last server seq {self.seq}")
        if self.session_id is None:
            self.session_id = msg.id
        elif msg.id != self.session_id:
            return self._violation(f"session id {msg.id!r} is not {self.session_id!r}")
        if msg.type not in CLIENT_TYPES:
            return self._violation(f"{msg.type!r} is not a supported client message")
        target = TABLE.get((self.state, msg.type))
        if target is None:
            return [Ignored(msg.type, self.state)]
        try:
            return getattr(self, "_on_" + msg.type)(msg, target)
        except AudioHookError as exc:
            return self._violation(str(exc))

    def receive_audio(self, nbytes: int) -> list[Event]:
        if self.state is not State.ACTIVE or self.media is None:
            return self._violation(f"audio received in state {self.state.value}")
        block = self.media.sample_width * len(self.media.channels)
        if nbytes % block:
            return self._violation(f"audio message of {nbytes} bytes is not whole {block}-byte sample frames")
        self.position += nbytes / block / self.media.rate
        return []

    # ---- handlers: (message, table target) -> events

    def _on_open(self, msg: Message, target: State) -> list[Event]:
        p = msg.parameters
        offered = parse_media(p.get("media"), "open parameters.media")
        if self.authorized is not None:
            return self.disconnect("unauthorized", self.authorized)
        org = p.get("organizationId")
        if self.organization_id is not None and org != self.organization_id:
            return self.disconnect("unauthorized", "organizationId does not match the Audiohook-Organization-Id "
                                                   "header")
        media = choose_media(offered, stereo=self.stereo, formats=self.formats)
        if media is None:
            return self.disconnect("error", "none of the offered media is supported (wanted "
                                            f"{'/'.join(self.formats)} at {RATE} Hz)")
        self.media = media
        self.state = target
        return [self._send("opened", {"media": [media.to_json()], "startPaused": False}),
                Opened(media, msg.id, dict(p))]

    def _on_ping(self, msg: Message, target: State) -> list[Event]:
        return [self._send("pong", {}, clientseq=msg.seq)]

    def _on_paused(self, msg: Message, target: State) -> list[Event]:
        self.state = target
        return [Paused(msg.position)]

    def _on_resumed(self, msg: Message, target: State) -> list[Event]:
        p = msg.parameters
        event = Resumed(parse_duration(p.get("start"), "resumed parameters.start"),
                        parse_duration(p.get("discarded"), "resumed parameters.discarded"))
        self.state = target
        return [event]

    def _on_discarded(self, msg: Message, target: State) -> list[Event]:
        p = msg.parameters
        return [Discarded(parse_duration(p.get("start"), "discarded parameters.start"),
                          parse_duration(p.get("discarded"), "discarded parameters.discarded"))]

    def _on_update(self, msg: Message, target: State) -> list[Event]:
        return [Updated(dict(msg.parameters))]

    def _on_error(self, msg: Message, target: State) -> list[Event]:
        p = msg.parameters
        return [ClientError(p.get("code"), str(p.get("message", "")))]

    def _on_close(self, msg: Message, target: State) -> list[Event]:
        self.state = target
        return [self._send("closed", {}), Closing(str(msg.parameters.get("reason", "end")))]


class ClientSession:
    """The client side (Genesys' role), for the emulator and the tests: builds the
    messages in order with ``seq``/``serverseq``/``position`` kept right."""

    def __init__(self, session_id: str):
        self.session_id = session_id
        self.seq = 0
        self.serverseq = 0
        self.position = 0.0

    def message(self, kind: str, parameters: Mapping[str, Any] | None = None) -> str:
        self.seq += 1
        return json.dumps({"version": VERSION, "type": kind, "seq": self.seq, "serverseq": self.serverseq,
                           "id": self.session_id, "position": format_duration(self.position),
                           "parameters": dict(parameters or {})}, separators=(",", ":"))

    def received(self, text: str) -> dict[str, Any]:
        """Note a server message (its ``seq``); returns it parsed."""
        obj = json.loads(text)
        self.serverseq = obj.get("seq", self.serverseq)
        return obj

    def open(self, organization_id: str, conversation_id: str, participant: Mapping[str, Any],
             media: list[Media]) -> str:
        return self.message("open", {"organizationId": organization_id, "conversationId": conversation_id,
                                     "participant": dict(participant), "media": [m.to_json() for m in media],
                                     "language": "en-US"})
