"""ParallelDownload against the CXone emulator's signed media URLs over loopback (no bearer needed)."""

from __future__ import annotations

import time

import httpx
import pytest
import trio

from voxpipe.download.parallel import ParallelDownload, effective_connections
from voxpipe.download.ratelimit import RateLimiter
from voxpipe.download.retry import RetryPolicy
from voxpipe.errors import StreamRestart
from voxpipe.serving import serve_asgi
from voxpipe_cxone.emulator.app import CxoneEmulator
from voxpipe_cxone.emulator.faults import FaultAction, FaultKind, RequestKind
from voxpipe_cxone.emulator.settings import EmulatorSettings

from cxone_env import make_wav

SEGMENT = 64 * 1024
POLICY = RetryPolicy(max_attempts=8, base_delay=0.001, max_retry_after=5)


class InFlight:
    """ASGI wrapper counting concurrent media-file requests (the server's view of parallelism)."""

    def __init__(self, app):
        self.app = app
        self.now = self.peak = self.total = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/media-playback/v1/files/"):
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)
            try:
                await self.app(scope, receive, send)
            finally:
                self.now -= 1
        else:
            await self.app(scope, receive, send)


@pytest.fixture
def recs(tmp_path):
    d = tmp_path / "recs"
    d.mkdir()
    make_wav(d / "5001.wav", 30, seed=1)  # 480 044 bytes: 8 segments of 64 KiB
    make_wav(d / "5002.wav", 25, seed=2)
    return d


def media_url(emu: CxoneEmulator, base: str, rid: str) -> str:
    params = emu.signer.sign(rid, time.time())
    return f"{base}/media-playback/v1/files/{rid}?expires={params['expires']}&sig={params['sig']}"


async def fetch(client, nursery, url, size, *, connections, slots=None, start=0, etag=None, limiter=None,
                segment=SEGMENT, rid="5001"):
    dl = ParallelDownload(client, url, recording_id=rid, size=size, segment_size=segment, connections=connections,
                          nursery=nursery, slots=slots, policy=POLICY, read_size=16 * 1024, start=start, etag=etag,
                          limiter=limiter)
    got = bytearray()
    expected = start
    async for chunk in dl.chunks():
        assert chunk.offset == expected  # strictly increasing, contiguous
        expected = chunk.end
        got += chunk.data
        await trio.sleep(0)
    return bytes(got), dl


def run_with_emulator(recs, body, **settings):
    emu = CxoneEmulator(EmulatorSettings(recordings=recs, **settings))
    app = InFlight(emu)

    async def main():
        async with trio.open_nursery() as nursery:
            base = await nursery.start(serve_asgi, app)
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as client:
                await body(emu, app, base, client, nursery)
            nursery.cancel_scope.cancel()

    with emu:
        trio.run(main)


