"""Sans-IO units of the cxone source: stream requests, Media Playback answers, rate-limit specs."""

from __future__ import annotations

import pytest

from voxpipe_cxone.emulator.streaming import StreamRequestError as ServerStreamError
from voxpipe_cxone.emulator.streaming import parse_offsets
from voxpipe.facts import RecordingFacts
from voxpipe_cxone.playback import MediaFile, PlaybackAnswerError, contacts_params, parse_contacts, stream_ids
from voxpipe_cxone.source import CxoneSettings, parse_rate_limit
from voxpipe_cxone.stream_request import (MAX_OFFSETS_PER_REQUEST, StreamRequest, StreamRequestError, format_offsets,
                                          plan_requests, split_offsets)


def test_offsets_are_comma_separated_never_bracketed():
    req = StreamRequest("100001", (0, 15, 30), codec="opus", max_duration=180)
    assert req.params() == {"offsets": "0,15,30", "codec": "opus", "maxDuration": "180"}
    assert req.path == "/api/v2/recordings/100001/stream"
    assert "[" not in req.params()["offsets"]
    # the server's own parser (the emulator enforces CXone's rules) accepts what we send
    assert parse_offsets(req.params()["offsets"]) == (0, 15, 30)
    with pytest.raises(ServerStreamError):
        parse_offsets(str([0, 15, 30]))


def test_optional_parameters_are_omitted():
    assert StreamRequest("a/b", (5,)).params() == {"offsets": "5"}
    assert StreamRequest("a/b", (5,)).path == "/api/v2/recordings/a%2Fb/stream"


def test_long_offset_lists_are_split_into_groups_of_three():
    assert MAX_OFFSETS_PER_REQUEST == 3
    assert split_offsets([0, 15, 30, 45, 60, 75, 90]) == [(0, 15, 30), (45, 60, 75), (90,)]
    assert split_offsets([7]) == [(7,)]
    planned = plan_requests("100001", [0, 15, 30, 45])
    assert [sid for sid, _ in planned] == ["100001@0", "100001@45"]
    assert [r.params()["offsets"] for _, r in planned] == ["0,15,30", "45"]
    assert all(len(r.offsets) <= 3 for _, r in planned)
    assert [sid for sid, _ in plan_requests("100001", [0, 15])] == ["100001"]


@pytest.mark.parametrize("offsets, message", [
    ([], "at least one offset"),
    ([0, 15, 15], r"strictly increasing: #2 \(15\) follows 15"),
    ([10, 5], "strictly increasing"),
    ([-1], r"offset #0 \(-1\)"),
    ([0, 1.5], r"offset #1 \(1.5\) is not an integer"),
    ([True], "not an integer"),
])
def test_bad_offsets_are_named(offsets, message):
    with pytest.raises(StreamRequestError, match=message):
        split_offsets(offsets)


def test_a_request_cannot_carry_more_than_three_offsets_or_bad_options():
    with pytest.raises(StreamRequestError, match="4 offsets given; at most 3"):
        StreamRequest("1", (0, 1, 2, 3))
    with pytest.raises(StreamRequestError, match="maxDuration"):
        StreamRequest("1", (0,), max_duration=0)
    with pytest.raises(StreamRequestError, match="codec"):
        StreamRequest("1", (0,), codec="op us&x=1")
    assert format_offsets([0, 15]) == "0,15"


def playback_answer(*interactions):
    return {"contactId": "c1", "interactions": list(interactions)}


def voice(url, **data):
    return {"mediaType": "voice-only", "data": {"fileToPlayUrl": url, **data}}


