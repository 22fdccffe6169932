"""Range planning, Content-Range parsing and Retry-After: pure logic (RFC 9110)."""

from __future__ import annotations

import random

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from voxpipe.download.ranges import (ContentRange, ContentRangeError, Segment, check_content_range,
                                     parse_content_range, parse_unsatisfied_range, plan_segments)
from voxpipe.download.retry import RetryPolicy, parse_retry_after


@given(size=st.integers(0, 10**10), segment=st.integers(1, 10**9))
def test_segments_cover_every_byte_exactly_once(size, segment):
    if size // segment > 20000:
        segment = size // 20000 + 1
    segs = plan_segments(size, segment)
    assert sum(s.length for s in segs) == size
    pos = 0
    for s in segs:
        assert s.start == pos and 1 <= s.length <= segment
        pos = s.end + 1
    assert pos == size


def test_plan_segments_examples_and_errors():
    assert plan_segments(10, 4) == [Segment(0, 3), Segment(4, 7), Segment(8, 9)]
    assert plan_segments(0, 4) == []
    assert Segment(0, 99).range_header() == "bytes=0-99"
    with pytest.raises(ValueError):
        plan_segments(-1, 4)
    with pytest.raises(ValueError):
        plan_segments(10, 0)


@pytest.mark.parametrize("value,expected", [
    ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
    ("bytes 900-999/*", ContentRange(900, 999, None)),
    ("BYTES  5-5/6", ContentRange(5, 5, 6)),
])
def test_parse_content_range(value, expected):
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", [None, "", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2", "bytes 0-/10",
                                   "bytes */10", "bytes 1-2/3, bytes 4-5/6", "bytes -1-2/3"])
def test_parse_content_range_rejects(value):
    with pytest.raises(ContentRangeError):
        parse_content_range(value)


def test_check_content_range_requires_what_was_asked():
    assert check_content_range("bytes 10-19/100", Segment(10, 19), 100).length == 10
    with pytest.raises(ContentRangeError, match="asked for bytes=10-19"):
        check_content_range("bytes 0-9/100", Segment(10, 19), 100)
    with pytest.raises(ContentRangeError, match="complete length of 200"):
        check_content_range("bytes 10-19/200", Segment(10, 19), 100)


def test_unsatisfied_range():
    assert parse_unsatisfied_range("bytes */1234") == 1234
    assert parse_unsatisfied_range("bytes 0-1/2") is None
    assert parse_unsatisfied_range(None) is None


def test_retry_after_seconds_and_http_date():
    now = 1_700_000_000.0
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == pytest.approx(10.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_backoff_is_bounded_and_grows():
    policy = RetryPolicy(base_delay=0.5, max_delay=8)
    rng = random.Random(1)
    for attempt in range(1, 12):
        cap = min(8, 0.5 * 2 ** (attempt - 1))
        for _ in range(50):
            assert 0 <= policy.backoff(attempt, rng) <= cap


# --------------------------------------------------------------------------- server side

from voxpipe.download.ranges import IGNORE, ByteRange, Unsatisfiable, parse_range  # noqa: E402

SERVER_RANGES = [
    ("bytes=0-9", 100, ByteRange(0, 9)), ("bytes=90-", 100, ByteRange(90, 99)), ("bytes=-10", 100, ByteRange(90, 99)),
    ("bytes=-500", 100, ByteRange(0, 99)), ("bytes=5-500", 100, ByteRange(5, 99)), ("BYTES = 1 - 2", 100, ByteRange(1, 2)),
    ("bytes=100-", 100, Unsatisfiable), ("bytes=-0", 100, Unsatisfiable), ("bytes=0-", 0, Unsatisfiable),
    ("bytes=5-1", 100, IGNORE), ("bytes=0-1,3-4", 100, IGNORE), ("bytes=-", 100, IGNORE), ("lines=0-1", 100, IGNORE),
    ("bytes=a-b", 100, IGNORE), ("bytes=" + "9" * 20 + "-", 100, IGNORE), (None, 100, IGNORE),
]


@pytest.mark.parametrize("value,size,expected", SERVER_RANGES)
def test_server_side_range_decisions(value, size, expected):
    decision = parse_range(value, size)
    if expected is Unsatisfiable:
        assert isinstance(decision, Unsatisfiable)
    else:
        assert decision == expected


@pytest.mark.parametrize("read_size", [64 * 1024, 1 << 20])
def test_coalesced_passes_large_pieces_through_and_bounds_every_chunk(read_size):
    """Large socket reads reach the engine as the very objects httpcore returned (no copy);
    small ones are joined; a piece over ``read_size`` is cut; no chunk exceeds ``read_size``."""
    from voxpipe.download.downloader import coalesced

    rng = random.Random(read_size)
    sizes = [read_size, 10, read_size // 2, 3000, 5000, read_size - 1, 2 * read_size + 7, 1, read_size // 3,
             read_size // 3, read_size // 3, read_size] + [rng.randrange(1, 2 * read_size) for _ in range(40)]
    pieces = [bytes([i % 251]) * n for i, n in enumerate(sizes)]

    async def source():
        for p in pieces:
            yield p

    async def main():
        return [c async for c in coalesced(source(), read_size)]

    chunks = trio.run(main)
    assert b"".join(chunks) == b"".join(pieces)
    assert all(0 < len(c) <= read_size for c in chunks)
    assert chunks[0] is pieces[0]  # passed through: the same object
    assert sum(1 for c in chunks if any(c is p for p in pieces)) >= 3
