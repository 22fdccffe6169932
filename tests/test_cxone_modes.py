"""The cxone source's modes through whole pipelines against the emulator over loopback:
parallel ranges, Media Playback discovery (temporary URLs, expiry), stream mode, the
access-key login and the request budget."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import time
from pathlib import Path

import trio

from voxpipe.audit import read_audit
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.plugins import get_registry
from voxpipe.serving import serve_in_thread
from voxpipe_cxone.emulator.app import CxoneEmulator
from voxpipe_cxone.emulator.faults import FaultAction, FaultKind, RequestKind
from voxpipe_cxone.emulator.settings import (DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, DEMO_CLIENT_ID,
                                             DEMO_CLIENT_SECRET, EmulatorSettings)
from voxpipe_cxone.emulator.streaming import plan_stream

from cxone_env import FaultConfig, make_wav, recordings_dir

SEGMENT = 64 * 1024


def pipeline(base: str, out: Path, state: Path, *, concurrency: int = 3, **source) -> str:
    settings = {"type": "cxone", "api_base": base, "token_url": f"{base}/oauth/token", "client_id": DEMO_CLIENT_ID,
                "client_secret": "${CXONE_SECRET}", "chunk_size": SEGMENT, "retry_base_delay": 0.01,
                "max_attempts": 10, **source}
    lines = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in settings.items())
    return (f"pipelines:\n  archive:\n    concurrency: {concurrency}\n    state_dir: {json.dumps(str(state))}\n"
            f"    source:\n{lines}    verifiers:\n      - type: sha256\n"
            f"    sinks:\n      - type: gzip\n        dir: {json.dumps(str(out))}\n        level: 1\n")


def run(text: str, **env):
    cfg = parse_config(text, get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET, **env})
    return trio.run(Runner(cfg.pipeline(None)).run)


@contextlib.contextmanager
def serve(recordings: Path, *, clock=time.time, wrap=None, **settings):
    emu = CxoneEmulator(EmulatorSettings(recordings=recordings, **settings), clock=clock)
    with emu, serve_in_thread(wrap(emu) if wrap else emu) as base:
        yield emu, base


def stored(out: Path, stream_id: str, suffix: str) -> bytes:
    with gzip.open(out / f"{stream_id}.{suffix}.gz", "rb") as f:
        return f.read()


def calls_dir(tmp_path: Path) -> Path:
    d = tmp_path / "calls"
    d.mkdir()
    make_wav(d / "4401.wav", 20, seed=4)  # 320 044 bytes: 5 segments
    make_wav(d / "4402.wav", 12, seed=5)
    return d


# ------------------------------------------------------------------ parallel ranges

def test_parallel_ranges_archive_byte_identical_and_fetch_each_byte_once(tmp_path):
    recs = recordings_dir(tmp_path, big=2, seconds=20)
    ids = sorted(p.stem for p in recs.iterdir() if p.suffix != ".md")
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        summary = run(pipeline(base, out, state, recordings=ids, connections=4, max_connections=6))
        served = emu.stats.bytes_served()
    assert summary.ok, [r.message for r in summary.failed]
    for rid in ids:
        src = next(recs.glob(f"{rid}.*"))
        assert stored(out, rid, src.suffix[1:]) == src.read_bytes()
    assert served == sum(next(recs.glob(f"{rid}.*")).stat().st_size for rid in ids)
    segments = [e for e in read_audit(state / "audit.jsonl") if e["event"] == "segment" and e["stream"] == "9000"]
    assert len(segments) == -(-(recs / "9000.wav").stat().st_size // SEGMENT)


def test_parallel_ranges_survive_a_hostile_server(tmp_path):
    recs = recordings_dir(tmp_path, big=2, seconds=20)
    ids = ["9000", "9001", "100001"]
    out, state = tmp_path / "out", tmp_path / "state"
    faults = FaultConfig(rate_limit=0.05, server_error=0.1, drop=0.15, ignore_range=0.1, json_error=0.05,
                         retry_after=0.0)
    with serve(recs, faults=faults, seed=5) as (emu, base):
        summary = run(pipeline(base, out, state, recordings=ids, connections=3))
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    for rid in ids:
        assert stored(out, rid, "wav") == (recs / f"{rid}.wav").read_bytes()
    assert sum(stats[k] for k in ("rate_limited", "server_errors", "drops", "ignored_ranges", "json_errors")) >= 3


# ------------------------------------------------------------------ Media Playback discovery

def test_media_playback_discovery_archives_by_acd_call_id_and_never_leaks_the_url(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # the CLI keeps httpx at WARNING; this test reads its lines
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.DROP, drop_after=5000), kinds=[RequestKind.MEDIA_FILE])
        summary = run(pipeline(base, out, state, acd_call_ids=["4401", "4402"], connections=2))
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    assert sorted(r.id for r in summary.results) == ["4401", "4402"]
    for cid in ("4401", "4402"):
        assert stored(out, cid, "wav") == (recs / f"{cid}.wav").read_bytes()
    assert stats["requests"]["playback"] == 2 and stats["drops"] == 1
    # the temporary URL's signature appears nowhere: results, manifests, audit, state, logs
    texts = [caplog.text, json.dumps([r.to_dict() for r in summary.results])]
    texts += [p.read_text(errors="replace") for p in list(out.glob("*.json")) + list(state.rglob("*"))
              if p.is_file() and p.suffix in (".json", ".jsonl")]
    for text in texts:
        assert not re.search(r"sig=[0-9a-f]{8}", text) and "fileToPlayUrl" not in text
    # httpx's request log line is redacted to the path
    assert re.search(r"HTTP Request: GET http://127.0.0.1:\d+/media-playback/v1/files/4401 ", caplog.text)
    assert json.loads((out / "4401.wav.gz.json").read_text())["metadata"]["acd_call_id"] == "4401"


class ExpireAfterFirstMediaRequest:
    """Moves the emulator's clock past the URL lifetime once the first media request ends."""

    def __init__(self, emu: CxoneEmulator):
        self.emu, self.offset, self.media_requests = emu, 0.0, 0

    def clock(self) -> float:
        return time.time() + self.offset

    async def __call__(self, scope, receive, send):
        await self.emu(scope, receive, send)
        if scope["type"] == "http" and scope["path"].startswith("/media-playback/v1/files/"):
            self.media_requests += 1
            self.offset = 10_000.0  # every URL signed before now has expired


