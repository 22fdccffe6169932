"""Batch download jobs: the completion rule and duplicate results (pure), and the status
transitions the emulator goes through, seen by whole pipelines."""

from __future__ import annotations

import gzip

import httpx
import pytest

from voxpipe.audit import read_audit
from voxpipe_genesys import api, batch
from voxpipe_genesys.api import BatchResult, BatchStatus
from voxpipe_genesys.emulator.catalogue import derived_id

from genesys_helpers import ALL, emulator, make_recordings, pipeline_yaml, run_yaml


def status(expected, count, state=None, results=()):
    return BatchStatus("j", expected, count, 0, tuple(results), state)


@pytest.mark.parametrize("answer, finished", [
    (status(2, 2, "Completed"), True),
    (status(2, 2, "InProgress"), False),  # counts match, but the expected count may still grow
    (status(3, 1, "Completed"), True),  # the server says so: missing results become "no result"
    (status(2, 2, "COMPLETED"), True),
    (status(2, 2), True),  # no status: the counts decide
    (status(2, 1), False),
    (status(None, 4), False),
    (status(0, 0), False),  # nothing expected yet of a job that was sent recordings
    (status(2, 2, "Paused"), True),  # an unknown status: the counts decide
    (status(2, 1, "Paused"), False),
])
def test_job_finished_follows_status_then_counts(answer, finished):
    assert batch.job_finished(answer) is finished


def ok(rid: str, url: str, conv: str = "c") -> BatchResult:
    return BatchResult(conv, rid, url, "audio/wav")


def err(rid: str, msg: str, conv: str = "c") -> BatchResult:
    return BatchResult(conv, rid, error_msg=msg)


def test_settle_prefers_a_url_over_an_error_and_the_last_url_over_earlier_ones():
    settled = batch.settle([("c", "r1"), ("c", "r2"), ("c", "r3"), ("c", "r4")], [
        ok("r1", "https://s/1a"), err("r1", "already processed"),  # error after success: success stays
        err("r2", "transcode failed"), ok("r2", "https://s/2"),  # success after error: success wins
        ok("r3", "https://s/3a"), ok("r3", "https://s/3b"),  # two successes: the last (newest URL)
        err("r4", "first"), err("r4", "second"),  # errors only: the last reason
        ok("r9", "https://s/9"), ok("r1", "https://s/x", conv="other"),  # not asked for
    ])
    r = settled.results
    assert r["r1"].result_url == "https://s/1a" and r["r2"].result_url == "https://s/2"
    assert r["r3"].result_url == "https://s/3b" and r["r4"].error_msg == "second"
    assert settled.duplicates == ("r1", "r2", "r3", "r4")
    assert settled.unrequested == ("c/r9", "other/r1")
    assert batch.settle([("c", "r1")], []).results == {}


def test_status_field_is_parsed_and_checked():
    parsed = api.parse_batch_status({"expectedResultCount": 1, "resultCount": 0, "status": "InProgress"}, "j")
    assert parsed.status == "InProgress" and not batch.job_finished(parsed)
    with pytest.raises(api.BadResponse, match="field 'status' is not a string"):
        api.parse_batch_status({"status": 3}, "j")


def rid(name: str) -> str:
    return derived_id("recording", name)


def test_emulator_job_goes_in_progress_then_completed_with_a_growing_expected_count(tmp_path):
    make_recordings(tmp_path / "rec")
    with emulator(tmp_path / "rec", not_ready_polls=2, duplicate_results=frozenset({"call-a.wav"})) as (url, app):
        token = httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
                           data={"grant_type": "client_credentials"}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        items = [{"conversationId": derived_id("conversation", n.split("__")[0].removesuffix(".wav")),
                  "recordingId": rid(n)} for n in ("call-a.wav", "call-b.wav", "call-c.wav")]
        job = httpx.post(url + "/api/v2/recording/batchrequests", headers=auth,
                         json={"batchDownloadRequestList": items}).json()["id"]
        polls = [httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=auth).json() for _ in range(5)]
    seen = [(p["status"], p["expectedResultCount"], p["resultCount"]) for p in polls]
    assert seen == [("InProgress", 3, 0), ("InProgress", 3, 1), ("InProgress", 3, 3), ("Completed", 4, 4),
                    ("Completed", 4, 4)]
    final = polls[-1]["results"]
    assert [r["recordingId"] for r in final].count(rid("call-a.wav")) == 2
    assert "resultUrl" in final[0] and "errorMsg" in final[-1] and polls[-1]["errorCount"] == 1


@pytest.mark.parametrize("send_status", [True, False])
def test_pipeline_waits_for_completed_and_keeps_the_good_one_of_duplicate_results(tmp_path, send_status):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", not_ready_polls=1, send_status=send_status,
                  duplicate_results=frozenset({"call-a.wav", "call-c.wav"})) as (url, app):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"interval: {ALL}"))
    assert summary.ok, [(r.id, r.message) for r in summary.failed]
    assert len(summary.results) == 6
    audit = read_audit(archive / ".state" / "audit.jsonl")
    [done] = [e for e in audit if e["event"] == "batch-complete"]
    if send_status:
        # the counts matched one poll earlier, but the job said InProgress: the source kept polling,
        # saw the expected count grow, and got the late (failed) duplicates, which lose to the good results
        assert done["status"] == "Completed" and done["polls"] == 3 and done["expected"] == 8
        assert sorted(done["duplicates"]) == sorted([rid("call-a.wav"), rid("call-c.wav")])
        [grew] = [e for e in audit if e["event"] == "batch-expected-grew"]
        assert (grew["before"], grew["after"]) == (6, 8)
    else:  # without status the counts decide: finished as soon as they match
        assert done["status"] is None and done["polls"] == 2 and done["expected"] == 6
    for name, data in originals.items():
        [path] = list(archive.glob(f"{rid(name)}.*.gz"))
        assert gzip.decompress(path.read_bytes()) == data
