"""Genesys request bodies, answer parsing, regions and settings: no I/O."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from voxpipe_genesys import api, batch
from voxpipe_genesys.regions import REGION_HOSTS, endpoints, region_host
from voxpipe_genesys.source import GenesysSettings


def test_regions_give_api_and_login_hosts():
    assert endpoints("mypurecloud.ie") == endpoints("eu-west-1")
    e = endpoints("usw2.pure.cloud")
    assert (e.api_base, e.token_url) == ("https://api.usw2.pure.cloud", "https://login.usw2.pure.cloud/oauth/token")
    assert region_host("https://api.mypurecloud.de/") == "mypurecloud.de"
    assert endpoints(None, api_base="http://127.0.0.1:9/", login_base="http://127.0.0.1:9").token_url == \
        "http://127.0.0.1:9/oauth/token"
    assert len(set(REGION_HOSTS.values())) == len(REGION_HOSTS) == 18
    # the three regions added to the official SDK's PureCloudRegionHosts most recently
    assert endpoints("mx-central-1").api_base == "https://api.mxc1.pure.cloud"
    assert endpoints("apse1.pure.cloud") == endpoints("ap_southeast_1")
    sovereign = endpoints("eusc-de-east-1")  # EU Sovereign Cloud: a different domain suffix
    assert (sovereign.api_base, sovereign.token_url) == ("https://api.edee1.eusc-pure.cloud",
                                                         "https://login.edee1.eusc-pure.cloud/oauth/token")
    assert region_host("https://login.edee1.eusc-pure.cloud") == "edee1.eusc-pure.cloud"
    with pytest.raises(ValueError, match="unknown Genesys Cloud region 'mypurecloud.xx'.*mypurecloud.ie"):
        region_host("mypurecloud.xx")
    with pytest.raises(ValueError, match="give `region`"):
        endpoints(None, api_base="http://x")


def test_settings_validation_names_the_problem():
    base = {"client_id": "c", "client_secret": "s", "region": "mypurecloud.com"}
    ok = GenesysSettings(**base, interval="2026-11-01T00:00:00Z/2026-11-02T00:00:00Z", api_base="")
    assert ok.api_base is None and ok.media == ["audio"] and "s" not in repr(ok.client_secret)
    for bad, message in [({}, "give `interval`"), ({"interval": "2026-11-01"}, "not START/END"),
                         ({"interval": "2026-11-02T00:00Z/2026-11-01T00:00Z"}, "end is not after the start"),
                         ({"conversations": ["a"], "region": "nowhere"}, "unknown Genesys Cloud region"),
                         ({"conversations": ["a"], "batch_size": 101}, "less than or equal to 100"),
                         ({"conversations": ["a"], "format_id": "FLAC"}, "WAV")]:
        with pytest.raises(ValidationError, match=message):
            GenesysSettings(**{**base, **bad})


def test_request_bodies():
    body = api.conversation_query("2026-11-01T00:00:00Z/2026-11-02T00:00:00Z", 3, 50)
    assert body["paging"] == {"pageSize": 50, "pageNumber": 3} and body["orderBy"] == "conversationStart"
    assert body["segmentFilters"][0]["predicates"][0]["value"] == "voice"
    assert api.batch_submission([("c1", "r1")]) == {"batchDownloadRequestList": [{"conversationId": "c1",
                                                                                  "recordingId": "r1"}]}
    with pytest.raises(ValueError, match="1..100"):
        api.batch_submission([("c", str(i)) for i in range(101)])
    with pytest.raises(ValueError, match="page size"):
        api.conversation_query("a/b", 1, 101)


def test_parse_answers_and_name_bad_fields():
    convs, total = api.parse_conversation_page(
        {"totalHits": 7, "conversations": [{"conversationId": "c1", "conversationStart": "2026-11-01T08:00:00.000Z"}]},
        "page 1")
    assert total == 7 and convs == [api.Conversation("c1", "2026-11-01T08:00:00.000Z")]
    assert api.parse_conversation_page({"totalHits": 7}, "page 9") == ([], 7)  # empty pages omit the list
    with pytest.raises(api.BadResponse, match=r"page 2: conversations\[1\]: field 'conversationId' is missing"):
        api.parse_conversation_page({"totalHits": 2, "conversations": [{"conversationId": "a"}, {}]}, "page 2")
    infos = api.parse_recording_metadata([{"id": "r1", "conversationId": "c1", "media": "audio",
                                           "fileState": "AVAILABLE", "Checksum": "ab" * 32}], "c1",
                                         checksum_field="Checksum")
    assert infos == [api.RecordingInfo("r1", "c1", "audio", "AVAILABLE", "ab" * 32)]
    with pytest.raises(api.BadResponse, match="belongs to conversation c2"):
        api.parse_recording_metadata([{"id": "r1", "conversationId": "c2"}], "c1")
    with pytest.raises(api.BadResponse, match="not an id"):
        api.parse_recording_metadata([{"id": "../../etc"}], "c1")
    status = api.parse_batch_status({"id": "j", "jobId": "j", "expectedResultCount": 2, "resultCount": 2,
                                     "errorCount": 1, "results": [
                                         {"conversationId": "c", "recordingId": "r1", "resultUrl": "https://s3/x?sig=1",
                                          "contentType": "audio/ogg; codecs=opus"},
                                         {"conversationId": "c", "recordingId": "r2", "errorMsg": "gone"}]}, "j")
    assert batch.job_finished(status) and status.error_count == 1 and status.status is None
    assert status.results[0].ok and not status.results[1].ok and status.results[1].error_msg == "gone"
    assert "sig=1" not in repr(status)  # the pre-signed URL is a credential
    partial = api.parse_batch_status({"expectedResultCount": 3, "resultCount": 1, "results": []}, "j")
    assert not batch.job_finished(partial)
    with pytest.raises(api.BadResponse, match=r"results\[0\]: neither 'resultUrl' nor 'errorMsg'"):
        api.parse_batch_status({"results": [{"conversationId": "c", "recordingId": "r"}]}, "j")
    assert api.parse_job_id({"id": "job-1", "selfUri": "/x"}) == "job-1"


def test_formats_from_content_types():
    assert [api.format_from_content_type(t) for t in ("audio/wav", "audio/ogg; codecs=opus", "audio/ogg",
                                                      "audio/mpeg", "AUDIO/WEBM", None, "x/y")] == \
        ["wav", "opus", "ogg", "mp3", "webm", "bin", "bin"]