def test_contacts_answer_parsing():
    body = playback_answer(voice("https://media.example/f/1?sig=s3cret", format="WAV", size=123, duration=4.5,
                                 etag='"v1"'),
                           {"mediaType": "screen", "data": {"fileToPlayUrl": "https://x/y"}},
                           voice("https://media.example/f/2?sig=s3cret", fileName="call.mp3"))
    files = parse_contacts(body, "777")
    first = RecordingFacts(platform="cxone", contact_id="c1", duration_seconds=4.5)
    assert files == [MediaFile("https://media.example/f/1?sig=s3cret", "wav", 123, 4.5, '"v1"', facts=first),
                     MediaFile("https://media.example/f/2?sig=s3cret", "mp3", None, None, None,
                               facts=RecordingFacts(platform="cxone", contact_id="c1"))]
    assert "s3cret" not in repr(files)  # the temporary URL is a secret
    assert stream_ids("777", 2) == ["777-1", "777-2"] and stream_ids("777", 1) == ["777"]
    assert contacts_params("777") == {"acd-call-id": "777", "media-type": "voice-only", "isDownload": "true"}


@pytest.mark.parametrize("body, message", [
    ([], "no interactions list"),
    ({"interactions": ["x"]}, r"interactions\[0\] is not an object"),
    (playback_answer({"mediaType": "voice-only", "data": {}}), r"interactions\[0\].data.fileToPlayUrl is missing"),
    (playback_answer(voice("ftp://x/y")), "not an http"),
    (playback_answer(), "no voice interaction"),
])
def test_unusable_contacts_answers_are_named(body, message):
    with pytest.raises(PlaybackAnswerError, match=f"acd call 9: Media Playback answer.*{message}"):
        parse_contacts(body, "9")


def test_rate_limit_specs():
    assert parse_rate_limit("150/5m") == (150, 300.0)
    assert parse_rate_limit("300/60") == (300, 60.0)
    assert parse_rate_limit("10 / 1h") == (10, 3600.0)
    assert parse_rate_limit("off") is None
    for bad in ("150", "0/5m", "150/0", "abc/5m", "150/5d"):
        with pytest.raises(ValueError, match="rate_limit"):
            parse_rate_limit(bad)


BASE = dict(api_base="http://127.0.0.1:1", token_url="http://127.0.0.1:1/oauth/token", client_id="c",
            client_secret="s")


def test_request_budget_defaults_follow_the_discovery():
    assert CxoneSettings(**BASE, recordings=["1"]).request_budget is None
    assert CxoneSettings(**BASE, since="last-run").request_budget == (150, 300.0)
    assert CxoneSettings(**BASE, acd_call_ids=["1"]).request_budget == (150, 300.0)
    assert CxoneSettings(**BASE, acd_call_ids=["1"], rate_limit="off").request_budget is None
    assert CxoneSettings(**BASE, recordings=["1"], rate_limit="300/1m").request_budget == (300, 60.0)


@pytest.mark.parametrize("extra, message", [
    ({}, "give `from`/`since`.*`acd_call_ids`.*`recordings`"),
    ({"recordings": ["1"], "acd_call_ids": ["2"]}, "one discovery per source, not recording ids and ACD call ids"),
    ({"from": "2026-11-29", "acd_call_ids": ["2"]}, "one discovery per source"),
    ({"mode": "data-extraction"}, "needs `from`"),
    ({"from": "2026-11-30", "to": "2026-11-29"}, "ends before it starts"),
    ({"from": "yesterday"}, "not a date"),
    ({"since": "last-run", "to": "2026-11-29"}, "leave out `to`"),
    ({"since": "last-run", "timezone": "Mars/Olympus"}, "IANA zone"),
    ({"since": "last-run", "overlap": "a while"}, "not a duration"),
    ({"acd_call_ids": ["2"], "mode": "stream"}, "needs `recordings`|give `recordings`"),
    ({"recordings": ["1"], "api_base": None}, "`api_base` is required with `grant: client_credentials`"),
    ({"recordings": ["1"], "stream_offsets": [30, 0]}, "stream_offsets: offsets must be strictly increasing"),
    ({"recordings": ["1"], "rate_limit": "lots"}, "not REQUESTS/WINDOW"),
    ({"recordings": ["1"], "connections": 17}, "less than or equal to 16"),
])
def test_settings_errors_are_clear(extra, message):
    with pytest.raises(ValueError, match=message):
        CxoneSettings(**{k: v for k, v in {**BASE, **extra}.items() if v is not None})
