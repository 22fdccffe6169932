"""Call lifecycle as a transition table (sans-IO).

    IDLE --DIAL--> CONNECTING --CONNECTED--> STREAMING --HANGUP--> DISCONNECTING --CLOSED--> TERMINATED
                       ^                         |
                       +---------DROPPED---------+   (recoverable drop: reconnect)

``MEDIA`` is legal while STREAMING (and while DISCONNECTING, for frames
already in flight when the hangup was sent); ``ERROR`` ends the call from
any live state; ``HANGUP`` before dialling ends it at once.  Anything not
in :data:`TABLE` raises :class:`IllegalTransition` and leaves the state
unchanged.  Reconnects are bounded: the ``max_reconnects + 1``-th DROPPED
goes to TERMINATED instead of CONNECTING (:data:`EXHAUSTED`).
Requirement: issue "Live call audio over WebSocket", item 5.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

#: Reconnect attempts allowed per call before a drop terminates it.
MAX_RECONNECTS = 3
#: Transitions remembered for diagnostics.
HISTORY_LIMIT = 64


class CallState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    DISCONNECTING = "disconnecting"
    TERMINATED = "terminated"


class CallEvent(enum.Enum):
    DIAL = "dial"  # start connecting (open the WebSocket / accept the call)
    CONNECTED = "connected"  # media session established (e.g. Twilio "start")
    MEDIA = "media"  # an audio message arrived
    DROPPED = "dropped"  # connection lost, recoverable: reconnect
    HANGUP = "hangup"  # either side ends the call (e.g. Twilio "stop")
    CLOSED = "closed"  # the transport finished closing
    ERROR = "error"  # unrecoverable failure


S, E = CallState, CallEvent

#: (state, event) -> next state.  Everything else is illegal.
TABLE: dict[tuple[CallState, CallEvent], CallState] = {
    (S.IDLE, E.DIAL): S.CONNECTING,
    (S.IDLE, E.HANGUP): S.TERMINATED,
    (S.CONNECTING, E.CONNECTED): S.STREAMING,
    (S.CONNECTING, E.DROPPED): S.CONNECTING,  # attempt failed: try again
    (S.CONNECTING, E.HANGUP): S.DISCONNECTING,
    (S.CONNECTING, E.ERROR): S.TERMINATED,
    (S.STREAMING, E.MEDIA): S.STREAMING,
    (S.STREAMING, E.DROPPED): S.CONNECTING,
    (S.STREAMING, E.HANGUP): S.DISCONNECTING,
    (S.STREAMING, E.ERROR): S.TERMINATED,
    (S.DISCONNECTING, E.MEDIA): S.DISCONNECTING,  # in flight before the hangup
    (S.DISCONNECTING, E.HANGUP): S.DISCONNECTING,  # both sides hung up
    (S.DISCONNECTING, E.CLOSED): S.TERMINATED,
    (S.DISCONNECTING, E.ERROR): S.TERMINATED,
}

#: Overrides of TABLE once the reconnect budget is spent.
EXHAUSTED: dict[tuple[CallState, CallEvent], CallState] = {
    (S.CONNECTING, E.DROPPED): S.TERMINATED,
    (S.STREAMING, E.DROPPED): S.TERMINATED,
}

del S, E


class IllegalTransition(Exception):
    """``event`` is not allowed in ``state`` (see :data:`TABLE`)."""

    def __init__(self, state: CallState, event: CallEvent, call_id: str | None = None):
        self.state = state
        self.event = event
        self.call_id = call_id
        where = f"call {call_id}: " if call_id else ""
        super().__init__(f"{where}event {event.name} is illegal in state {state.name}")


@dataclass(frozen=True, slots=True)
class Transition:
    """One applied event: ``source --event--> target``."""

    source: CallState
    event: CallEvent
    target: CallState


class CallStateMachine:
    """The state of one call; :meth:`apply` moves it along :data:`TABLE`.

    ``apply(event) -> CallState`` returns the new state or raises
    :class:`IllegalTransition` (state unchanged).  ``reconnects`` counts
    DROPPED events applied; after ``max_reconnects`` of them the next
    DROPPED terminates the call.  ``history`` keeps the last
    ``HISTORY_LIMIT`` transitions.
    """

    __slots__ = ("state", "reconnects", "max_reconnects", "call_id", "history")

    def __init__(self, call_id: str | None = None, max_reconnects: int = MAX_RECONNECTS):
        if max_reconnects < 0:
            raise ValueError(f"max_reconnects={max_reconnects!r} must be >= 0")
        self.state = CallState.IDLE
        self.reconnects = 0
        self.max_reconnects = max_reconnects
        self.call_id = call_id
        self.history: deque[Transition] = deque(maxlen=HISTORY_LIMIT)

    @property
    def terminated(self) -> bool:
        return self.state is CallState.TERMINATED

    def can_apply(self, event: CallEvent) -> bool:
        return (self.state, event) in TABLE

    def apply(self, event: CallEvent) -> CallState:
        key = (self.state, event)
        target = TABLE.get(key)
        if target is None:
            raise IllegalTransition(self.state, event, self.call_id)
        if event is CallEvent.DROPPED:
            if self.reconnects >= self.max_reconnects:
                target = EXHAUSTED[key]
            else:
                self.reconnects += 1
        self.history.append(Transition(self.state, event, target))
        self.state = target
        return target

    def __repr__(self) -> str:
        return (
            f"CallStateMachine(call_id={self.call_id!r}, state={self.state.name}, "
            f"reconnects={self.reconnects}/{self.max_reconnects})"
        )