def test_expired_temporary_url_is_refreshed_and_the_download_continues(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    holder: dict = {}

    def clock():
        return holder["wrap"].clock() if "wrap" in holder else time.time()

    def wrap(emu):
        holder["wrap"] = ExpireAfterFirstMediaRequest(emu)
        return holder["wrap"]

    size = (recs / "4401.wav").stat().st_size
    with serve(recs, clock=clock, wrap=wrap, token_ttl=1e6, media_url_ttl=60) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.DROP, drop_after=30_000), kinds=[RequestKind.MEDIA_FILE])
        summary = run(pipeline(base, out, state, acd_call_ids=["4401"], concurrency=1))
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    assert stored(out, "4401", "wav") == (recs / "4401.wav").read_bytes()
    assert stats["responses"].get("403") == 1 and stats["requests"]["playback"] == 2
    refresh = [e for e in read_audit(state / "audit.jsonl") if e["event"] == "media-url-refresh"]
    assert len(refresh) == 1 and 0 < refresh[0]["at"] <= 30_000
    # continued from the last byte received (the server sent 30 000; TCP may lose a tail), not from 0
    assert stats["bytes_served"]["4401"] == size + 30_000 - refresh[0]["at"]


def test_unknown_acd_call_fails_that_stream_only_with_a_clear_reason(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        summary = run(pipeline(base, out, state, acd_call_ids=["4402", "nope"]))
    by_id = {r.id: r for r in summary.results}
    assert by_id["4402"].ok
    assert by_id["nope"].reason == "http-404" and "acd call nope media playback lookup" in by_id["nope"].message


# ------------------------------------------------------------------ stream mode

def expected_stream(emu: CxoneEmulator, rid: str, offsets, max_duration=None) -> bytes:
    rec = emu.store.get(rid)
    data = rec.path.read_bytes()
    plan = plan_stream(rec, tuple(offsets), max_duration, data[:rec.wav.data_offset])
    return plan.header + b"".join(data[s.start:s.end] for s in plan.spans)


def test_stream_mode_offset_zero_is_the_whole_file_read_incrementally(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs, stream_chunk_size=4096) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.DROP, drop_after=50_000), FaultKind.JSON_ERROR,
                            FaultAction(FaultKind.RATE_LIMIT, retry_after=0), kinds=[RequestKind.STREAM])
        summary = run(pipeline(base, out, state, recordings=["4401"], mode="stream", stream_codec="original"))
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    assert stored(out, "4401", "wav") == (recs / "4401.wav").read_bytes()
    assert stats["requests"]["stream"] == 4 and stats["drops"] == 1 and stats["json_errors"] == 1


