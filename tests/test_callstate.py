"""Call state machine: table-driven unit tests and a hypothesis stateful test."""

from __future__ import annotations

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from voxpipe.voice.callstate import (
    HISTORY_LIMIT,
    TABLE,
    CallEvent as E,
    CallState as S,
    CallStateMachine,
    IllegalTransition,
)

# The lifecycle from the issue, written independently of TABLE as allowed edges.
SPEC_EDGES = {
    S.IDLE: {E.DIAL: S.CONNECTING, E.HANGUP: S.TERMINATED},
    S.CONNECTING: {E.CONNECTED: S.STREAMING, E.DROPPED: S.CONNECTING,
                   E.HANGUP: S.DISCONNECTING, E.ERROR: S.TERMINATED},
    S.STREAMING: {E.MEDIA: S.STREAMING, E.DROPPED: S.CONNECTING,
                  E.HANGUP: S.DISCONNECTING, E.ERROR: S.TERMINATED},
    S.DISCONNECTING: {E.MEDIA: S.DISCONNECTING, E.HANGUP: S.DISCONNECTING,
                      E.CLOSED: S.TERMINATED, E.ERROR: S.TERMINATED},
    S.TERMINATED: {},
}


def test_table_matches_spec():
    assert TABLE == {(s, e): t for s, edges in SPEC_EDGES.items() for e, t in edges.items()}


def test_happy_path_and_history():
    m = CallStateMachine(call_id="CA123")
    for event, state in [(E.DIAL, S.CONNECTING), (E.CONNECTED, S.STREAMING), (E.MEDIA, S.STREAMING),
                         (E.HANGUP, S.DISCONNECTING), (E.CLOSED, S.TERMINATED)]:
        assert m.apply(event) is state
    assert m.terminated
    assert [t.target for t in m.history][-1] is S.TERMINATED
    assert m.history[0].source is S.IDLE and m.history[0].event is E.DIAL


def test_illegal_transition_names_state_event_and_call():
    m = CallStateMachine(call_id="CA9")
    with pytest.raises(IllegalTransition, match="call CA9: event MEDIA is illegal in state IDLE") as ei:
        m.apply(E.MEDIA)
    assert ei.value.state is S.IDLE and ei.value.event is E.MEDIA
    assert m.state is S.IDLE and not m.history


def test_reconnect_then_budget_exhausted_terminates():
    m = CallStateMachine(max_reconnects=2)
    m.apply(E.DIAL)
    m.apply(E.CONNECTED)
    assert m.apply(E.DROPPED) is S.CONNECTING
    assert m.apply(E.CONNECTED) is S.STREAMING
    assert m.apply(E.DROPPED) is S.CONNECTING
    m.apply(E.CONNECTED)
    assert m.apply(E.DROPPED) is S.TERMINATED
    assert m.reconnects == 2


class CallLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.max_reconnects = 3
        self.machine = CallStateMachine(call_id="test", max_reconnects=self.max_reconnects)
        self.model = S.IDLE
        self.model_reconnects = 0
        self.applied = 0

    @rule(event=st.sampled_from(list(E)))
    def apply_event(self, event):
        expected = SPEC_EDGES[self.model].get(event)
        before = self.machine.state
        if expected is None:
            with pytest.raises(IllegalTransition):
                self.machine.apply(event)
            assert self.machine.state is before
            return
        if event is E.DROPPED:
            if self.model_reconnects >= self.max_reconnects:
                expected = S.TERMINATED
            else:
                self.model_reconnects += 1
        assert self.machine.apply(event) is expected
        self.model = expected
        self.applied += 1

    @precondition(lambda self: self.model is S.TERMINATED)
    @rule(event=st.sampled_from(list(E)))
    def terminated_is_absorbing(self, event):
        with pytest.raises(IllegalTransition):
            self.machine.apply(event)

    @invariant()
    def matches_model(self):
        assert self.machine.state is self.model
        assert self.machine.reconnects == self.model_reconnects <= self.max_reconnects
        assert len(self.machine.history) == min(self.applied, HISTORY_LIMIT)
        if self.machine.history:
            assert self.machine.history[-1].target is self.model
        assert self.machine.terminated == (self.model is S.TERMINATED)


TestCallLifecycle = CallLifecycle.TestCase
TestCallLifecycle.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
