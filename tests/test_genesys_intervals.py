"""Splitting analytics query intervals past the 100,000-result paging limit: the pure
planner, the emulator's query semantics, and discovery of more than 100,000
conversations in one interval against the emulator over HTTP."""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voxpipe.components import PipelineContext
from voxpipe_genesys import intervals
from voxpipe_genesys.emulator import EmulatorConfig, GenesysEmulator
from voxpipe_genesys.emulator import app as emulator_app
from voxpipe_genesys.emulator.catalogue import Catalogue, Conversation, SyntheticCatalogue, matches, synthetic_audio
from voxpipe_genesys.intervals import IntervalPlan, Part, Step, after_page, fits
from voxpipe_genesys.source import GenesysSettings, GenesysSource
from voxpipe.serving import serve_in_thread

from genesys_helpers import pipeline_yaml, run_yaml

DAY = datetime(2026, 11, 3, tzinfo=timezone.utc)


def test_fits_follows_page_size_times_page_number():
    assert fits(100_000, 100) and not fits(100_001, 100)
    assert fits(99_990, 30) and not fits(99_991, 30)  # the last page would be 3334 × 30 = 100,020
    assert fits(0, 100)


def test_after_page_decides_next_page_split_or_done():
    assert after_page(1, 100, 100, 250) is Step.NEXT_PAGE
    assert after_page(3, 100, 50, 250) is Step.DONE
    assert after_page(1, 100, 0, 0) is Step.DONE
    assert after_page(1, 100, 100, 100_001) is Step.SPLIT
    assert after_page(7, 100, 100, 120_000) is Step.SPLIT  # the part grew past the limit while read
    assert after_page(2, 100, 0, 500) is Step.DONE  # an empty page ends the part whatever totalHits says


def test_parts_tile_the_interval_on_whole_milliseconds():
    plan = IntervalPlan.of("2026-11-03T00:00:00Z/2026-11-03T00:00:00.999Z")
    part = plan.next()
    assert part == Part(intervals.parse_ms("2026-11-03T00:00:00Z"), intervals.parse_ms("2026-11-03T00:00:00.999Z"))
    plan.split(part)
    first, second = plan.next(), plan.next()
    assert first.end_ms == second.start_ms == part.start_ms + 499 and plan.next() is None
    assert first.interval == "2026-11-03T00:00:00.000Z/2026-11-03T00:00:00.499Z"
    assert first.holds(first.start_ms) and not first.holds(first.end_ms) and second.holds(second.start_ms)
    with pytest.raises(intervals.TooDense, match="cannot be split further"):
        Part(5, 6).bisect()
    # a non-UTC offset is the same instant
    assert intervals.parse_ms("2026-11-03T01:00:00+01:00") == intervals.parse_ms("2026-11-03T00:00:00Z")


def test_bisecting_keeps_parts_in_time_order_and_every_instant_in_exactly_one_part():
    rng = random.Random(5)
    plan = IntervalPlan(Part(0, 10_000))
    done: list[Part] = []
    while (part := plan.next()) is not None:
        if part.end_ms - part.start_ms > 300 and rng.random() < 0.7:
            plan.split(part)
        else:
            done.append(part)
    assert done[0].start_ms == 0 and done[-1].end_ms == 10_000 and plan.splits == len(done) - 1
    assert all(a.end_ms == b.start_ms for a, b in zip(done, done[1:]))
    for instant in rng.sample(range(10_000), 200):
        assert sum(p.holds(instant) for p in done) == 1


