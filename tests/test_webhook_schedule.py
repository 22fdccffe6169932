"""Retry schedule and status classification (Standard Webhooks delivery behaviour)."""

from __future__ import annotations

import random

import pytest

from voxpipe_webhook.schedule import (DEFAULT_SCHEDULE, TRANSITIONS, Outcome, Schedule, State, classify, decide,
                                      first_attempt_at)


@pytest.mark.parametrize("status, outcome", [
    (200, Outcome.DELIVERED), (201, Outcome.DELIVERED), (204, Outcome.DELIVERED), (299, Outcome.DELIVERED),
    (None, Outcome.RETRY), (301, Outcome.RETRY), (302, Outcome.RETRY), (408, Outcome.RETRY),
    (500, Outcome.RETRY), (501, Outcome.RETRY), (429, Outcome.THROTTLED), (502, Outcome.THROTTLED),
    (503, Outcome.THROTTLED), (504, Outcome.THROTTLED), (410, Outcome.GONE), (400, Outcome.PERMANENT),
    (401, Outcome.PERMANENT), (403, Outcome.PERMANENT), (404, Outcome.PERMANENT), (413, Outcome.PERMANENT),
    (422, Outcome.PERMANENT),
])
def test_classification(status, outcome):
    assert classify(status) is outcome


def test_transition_table_covers_every_outcome_from_pending():
    assert {o for (s, o) in TRANSITIONS if s is State.PENDING} == set(Outcome)
    assert TRANSITIONS[(State.PENDING, Outcome.GONE)] is State.DISABLED
    assert TRANSITIONS[(State.PENDING, Outcome.PERMANENT)] is State.FAILED


def test_default_schedule_is_the_spec_example():
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    s = Schedule(jitter=0)
    assert [s.delay(n) for n in range(1, 11)] == [0, 5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000]


def test_default_schedule_runs_about_three_days_then_fails():
    s = Schedule(jitter=0)
    now, attempts = 0.0, 0
    while True:
        attempts += 1
        d = decide(s, status=500, attempts=attempts, created_at=0.0, now=now)
        if d.state is not State.PENDING:
            break
        now = d.next_attempt_at
    assert d.state is State.FAILED and "gave up after" in d.note
    assert now == 243305 and attempts == 12  # last attempt at 67.6 h; the next would pass 72 h


def test_jitter_stays_within_bounds_and_spreads():
    s = Schedule(delays=(0, 100), jitter=0.2)
    rng = random.Random(7)
    values = [s.delay(2, rng) for _ in range(500)]
    assert min(values) >= 80 and max(values) <= 120 and len({round(v, 3) for v in values}) > 400
    assert s.delay(1, rng) == 0  # "immediately" stays immediate
    assert first_attempt_at(s, 1000.0, rng) == 1000.0


def test_retry_after_is_honoured_when_longer_and_only_when_throttled():
    s = Schedule(delays=(0, 5), jitter=0)
    d = decide(s, status=429, retry_after=120, attempts=1, created_at=0, now=10)
    assert d.state is State.PENDING and d.next_attempt_at == 130
    d = decide(s, status=503, retry_after=1, attempts=1, created_at=0, now=10)
    assert d.next_attempt_at == 15  # the schedule's delay is longer
    d = decide(s, status=500, retry_after=120, attempts=1, created_at=0, now=10)
    assert d.next_attempt_at == 15  # 500 is not a throttle


def test_horizon_and_max_attempts_end_retries():
    s = Schedule(delays=(0, 10), horizon=25, jitter=0)
    assert decide(s, status=None, error="refused", attempts=1, created_at=0, now=10).state is State.PENDING
    d = decide(s, status=None, error="refused", attempts=2, created_at=0, now=20)
    assert d.state is State.FAILED and "refused" in d.note and "horizon 25" in d.note
    d = decide(s, status=429, retry_after=3600, attempts=1, created_at=0, now=1)
    assert d.state is State.FAILED  # a Retry-After past the horizon cannot be honoured
    s = Schedule(delays=(0, 1), horizon=1e9, jitter=0, max_attempts=3)
    assert decide(s, status=500, attempts=3, created_at=0, now=0).state is State.FAILED


def test_terminal_decisions():
    s = Schedule()
    assert decide(s, status=204, attempts=1, created_at=0, now=1).state is State.DELIVERED
    d = decide(s, status=410, attempts=1, created_at=0, now=1)
    assert d.state is State.DISABLED and d.next_attempt_at is None and "disabled" in d.note
    d = decide(s, status=404, attempts=1, created_at=0, now=1)
    assert d.state is State.FAILED and "permanent" in d.note


@pytest.mark.parametrize("kwargs, message", [
    ({"delays": ()}, "non-empty"), ({"delays": (0, -1)}, ">= 0"), ({"delays": (1, 0)}, "last delay"),
    ({"jitter": 1.5}, "jitter"), ({"horizon": -1}, "horizon"),
])
def test_invalid_schedules(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Schedule(**kwargs)


def test_settings_default_to_the_spec_schedule_when_omitted():
    import base64

    from voxpipe_webhook.sink import WebhookSettings

    secret = "whsec_" + base64.b64encode(bytes(32)).decode()
    settings = WebhookSettings(url="http://127.0.0.1:1/h", secrets=[secret])
    assert settings.schedule() == Schedule(DEFAULT_SCHEDULE, 3 * 86400.0, 0.2)
    assert settings.timeout == 15.0 and settings.headers == {} and settings.outbox is None
    assert secret[6:] not in repr(settings) and secret[6:] not in str(settings.endpoint())