def test_four_connections_fetch_concurrently_and_reassemble_in_order(recs):
    data = (recs / "5001.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        got, dl = await fetch(client, nursery, media_url(emu, base, "5001"), len(data), connections=4)
        assert got == data
        assert app.peak == 4 and app.total == -(-len(data) // SEGMENT)
        assert dl.peak_buffered <= 4 * SEGMENT  # bounded: never the whole recording
        assert emu.stats.bytes_served("5001") == len(data)  # each byte fetched once
        assert dl.etag == emu.store.get("5001").etag

    run_with_emulator(recs, body)


def test_resume_from_a_checkpoint_fetches_only_the_rest(recs):
    data = (recs / "5001.wav").read_bytes()
    start = 200_001  # inside the fourth segment

    async def body(emu, app, base, client, nursery):
        etag = emu.store.get("5001").etag
        got, _ = await fetch(client, nursery, media_url(emu, base, "5001"), len(data), connections=3, start=start,
                             etag=etag)
        assert got == data[start:]
        assert emu.stats.bytes_served("5001") == len(data) - start

    run_with_emulator(recs, body)


def test_drops_ignored_ranges_and_json_errors_in_parallel_never_corrupt(recs):
    data = (recs / "5001.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        emu.faults.schedule(FaultAction(FaultKind.DROP, drop_after=1000), FaultAction(FaultKind.IGNORE_RANGE),
                            FaultAction(FaultKind.JSON_ERROR), FaultAction(FaultKind.RATE_LIMIT, retry_after=0),
                            FaultAction(FaultKind.DROP, drop_after=70_000, ignore_range=True),
                            FaultAction(FaultKind.SERVER_ERROR, status=503), kinds=[RequestKind.MEDIA_FILE])
        got, dl = await fetch(client, nursery, media_url(emu, base, "5001"), len(data), connections=4)
        assert got == data
        # drop, JSON error, 429 and 503 each cost a retry; the ignored ranges may be absorbed (a 200 read
        # only as far as its span needs)
        assert dl.stats.retries >= 4 and not emu.faults.pending()

    run_with_emulator(recs, body)


def test_a_changed_etag_between_segments_restarts(recs):
    data = (recs / "5001.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        # the third segment request finds a new version of the recording
        emu.faults.schedule(FaultAction(FaultKind.NONE), FaultAction(FaultKind.NONE), FaultKind.ETAG_CHANGE,
                            kinds=[RequestKind.MEDIA_FILE])
        with pytest.raises(StreamRestart, match="recording 5001.*ETag") as info:
            await fetch(client, nursery, media_url(emu, base, "5001"), len(data), connections=4)
        assert info.value.reason == "etag-changed"

    run_with_emulator(recs, body)


def test_stale_checkpoint_etag_restarts_instead_of_splicing(recs):
    data = (recs / "5001.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        old = emu.store.get("5001").etag
        emu.store.mutate("5001")
        with pytest.raises(StreamRestart):
            await fetch(client, nursery, media_url(emu, base, "5001"), len(data), connections=2, start=SEGMENT,
                        etag=old)

    run_with_emulator(recs, body)


def test_global_cap_is_shared_across_streams_without_deadlock(recs):
    a, b = (recs / "5001.wav").read_bytes(), (recs / "5002.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        slots = trio.CapacityLimiter(2)
        results = {}

        async def one(rid, size):
            results[rid], _ = await fetch(client, nursery, media_url(emu, base, rid), size, connections=4,
                                          slots=slots, rid=rid)

        with trio.fail_after(30):
            async with trio.open_nursery() as inner:
                inner.start_soon(one, "5001", len(a))
                inner.start_soon(one, "5002", len(b))
        assert results == {"5001": a, "5002": b}
        assert app.peak == 2  # 8 connections wanted, the cap held them to 2

    run_with_emulator(recs, body)


def test_every_segment_request_waits_for_the_request_budget(recs):
    data = (recs / "5002.wav").read_bytes()
    segments = -(-len(data) // SEGMENT)

    async def body(emu, app, base, client, nursery):
        limiter = RateLimiter(3, 0.3)
        t0 = trio.current_time()
        got, _ = await fetch(client, nursery, media_url(emu, base, "5002"), len(data), connections=4, limiter=limiter,
                             rid="5002")
        assert got == data
        # 7 requests at 3 per 0.3 s: the 4th and 7th must each wait for a window to pass
        assert trio.current_time() - t0 >= 0.6 - 0.05 and segments == 7

    run_with_emulator(recs, body)


def test_abandoning_the_iterator_cancels_the_segment_requests(recs):
    data = (recs / "5001.wav").read_bytes()

    async def body(emu, app, base, client, nursery):
        dl = ParallelDownload(client, media_url(emu, base, "5001"), recording_id="5001", size=len(data),
                              segment_size=SEGMENT, connections=4, nursery=nursery, policy=POLICY)
        agen = dl.chunks()
        first = await agen.__anext__()
        assert first.offset == 0
        await agen.aclose()
        with trio.fail_after(10):  # the server notices the closed connections
            while app.now:
                await trio.sleep(0.01)
        assert app.total < -(-len(data) // SEGMENT)  # no segment was requested after the close

    run_with_emulator(recs, body)


def test_effective_connections():
    assert effective_connections(None, SEGMENT, 4) == 1
    assert effective_connections(10 * SEGMENT, SEGMENT, 4) == 4
    assert effective_connections(2 * SEGMENT, SEGMENT, 4) == 2
    assert effective_connections(10 * SEGMENT, SEGMENT, 4, start=9 * SEGMENT + 1) == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="connections must be 1..16"):
        ParallelDownload(None, "http://127.0.0.1/x", recording_id="r", size=10, segment_size=1, connections=17,
                         nursery=None)
    with pytest.raises(ValueError, match="needs the size"):
        ParallelDownload(None, "http://127.0.0.1/x", recording_id="r", size=None, segment_size=1, connections=2,
                         nursery=None)
