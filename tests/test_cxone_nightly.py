"""CXone on a real tenant's terms, against the emulator over loopback: recordings found by date
(Data Extraction), access-key login without api_base, facts in names, manifests, the report,
retention and the retrieval API; the nightly watermark; failed and expired jobs."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import trio

from voxpipe.components import PipelineContext
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.ledger import Ledger
from voxpipe.plugins import get_registry
from voxpipe.serving import serve_in_thread
from voxpipe_archive.app import ArchiveApp
from voxpipe_archive.auth import BearerAuth
from voxpipe_archive.index import ArchiveIndex
from voxpipe_archive.retention import RetentionPolicy, plan, survey
from voxpipe_cxone.auth import Login
from voxpipe_cxone.discovery import WATERMARK_KEY
from voxpipe_cxone.emulator.settings import (DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, DEMO_CLIENT_ID,
                                             DEMO_CLIENT_SECRET)
from voxpipe_cxone.source import HEAD_BYTES, CxoneSettings, CxoneSource

from cxone_env import emulator, make_wav, recordings_dir

M4A = Path(__file__).resolve().parent.parent / "examples" / "media" / "100007.m4a"
ENV = {"CXONE_CLIENT_SECRET": DEMO_CLIENT_SECRET, "CXONE_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET}


def nightly_yaml(base: str, out: Path, **source: object) -> str:
    """A nightly pipeline: access-key login, no api_base, Data Extraction discovery, audio-format check."""
    settings = {"type": "cxone", "grant": "access_key", "token_url": f"{base}/auth/token",
                "client_id": DEMO_CLIENT_ID, "client_secret": "${CXONE_CLIENT_SECRET}",
                "access_key_id": DEMO_ACCESS_KEY_ID, "access_key_secret": "${CXONE_ACCESS_KEY_SECRET}",
                "job_poll_interval": 0.05, "max_job_poll_interval": 0.2, "rate_limit": "off",
                "retry_base_delay": 0.01, **source}
    lines = [f"      {k}: {json.dumps(v)}" for k, v in settings.items()]
    return "\n".join(["pipelines:", "  nightly:", "    concurrency: 3", "    source:", *lines,
                      "    verifiers:", "      - type: audio-format", "    sinks:", "      - type: gzip",
                      f"        dir: {out}", "        level: 1",
                      '        name: "{year}/{month}/{day}/{contact_id}-{segment_id}.{format}"', ""])


def run(text: str):
    cfg = parse_config(text, get_registry(), environ={**os.environ, **ENV})
    return trio.run(Runner(cfg.pipeline(None)).run)


def manifests(out: Path) -> dict[str, dict]:
    """Manifests of the archive by contact id."""
    found = {}
    for path in out.rglob("*.gz.json"):
        doc = json.loads(path.read_text())
        found[doc["facts"]["contact_id"]] = {**doc, "_path": path.with_suffix("")}  # the stored file
    return found


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def test_nightly_since_last_run_twice_fetches_only_new_and_the_overlap(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive"
    now = time.time()
    with emulator(recs, calls_end=now - 60, call_spacing=600) as (emu, base):
        text = nightly_yaml(base, out, since="last-run", overlap="15m")
        first = run(text)
        assert not first.failed and first.discovery_error is None
        assert len(first.results) == 6 and all(r.ok and not r.skipped for r in first.results)
        stored = manifests(out)
        assert sorted(stored) == ["100001", "100002", "100003", "100004", "100005", "100006"]
        for contact, doc in stored.items():
            call = emu.calls.get(contact)
            start = utc(call.started_at)
            # named and dated by the call's start, not by the download
            assert doc["_path"].relative_to(out).as_posix() == \
                f"{start:%Y/%m/%d}/{contact}-{call.segment_id}.{doc['format']}.gz"
            assert doc["recording_date"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert doc["recording_date_origin"] == "facts"
            facts = doc["facts"]
            assert facts["segment_id"] == call.segment_id == doc["recording_id"]
            assert facts["agent_name"] == call.agent_name and facts["skill"] == call.skill
            assert facts["direction"] == call.direction.lower() and facts["ani"] == call.ani
            assert gzip.decompress(doc["_path"].read_bytes()) == \
                (recs / f"{contact}.{doc['format']}").read_bytes()
        state = out / ".voxpipe" / "nightly"
        ledger = Ledger(state / "ledger.sqlite3")
        mark1 = ledger.get_watermark("nightly", WATERMARK_KEY)
        ledger.close()
        assert mark1 is not None and now - 1 <= mark1 <= time.time()

        # two calls CXone lists after the first run: one that started before its end (late) and one after
        late = make_wav(tmp_path / "late.wav", 3, seed=71).read_bytes()
        emu.add_recording("200001", late, "wav", started_at=mark1 - 300)
        time.sleep(1.1)
        fresh = make_wav(tmp_path / "fresh.wav", 2, seed=72).read_bytes()
        emu.add_recording("200002", fresh, "wav", started_at=mark1 + 1)
        time.sleep(1.1)
        emu.stats.reset()
        second = run(text)
    assert not second.failed and second.discovery_error is None
    by_status = {r.id: r.status for r in second.results}
    old_in_overlap = emu.calls.get("100006").segment_id  # started 11 minutes before the first run's end
    assert by_status == {old_in_overlap: "skipped", emu.calls.get("200001").segment_id: "ok",
                         emu.calls.get("200002").segment_id: "ok"}
    stats = emu.stats.snapshot()
    assert stats["requests"]["playback"] == 2  # media looked up for the new recordings only
    # each: its first bytes (the segment answer names no format: they tell the container), then the file
    assert stats["bytes_served"] == {"200001": HEAD_BYTES + len(late), "200002": HEAD_BYTES + len(fresh)}
    stored = manifests(out)
    assert len(stored) == 8 and len(list(out.rglob("*.gz"))) == 8  # nothing stored twice
    ledger = Ledger(out / ".voxpipe" / "nightly" / "ledger.sqlite3")
    assert ledger.get_watermark("nightly", WATERMARK_KEY) > mark1
    ledger.close()
    # the signed CSV and media URLs never reach a log line of voxpipe or httpx (the emulator redacts its own)
    leaks = [r.getMessage() for r in caplog.records if not r.name.startswith("voxpipe_cxone.emulator")
             and ("sig=" in r.getMessage() or "expires=" in r.getMessage())]
    assert not leaks and any("/data-extraction/v1/files/" in r.getMessage() for r in caplog.records)


def test_date_window_is_split_into_jobs_and_facts_drive_report_retention_and_retrieval(tmp_path):
    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive"
    calls_end = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()
    # six calls 12 h apart: 17 Nov 00:00 .. 19 Nov 12:00 UTC
    with emulator(recs, calls_end=calls_end, call_spacing=12 * 3600, job_id_shape="string") as (emu, base):
        summary = run(nightly_yaml(base, out, **{"from": "2026-11-17", "to": "2026-11-19", "days_per_job": 1,
                                                  "entity_version": "10", "client_auth": "basic"}))
        jobs = emu.extraction.jobs()
    assert not summary.failed and len(summary.results) == 6
    assert sorted((j.first.isoformat(), j.stop.isoformat()) for j in jobs) == [
        ("2026-11-17", "2026-11-18"), ("2026-11-18", "2026-11-19"), ("2026-11-19", "2026-11-20")]
    stored = manifests(out)
    days = sorted(doc["_path"].relative_to(out).parts[:3] for doc in stored.values())
    assert days == [("2026", "11", d) for d in ("17", "17", "18", "18", "19", "19")]

    # the compliance report names each recording's call and every id it is known by
    report = json.loads(summary.report_paths[0].read_text())
    rows = {r["id"]: r for r in report["sources"]["cxone"]["recordings"]}
    for contact, doc in stored.items():
        row = rows[doc["recording_id"]]
        assert row["recording_date"] == doc["recording_date"]
        assert row["interaction_ids"] == [contact, doc["facts"]["segment_id"]]

    # retention counts from the call's date: on 22 Nov 00:00 with a 3-day limit, the
    # calls before 19 Nov 00:00 are expired although they were downloaded today
    decisions = plan(survey(out), datetime(2026, 11, 22, tzinfo=timezone.utc),
                     RetentionPolicy(max_age=timedelta(days=3)))
    expired = sorted(d.recording_id for d in decisions if d.action == "delete")
    assert expired == sorted(doc["recording_id"] for doc in stored.values()
                             if doc["recording_date"] < "2026-11-19T00:00:00Z")
    assert len(expired) == 4 and all(d.date_from == "recording_date" for d in decisions)

    # the retrieval API finds a recording by its contact (ACD call id) and by its segment id
    app = ArchiveApp(ArchiveIndex(out), BearerAuth(["t0ken"]))
    with serve_in_thread(app) as url:
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer t0ken"}, timeout=10) as client:
            for key in ("100003", stored["100003"]["facts"]["segment_id"]):
                answer = client.get("/archive/retrieve", params={"interactionId": key, "decompress": "1"})
                assert answer.status_code == 200, answer.text
                assert hashlib.sha256(answer.content).hexdigest() == \
                    hashlib.sha256((recs / "100003.mp3").read_bytes()).hexdigest()


@pytest.mark.parametrize("fault, reason, words", [
    ({"job_fates": ("FAILED",)}, "extraction-failed", "ended FAILED: Extraction failed"),
    ({"job_fates": ("EXPIRED",)}, "extraction-expired", "ended EXPIRED"),
    ({"extraction_result_ttl": 0.001}, "extraction-expired", "refused (403) and the job is now EXPIRED"),
])
def test_failed_or_expired_job_exits_1_and_keeps_the_watermark(tmp_path, fault, reason, words):
    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive"
    config = tmp_path / "nightly.yaml"
    with emulator(recs, calls_end=time.time() - 60, **fault) as (emu, base):
        ledger = Ledger(out / ".voxpipe" / "nightly" / "ledger.sqlite3")
        ledger.set_watermark("nightly", WATERMARK_KEY, time.time() - 3 * 3600)
        mark = ledger.get_watermark("nightly", WATERMARK_KEY)
        ledger.close()
        config.write_text(nightly_yaml(base, out, since="last-run"))
        proc = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)],
                              capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr
    assert "sig=" not in proc.stderr
    assert not list(out.rglob("*.gz"))
    audit = [json.loads(line) for line in (out / ".voxpipe" / "nightly" / "audit.jsonl").read_text().splitlines()]
    assert any(e["event"] == "discovery-failed" and reason.split("-")[1].upper() in e["message"] for e in audit)
    ledger = Ledger(out / ".voxpipe" / "nightly" / "ledger.sqlite3")
    assert ledger.get_watermark("nightly", WATERMARK_KEY) == mark
    ledger.close()


def test_job_running_too_long_times_out_and_a_slow_one_is_waited_for(tmp_path):
    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive"
    with emulator(recs, calls_end=time.time() - 60, extraction_running_polls=4) as (emu, base):
        slow = run(nightly_yaml(base, out, since="last-run"))
        assert not slow.failed and len(slow.results) == 6
        assert sum(j.polls for j in emu.extraction.jobs()) >= 5 * len(emu.extraction.jobs())
    with emulator(recs, calls_end=time.time() - 60, extraction_running_seconds=60) as (emu, base):
        stuck = run(nightly_yaml(base, tmp_path / "other", since="last-run", max_job_wait=0.5))
    assert stuck.discovery_error is not None and "still RUNNING after" in stuck.discovery_error
    assert not stuck.results


@pytest.mark.parametrize("shape, lookup", [("redirectUrl", "segments"), ("fileToPlayUrl", "segments"),
                                           ("interactions", "contacts")])
def test_segment_media_shapes_and_the_contacts_lookup(tmp_path, shape, lookup):
    recs = recordings_dir(tmp_path)
    shutil.copy(M4A, recs / M4A.name)  # MP4/M4A (AAC), as CXone often serves voice
    out = tmp_path / "archive"
    with emulator(recs, calls_end=time.time() - 60, segment_answer=shape) as (emu, base):
        summary = run(nightly_yaml(base, out, since="last-run", media_lookup=lookup))
        requests = emu.stats.snapshot()["requests"]
    assert not summary.failed and len(summary.results) == 7
    assert requests["playback"] == 7
    stored = manifests(out)
    formats = sorted(doc["format"] for doc in stored.values())
    # segment answers name no format: it comes from the media's first bytes (the contacts lookup names it)
    assert formats == ["m4a", "mp3", "ogg", "opus", "wav", "wav", "wav"]
    m4a = stored["100007"]
    verdict = m4a["verdicts"][0]
    assert verdict["ok"] and verdict["details"]["container"] == "mp4" and verdict["details"]["codec"] == "aac"
    assert gzip.decompress(m4a["_path"].read_bytes()) == M4A.read_bytes()


def test_api_host_from_well_known_or_the_area_claim(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs) as (emu, base):
        settings = access_key_settings(base)

        async def main():
            source = CxoneSource(settings, PipelineContext(pipeline="p", state_dir=tmp_path))
            try:
                found = await source.base()  # login, then the tenant's .well-known configuration
                other_tenant = Login(token=None, id_token=_jwt({"tenantId": "someone-else", "area": "eu1"}))
                by_area = await source._discover_host(other_tenant)
                no_claims = Login(token=None, id_token=_jwt({"sub": "x"}))
                with pytest.raises(Exception, match="cannot tell the CXone API host.*set api_base"):
                    await source._discover_host(no_claims)
                return found, by_area
            finally:
                await source.aclose()

        found, by_area = trio.run(main)
    assert found == base
    assert by_area == "https://api-eu1.niceincontact.com"


def access_key_settings(base: str, **extra: object) -> CxoneSettings:
    return CxoneSettings.model_validate({
        "grant": "access_key", "token_url": f"{base}/auth/token", "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET, "access_key_id": DEMO_ACCESS_KEY_ID,
        "access_key_secret": DEMO_ACCESS_KEY_SECRET, "since": "last-run", **extra})


def _jwt(claims: dict) -> str:
    import base64

    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}."


def test_the_nightly_example_against_the_emulator_twice(tmp_path):
    """examples/cxone-nightly.yaml as shipped: no ids, no api_base; named by the call's date; facts in
    manifests with phone numbers hashed; MP4 verified; the second run archives only what is new."""
    recs = recordings_dir(tmp_path)
    shutil.copy(M4A, recs / M4A.name)
    archive = tmp_path / "archive"
    example = Path(__file__).resolve().parent.parent / "examples" / "cxone-nightly.yaml"
    with emulator(recs, calls_end=time.time() - 60, extraction_running_polls=0) as (emu, base):
        env = {**os.environ, "CXONE_TOKEN_URL": f"{base}/auth/token", "CXONE_CLIENT_ID": DEMO_CLIENT_ID,
               "CXONE_CLIENT_SECRET": DEMO_CLIENT_SECRET, "CXONE_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
               "CXONE_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET, "PHONE_NUMBER_KEY": "k3y",
               "VOXPIPE_ARCHIVE_DIR": str(archive)}
        command = [sys.executable, "-m", "voxpipe", "run", "--no-progress", str(example)]
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        emu.add_recording("300001", make_wav(tmp_path / "new.wav", 2, seed=9).read_bytes(), "wav",
                          started_at=time.time() - 1)
        emu.stats.reset()
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        second_stats = emu.stats.snapshot()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    stored = manifests(archive)
    assert sorted(stored) == ["100001", "100002", "100003", "100004", "100005", "100006", "100007", "300001"]
    for contact, doc in stored.items():
        call = emu.calls.get(contact)
        assert doc["_path"].relative_to(archive).as_posix().startswith(f"{utc(call.started_at):%Y/%m/%d}/{contact}-")
        assert doc["facts"]["segment_id"] == call.segment_id and doc["facts"]["ani"].startswith("hmac-sha256:")
        assert call.ani not in doc["_path"].with_suffix(".gz.json").read_text()
        assert doc["verdicts"][0]["ok"]
    assert stored["100007"]["format"] == "m4a" and stored["100007"]["verdicts"][0]["details"]["container"] == "mp4"
    assert second_stats["requests"]["playback"] == 1  # the new call only; the overlap was skipped
    assert "password" not in first.stderr and DEMO_ACCESS_KEY_SECRET not in first.stderr + second.stderr


def test_segment_lookup_falls_back_to_the_contacts_lookup_on_404(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs) as (emu, base):
        settings = access_key_settings(base, rate_limit="off")

        async def main():
            source = CxoneSource(settings, PipelineContext(pipeline="p", state_dir=tmp_path))
            try:
                direct = await source.lookup_segment(emu.calls.get("100003").segment_id, "100003")
                fallback = await source.lookup_segment("segment-the-api-does-not-know", "100003")
                with pytest.raises(Exception) as missing:
                    await source.lookup_segment("segment-the-api-does-not-know", None)
                return direct, fallback, missing.value
            finally:
                await source.aclose()

        direct, fallback, missing = trio.run(main)
        requests = emu.stats.snapshot()["requests"]
    assert direct.facts.contact_id == fallback.facts.contact_id == "100003"
    assert direct.format is None and fallback.format == "mp3"  # the contacts answer names the file
    assert getattr(missing, "status", None) == 404
    assert requests["playback"] == 4  # segment, segment (404) + contacts, segment (404)


def test_data_extraction_through_a_shared_postgresql_ledger(tmp_path, pg_url):
    """Streams claimed from a shared queue keep their facts (names, manifests) and the
    watermark lives in PostgreSQL; phone numbers reach the queue only as the policy says (hashed)."""
    from voxpipe.ledger import open_ledger

    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive"
    with emulator(recs, calls_end=time.time() - 60) as (emu, base):
        text = nightly_yaml(base, out, since="last-run").replace(
            "    concurrency: 3\n", f"    concurrency: 3\n    ledger: {pg_url}\n    state_dir: {tmp_path / 'state'}\n"
            "    phone_numbers: hash\n    phone_number_key: k3y\n")
        summary = run(text)
    assert not summary.failed and len(summary.results) == 6
    stored = manifests(out)
    assert sorted(stored) == ["100001", "100002", "100003", "100004", "100005", "100006"]
    for contact, doc in stored.items():
        call = emu.calls.get(contact)
        assert doc["facts"]["started_at"] == utc(call.started_at).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert doc["facts"]["ani"].startswith("hmac-sha256:") and call.ani not in json.dumps(doc, default=str)
    ledger = open_ledger(pg_url, state_dir=tmp_path / "state", pipeline="nightly",
                         identity=summary_identity(base))
    try:
        assert ledger.get_watermark("nightly", WATERMARK_KEY) is not None
        queued = json.dumps([r.to_dict() for r in ledger.recordings()])
        assert not any(emu.calls.get(c).ani in queued for c in stored)
    finally:
        ledger.close()


def summary_identity(base: str) -> str:
    return f"cxone {base} client={DEMO_CLIENT_ID} key={DEMO_ACCESS_KEY_ID}"
