"""The request-rate limiter: sans-IO budget with an explicit clock, and its trio wrapper."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from voxpipe.download.ratelimit import DEFAULT_PAUSE, RateLimiter, WindowBudget


def send(budget: WindowBudget, now: float) -> None:
    assert budget.delay(now) == 0.0, f"request at t={now} should go at once"
    budget.record(now)


def test_allows_max_requests_per_window_then_waits_for_the_oldest_to_leave():
    budget = WindowBudget(3, 60.0)
    for t in (0.0, 1.0, 2.0):
        send(budget, t)
    assert budget.delay(2.5) == pytest.approx(57.5)  # the send at t=0 leaves the window at t=60
    assert budget.delay(60.0) == 0.0
    budget.record(60.0)
    assert budget.delay(60.5) == pytest.approx(0.5)  # next to leave: the send at t=1


def test_never_more_than_max_requests_in_any_window():
    budget = WindowBudget(5, 10.0)
    now, sent = 0.0, []
    for _ in range(40):
        now += budget.delay(now)
        budget.record(now)
        sent.append(now)
        now += 0.3
    for i, t in enumerate(sent):
        assert sum(1 for u in sent if t <= u < t + 10.0) <= 5, f"window starting at {t}"
    assert sent[-1] >= 70.0  # 40 requests at 5 per 10 s need at least 7 full windows


def test_429_pauses_for_retry_after_and_halves_the_budget_then_recovers():
    budget = WindowBudget(100, 60.0)
    send(budget, 0.0)
    budget.on_rate_limited(0.0, 7.0)
    assert budget.delay(1.0) == pytest.approx(6.0)
    assert budget.limit == 50 and budget.rate_limited == 1
    budget.on_rate_limited(0.5, None)  # no Retry-After: default pause, budget halves again
    assert budget.limit == 25 and budget.paused_until == pytest.approx(7.0)
    for _ in range(10):
        budget.on_rate_limited(1.0, 0.0)
    assert budget.limit == 10  # floor: 10% of max_requests
    budget.delay(61.0)  # one quiet window: +10
    assert budget.limit == 20
    budget.delay(1000.0)
    assert budget.limit == 100


def test_default_pause_and_bad_arguments():
    budget = WindowBudget(1, 1.0)
    budget.on_rate_limited(10.0, None)
    assert budget.delay(10.0) == pytest.approx(DEFAULT_PAUSE)
    with pytest.raises(ValueError, match="max_requests >= 1"):
        WindowBudget(0, 1.0)
    with pytest.raises(ValueError, match="per_seconds > 0"):
        WindowBudget(5, 0)


def test_trio_limiter_spaces_concurrent_callers():
    times: list[float] = []

    async def main():
        limiter = RateLimiter(2, 1.0)

        async def call():
            await limiter.acquire()
            times.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(call)
        return limiter

    limiter = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert times == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    assert limiter.waited > 0


def test_trio_limiter_429_slows_everyone():
    times: list[float] = []

    async def main():
        limiter = RateLimiter(300, 60.0)
        await limiter.acquire()
        limiter.on_rate_limited(5.0)
        for _ in range(2):
            await limiter.acquire()
            times.append(trio.current_time())

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert times == pytest.approx([5.0, 5.0])