def test_synthetic_catalogue_answers_like_the_analytics_query():
    cat = SyntheticCatalogue(1000, start=DAY, span=timedelta(hours=10))  # one every 36 s, 30..230 s long
    ms = intervals.to_ms
    start, end = ms(DAY + timedelta(hours=2)), ms(DAY + timedelta(hours=3))
    answer = cat.query(start, end)
    brute = [c for c in map(cat.conversation_at, range(1000)) if matches(c, start, end)]
    assert [c.conversation_id for c in answer] == [c.conversation_id for c in brute]
    early = [c for c in answer if c.start_ms < start]
    assert early and all(c.end_ms > start for c in early)  # still active when the interval begins
    assert len(answer) == len(early) + 100
    # nothing from before the interval's first day, even if still active
    midnight = ms(DAY + timedelta(days=1))
    assert all(c.start_ms >= midnight for c in SyntheticCatalogue(
        1000, start=DAY + timedelta(hours=23), span=timedelta(hours=2)).query(midnight, midnight + 60_000))
    conv = cat.conversation_at(7)
    assert cat.conversation(conv.conversation_id) == conv and cat.recording(conv.recordings[0].recording_id)
    assert cat.conversation("5ca1ab1e-0000-4000-8000-0000000003e8") is None  # index 1000: out of range
    assert cat.find("synthetic-7") == conv.recordings[0]


def _token(url: str) -> dict[str, str]:
    answer = httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
                        data={"grant_type": "client_credentials"})
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


def test_emulator_refuses_pagination_past_100000_results():
    cat = SyntheticCatalogue(120_000, start=DAY)
    with serve_in_thread(GenesysEmulator(cat, EmulatorConfig(rate_limit=100_000))) as url:
        q, auth = url + "/api/v2/analytics/conversations/details/query", _token(url)
        interval = "2026-11-03T00:00:00Z/2026-11-04T00:00:00Z"
        last = httpx.post(q, headers=auth, json={"interval": interval, "paging": {"pageSize": 100, "pageNumber": 1000}})
        assert last.status_code == 200 and last.json()["totalHits"] == 120_000
        assert len(last.json()["conversations"]) == 100
        refused = httpx.post(q, headers=auth, json={"interval": interval,
                                                    "paging": {"pageSize": 100, "pageNumber": 1001}})
        assert refused.status_code == 400
        body = refused.json()
        assert body["message"] == "Pagination may not exceed 100000 results" and body["status"] == 400
        assert body["contextId"] and body["code"]


COUNT = 120_000


@pytest.fixture(scope="module")
def big_day():
    """An emulator serving 120,000 conversations in one day, generated on demand (nothing
    stored); each lasts up to 230 s, so every split boundary has conversations straddling it."""
    cat = SyntheticCatalogue(COUNT, start=DAY)
    app = GenesysEmulator(cat, EmulatorConfig(rate_limit=1_000_000, not_ready_polls=0))
    with serve_in_thread(app) as url:
        yield cat, app, url


def discover_all(url: str, tmp_path, interval: str, page_size: int = 100) -> list[str]:
    """The conversation ids the genesys source's discovery lists for ``interval``, in order."""
    settings = GenesysSettings(api_base=url, login_base=url, client_id="voxpipe-emulator",
                               client_secret="emulator-secret", max_requests_per_minute=100_000, interval=interval,
                               page_size=page_size)
    found: list[str] = []

    async def discover() -> None:
        source = GenesysSource(settings, PipelineContext("p", tmp_path))
        try:
            async for conv in source.conversations():
                found.append(conv.conversation_id)
        finally:
            await source.aclose()

    trio.run(discover)
    return found


def test_discovery_lists_every_conversation_of_an_interval_over_100000_exactly_once(big_day, tmp_path):
    cat, app, url = big_day
    before = app.stats.requests.get("analytics-query", 0)
    found = discover_all(url, tmp_path, "2026-11-03T00:00:00Z/2026-11-04T00:00:00Z")
    assert len(found) == COUNT and len(set(found)) == COUNT  # nothing lost, nothing twice
    assert found == list(cat.ids())  # and in start order
    queries = app.stats.requests["analytics-query"] - before
    # one first page of the whole day (too many to page through), then 2 × 600 pages of 100
    # (one or two more where conversations that began before a half and still go on add up)
    assert 1 + 2 * 600 <= queries <= 1 + 2 * 602, queries


