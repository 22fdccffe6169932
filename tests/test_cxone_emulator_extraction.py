"""The CXone emulator's tenant endpoints over real HTTP: Data Extraction jobs and their CSV,
the .well-known documents, the id token's claims, facts consistent across endpoints."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime, timezone

import httpx
import pytest

from voxpipe_cxone.emulator.extraction import ExtractionJobs
from voxpipe_cxone.emulator.settings import (DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, DEMO_CLIENT_ID,
                                             DEMO_CLIENT_SECRET)

from cxone_env import emulator, recordings_dir

CALLS_END = datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp()


def login(client: httpx.Client, *, basic: bool = False) -> dict:
    form = {"grant_type": "password", "username": DEMO_ACCESS_KEY_ID, "password": DEMO_ACCESS_KEY_SECRET}
    auth = None
    if basic:
        auth = (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    else:
        form.update(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET)
    answer = client.post("/auth/token", data=form, auth=auth)
    answer.raise_for_status()
    return answer.json()


def claims(id_token: str) -> dict:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def served(tmp_path):
    with emulator(recordings_dir(tmp_path), calls_end=CALLS_END, call_spacing=6 * 3600,
                  extraction_running_polls=2) as (emu, base):
        with httpx.Client(base_url=base, timeout=10) as client:
            yield emu, base, client


def test_login_variants_id_token_and_well_known(served):
    emu, base, client = served
    for basic in (False, True):
        token = login(client, basic=basic)
        assert {"access_token", "refresh_token", "id_token", "expires_in"} <= set(token)
        assert claims(token["id_token"])["area"] == "na1" and claims(token["id_token"])["tenantId"] == "emulator-tenant"
    config = client.get("/.well-known/cxone-configuration", params={"tenantId": "emulator-tenant"}).json()
    assert config["apiEndpoint"] == base and config["area"] == "na1"
    assert client.get("/.well-known/cxone-configuration", params={"tenantId": "other"}).status_code == 404
    assert client.get("/.well-known/openid-configuration").json()["token_endpoint"] == f"{base}/auth/token"


def test_job_lifecycle_and_the_signed_csv(served):
    emu, base, client = served
    headers = {"Authorization": f"Bearer {login(client)['access_token']}"}
    body = {"entityName": "recording-interaction-metadata", "version": "7", "startDate": "2026-11-19",
            "endDate": "2026-11-20"}
    for bad, words in (({**body, "entityName": "contacts"}, "entityName"), ({**body, "version": "3"}, "version"),
                       ({**body, "endDate": "2026-11-19"}, "after startDate"),
                       ({**body, "startDate": "2026-09-01"}, "at most 31"), ({**body, "endDate": "soon"}, "YYYY")):
        refused = client.post("/data-extraction/v1/jobs", json=bad, headers=headers)
        assert refused.status_code == 400 and words in refused.json()["message"], refused.text
    assert client.post("/data-extraction/v1/jobs", json=body).status_code == 401
    created = client.post("/data-extraction/v1/jobs", json=body, headers=headers)
    assert created.status_code == 202
    job = created.json()["jobId"]
    states = [client.get(f"/data-extraction/v1/jobs/{job}", headers=headers).json()["jobStatus"] for _ in range(3)]
    assert [s["status"] for s in states] == ["RUNNING", "RUNNING", "SUCCEEDED"]  # a slow phase, then done
    url = states[-1]["result"]["url"]
    with httpx.Client(timeout=10) as bare:
        assert bare.get(url, headers=headers).status_code == 400  # a signed URL refuses a second credential
        csv_answer = bare.get(url)
        assert bare.get(url.replace("sig=", "sig=0")).status_code == 403
    assert csv_answer.status_code == 200 and csv_answer.headers["content-type"].startswith("text/csv")
    assert csv_answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(csv_answer.content.decode("utf-8-sig"))))
    # the calls that started on 19 Nov: the 6 recordings start 6 h apart, ending 20 Nov 00:00
    assert [r["Agent 1 Contact Number"] for r in rows] == ["100003", "100004", "100005", "100006"]
    for row in rows:  # the same facts as the recording metadata says
        meta = client.get(f"/api/v2/recording/{row['Agent 1 Contact Number']}", headers=headers).json()
        assert row["Segment ID"] == meta["segmentId"] and row["Agent 1 Name"] == meta["agentName"]
        assert row["Segment Start Time"].replace(" ", "T") + ".000Z" == meta["startDate"]
        segment = client.get(f"/media-playback/v1/segments/{row['Segment ID']}", headers=headers).json()
        assert segment["contactId"] == row["Agent 1 Contact Number"]
    assert client.get("/data-extraction/v1/jobs/nope", headers=headers).status_code == 404


def test_scripted_fates_and_expiry():
    jobs = ExtractionJobs(running_polls=0, result_ttl=10)
    jobs.script("FAILED", "CANCELLED")
    body = {"entityName": "recording-interaction-metadata", "version": "10", "startDate": "2026-11-01",
            "endDate": "2026-11-02"}
    failed, cancelled, ok = (jobs.create(body, 0.0) for _ in range(3))
    assert [jobs.poll(j.id, 1.0).state for j in (failed, cancelled, ok)] == ["FAILED", "CANCELLED", "SUCCEEDED"]
    assert ExtractionJobs.status_answer(failed, None)["jobStatus"]["result"]["errorMessage"].startswith("Extraction")
    assert jobs.readable(ok.id, 5.0) is ok and jobs.readable(ok.id, 12.0) is None
    assert jobs.poll(ok.id, 12.0).state == "EXPIRED" and ok.history == ["RUNNING", "SUCCEEDED", "EXPIRED"]
    with pytest.raises(ValueError, match="DONE"):
        jobs.script("DONE")