def test_stream_mode_splits_long_offset_lists_into_requests_of_three(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    offsets = [0, 2, 4, 6, 8]
    with serve(recs) as (emu, base):
        summary = run(pipeline(base, out, state, recordings=["4401"], mode="stream", stream_offsets=offsets,
                               stream_max_duration=1))
        stats = emu.stats.snapshot()
        first, second = expected_stream(emu, "4401", [0, 2, 4], 1), expected_stream(emu, "4401", [6, 8], 1)
    assert summary.ok, [r.message for r in summary.failed]
    assert sorted(r.id for r in summary.results) == ["4401@0", "4401@6"]
    assert stored(out, "4401@0", "wav") == first and stored(out, "4401@6", "wav") == second
    assert len(first) == 44 + 3 * 16000  # 3 segments of 1 s at 16 000 bytes/s, plus the WAV header
    assert stats["requests"]["stream"] == 2 and set(stats["responses"]) <= {"200"}  # never a 400 or 413


def test_stream_mode_refused_codec_fails_with_the_servers_reason(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        summary = run(pipeline(base, out, state, recordings=["4402"], mode="stream", stream_codec="opus"))
    [r] = summary.results
    assert r.reason == "http-406" and "4402" in r.message and "opus" in r.message
    assert not list(out.glob("*.gz"))


# ------------------------------------------------------------------ access-key login, request budget

def test_access_key_login_end_to_end(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs, area="eu1") as (emu, base):
        text = pipeline(base, out, state, recordings=["4402"], grant="access_key", access_key_id=DEMO_ACCESS_KEY_ID,
                        access_key_secret="${AK_SECRET}", token_url=f"{base}/auth/token")
        summary = run(text, AK_SECRET=DEMO_ACCESS_KEY_SECRET)
        issued = emu.stats.snapshot()["tokens_issued"]
        refused = run(text.replace(str(state), str(tmp_path / "state2")), AK_SECRET="not-the-secret-Q7")
    assert summary.ok and issued == 1
    assert stored(out, "4402", "wav") == (recs / "4402.wav").read_bytes()
    [r] = refused.results
    assert r.reason == "auth-failed" and "Q7" not in r.message and DEMO_ACCESS_KEY_SECRET not in r.message


def test_request_budget_keeps_the_client_under_the_servers_rate_limit(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs, rate_limit="6/0.5s") as (emu, base):
        t0 = time.monotonic()
        # a little headroom: the server's window starts when a request arrives, ours when it leaves
        summary = run(pipeline(base, out, state, acd_call_ids=["4401", "4402"], rate_limit="4/0.5s", connections=2))
        elapsed = time.monotonic() - t0
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    assert stats["rate_limited"] == 0  # stayed within the budget instead of earning 429s
    requests = stats["requests_total"] - stats["requests"].get("token", 0)
    assert requests == 2 + 5 + 3 and elapsed >= 1.0  # 10 requests at 4 per 0.5 s need two more windows


def test_without_a_budget_429s_arrive_and_are_survived(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs, rate_limit="6/1s") as (emu, base):
        summary = run(pipeline(base, out, state, acd_call_ids=["4401", "4402"], rate_limit="off", connections=4,
                               max_attempts=30))
        stats = emu.stats.snapshot()
    assert summary.ok, [r.message for r in summary.failed]
    assert stats["rate_limited"] >= 1
    for cid in ("4401", "4402"):
        assert stored(out, cid, "wav") == (recs / f"{cid}.wav").read_bytes()


def test_playback_stream_restarts_on_a_new_version_and_stores_it(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        old = emu.store.get("4401").etag
        emu.faults.schedule(FaultAction(FaultKind.NONE), FaultKind.ETAG_CHANGE, kinds=[RequestKind.MEDIA_FILE])
        summary = run(pipeline(base, out, state, acd_call_ids=["4401"], connections=2))
        current = emu.store.get("4401")
        content = current.path.read_bytes()
    [r] = summary.results
    assert r.ok and r.attempts == 2, r.message
    assert current.etag != old and r.metadata["etag"] == current.etag
    assert stored(out, "4401", "wav") == content != (recs / "4401.wav").read_bytes()


def test_stream_mode_offset_past_the_end_is_refused_before_any_request(tmp_path):
    recs = calls_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        summary = run(pipeline(base, out, state, recordings=["4402"], mode="stream", stream_offsets=[0, 12]))
        stats = emu.stats.snapshot()
    [r] = summary.results
    assert r.reason == "offset-out-of-range" and "offset 12 s" in r.message and "4402" in r.message
    assert stats["requests"].get("stream", 0) == 0


def test_stream_mode_g711_wavs_pass_the_audio_format_verifier(tmp_path):
    """The streamed answer is a WAV of its own: RIFF, data and fact (sample count) sizes rewritten."""
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    with serve(recs) as (emu, base):
        text = pipeline(base, out, state, recordings=["100001", "100005", "100002"], mode="stream",
                        stream_offsets=[0, 3, 6], stream_max_duration=1)
        text = text.replace("      - type: sha256\n", "      - type: audio-format\n")
        summary = run(text)
        expected = {rid: expected_stream(emu, rid, [0, 3, 6], 1) for rid in ("100001", "100005", "100002")}
    assert summary.ok, [r.message for r in summary.failed]
    for rid, body in expected.items():
        data = stored(out, rid, "wav")
        assert data == body
        verdict = next(v for v in next(r for r in summary.results if r.id == rid).verdicts)
        assert verdict.ok and verdict.details["duration"] == 3.0  # three 1 s segments, as metadata now says
        if rid != "100002":  # G.711: the fact chunk counts the streamed samples (8 kHz, 1 byte each)
            fact = data.find(b"fact")
            assert fact > 0 and int.from_bytes(data[fact + 8:fact + 12], "little") == 3 * 8000
