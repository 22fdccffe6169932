"""Shared HTTP source plumbing: the status decision table (pure), the retry budget, the range probe."""

from __future__ import annotations

import random

import httpx
import pytest
import trio

from voxpipe.download.downloader import HTTPStatusError
from voxpipe.download.httpsource import HTTPSourceSettings, make_client, probe_range, retry_policy
from voxpipe.download.retry import RetryPolicy
from voxpipe.download.status import Action, Decision, RetriesExhausted, RetryBudget, classify
from voxpipe.errors import StreamError

NOW = 1_700_000_000.0


@pytest.mark.parametrize("status, kwargs, action, reason", [
    (200, {}, Action.ACCEPT, ""),
    (202, {"ok": (200, 202)}, Action.ACCEPT, ""),
    (202, {}, Action.FAIL, "http-202"),
    (206, {"ok": (200, 206), "media": True}, Action.ACCEPT, ""),
    (401, {}, Action.REFRESH_TOKEN, "http-401"),
    (403, {}, Action.FAIL, "http-403"),
    (404, {}, Action.FAIL, "http-404"),
    (408, {}, Action.RETRY, "http-408"),
    (416, {"range_asked": True}, Action.RESTART, "range-not-satisfiable"),
    (416, {}, Action.FAIL, "http-416"),
    (429, {}, Action.RATE_LIMITED, "http-429"),
    (500, {}, Action.RETRY, "http-500"),
    (503, {}, Action.RETRY, "http-503"),
])
def test_decision_table(status, kwargs, action, reason):
    decision = classify(status, {}, now=NOW, **kwargs)
    assert (decision.action, decision.reason) == (action, reason)
    assert decision.retryable == (action in (Action.RETRY, Action.RATE_LIMITED, Action.REFRESH_TOKEN))


def test_json_body_where_media_was_expected_is_retried():
    headers = httpx.Headers({"Content-Type": "application/json; charset=utf-8"})
    assert classify(200, headers, now=NOW, media=True) == Decision(Action.RETRY, "json-error-body")
    assert classify(200, headers, now=NOW).action is Action.ACCEPT  # an API answer is JSON
    assert classify(206, {"content-type": "application/problem+json"}, now=NOW, ok=(206,),
                    media=True).action is Action.RETRY


def test_retry_after_seconds_and_http_date():
    assert classify(429, {"retry-after": "7"}, now=NOW).wait == 7.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"  # NOW + 20 s
    assert classify(503, httpx.Headers({"Retry-After": date}), now=NOW).wait == pytest.approx(20.0)
    assert classify(429, {"retry-after": "soon"}, now=NOW).wait is None


def test_budget_counts_failures_and_resets_on_progress():
    budget = RetryBudget(RetryPolicy(max_attempts=3, base_delay=1.0), random.Random(1))
    retry = Decision(Action.RETRY, "http-500")
    assert 0 <= budget.next_wait(retry) <= 1.0
    assert 0 <= budget.next_wait(retry) <= 2.0
    budget.progress()
    budget.next_wait(retry)
    budget.next_wait(retry)
    with pytest.raises(RetriesExhausted) as exc:
        budget.next_wait(retry)
    assert exc.value.reason == "download-failed" and "3 attempts" in str(exc.value)
    assert RetryBudget().next_wait(Decision(Action.RETRY, "http-503", wait=4.0)) == 4.0  # the server's wait wins


def test_budget_server_wait_wins_and_is_capped():
    budget = RetryBudget(RetryPolicy(max_retry_after=60, max_rate_limited=2), random.Random(0))
    assert budget.next_wait(Decision(Action.RATE_LIMITED, "http-429", wait=12.0)) == 12.0
    with pytest.raises(RetriesExhausted, match="retry after 61 s") as exc:
        budget.next_wait(Decision(Action.RATE_LIMITED, "http-429", wait=61.0))
    assert exc.value.reason == "http-429-exhausted"
    with pytest.raises(RetriesExhausted, match="after 3 waits"):
        budget.next_wait(Decision(Action.RATE_LIMITED, "http-429", wait=1.0))


def test_budget_refreshes_a_token_once_and_only_with_one():
    budget = RetryBudget()
    assert budget.next_wait(Decision(Action.REFRESH_TOKEN, "http-401")) == 0.0
    with pytest.raises(RetriesExhausted, match="after a token refresh") as exc:
        budget.next_wait(Decision(Action.REFRESH_TOKEN, "http-401"))
    assert exc.value.reason == "http-401"
    with pytest.raises(RetriesExhausted):
        RetryBudget(can_refresh=False).next_wait(Decision(Action.REFRESH_TOKEN, "http-401"))
    with pytest.raises(ValueError):
        RetryBudget().next_wait(Decision(Action.FAIL, "http-404"))


def test_settings_build_client_and_policy():
    s = HTTPSourceSettings(max_attempts=4, retry_base_delay=0.25, max_retry_after=9, timeout=5, max_connections=3)
    assert retry_policy(s) == RetryPolicy(max_attempts=4, base_delay=0.25, max_retry_after=9)

    async def main():
        client = make_client(s)
        try:
            assert client.timeout.read == 5 and client.follow_redirects
            assert client.headers["user-agent"] == "voxpipe"
        finally:
            await client.aclose()

    trio.run(main)


def _probe(answers: list[httpx.Response], **kwargs):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    async def main():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await probe_range(client, "https://media.example/f?sig=SECRET", what="recording 7: media URL",
                                     policy=RetryPolicy(max_attempts=3, base_delay=0), **kwargs)

    return trio.run(main), seen


def test_probe_reads_size_and_etag_from_206_after_retrying_429_and_500():
    result, seen = _probe([httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(500),
                           httpx.Response(206, headers={"Content-Range": "bytes 0-0/12345", "ETag": '"v1"',
                                                        "Content-Type": "audio/mp4"}, content=b"\x00")])
    assert (result.size, result.etag, result.content_type, result.ranged) == (12345, '"v1"', "audio/mp4", True)
    assert [r.headers["range"] for r in seen] == ["bytes=0-0"] * 3
    assert all("authorization" not in r.headers for r in seen)


def test_probe_of_a_server_ignoring_ranges_keeps_the_first_bytes():
    body = b"RIFF" + bytes(200)
    result, _ = _probe([httpx.Response(200, stream=httpx.ByteStream(body), headers={"Content-Type": "audio/wav"})])
    assert result.size is None and not result.ranged and result.head == body[:64]


def test_probe_expired_url_is_a_403_status_error_without_the_url():
    with pytest.raises(HTTPStatusError) as exc:
        _probe([httpx.Response(403, text="Request has expired")])
    assert exc.value.reason == "http-403" and "SECRET" not in str(exc.value) and "recording 7" in str(exc.value)


def test_probe_gives_up_after_max_attempts():
    with pytest.raises(StreamError) as exc:
        _probe([httpx.Response(503)] * 3)
    assert exc.value.reason == "download-failed"