def test_a_sample_of_the_big_day_is_archived_with_its_facts(big_day, tmp_path):
    cat, _, url = big_day
    sample = sorted(random.Random(3).sample(range(COUNT), 12))
    ids = [cat.conversation_at(i).conversation_id for i in sample]
    archive = tmp_path / "archive"
    summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"conversations: [{', '.join(ids)}]"))
    assert summary.ok and len(summary.results) == len(sample), [(r.id, r.message) for r in summary.failed]
    for i in sample:
        conv = cat.conversation_at(i)
        rid = conv.recordings[0].recording_id
        [path] = list(archive.glob(f"{rid}.*.gz"))
        assert gzip.decompress(path.read_bytes()) == synthetic_audio(i)
        facts = json.loads(path.with_name(path.name + ".json").read_text())["facts"]
        assert facts["conversation_id"] == conv.conversation_id and facts["agent_name"] == conv.agent_name


def test_an_interval_too_dense_to_split_fails_discovery_clearly(tmp_path):
    # 100,001 conversations starting within the same millisecond cannot be paged through
    cat = SyntheticCatalogue(100_001, start=DAY, span=timedelta(milliseconds=1))
    with serve_in_thread(GenesysEmulator(cat, EmulatorConfig(rate_limit=1_000_000))) as url:
        with pytest.raises(Exception) as caught:
            discover_all(url, tmp_path, "2026-11-03T00:00:00Z/2026-11-03T00:00:01Z")
    error = caught.value
    assert getattr(error, "reason", None) == "interval-too-dense", error
    assert "2026-11-03T00:00:00.000Z/2026-11-03T00:00:00.001Z cannot be split further" in str(error)
    assert "holds 100001 conversations" in str(error)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_splitting_against_bursty_catalogues_keeps_every_conversation_exactly_once(tmp_path, data):
    # the paging limit scaled down to 12 on both sides, conversations in bursts (many in the
    # same second), lasting up to an hour so that they straddle split boundaries and days
    limit = 12
    page_size = data.draw(st.integers(1, 12), label="page_size")
    base = intervals.to_ms(DAY)
    bursts = data.draw(st.lists(st.tuples(st.integers(-3_600_000, 90_000_000), st.integers(1, 11)),
                                min_size=1, max_size=12), label="bursts")
    convs = []
    for b, (at, n) in enumerate(bursts):
        for k in range(n):
            start = base + at + k * data.draw(st.sampled_from([0, 1, 1000]), label="step")
            length = data.draw(st.integers(1_000, 3_600_000), label="length")
            begin = datetime.fromtimestamp(start / 1000, timezone.utc)
            convs.append(Conversation(f"c{b:02d}{k:02d}-0000-4000-8000-000000000000", f"b{b}k{k}", begin,
                                      begin + timedelta(milliseconds=length), ()))
    convs.sort(key=lambda c: c.start_ms)
    start_ms, end_ms = base, base + 86_400_000
    # bisecting ends once a part's answer can be paged through, which needs fewer conversations
    # active at any one instant than the limit (for the real API: fewer than 100,000 calls at once)
    pageable = limit // page_size * page_size
    assume(max(sum(1 for c in convs if c.start_ms <= t < c.end_ms) for t in {c.start_ms for c in convs}) <= pageable)
    expected = [c.conversation_id for c in convs if start_ms <= c.start_ms < end_ms]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(intervals, "MAX_QUERY_RESULTS", limit)
        mp.setattr(emulator_app, "MAX_QUERY_RESULTS", limit)
        with serve_in_thread(GenesysEmulator(Catalogue(convs), EmulatorConfig(rate_limit=1_000_000))) as url:
            found = discover_all(url, tmp_path, f"{intervals.iso_ms(start_ms)}/{intervals.iso_ms(end_ms)}", page_size)
    assert sorted(found) == sorted(expected) and len(found) == len(set(found))
