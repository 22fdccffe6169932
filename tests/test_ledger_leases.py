"""Lease rules (voxpipe.ledger.leases), synchronously: the table in the module docstring."""

from __future__ import annotations

import pytest

from voxpipe.ledger.leases import (Decision, LeaseRow, Resume, acquire_decision, check_terms, claim_decision, fenced,
                                   next_token, resume_plan, worker_alive)

NOW = 1000.0


@pytest.mark.parametrize("row, expected", [
    (None, Decision.CLAIM),
    (LeaseRow("queued", None, 0, None), Decision.CLAIM),
    (LeaseRow("queued", "w1", 3, NOW - 1), Decision.TAKEOVER),  # claimed, holder died before its first attempt
    (LeaseRow("downloading", "w1", 3, NOW + 5), Decision.BUSY),
    (LeaseRow("downloading", "w1", 3, NOW - 0.001), Decision.TAKEOVER),
    (LeaseRow("verified", "w1", 3, NOW - 10), Decision.TAKEOVER),
    (LeaseRow("downloading", "w1", 3, None), Decision.TAKEOVER),  # a crashed run's checkpoint, lease released
    (LeaseRow("stored", "w1", 3, None), Decision.SETTLED),
    (LeaseRow("failed", "w1", 3, None), Decision.SETTLED),
])
def test_claim_decision(row, expected):
    assert claim_decision(row, NOW) is expected


def test_acquire_may_restart_settled_rows_but_not_live_leases():
    assert acquire_decision(LeaseRow("failed", "w1", 2, None), NOW) is Decision.CLAIM
    assert acquire_decision(LeaseRow("stored", "w1", 2, NOW + 5), NOW) is Decision.BUSY
    assert acquire_decision(LeaseRow("downloading", "w1", 2, NOW + 5), NOW) is Decision.BUSY


def test_tokens_increment_and_fence_the_previous_holder():
    row = LeaseRow("downloading", "w1", 4, NOW - 1)
    token = next_token(row)
    assert token == 5 and next_token(None) == 1
    taken = LeaseRow("downloading", "w2", token, NOW + 60)
    assert fenced(taken, "w2", 5)
    assert not fenced(taken, "w1", 4)  # the old holder's change is refused
    assert not fenced(taken, "w1", 5)  # a token alone is not enough: the worker must match too
    assert not fenced(None, "w2", 5)  # forgotten


def test_terms_need_two_heartbeats_per_lease():
    check_terms(60, 20)
    check_terms(60, 30)
    with pytest.raises(ValueError, match="at least 2 times"):
        check_terms(60, 31)
    with pytest.raises(ValueError):
        check_terms(0, 1)


def test_worker_alive():
    assert worker_alive(NOW - 10, None, NOW, 60)
    assert not worker_alive(NOW - 61, None, NOW, 60)
    assert not worker_alive(NOW - 1, NOW - 1, NOW, 60)


@pytest.mark.parametrize("kw, expected", [
    (dict(checkpoint_host="a", takeover=False, sinks_share_state=False), Resume.RESUME),  # crash, same host
    (dict(checkpoint_host="b", takeover=False, sinks_share_state=False), Resume.ABANDON),  # another host's files
    (dict(checkpoint_host="a", takeover=True, sinks_share_state=False), Resume.ABANDON),  # holder may be paused
    (dict(checkpoint_host="b", takeover=True, sinks_share_state=True), Resume.RESUME),  # S3 multipart: anywhere
    (dict(checkpoint_host="a", takeover=False, sinks_share_state=False, first_attempt=False), Resume.DISCARD),
    (dict(checkpoint_host="a", takeover=False, sinks_share_state=True, entries_match=False), Resume.DISCARD),
    (dict(checkpoint_host=None, takeover=False, sinks_share_state=False, can_resume=False), Resume.DISCARD),
])
def test_resume_plan(kw, expected):
    args = dict(my_host="a", can_resume=True, first_attempt=True, entries_match=True)
    args.update(kw)
    assert resume_plan(**args) is expected
