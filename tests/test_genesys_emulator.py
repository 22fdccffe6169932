"""The Genesys emulator over HTTP: the published API's statuses, fields and faults."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from voxpipe_genesys.emulator.catalogue import derived_id, load_catalogue
from voxpipe_genesys.emulator.cli import command

from genesys_helpers import ALL, emulator, make_recordings


@pytest.fixture
def recordings(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    return tmp_path / "rec", originals


def token(url: str) -> dict[str, str]:
    answer = httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
                        data={"grant_type": "client_credentials"})
    assert answer.status_code == 200 and answer.json()["token_type"] == "bearer"
    return {"Authorization": "Bearer " + answer.json()["access_token"]}


def test_catalogue_is_deterministic_and_groups_legs(recordings):
    directory, _ = recordings
    a, b = load_catalogue(directory), load_catalogue(directory)
    assert [c.conversation_id for c in a.conversations] == [c.conversation_id for c in b.conversations]
    assert len(a.conversations) == 5 and len(a.by_recording) == 6
    legs = a.by_conversation[derived_id("conversation", "call-e")].recordings
    assert sorted(r.name for r in legs) == ["call-e__agent.wav", "call-e__customer.wav"]
    starts = [c.start for c in a.conversations]
    assert starts == sorted(starts) and (starts[-1] - starts[0]).days >= 2


def test_token_needs_basic_client_authentication(recordings):
    with emulator(recordings[0]) as (url, _):
        assert httpx.post(url + "/oauth/token", data={"grant_type": "client_credentials"}).status_code == 401
        assert httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "nope"),
                          data={"grant_type": "client_credentials"}).json()["error"] == "invalid_client"
        assert httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
                          data={"grant_type": "password"}).status_code == 400
        answer = httpx.get(url + "/api/v2/conversations/x/recordingmetadata")
        assert answer.status_code == 401 and answer.json()["code"] == "authentication.required"
        from voxpipe_genesys.emulator.app import MAX_BODY

        huge = httpx.post(url + "/oauth/token", content=b"x" * (MAX_BODY + 1))  # read in pieces, refused past the limit
        assert huge.status_code == 413 and huge.json()["code"] == "request.too.large"


def test_analytics_query_pages_and_interval(recordings):
    with emulator(recordings[0]) as (url, _):
        auth = token(url)
        q = url + "/api/v2/analytics/conversations/details/query"
        pages = [httpx.post(q, headers=auth, json={"interval": ALL, "paging": {"pageSize": 2, "pageNumber": n}}).json()
                 for n in (1, 2, 3, 4)]
        assert [p["totalHits"] for p in pages] == [5] * 4
        assert [len(p.get("conversations", [])) for p in pages] == [2, 2, 1, 0]
        assert "conversations" not in pages[3]
        day = httpx.post(q, headers=auth, json={"interval": "2026-11-02T00:00:00Z/2026-11-03T00:00:00Z"}).json()
        assert [c["conversationStart"] for c in day["conversations"]] == ["2026-11-02T10:00:00.000Z",
                                                                          "2026-11-02T23:00:00.000Z"]
        assert httpx.post(q, headers=auth, json={"interval": ALL, "paging": {"pageSize": 101}}).status_code == 400
        assert httpx.post(q, headers=auth, json={"paging": {"pageSize": 1}}).status_code == 400


def test_batch_job_fills_in_over_polls_and_results_download_by_range(recordings):
    directory, originals = recordings
    with emulator(directory, not_ready_polls=2, fail_recordings=frozenset({"call-c.wav"})) as (url, _):
        auth = token(url)
        cat = load_catalogue(directory)
        items = [{"conversationId": r.conversation_id, "recordingId": r.recording_id} for r in cat.by_recording.values()]
        submitted = httpx.post(url + "/api/v2/recording/batchrequests", headers=auth,
                               json={"batchDownloadRequestList": items})
        assert submitted.status_code == 202
        job = submitted.json()["id"]
        polls = [httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=auth).json() for _ in range(3)]
        assert [p["resultCount"] for p in polls] == [0, 2, 6] and {p["expectedResultCount"] for p in polls} == {6}
        final = polls[-1]
        assert final["errorCount"] == 1 and final["jobId"] == job
        by_name = {cat.by_recording[r["recordingId"]].name: r for r in final["results"]}
        assert by_name["call-c.wav"]["errorMsg"].startswith("Failed to transcode") and \
            "resultUrl" not in by_name["call-c.wav"]
        result = by_name["call-b.wav"]
        assert result["contentType"] == "audio/wav"
        data = originals["call-b.wav"]
        whole = httpx.get(result["resultUrl"])
        assert whole.status_code == 200 and whole.content == data
        part = httpx.get(result["resultUrl"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        assert httpx.get(result["resultUrl"], headers={"Range": "bytes=-10"}).content == data[-10:]
        assert httpx.get(result["resultUrl"], headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        stale = httpx.get(result["resultUrl"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data  # If-Range mismatch: the whole new body
        forged = result["resultUrl"].replace("expires=", "expires=9")
        assert httpx.get(forged).status_code == 403
        other_client = {"Authorization": "Bearer not-a-token"}
        assert httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=other_client).status_code == 401
        too_many = {"batchDownloadRequestList": [{"conversationId": "c", "recordingId": str(i)} for i in range(101)]}
        assert httpx.post(url + "/api/v2/recording/batchrequests", headers=auth, json=too_many).status_code == 400


def test_expired_urls_and_rate_limits(recordings):
    directory, _ = recordings
    with emulator(directory, not_ready_polls=0, expire_once=frozenset({"call-a.wav"}), rate_limit=4,
                  rate_window=30.0) as (url, app):
        auth = token(url)
        rec = load_catalogue(directory).find("call-a.wav")
        body = {"batchDownloadRequestList": [{"conversationId": rec.conversation_id}]}  # no recordingId: all
        job = httpx.post(url + "/api/v2/recording/batchrequests", headers=auth, json=body).json()["id"]
        [result] = httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=auth).json()["results"]
        expired = httpx.get(result["resultUrl"])
        assert expired.status_code == 403 and b"Request has expired" in expired.content
        job = httpx.post(url + "/api/v2/recording/batchrequests", headers=auth, json=body).json()["id"]
        [result] = httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=auth).json()["results"]
        assert httpx.get(result["resultUrl"]).status_code == 200  # the next job's URL is valid
        limited = httpx.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=auth)
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 30
        assert limited.json()["code"] == "too.many.requests"
        assert token(url) and app.stats.rate_limited == 1  # a new token has its own budget


def test_fault_switch_must_name_a_recording(recordings):
    with pytest.raises(ValueError, match="no-such.wav"):
        with emulator(recordings[0], fail_recordings=frozenset({"no-such.wav"})):
            pass


def test_read_endpoints_users_scripts_call(recordings):
    directory, originals = recordings
    conv_id = derived_id("conversation", "call-e")
    agent, customer = derived_id("recording", "call-e__agent.wav"), derived_id("recording", "call-e__customer.wav")
    with emulator(directory, not_ready_polls=1) as (url, _):
        auth = token(url)
        base = f"{url}/api/v2/conversations/{conv_id}"
        listed = httpx.get(base + "/recordings", headers=auth)
        assert listed.status_code == 202  # being prepared: no media yet
        assert all("mediaUris" not in r for r in listed.json())
        listed = httpx.get(base + "/recordings", headers=auth, params={"maxWaitMs": 5000})
        assert listed.status_code == 200
        by_id = {r["id"]: r for r in listed.json()}
        assert set(by_id) == {agent, customer}
        media = httpx.get(by_id[agent]["mediaUris"]["S"]["mediaUri"])
        assert media.status_code == 200 and media.content == originals["call-e__agent.wav"]
        assert by_id[agent]["conversationId"] == conv_id and by_id[agent]["fileState"] == "AVAILABLE"
        metadata_only = httpx.get(base + "/recordings", headers=auth, params={"formatId": "NONE"})
        assert metadata_only.status_code == 200 and all("mediaUris" not in r for r in metadata_only.json())
        one = httpx.get(f"{base}/recordingmetadata/{customer}", headers=auth)
        assert one.status_code == 200 and one.json()["id"] == customer and "mediaUris" not in one.json()
        assert one.json()["startTime"].startswith("2026-11-03")
        details = httpx.get(f"{url}/api/v2/analytics/conversations/{conv_id}/details", headers=auth).json()
        assert details["conversationId"] == conv_id and details["conversationStart"].startswith("2026-11-03")
        purposes = {p["purpose"]: p for p in details["participants"]}
        assert {"customer", "acd", "agent"} <= set(purposes) or {"external", "acd", "agent"} <= set(purposes)
        assert purposes["agent"]["userId"] and purposes["acd"]["sessions"][0]["segments"][0]["queueId"]
        for path in (f"/api/v2/conversations/{conv_id}/recordingmetadata/nope",
                     "/api/v2/conversations/nope/recordings", "/api/v2/analytics/conversations/nope/details",
                     "/api/v2/users/me", "/api/v2/recording/jobs"):
            missing = httpx.get(url + path, headers=auth)
            body = missing.json()
            assert missing.status_code == 404 and set(body) == {"message", "code", "status", "contextId", "details",
                                                                "errors"}, path
            assert body["status"] == 404 and body["code"] == "not.found" and len(body["contextId"]) == 36
        wrong = httpx.get(base + "/recordings", headers=auth, params={"formatId": "MP3"})
        assert wrong.status_code == 400 and wrong.json()["code"] == "bad.request"


def test_cli_serves_a_generated_catalogue_and_refuses_ambiguous_sources(tmp_path):
    # without either, it serves the shipped example recordings (test_installed); both at once is ambiguous
    both = CliRunner().invoke(command, ["--recordings", str(tmp_path), "--generate", "5"])
    assert both.exit_code == 2 and "either --recordings DIR or --generate COUNT, not both" in both.output
    proc = subprocess.Popen([sys.executable, "-c", "from voxpipe_genesys.emulator.cli import command; command()",
                             "--generate", "150000", "--port", "0", "--uploading", "synthetic-3", "--no-status"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        lines, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline and not any("GENESYS_INTERVAL" in line for line in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert "150000 conversations, 150000 recordings" in text, text
        url = re.search(r"emulator at (http://[\d.]+:\d+)", text).group(1)
        interval = text.split("GENESYS_INTERVAL=")[1].split()[0]
        assert interval == "2026-11-01T00:00:00Z/2026-11-03T00:00:00Z"
        auth = token(url)
        page = httpx.post(url + "/api/v2/analytics/conversations/details/query", headers=auth,
                          json={"interval": interval, "paging": {"pageSize": 100, "pageNumber": 1000}})
        assert page.status_code == 200 and page.json()["totalHits"] == 150_000
        conv = page.json()["conversations"][0]["conversationId"]
        meta = httpx.get(f"{url}/api/v2/conversations/5ca1ab1e-0000-4000-8000-000000000003/recordingmetadata",
                         headers=auth).json()
        assert meta[0]["fileState"] == "UPLOADING" and conv.startswith("5ca1ab1e-0000-")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
